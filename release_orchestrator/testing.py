"""In-memory adapters and a settable clock, for fast tests of services and policy.

They are product code: the contract tests run the same suites against them and the real
adapters.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any


@dataclass
class SentRelease:
    queue: str
    release_id: int
    description: str
    hint: dict[str, Any] | None = None


@dataclass
class MemoryTransport:
    """Records what would be published; ``queue_length`` counts unconsumed sends."""

    sent: list[SentRelease] = field(default_factory=list)
    followed: list[str] = field(default_factory=list)
    workers: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send_release(
        self,
        project: str,
        environment: str,
        release_id: int,
        description: str,
        hint: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            self.sent.append(
                SentRelease(f"release.{project}.{environment}", release_id, description, hint)
            )

    def follow(self, queues: Sequence[str]) -> None:
        self.followed.extend(queues)

    def queue_length(self, queue: str) -> int | None:
        return sum(1 for s in self.sent if s.queue == queue)

    def consumers(self, queue: str, timeout: float = 1.0) -> list[str] | None:
        return sorted(w for w, qs in self.workers.items() if queue in qs)

    def take(self) -> list[SentRelease]:
        """Everything sent so far, emptying the record (as a worker would consume it)."""
        with self._lock:
            out, self.sent = self.sent, []
        return out


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when
