"""Shared CLI options and the client the commands delegate to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..client import Client

ProjectOpt = Annotated[str, typer.Option("-p", "--project", help="Project (blueprint) name.")]
EnvOpt = Annotated[str, typer.Option("-e", "--environment", help="Environment name.")]
OutputOpt = Annotated[str, typer.Option("-o", "--output", help="Output format: table or json.")]

_client: Client | None = None


def client() -> Client:
    """The command line's client (``trigger=cli``), built once from ``RELO_*`` settings."""
    global _client
    if _client is None:
        from pydantic import ValidationError

        from ..client import Client
        from ..domain import Trigger
        from ..errors import InvalidRequest
        from ..settings import Settings

        try:
            settings = Settings()
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InvalidRequest(
                f"configuration: RELO_{str(err['loc'][0]).upper()}: {err['msg']}"
            ) from None
        _client = Client(settings, trigger=Trigger.CLI)
    return _client


def reset_client() -> None:
    global _client
    _client = None
