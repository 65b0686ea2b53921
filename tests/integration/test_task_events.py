"""A real worker's task events (what Flower shows) are batched (``BatchTaskEvents``,
``RELO_TASK_EVENTS_INTERVAL``) and none is lost when the worker stops."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from release_orchestrator.celery_transport import EXECUTE_RELEASE, make_app
from tests.conftest import Stack

pytestmark = pytest.mark.integration


class Events:
    """Every Celery event published on the stack's broker, received in a thread."""

    def __init__(self, stack: Stack) -> None:
        self.app = make_app(stack.client.config)
        self.got: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.receiver: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            self.receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on_event(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.got.append(dict(event, received_at=time.monotonic()))

    def of(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.got if e["type"] == kind
                    and all(e.get(k) == v for k, v in fields.items())]

    def wait(self, kind: str, timeout: float = 15, **fields: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(kind, **fields)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {kind} event {fields}; got {[e['type'] for e in self.got]}")

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(timeout=10)


@pytest.fixture
def events(stack: Stack) -> Iterator[Events]:
    e = Events(stack)
    e.thread.start()
    try:
        yield e
    finally:
        e.stop()


def _release(stack: Stack) -> int:
    out = stack.cli("release", "trigger", "-p", "shop", "-e", "staging", "--type", "full",
                    "--force", check=True)
    release_id = int(out.stdout.strip())
    stack.wait_status(release_id, {"succeeded"}, timeout=60)
    return release_id


def test_task_events_wait_for_the_interval_and_are_flushed_at_shutdown(
    stack: Stack, events: Events
) -> None:
    stack.apply_shop()
    stack.env["RELO_TASK_EVENTS_INTERVAL"] = "60"  # the test is over before the timer fires
    worker = stack.worker(name="evw")
    # the worker's own events (worker group) are never held: they show the subscription works
    events.wait("worker-online", hostname=f"evw@{socket.gethostname()}")

    release_id = _release(stack)
    time.sleep(1.0)
    assert events.of("task-received", name=EXECUTE_RELEASE) == [], "task events not held back"

    stack.stop(worker)  # warm shutdown: the consumer stops and publishes what it held
    (received,) = events.wait("task-received", name=EXECUTE_RELEASE)
    assert received["args"] == f"({release_id},)"
    for kind in ("task-started", "task-succeeded"):
        assert events.wait(kind, uuid=received["uuid"]), kind


def test_task_events_arrive_within_the_interval(stack: Stack, events: Events) -> None:
    stack.apply_shop()
    stack.env["RELO_TASK_EVENTS_INTERVAL"] = "0.05"
    stack.worker(name="evq")
    events.wait("worker-online")

    release_id = _release(stack)
    finished = time.monotonic()
    (received,) = events.wait("task-received", name=EXECUTE_RELEASE)
    assert received["args"] == f"({release_id},)"
    (succeeded,) = events.wait("task-succeeded", uuid=received["uuid"])
    # held for at most the interval (plus the test's own polling), never until shutdown
    assert succeeded["received_at"] - finished < 5
