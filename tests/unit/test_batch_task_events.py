"""``BatchTaskEvents`` against a stand-in consumer: one timer per interval, however many events."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from release_orchestrator.celery_transport import BatchTaskEvents


class Hub:
    """Records what the step schedules; ``turn`` runs the loop's ready callbacks once."""

    def __init__(self) -> None:
        self.ready: set[Any] = set()
        self.timers: list[tuple[float, Any]] = []

    def call_soon(self, callback: Any) -> None:
        self.ready.add(callback)

    def call_later(self, delay: float, callback: Any) -> None:
        self.timers.append((delay, callback))

    def turn(self) -> None:
        ready, self.ready = self.ready, set()
        for callback in ready:
            callback()

    def fire(self) -> None:
        timers, self.timers = self.timers, []
        for _, callback in timers:
            callback()


def consumer(interval: float) -> Any:
    c = SimpleNamespace(hub=Hub(), flushes=0, app=SimpleNamespace(
        conf={"relo_task_events_interval": interval}))
    c.event_dispatcher = SimpleNamespace(on_send_buffered=lambda: None)

    def flush() -> None:
        c.flushes += 1

    c._flush_events = flush
    return c


def test_events_of_one_interval_are_flushed_once() -> None:
    c = consumer(0.05)
    step = BatchTaskEvents(c)
    step.start(c)
    for _ in range(5):  # received, started, succeeded, ... over several loop turns
        c.event_dispatcher.on_send_buffered()
        c.hub.turn()
    assert [delay for delay, _ in c.hub.timers] == [0.05]
    assert c.flushes == 0
    c.hub.fire()
    assert c.flushes == 1
    c.event_dispatcher.on_send_buffered()  # the next event arms the timer again
    c.hub.turn()
    assert len(c.hub.timers) == 1


def test_stop_publishes_what_is_held() -> None:
    c = consumer(0.05)
    step = BatchTaskEvents(c)
    step.start(c)
    c.event_dispatcher.on_send_buffered()
    c.hub.turn()
    step.stop(c)
    assert c.flushes == 1
    c.hub.fire()  # the timer left behind flushes an empty buffer: harmless
    c.event_dispatcher.on_send_buffered()
    c.hub.turn()
    assert len(c.hub.timers) == 1


def test_interval_zero_keeps_celerys_behaviour() -> None:
    c = consumer(0)
    original = c.event_dispatcher.on_send_buffered
    BatchTaskEvents(c).start(c)
    assert c.event_dispatcher.on_send_buffered is original
