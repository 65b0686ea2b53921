"""``relo release sync`` / ``relo release wait`` end to end (SPEC §6): a real worker runs the
shop's shell scripts; exit codes, output modes (terminal, plain lines, JSON) and the CI
script of ``examples/ci/deploy.sh``."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

PE = ("-p", "shop", "-e", "staging")


def state_of(stack: Any, name: str, env: str = "staging") -> dict[str, Any]:
    return json.loads((stack.state_dir / "shop" / env / "service" / f"{name}.json").read_text())


def launch(stack: Any) -> None:
    stack.apply_shop()
    stack.worker()
    first = int(stack.cli("release", "trigger", *PE, check=True).stdout)
    assert str(stack.wait_status(first).status) == "succeeded"


def releases(stack: Any) -> list[dict[str, Any]]:
    return json.loads(stack.cli("release", "list", *PE, "-o", "json", check=True).stdout)


def test_resource_set_and_sync_deploy_the_new_spec_once(stack) -> None:
    launch(stack)
    stack.cli("resource", "set", *PE, "service/payments", "image=payments:1.5.0", check=True)
    result = stack.cli("release", "sync", "payments,catalog", *PE, check=True)
    release_id = int(result.stdout)  # the id alone on stdout
    assert re.match(rf"release {release_id} (queued|running|succeeded): applies service/payments$",
                    result.stderr.strip()), result.stderr
    release = stack.wait_status(release_id)
    assert str(release.status) == "succeeded"
    assert [t.resource for t in release.targets] == ["service/payments"]
    assert str(release.trigger) == "cli" and release.triggered_by == "tester"
    # the shell script saw the new spec in RELO_SPEC and deployed it
    assert state_of(stack, "payments")["image"] == "payments:1.5.0"
    assert [f[3] for f in stack.execution_log() if f[1] == str(release_id)] == [
        "service/payments", "service/payments"]  # start, end
    # everything in sync now: no release, exit 0
    count = len(releases(stack))
    again = stack.cli("release", "sync", "payments,service/catalog", *PE)
    assert again.returncode == 0 and again.stdout == ""
    assert "already in sync in shop/staging; nothing to release" in again.stderr
    assert len(releases(stack)) == count
    as_json = stack.cli("release", "sync", "payments", *PE, "-o", "json", check=True)
    assert json.loads(as_json.stdout) is None
    # --force releases anyway
    forced = stack.cli("release", "sync", "payments", *PE, "--force", "-o", "json", check=True)
    body = json.loads(forced.stdout)
    assert body["targets"] == [{"type": "service", "name": "payments", "action": "apply"}]
    assert str(stack.wait_status(body["id"]).status) == "succeeded"


def test_wait_sync_exits_0_once_synced_and_healthy(stack) -> None:
    launch(stack)
    stack.cli("resource", "set", *PE, "service/catalog", "image=catalog:2.1.0", check=True)
    result = stack.cli("release", "wait", "catalog,payments", *PE, "--sync", "--timeout", "90",
                       "--interval", "0.5", "-o", "json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "ready"
    assert [(a["app"], a["sync"], a["health"], a["ready"]) for a in summary["apps"]] == [
        ("service/catalog", "Synced", "Healthy", True),
        ("service/payments", "Synced", "Healthy", True)]
    synced = summary["synced_release_id"]
    assert synced in summary["releases"]
    # only final states are final: the release it waited for has ended
    assert str(stack.client.get(synced).status) == "succeeded"
    assert state_of(stack, "catalog")["image"] == "catalog:2.1.0"
    # nothing to do: wait returns at once with no release
    again = stack.cli("release", "wait", "catalog", *PE, "--sync", "-o", "json", check=True)
    assert json.loads(again.stdout)["synced_release_id"] is None


def test_wait_prints_one_line_per_change_when_not_a_terminal(stack) -> None:
    launch(stack)
    stack.cli("resource", "set", *PE, "service/payments", "image=payments:2.0.0",
              "deploy_seconds=4", check=True)
    result = stack.cli("release", "wait", "payments", *PE, "--sync", "--interval", "0.3",
                       "--timeout", "90")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(re.match(r"^\d\d:\d\d:\d\d service/payments: ", line) for line in lines), lines
    texts = [line.split(" ", 1)[1] for line in lines]
    assert len(texts) == len(set(texts)) >= 2  # one line per change, no repeats
    assert any("waiting for release" in t and "running" in t for t in texts), texts
    assert texts[-1] == "service/payments: Synced/Healthy, ready"
    assert "\x1b[" not in result.stdout  # no terminal control codes
    assert "1 app(s) Synced and Healthy in shop/staging" in result.stderr


def test_failing_app_makes_wait_exit_1(stack) -> None:
    launch(stack)
    stack.cli("resource", "set", *PE, "service/frontend", "image=frontend:9", "fail=true",
              check=True)
    result = stack.cli("release", "wait", "frontend", *PE, "--sync", "--timeout", "90",
                       "--interval", "0.5")
    assert result.returncode == 1, result
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("relo: error:")]
    assert re.match(r"relo: error: release \d+ failed: apply of service/frontend failed", error)
    # waiting again without a new release: the app is Degraded, exit 1 at once
    again = stack.cli("release", "wait", "frontend", *PE, "-o", "json")
    assert again.returncode == 1
    assert json.loads(again.stdout)["status"] == "failed"
    assert "service/frontend is Degraded" in again.stderr


def test_slow_app_times_out_with_exit_3_and_prints_the_blocker(stack) -> None:
    launch(stack)
    stack.cli("resource", "set", *PE, "service/payments", "image=payments:3", "deploy_seconds=40",
              check=True)
    result = stack.cli("release", "wait", "payments", *PE, "--sync", "--timeout", "2",
                       "--interval", "0.5")
    assert result.returncode == 3, result
    release_id = stack.client.list("shop", "staging", 1)[0].id
    err = result.stderr
    assert "still blocking:" in err
    assert f"release {release_id}" in err
    # running by now, or still taking its worker: either way the blocker is named
    assert (f"[release_running] release {release_id} is running" in err
            or f"[waiting_for_worker] release {release_id}" in err), err
    assert err.rstrip().splitlines()[-1].startswith(
        "relo: error: timed out after 2s waiting for service/payments (release ")


def test_timeout_in_the_queue_names_the_pause_and_the_queue_position(stack) -> None:
    launch(stack)
    stack.cli("env", "pause", *PE, "--reason", "release freeze", check=True)
    stack.cli("resource", "set", *PE, "service/payments", "image=payments:4", check=True)
    result = stack.cli("release", "wait", "payments", *PE, "--sync", "--timeout", "1",
                       "-o", "json")
    assert result.returncode == 3, result
    summary = json.loads(result.stdout)
    assert summary["status"] == "timeout"
    (app,) = summary["apps"]
    assert (app["release_status"], app["position"]) == ("queued", 1)
    assert "release freeze" in app["waiting_on"]
    paused = [f for f in summary["findings"] if f["code"] == "environment_paused"]
    assert paused and paused[0]["remedy"] == "relo env resume -p shop -e staging"
    assert "[environment_paused]" in result.stderr and "fix: relo env resume" in result.stderr


def test_unknown_names_exit_2_naming_what_exists(stack) -> None:
    stack.apply_shop()
    for command in (["release", "sync", "paymnts", *PE],
                    ["release", "wait", "service/nope", *PE, "--timeout", "1"]):
        result = stack.cli(*command)
        assert result.returncode == 2, result
        assert result.stderr.startswith("relo: error: unknown resource ")
        for name in ("service/payments", "service/catalog", "database/orders"):
            assert name in result.stderr
        assert result.stderr.count("\n") == 1
    result = stack.cli("release", "sync", "payments", "-p", "shop", "-e", "qa")
    assert result.returncode == 2
    assert "unknown environment 'qa' in project 'shop'; existing:" in result.stderr
    result = stack.cli("release", "wait", "payments", "-p", "shoop", "-e", "staging")
    assert result.returncode == 2 and "existing: shop" in result.stderr
    assert releases(stack) == []


def _run_in_pty(argv: list[str], env: dict[str, str], cwd: Path,
                timeout: float = 90) -> tuple[int, str]:
    """Run with stdout on a pseudo-terminal (120x40); return (exit code, terminal output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env, cwd=str(cwd))
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:  # EIO: the child closed the terminal
                    if exc.errno != errno.EIO:
                        raise
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None
    proc.stderr.close()
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def test_wait_shows_live_progress_on_a_terminal(stack) -> None:
    launch(stack)
    stack.cli("resource", "set", *PE, "service/payments", "image=payments:5", "deploy_seconds=4",
              check=True)
    env = dict(stack.env, TERM="xterm-256color", COLUMNS="120", LINES="40")
    code, screen = _run_in_pty(
        [sys.executable, "-m", "release_orchestrator.cli.main", "release", "wait", "payments",
         *PE, "--sync", "--interval", "0.3", "--timeout", "90"],
        env, stack.tmp)
    assert code == 0, screen
    # rich's Live redraws in place: cursor movement, and several distinct frames
    assert "\x1b[" in screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    titles = re.findall(r"relo release wait shop/staging: (\d)/1 ready, (\d+)s", plain)
    assert ("0", "0") in titles or any(t[0] == "0" for t in titles), plain
    assert titles[-1][0] == "1"
    assert len(set(titles)) >= 3, titles  # it kept updating while waiting
    assert "running" in plain and "ready" in plain
    for column in ("APP", "SYNC", "HEALTH", "RELEASE", "WAITING ON"):
        assert column in plain
    assert state_of(stack, "payments")["image"] == "payments:5"


