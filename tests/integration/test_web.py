"""The real ``relo web`` process over a stack's database and Redis (no worker consumes the
queues, so submitted releases stay queued): the JSON API gives what the CLI gives, its token
auth holds, ``/metrics`` answers, and a headless Debian chromium driven by Playwright deletes
a queued release, triggers one, pauses and resumes the environment — checked with the CLI."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Stack

pytestmark = pytest.mark.integration

TOKEN = "ci-token-5f0c2a7e9b"
BARE = "page-token-81d3e6"
CHROMIUM = os.environ.get("RELO_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Web:
    stack: Stack
    base: str

    def call(
        self, method: str, path: str, token: str | None = TOKEN, body: Any = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            exc.close()
        try:
            return status, json.loads(raw)
        except ValueError:  # /metrics, pages
            return status, raw.decode()

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.stack.cli(*args, "-o", "json", check=True).stdout)


@pytest.fixture
def web(stack: Stack) -> Iterator[Web]:
    stack.apply_shop()
    stack.env["RELO_API_TOKENS"] = f"ci:{TOKEN},{BARE}"
    port = free_port()
    proc = stack.start("web", "--port", str(port), name="web", wait_ready=False)
    w = Web(stack, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"relo web exited early:\n{stack.logs()}")
        try:
            if w.call("GET", "/healthz", token=None)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"relo web not answering:\n{stack.logs()}")
        time.sleep(0.3)
    yield w


def trigger(stack: Stack, *args: str) -> int:
    out = stack.cli("release", "trigger", "-p", "shop", "-e", "staging", *args, check=True)
    return int(out.stdout.strip())


def test_api_of_the_real_process_gives_what_the_cli_gives(web: Web) -> None:
    stack = web.stack
    stack.cli("env", "pause", "-p", "shop", "-e", "staging", "--reason", "freeze", check=True)
    trigger(stack, "--comment", "first")
    trigger(stack, "--type", "selective", "--target", "service/payments", "--refresh")

    active_path = "/api/projects/shop/environments/staging/releases/active"
    assert web.call("GET", active_path, token=None)[0] == 401
    assert web.call("GET", active_path, token="not-a-token")[0] == 401
    status, body = web.call("POST", "/api/projects/shop/environments/staging/releases",
                            token=None, body={"type": "full"})
    assert (status, body["code"]) == (401, "unauthorized")

    status, from_api = web.call("GET", active_path)
    assert status == 200
    from_cli = web.cli_json("release", "active", "-p", "shop", "-e", "staging")
    assert from_api == from_cli
    assert [r["position"] for r in from_api] == [1, 2]
    assert from_api[1]["targets"] == [{"type": "service", "name": "payments", "action": "apply"}]

    status, created = web.call("POST", "/api/projects/shop/environments/staging/releases",
                               body={"type": "full", "comment": "from a CI runner"})
    assert status == 201, created
    shown = web.cli_json("release", "show", str(created["id"]))
    assert (shown["trigger"], shown["triggered_by"], shown["status"]) == ("api", "ci", "queued")
    assert web.call("GET", f"/api/releases/{created['id']}")[1] == shown

    status, history = web.call("GET", "/api/projects/shop/environments/staging/releases?limit=5")
    assert history == web.cli_json("release", "list", "-p", "shop", "-e", "staging", "-n", "5")
    status, envs = web.call("GET", "/api/environments?project=shop")
    assert envs == web.cli_json("env", "list", "-p", "shop")
    status, err = web.call("GET", "/api/projects/shop/environments/nope/releases/active")
    assert status == 404 and err["code"] == "not_found"
    cli_err = stack.cli("release", "active", "-p", "shop", "-e", "nope")
    assert cli_err.returncode == 2 and err["error"] in cli_err.stderr

    status, deleted = web.call("DELETE", f"/api/releases/{created['id']}")
    assert (status, deleted) == (200, {"deleted": [created["id"]]})
    assert web.cli_json("release", "show", str(created["id"]))["status"] == "cancelled"

    status, metrics = web.call("GET", "/metrics", token=None)
    assert status == 200
    assert 'relo_queue_depth{environment="staging",project="shop"} 2.0' in metrics
    assert 'relo_releases_held{environment="staging",project="shop",reason="environment_paused"}' \
        in metrics


def test_browser_deletes_a_queued_release_pauses_and_resumes(web: Web) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run does)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)

    stack = web.stack
    running = trigger(stack, "--comment", "dispatched, no worker takes it")
    doomed = trigger(stack, "--comment", "to be deleted")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                http_credentials={"username": "alice", "password": BARE}
            )
            context.set_default_timeout(30_000)
            page = context.new_page()
            dialogs: list[str] = []

            def accept(dialog: Any) -> None:
                dialogs.append(dialog.message)
                dialog.accept()

            page.on("dialog", accept)
            console_errors: list[str] = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error"
                    else None)
            page.goto(web.base + "/")
            page.get_by_role("link", name="staging").click()
            expect(page.locator("h1")).to_have_text("shop/staging")

            row = page.locator(f'#active-releases tr[data-release-id="{doomed}"]')
            expect(row).to_contain_text("queued")
            expect(row).to_contain_text("to be deleted")
            expect(row.locator(".hold")).to_contain_text(f"release {running}")
            row.get_by_role("button", name="Delete").click()
            expect(page.locator("#flash")).to_have_text(f"deleted release {doomed}")
            expect(row).to_have_count(0)
            assert dialogs and f"Delete release {doomed}" in dialogs[0]

            pause = page.locator("#pause-environment")
            pause.locator('input[name="reason"]').fill("browser freeze")
            pause.get_by_role("button", name="Pause environment").click()
            expect(page.locator("#flash")).to_have_text("paused shop/staging: browser freeze")
            expect(page.locator("#pauses")).to_contain_text("Environment paused by alice")

            form = page.locator("#trigger-form")
            form.locator('input[name="comment"]').fill("held by the pause")
            form.get_by_role("button", name="Trigger").click()
            expect(page.locator("#flash")).to_contain_text("queued")
            held_id = int(page.locator("#flash").inner_text().split()[1])
            held = page.locator(f'#active-releases tr[data-release-id="{held_id}"]')
            expect(held.locator('.hold[data-code="environment_paused"]')).to_contain_text(
                "paused by alice"
            )

            page.locator("#resume-environment").get_by_role(
                "button", name="Resume environment").click()
            expect(page.locator("#flash")).to_contain_text("resumed shop/staging")
            expect(page.locator("#pause-environment")).to_have_count(1)
            assert console_errors == []  # e.g. no script or style refused by the CSP
        finally:
            browser.close()

    deleted = web.cli_json("release", "show", str(doomed))
    assert deleted["status"] == "cancelled"
    submitted = web.cli_json("release", "show", str(held_id))
    assert (submitted["trigger"], submitted["triggered_by"]) == ("manual", "alice")
    assert submitted["comment"] == "held by the pause"
    assert web.cli_json("env", "show", "-p", "shop", "-e", "staging")["environment_pause"] is None
    events = web.cli_json("events", "-p", "shop", "-e", "staging", "--limit", "10")
    by_alice = [(e["kind"], e.get("release_id")) for e in events if e["actor"] == "alice"]
    kinds = [k for k, _ in by_alice]
    assert ("cancelled", doomed) in by_alice, events
    assert ("submitted", held_id) in by_alice, events
    assert "paused" in kinds and "resumed" in kinds, events
    assert web.cli_json("release", "show", str(running))["status"] == "queued"
