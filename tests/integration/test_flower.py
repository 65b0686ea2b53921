"""Flower against a real worker (SPEC §9): release tasks appear in Flower's API with a
readable name, their release id, project, environment and type; Flower's basic auth holds and
its Prometheus ``/metrics`` answers."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from release_orchestrator.celery_transport import DISPATCH, EXECUTE_RELEASE, TICK
from tests.conftest import Stack

pytestmark = pytest.mark.integration

AUTH = "flower-user:flower-pw-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, auth: str | None = None, timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return exc.code, body


def wait_until_up(base: str, stack: Stack, proc: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"flower exited early:\n{stack.logs()}")
        try:
            if get(base + "/healthcheck", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"flower not answering on {base}:\n{stack.logs()}")


def release_tasks(base: str) -> list[dict[str, Any]]:
    status, body = get(base + "/api/tasks", auth=AUTH)
    assert status == 200, body[:500]
    return [t for t in json.loads(body).values() if t.get("name") == EXECUTE_RELEASE]


def test_flower_shows_release_tasks_with_id_environment_and_type(stack: Stack) -> None:
    stack.apply_shop()
    stack.env["RELO_FLOWER_LOCAL_ONLY"] = "1"  # listen on 127.0.0.1 only
    stack.worker()
    port = free_port()
    flower = stack.start("flower", "--port", str(port), "--basic-auth", AUTH, wait_ready=False)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base, stack, flower)

    # Flower learns of tasks from events sent after it subscribed: submit (again) until one
    # of our releases shows up, then check how it is shown.
    submitted: list[int] = []
    found: dict[str, Any] | None = None
    deadline = time.monotonic() + 100
    while found is None and time.monotonic() < deadline:
        out = stack.cli("release", "trigger", "-p", "shop", "-e", "staging", "--type", "full",
                        "--force", "--comment", "seen by flower", check=True)
        release_id = int(out.stdout.strip())
        submitted.append(release_id)
        stack.wait_status(release_id, {"succeeded"}, timeout=60)
        until = time.monotonic() + 15
        while found is None and time.monotonic() < until:
            found = next(
                (t for t in release_tasks(base) if t.get("args") == f"({release_id},)"), None
            )
            time.sleep(0.5)
    assert found is not None, f"no task of releases {submitted} in Flower:\n{stack.logs()}"
    release_id = int(found["args"].strip("(,)"))
    assert found["kwargs"] == f"release={release_id} env=shop/staging type=full"
    assert found["routing_key"] == "release.shop.staging"
    # events reach Flower a moment after the database says succeeded (the worker publishes
    # them in batches, RELO_TASK_EVENTS_INTERVAL): the task's state follows within seconds
    until = time.monotonic() + 10
    while found["state"] != "SUCCESS" and time.monotonic() < until:
        time.sleep(0.2)
        found = next(t for t in release_tasks(base) if t.get("args") == found["args"])
    assert found["state"] == "SUCCESS"

    status, body = get(base + "/api/tasks", auth=None)
    assert status == 401
    status, _ = get(base + "/api/tasks", auth="flower-user:wrong")
    assert status == 401

    # task names are readable and shared by every environment (no per-environment shadows)
    status, body = get(base + "/api/tasks", auth=AUTH)
    names = {t.get("name") for t in json.loads(body).values()}
    assert names <= {EXECUTE_RELEASE, DISPATCH, TICK}, names

    status, metrics = get(base + "/metrics")  # exempt from basic auth, like /healthcheck
    assert status == 200
    text = metrics.decode()
    assert "flower_events_total" in text
    assert f'task="{EXECUTE_RELEASE}"' in text
    # labels stay few: task names only, never one per environment
    assert set(re.findall(r'task="([^"]*)"', text)) <= {EXECUTE_RELEASE, DISPATCH, TICK}
    assert "release.shop.staging" not in text
