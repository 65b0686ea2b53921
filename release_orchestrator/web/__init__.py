"""relo's web app: the Releases pages, a JSON API under ``/api/`` and ``/metrics``.

``relo web`` serves :func:`create_app` with uvicorn. The pages and the API use the same
:class:`release_orchestrator.Client` as the CLI (SPEC §9): pages submit with
``trigger=manual``, the API with ``trigger=api``; tokens come from ``RELO_API_TOKENS``.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
