"""Ports: the small interfaces services use for I/O besides the database.

Each adapter documents what is atomic, what it returns and what it raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Protocol


class Transport(Protocol):
    """Sends work to workers (Celery in production, a list in tests).

    Messages are transport only: the database says what must run, so every method may
    lose a message without losing a release (the reconciler re-sends).
    """

    def send_release(
        self,
        project: str,
        environment: str,
        release_id: int,
        description: str,
        hint: dict[str, Any] | None = None,
    ) -> None:
        """Publish one ``execute_release`` message on ``release.<project>.<environment>``.

        ``hint``: what the release locks (see :func:`services.dispatch.lock_hint`), so that a
        worker takes the state locks without reading the database first; a message without
        one makes the worker read the release first.
        """

    def follow(self, queues: Sequence[str]) -> None:
        """Ask workers that consume every environment to also consume ``queues``."""

    def queue_length(self, queue: str) -> int | None:
        """Messages waiting in ``queue``, or None when unknown."""

    def consumers(self, queue: str, timeout: float = 1.0) -> list[str] | None:
        """Workers consuming ``queue`` (remote control), or None when it cannot be asked."""


class Clock(Protocol):
    """Where services read the time; policy code takes ``now`` as an argument."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)