def test_ci_script_deploys_and_reports_failures_with_exit_codes(stack) -> None:
    launch(stack)
    script = ROOT / "examples" / "ci" / "deploy.sh"
    env = dict(stack.env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               INTERVAL="0.5", TIMEOUT="90", COMMENT="pipeline 42")

    def deploy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(script), *args], env=env, capture_output=True,
                              text=True, timeout=110, cwd=str(stack.tmp))

    ok = deploy("shop", "staging", "service/payments", "image=payments:7.0.0", "replicas=2")
    assert ok.returncode == 0, ok.stderr
    assert state_of(stack, "payments") == {"image": "payments:7.0.0", "replicas": 2}
    release_id = int(ok.stdout.splitlines()[0])  # relo release sync printed the id
    release = stack.client.get(release_id)
    assert (release.comment, str(release.status)) == ("pipeline 42", "succeeded")
    assert ok.stdout.splitlines()[-1].endswith("service/payments: Synced/Healthy, ready")
    # the same spec again: nothing to release, still exit 0
    same = deploy("shop", "staging", "payments", "image=payments:7.0.0")
    assert same.returncode == 0, same.stderr
    assert "already in sync" in same.stderr
    assert stack.client.list("shop", "staging", 1)[0].id == release_id
    failing = deploy("shop", "staging", "service/catalog", "fail=true")
    assert failing.returncode == 1
    assert "apply of service/catalog failed" in failing.stderr
    unknown = deploy("shop", "staging", "service/paymentz", "image=x")
    assert unknown.returncode == 2
    assert "existing: service/payments" in unknown.stderr
    assert deploy("shop").returncode == 2
