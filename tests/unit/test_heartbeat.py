"""The heartbeat thread (release_orchestrator.services.heartbeat): one per process, woken by a
new release only when it would otherwise sleep past that release's first beat."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from release_orchestrator.services.heartbeat import _Beat, _Heartbeats


class _Runner:
    """Counts lease extensions; ``release_id`` names it in logs."""

    def __init__(self, release_id: int) -> None:
        self.release_id = release_id
        self.lease = SimpleNamespace(owner=f"r{release_id}")
        self.extended = 0
        self.twice = threading.Event()
        self.lost = threading.Event()
        self.cancel = threading.Event()

    def heartbeat(self) -> None:
        self.extended += 1
        if self.extended >= 2:
            self.twice.set()

    def flush_output(self) -> None:
        pass


def _beat(release_id: int, ttl: float) -> tuple[_Beat, _Runner]:
    runner = _Runner(release_id)
    ctx: Any = SimpleNamespace(
        settings=SimpleNamespace(lock_ttl=ttl),
        locks=SimpleNamespace(extend=lambda lease: True),
    )
    return _Beat(ctx, runner), runner  # type: ignore[arg-type]


def _wait_for(condition: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_beats_reach_releases_added_while_busy_lingering_and_asleep() -> None:
    beats = _Heartbeats()
    beats.LINGER = 0.2
    # a release with a short TTL is beaten every third of it
    first, runner = _beat(1, ttl=0.6)
    beats.add(first)
    assert runner.twice.wait(10)
    beats.remove(first)
    # nothing to beat for longer than LINGER: the thread sleeps until woken
    assert _wait_for(lambda: beats._deadline is None)
    second, runner = _beat(2, ttl=0.6)
    beats.add(second)
    assert runner.twice.wait(10)
    beats.remove(second)
    # a release with a long TTL keeps the thread on a long wait; a short one added meanwhile
    # is due sooner and wakes it
    slow, slow_runner = _beat(3, ttl=300)
    beats.add(slow)
    assert _wait_for(lambda: (beats._deadline or 0) - time.monotonic() > 0.5)
    fast, fast_runner = _beat(4, ttl=0.6)
    beats.add(fast)
    assert fast_runner.twice.wait(10)
    assert slow_runner.extended == 0  # its first extension is 100 s away
    beats.remove(fast)
    beats.remove(slow)
