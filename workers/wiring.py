"""Builds the real adapters once per process (and again after a fork)."""

from __future__ import annotations

import threading

from release_orchestrator.celery_transport import CeleryTransport
from release_orchestrator.services.context import Context
from release_orchestrator.settings import Settings
from release_orchestrator.storage.db import Database

_lock = threading.Lock()
_context: Context | None = None


def context() -> Context:
    """The process's service context (database, Redis locks, Celery transport)."""
    global _context
    if _context is None:
        with _lock:
            if _context is None:
                from .app import app

                settings = Settings()
                _context = Context(
                    settings=settings,
                    db=Database(settings.database_url),
                    transport=CeleryTransport(app, settings),
                )
    return _context


def reset() -> None:
    """Forget connections inherited from the parent process (prefork child start)."""
    global _context
    if _context is not None:
        _context.reset_after_fork()
    _context = None
