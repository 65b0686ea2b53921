"""The web app factory: pages, the JSON API, ``/metrics`` and error handling."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..client import Client
from ..domain import Trigger
from ..errors import ReloError
from ..settings import Settings
from . import api, pages
from .auth import AuthError, TokenAuth
from .clients import Clients
from .errors import error_body
from .metrics import DomainCollector
from .state import WebState

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

#: Sent with every response: no framing (the pages have buttons), no inline scripts.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def create_app(settings: Settings | None = None, *, client: Client | None = None) -> FastAPI:
    """The web app over ``client`` (default: a client built from ``settings``/``RELO_*``).

    Pages act with ``trigger=manual``, the JSON API with ``trigger=api``.
    """
    base = client or Client(settings or Settings(), trigger=Trigger.MANUAL)
    auth = TokenAuth(base.config.api_token_list)
    state = WebState(clients=Clients(base), auth=auth)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DomainCollector(base))
    ProcessCollector(registry=registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not auth.enabled:
            log.warning(
                "RELO_API_TOKENS is not set: the JSON API is disabled and the pages are open "
                "to anyone who can reach this address"
            )
        yield
        state.clients.close()

    app = FastAPI(
        title="relo",
        summary="Releases pages, JSON API and metrics of the release orchestrator",
        docs_url=None,  # Swagger UI loads scripts from a CDN: the CSP forbids it; see /api-help
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.relo = state
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of relo's domain (open, like Flower's ``/metrics``)."""
        try:
            body = await run_in_threadpool(generate_latest, registry)
        except ReloError as exc:
            return PlainTextResponse(f"relo: {exc.message}\n", status_code=503)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    _install_error_handlers(app)
    return app


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> Response:
        headers = {"WWW-Authenticate": exc.challenge} if exc.challenge else None
        if _is_api(request):
            return JSONResponse(
                {"error": exc.message, "code": exc.code}, status_code=exc.status, headers=headers
            )
        return pages.error_page(request, exc.status, exc.message, headers=headers)

    @app.exception_handler(ReloError)
    async def relo_error(request: Request, exc: ReloError) -> Response:
        status, body = error_body(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        if _is_api(request):
            return JSONResponse(body, status_code=status)
        return pages.error_page(request, status, body["error"])

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        message = "; ".join(_validation_message(e) for e in exc.errors()) or "invalid request"
        if _is_api(request):
            return JSONResponse({"error": message, "code": "invalid_request"}, status_code=400)
        return pages.error_page(request, 400, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        if _is_api(request):
            code = "not_found" if exc.status_code == 404 else "http_error"
            return JSONResponse(
                {"error": message, "code": code},
                status_code=exc.status_code,
                headers=getattr(exc, "headers", None),
            )
        return pages.error_page(request, exc.status_code, message)


def _validation_message(error: dict[str, Any]) -> str:
    where = ".".join(str(x) for x in error.get("loc", ()) if x != "body")
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg"))
