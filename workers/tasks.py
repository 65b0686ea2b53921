"""Thin Celery tasks: parse, call one service function, return a short outcome."""

from __future__ import annotations

from typing import Any

from release_orchestrator.celery_transport import DISPATCH, EXECUTE_RELEASE, TICK
from release_orchestrator.services import dispatch as dispatch_service
from release_orchestrator.services import engine

from . import wiring
from .app import app


@app.task(name=EXECUTE_RELEASE, bind=True, ignore_result=True)
def execute_release(
    self: Any,
    release_id: int,
    project: str | None = None,
    environment: str | None = None,
    hint: dict[str, Any] | None = None,
) -> str:
    """Run release ``release_id`` (a duplicate delivery is a no-op). ``hint``: what it locks,
    as the dispatcher read it (messages published before hints existed have none)."""
    return engine.execute(
        wiring.context(), int(release_id), worker=self.request.hostname or "worker", hint=hint
    )


@app.task(name=DISPATCH, ignore_result=True)
def dispatch(environment_id: int) -> list[int]:
    """Re-evaluate one environment's queue."""
    return dispatch_service.evaluate(wiring.context(), int(environment_id))


@app.task(name=TICK, ignore_result=True)
def scheduled_tick() -> dict[str, int]:
    """Beat's periodic tick: due schedules, then the reconciler."""
    ctx = wiring.context()
    stats: dict[str, int] = {}
    try:
        from release_orchestrator.services import schedules
    except ImportError:  # pragma: no cover - scheduling not installed
        schedules = None  # type: ignore[assignment]
    if schedules is not None:
        stats.update(schedules.tick(ctx))
    stats.update(dispatch_service.reconcile(ctx))
    return stats
