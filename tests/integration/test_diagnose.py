"""``relo diagnose`` against the real thing (SPEC §8): one test per finding code.

Each test sets up the situation with real ``relo`` processes (workers, beat) on Redis and
SQLite, asserts the code, the release/resources it names and its remedy command, then RUNS
that remedy (parsed from the finding) and checks the finding is gone.
"""

from __future__ import annotations

import json
import shlex
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from release_orchestrator.locks import LockRequest

pytestmark = pytest.mark.integration


# -- helpers ------------------------------------------------------------------------------
def diag(stack: Any, *args: str, env: str = "staging") -> list[dict[str, Any]]:
    result = stack.cli("diagnose", "-p", "shop", "-e", env, *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def codes(findings: list[dict[str, Any]]) -> list[str]:
    return [f["code"] for f in findings]


def one(findings: list[dict[str, Any]], code: str) -> dict[str, Any]:
    found = [f for f in findings if f["code"] == code]
    assert len(found) == 1, findings
    return found[0]


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def trigger(stack: Any, *args: str, env: str = "staging") -> int:
    return int(stack.cli("release", "trigger", "-p", "shop", "-e", env, *args,
                         check=True).stdout)


def status(stack: Any, release_id: int) -> str:
    return str(stack.client.get(release_id).status)


def running(stack: Any, release_id: int) -> None:
    until(lambda: status(stack, release_id) == "running", f"release {release_id} running")


def slow(stack: Any, resource: str, seconds: float, env: str = "staging") -> None:
    stack.cli("resource", "set", "-p", "shop", "-e", env, resource,
              f"deploy_seconds={seconds}", check=True)


def remedy_argv(remedy: str) -> list[str]:
    """The command of a remedy: after its last ': ', before any '  (…)' aside."""
    text = remedy.rsplit(": ", 1)[-1].split("  (", 1)[0].strip()
    argv = shlex.split(text)
    assert argv[0] == "relo", remedy
    return argv[1:]


def run_remedy(stack: Any, finding: dict[str, Any]) -> Any:
    return stack.cli(*remedy_argv(finding["remedy"]), check=True)


# -- policy reasons -------------------------------------------------------------------------
def test_waiting_behind_and_state_lock_held_by_a_release(stack) -> None:
    stack.apply_shop()
    stack.worker()
    slow(stack, "database/orders", 30)
    first = trigger(stack, "--comment", "slow")
    running(stack, first)
    second = trigger(stack)
    third = trigger(stack, "--type", "selective", "--target", "service/catalog")
    found = diag(stack, str(third))
    lock = one(found, "state_lock_held")
    assert (lock["release_id"], lock["resources"]) == (first, ["service/catalog"])
    assert f"held by running release {first}" in lock["message"]
    assert lock["remedy"] == f"wait for it: relo release logs {first} --follow"
    behind = one(found, "waiting_behind")
    assert (behind["release_id"], behind["resources"]) == (second, ["environment"])
    assert f"release {third} is waiting behind release {second} (queue position 1)" in (
        behind["message"])
    assert behind["remedy"] == f"wait for it, or remove it: relo release delete {second}"
    # the environment-wide view: what holds each waiting release
    env_wide = diag(stack)
    assert [(f["code"], f["release_id"], f["resources"]) for f in env_wide] == [
        ("state_lock_held", first, ["environment"]),
        ("state_lock_held", first, ["service/catalog"]),
        ("waiting_behind", second, ["environment"]),
    ]
    assert env_wide[0]["message"].startswith(f"release {second} waits: state lock")
    assert env_wide[1]["message"].startswith(f"release {third} waits: state lock")
    # remedy 1: delete the release it waits behind
    run_remedy(stack, behind)
    assert status(stack, second) == "cancelled"
    assert "waiting_behind" not in codes(diag(stack, str(third)))
    # remedy 2: wait for the lock holder (logs --follow returns when it ends)
    logs = run_remedy(stack, lock)
    assert f"release {first} succeeded" in logs.stdout
    until(lambda: "state_lock_held" not in codes(diag(stack, str(third))), "lock finding gone")
    assert str(stack.wait_status(third).status) == "succeeded"


def test_parallel_disabled(stack) -> None:
    stack.apply_shop()
    stack.worker()
    slow(stack, "service/payments", 90)
    first = trigger(stack, "--type", "selective", "--target", "service/payments")
    running(stack, first)
    second = trigger(stack, "--type", "selective", "--target", "service/catalog")
    found = diag(stack, str(second))
    assert codes(found) == ["parallel_disabled"]
    assert found[0]["release_id"] == first
    assert found[0]["remedy"] == "relo env settings -p shop -e staging --parallel on"
    run_remedy(stack, found[0])
    # now they really run side by side
    until(lambda: status(stack, second) in ("running", "succeeded"), "second starts")
    assert status(stack, first) == "running"
    assert "parallel_disabled" not in codes(diag(stack, str(second)))


def test_approval_pending_then_approval_disables_parallel(stack) -> None:
    stack.apply_shop()
    stack.worker()
    stack.cli("env", "settings", "-p", "shop", "-e", "prod", "--approval", "on", check=True)
    # said even with nothing waiting: the settings say parallel on, but it is off
    (setting,) = diag(stack, env="prod")
    assert setting["code"] == "approval_disables_parallel"
    assert setting["remedy"] == "relo env settings -p shop -e prod --approval off"
    slow(stack, "service/payments", 90, env="prod")
    first = trigger(stack, "--type", "selective", "--target", "service/payments", env="prod")
    stack.cli("release", "approve", str(first), check=True)
    running(stack, first)
    second = trigger(stack, "--type", "selective", "--target", "service/catalog", env="prod")
    (pending,) = diag(stack, str(second), env="prod")
    assert (pending["code"], pending["release_id"]) == ("approval_pending", second)
    assert pending["remedy"] == f"relo release approve {second}"
    run_remedy(stack, pending)
    found = diag(stack, str(second), env="prod")
    assert "approval_pending" not in codes(found)
    blocked = one(found, "approval_disables_parallel")
    assert blocked["release_id"] == first
    assert "disables parallel releases" in blocked["message"]
    run_remedy(stack, blocked)
    until(lambda: status(stack, second) in ("running", "succeeded"), "second starts")
    assert status(stack, first) == "running"
    assert "approval_disables_parallel" not in codes(diag(stack, env="prod"))


def test_max_parallel_reached(stack) -> None:
    stack.apply_shop()
    stack.worker()
    stack.cli("env", "settings", "-p", "shop", "-e", "prod", "--max-parallel", "1", check=True)
    slow(stack, "service/payments", 90, env="prod")
    first = trigger(stack, "--type", "selective", "--target", "service/payments", env="prod")
    running(stack, first)
    second = trigger(stack, "--type", "selective", "--target", "service/catalog", env="prod")
    (cap,) = diag(stack, str(second), env="prod")
    assert cap["code"] == "max_parallel_reached"
    assert "(1 of 1 running)" in cap["message"]
    assert cap["remedy"] == "relo env settings -p shop -e prod --max-parallel 2"
    run_remedy(stack, cap)
    until(lambda: status(stack, second) in ("running", "succeeded"), "second starts")
    assert "max_parallel_reached" not in codes(diag(stack, env="prod"))


def test_project_and_environment_paused(stack) -> None:
    stack.apply_shop()
    stack.worker()
    stack.cli("env", "pause", "-p", "shop", "--reason", "quarterly audit", check=True)
    stack.cli("env", "pause", "-p", "shop", "-e", "staging", "--reason", "db migration",
              check=True)
    release = trigger(stack)
    found = diag(stack, str(release))
    project = one(found, "project_paused")
    assert "project 'shop' is paused by tester since" in project["message"]
    assert "quarterly audit" in project["message"]
    assert project["remedy"] == "relo env resume -p shop"
    environment = one(found, "environment_paused")
    assert "db migration" in environment["message"]
    assert environment["remedy"] == "relo env resume -p shop -e staging"
    run_remedy(stack, project)
    assert codes(diag(stack, str(release))) == ["environment_paused"]
    assert status(stack, release) == "queued"
    run_remedy(stack, environment)
    assert str(stack.wait_status(release).status) == "succeeded"
    assert diag(stack) == []


def test_outside_window(stack) -> None:
    stack.apply_shop()
    stack.worker()
    window = int(stack.cli("env", "window", "add", "-p", "shop", "-e", "staging", "--deny",
                           "--cron", "* * * * *", "--duration", "2h", check=True).stdout)
    release = trigger(stack)
    (closed,) = diag(stack, str(release))
    assert closed["code"] == "outside_window"
    assert f"release {release} waits: deny window {window} is open" in closed["message"]
    assert closed["remedy"] == ("relo env window list -p shop -e staging  (remove one: relo "
                                "env window remove -p shop -e staging ID)")
    argv = remedy_argv(closed["remedy"].replace("ID)", str(window)))
    assert argv == ["env", "window", "remove", "-p", "shop", "-e", "staging", str(window)]
    stack.cli(*argv, check=True)
    assert str(stack.wait_status(release).status) == "succeeded"
    assert "outside_window" not in codes(diag(stack))


def test_state_lock_held_by_an_unknown_holder(stack) -> None:
    stack.apply_shop()
    stack.worker()
    stack.client.ctx.locks.acquire(LockRequest(
        env_key="shop/staging", owner="ops-manual-lock", exclusive=True, ttl_ms=300_000))
    # reported with nothing queued
    (idle,) = diag(stack)
    assert (idle["code"], idle["release_id"], idle["resources"]) == (
        "state_lock_held", None, ["environment"])
    assert "unknown holder (ops-manual-lock)" in idle["message"]
    release = trigger(stack)
    (held,) = diag(stack, str(release))
    assert (held["code"], held["release_id"]) == ("state_lock_held", None)
    assert held["remedy"] == "relo lock break -p shop -e staging --all --reason 'stale lock'"
    time.sleep(1)
    assert status(stack, release) == "queued"
    run_remedy(stack, held)
    assert str(stack.wait_status(release).status) == "succeeded"
    assert diag(stack) == []


# -- facts outside the policy ---------------------------------------------------------------
def test_no_worker(stack) -> None:
    stack.apply_shop()
    (nobody,) = diag(stack)
    assert nobody["code"] == "no_worker"
    assert "no worker consumes release.shop.staging" in nobody["message"]
    # a worker of another environment does not help
    stack.worker("--environments", "shop/prod", name="prodworker")
    release = trigger(stack)
    found = diag(stack, str(release))
    assert codes(found) == ["no_worker"]
    assert found[0]["release_id"] == release
    assert f"release {release} waits for a worker" in found[0]["message"]
    assert found[0]["remedy"] == ("start one: relo worker --environments shop/staging  "
                                  "(or relo worker for every environment)")
    time.sleep(1)
    assert status(stack, release) == "queued"
    # `release show` of the waiting release gives the same finding, with the fix
    table = stack.cli("release", "show", str(release), check=True).stdout
    assert "[no_worker]" in table and "fix: start one: relo worker --environments" in table
    argv = remedy_argv(found[0]["remedy"])
    assert argv == ["worker", "--environments", "shop/staging"]
    stack.start(*argv, name="stagingworker")
    assert str(stack.wait_status(release).status) == "succeeded"
    assert "no_worker" not in codes(diag(stack))


def test_schedule_skipped_busy(stack) -> None:
    stack.apply_shop()
    stack.worker()
    slow(stack, "service/payments", 25)
    busy = trigger(stack, "--type", "selective", "--target", "service/payments")
    running(stack, busy)
    # far enough ahead that the CLI starts before it on a loaded machine (else: in an hour)
    due = datetime.now(timezone.utc) + timedelta(seconds=8)
    stack.cli("schedule", "set", "-p", "shop", "-e", "staging", "--every", "1h",
              "--start-at", due.strftime("%Y-%m-%dT%H:%M:%SZ"), check=True)
    stack.start("beat")

    def skipped() -> list[dict[str, Any]]:
        history = json.loads(stack.cli("release", "list", "-p", "shop", "-e", "staging",
                                       "-o", "json", check=True).stdout)
        return [r for r in history if r["status"] == "skipped" and r["skip_reason"] == "busy"]

    (skip,) = until(skipped, "a skipped scheduled release", timeout=40)
    stack.cli("schedule", "delete", "-p", "shop", "-e", "staging", check=True)
    found = one(diag(stack), "schedule_skipped_busy")
    assert found["release_id"] == skip["id"]
    assert "was skipped because shop/staging was busy" in found["message"]
    assert found["remedy"] == ("let the queue drain (relo release active -p shop -e staging), "
                               "or release now: relo release trigger -p shop -e staging "
                               "--type full")
    assert codes(diag(stack, str(skip["id"]))) == ["schedule_skipped_busy"]
    redeploy = int(run_remedy(stack, found).stdout)
    assert str(stack.wait_status(redeploy).status) == "succeeded"
    assert "schedule_skipped_busy" not in codes(diag(stack))


def test_in_sync(stack) -> None:
    stack.apply_shop()
    stack.worker()
    first = trigger(stack)
    assert str(stack.wait_status(first).status) == "succeeded"
    (synced,) = diag(stack, "--app", "payments")
    assert (synced["code"], synced["resources"]) == ("in_sync", ["service/payments"])
    assert synced["remedy"] == ("release them anyway: relo release sync service/payments "
                                "-p shop -e staging --force")
    forced = int(run_remedy(stack, synced).stdout)
    assert str(stack.wait_status(forced).status) == "succeeded"
    assert [f[3] for f in stack.execution_log() if f[1] == str(forced) and f[5] == "start"] == [
        "service/payments"]
    # a full release in an environment in sync runs nothing: diagnose says why
    idle = trigger(stack)
    assert str(stack.wait_status(idle).status) == "succeeded"
    (nothing,) = [f for f in diag(stack, str(idle)) if f["code"] == "in_sync"]
    assert nothing["message"] == f"release {idle} ran no step: every resource was already in sync"
    assert nothing["remedy"] == "relo release trigger -p shop -e staging --type full --force"
    again = int(run_remedy(stack, nothing).stdout)
    assert str(stack.wait_status(again).status) == "succeeded"
    assert len(stack.client.get(again).steps) == 4
    assert "in_sync" not in codes(diag(stack, str(again)))


def test_unknown_names_exit_2_naming_what_exists(stack) -> None:
    stack.apply_shop()
    for args, named in (
        (["-p", "shpo", "-e", "staging"], "shop"),
        (["-p", "shop", "-e", "stagin"], "staging"),
        (["-p", "shop", "-e", "staging", "--app", "paymnts"], "service/payments"),
        (["-p", "shop", "-e", "staging", "999"], "there are no releases yet"),
    ):
        result = stack.cli("diagnose", *args)
        assert result.returncode == 2, result
        assert result.stderr.startswith("relo: error: unknown ")
        assert named in result.stderr and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1
        as_json = stack.cli("diagnose", *args, "-o", "json")
        assert as_json.returncode == 2
        (finding,) = json.loads(as_json.stdout)
        assert finding["code"] == "unknown_name"
        assert named in finding["message"]
    result = stack.cli("diagnose", "-p", "shpo", "-e", "staging", "-o", "json")
    (finding,) = json.loads(result.stdout)
    assert finding["remedy"] == "use an existing project: shop"
    fixed = stack.cli("diagnose", "-p", "shop", "-e", "staging", "-o", "json")
    assert fixed.returncode == 0 and "unknown_name" not in fixed.stdout


def test_rollback_failed_recommends_a_refresh(stack) -> None:
    stack.apply_shop()
    stack.worker()
    stack.cli("resource", "set", "-p", "shop", "-e", "staging", "service/payments",
              "fail_teardown=true", check=True)
    stack.cli("resource", "set", "-p", "shop", "-e", "staging", "service/frontend", "fail=true",
              check=True)
    release = trigger(stack, "--type", "selective", "--target", "service/payments",
                      "--target", "service/frontend")
    assert str(stack.wait_status(release).status) == "rollback_failed"
    (found,) = diag(stack)
    assert (found["code"], found["release_id"], found["resources"]) == (
        "rollback_failed", release, ["service/payments"])
    assert found["remedy"] == ("relo release trigger -p shop -e staging --type selective "
                               "--target service/payments:refresh")
    assert codes(diag(stack, str(release))) == ["release_finished", "rollback_failed"]
    refresh = int(run_remedy(stack, found).stdout)
    assert str(stack.wait_status(refresh).status) == "succeeded"
    assert diag(stack) == []
    status_ = {r.resource: r for r in stack.client.resources("shop", "staging")}
    assert str(status_["service/payments"].sync) == "Synced"


def test_resource_unknown_after_a_lost_worker(stack) -> None:
    stack.apply_shop()
    victim = stack.worker(name="victim")
    slow(stack, "service/payments", 60)
    release = trigger(stack, "--type", "selective", "--target", "service/payments")
    until(lambda: any(f[1] == str(release) for f in stack.execution_log()), "deploy started")
    stack.stop(victim, signal.SIGKILL)
    stack.worker(name="rescuer")
    stack.start("beat")  # its tick runs the reconciler, which notices the lost worker
    assert str(stack.wait_status(release, timeout=60).status) == "failed"
    (found,) = diag(stack)
    assert (found["code"], found["release_id"], found["resources"]) == (
        "resource_unknown", release, ["service/payments"])
    assert "worker lost" in found["message"]
    assert found["remedy"] == ("relo release trigger -p shop -e staging --type selective "
                               "--target service/payments:refresh")
    refresh = int(run_remedy(stack, found).stdout)
    assert str(stack.wait_status(refresh).status) == "succeeded"
    assert diag(stack) == []
