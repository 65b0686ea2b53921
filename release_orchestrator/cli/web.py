"""``relo web``: the Releases pages, the JSON API and ``/metrics``, served by uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import InvalidRequest
from . import render
from .common import client


def register(app: typer.Typer) -> None:
    """Add ``relo web`` to ``relo``."""
    app.command("web")(web)


def web(
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on (0.0.0.0: every interface, e.g. in a container)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int | None, typer.Option("--port", help="Default RELO_WEB_PORT.")] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="critical, error, warning, info or debug.")
    ] = "info",
) -> None:
    """Run the web app: Active Releases, history, pauses, settings, schedule and diagnose
    per environment; a JSON API under /api/ (bearer tokens from RELO_API_TOKENS); /metrics.

    Example: RELO_API_TOKENS=ci:$(openssl rand -hex 24) relo web --host 0.0.0.0 --port 8000
    """
    c = client()
    listen_port = c.config.web_port if port is None else port
    if not 0 < listen_port < 65536:
        raise InvalidRequest(f"--port must be between 1 and 65535, got {listen_port}")
    levels = ("critical", "error", "warning", "info", "debug")
    if log_level not in levels:
        raise InvalidRequest(f"--log-level must be one of {', '.join(levels)}, got '{log_level}'")
    try:
        import uvicorn

        from ..web import create_app
    except ImportError as exc:  # pragma: no cover - the dependencies are declared
        raise InvalidRequest(f"the web app needs its dependencies: {exc}") from None
    c.ctx.db.ensure_schema()
    app = create_app(c.config)
    render.info(f"relo web: http://{host}:{listen_port}/ (API under /api/, metrics at /metrics)")
    uvicorn.run(
        app, host=host, port=listen_port, log_level=log_level, proxy_headers=False,
        server_header=False,
    )
