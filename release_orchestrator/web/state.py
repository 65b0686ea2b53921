"""What the web app's routes share: the client views, token auth and the templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ..client import Client
from ..domain import Trigger
from .auth import Caller, TokenAuth
from .clients import Clients


@dataclass
class WebState:
    """Built once per app by :func:`release_orchestrator.web.create_app`."""

    clients: Clients
    auth: TokenAuth


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.relo
    return state


def api_client(request: Request) -> Client:
    """The client of a JSON API request: bearer token required, ``trigger=api``."""
    state = web_state(request)
    caller = state.auth.api_caller(request.headers.get("authorization"))
    return state.clients.view(Trigger.API, caller.actor)


def page_caller(request: Request) -> Caller:
    """The caller of a page (Basic auth with a token when tokens are configured)."""
    return web_state(request).auth.page_caller(request.headers.get("authorization"))


def page_client(request: Request) -> Client:
    """The client of a page request: ``trigger=manual`` (SPEC §11)."""
    caller = page_caller(request)
    return web_state(request).clients.view(Trigger.MANUAL, caller.actor)


ApiClient = Annotated[Client, Depends(api_client)]
PageClient = Annotated[Client, Depends(page_client)]
