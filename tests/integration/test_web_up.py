"""``relo up`` runs the web app beside worker, beat and Flower (SPEC §9, issue 10)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_of(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def test_relo_up_serves_the_web_app_and_stops_cleanly(stack: Stack) -> None:
    stack.apply_shop()
    web_port, flower_port = free_port(), free_port()
    stack.env.update(RELO_WEB_PORT=str(web_port), RELO_FLOWER_PORT=str(flower_port),
                     RELO_API_TOKENS="ci:up-token-42")
    up = stack.start("up", "-c", "1", name="up", wait_ready=False)
    web = f"http://127.0.0.1:{web_port}"
    deadline = time.monotonic() + 90
    while True:
        assert up.poll() is None, stack.logs()
        try:
            if status_of(web + "/healthz") == 200 and status_of(
                f"http://127.0.0.1:{flower_port}/healthcheck"
            ) == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, f"relo up: web or flower not answering\n{stack.logs()}"
        time.sleep(0.5)
    assert status_of(web + "/api/environments") == 401
    request = urllib.request.Request(web + "/api/environments?project=shop")
    request.add_header("Authorization", "Bearer up-token-42")
    with urllib.request.urlopen(request, timeout=10) as response:
        names = sorted(e["name"] for e in json.load(response))
    assert names == ["prod", "staging"]
    os.kill(up.pid, signal.SIGTERM)  # relo up stops its children itself
    try:
        assert up.wait(timeout=60) == 0, stack.logs()
    except subprocess.TimeoutExpired:
        raise AssertionError(f"relo up did not stop\n{stack.logs()}") from None
