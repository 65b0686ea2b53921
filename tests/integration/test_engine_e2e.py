"""A real ``relo worker`` runs the shop example's shell scripts: dependency order, rollback,
destroy order, exactly-once under duplicate delivery. Assertions read the execution log the
scripts themselves write."""

from __future__ import annotations

import json

import pytest

from release_orchestrator.celery_transport import CeleryTransport, make_app
from tests.conftest import hint_of

pytestmark = pytest.mark.integration

SHOP = ["database/orders", "service/payments", "service/catalog", "service/frontend"]


def calls(log: list[list[str]], release_id: int, event: str = "start") -> list[tuple[str, str]]:
    """(resource, action) of every call of one release, in log order."""
    return [(f[3], f[4]) for f in log if f[1] == str(release_id) and f[5] == event]


def test_full_release_runs_every_resource_in_dependency_order(stack) -> None:
    stack.apply_shop()
    stack.worker()
    out = stack.cli("release", "trigger", "-p", "shop", "-e", "staging", "--type", "full",
                    "--comment", "first", check=True)
    release_id = int(out.stdout.strip())
    release = stack.wait_status(release_id)
    assert str(release.status) == "succeeded", release.error
    order = [r for r, _ in calls(stack.execution_log(), release_id)]
    assert sorted(order) == sorted(SHOP)
    assert order[0] == "database/orders" and order[-1] == "service/frontend"
    assert [s.resource for s in release.steps] == order
    # every script call ended, none ran twice
    assert len(calls(stack.execution_log(), release_id, "end")) == 4
    # steps carry the scripts' output; logs show it
    logs = stack.cli("release", "logs", str(release_id), check=True).stdout
    assert "deploying payments:1.4.2" in logs and "==> step 2" in logs
    statuses = json.loads(stack.cli("resource", "list", "-p", "shop", "-e", "staging",
                                    "-o", "json", check=True).stdout)
    assert {r["sync"] for r in statuses} == {"Synced"}
    assert {r["health"] for r in statuses} == {"Healthy"}
    # an in-sync environment: a second full release runs nothing
    again = int(stack.cli("release", "trigger", "-p", "shop", "-e", "staging",
                          check=True).stdout)
    assert str(stack.wait_status(again).status) == "succeeded"
    assert calls(stack.execution_log(), again) == []
    events = json.loads(stack.cli("events", "-p", "shop", "-e", "staging", "-o", "json",
                                  check=True).stdout)
    kinds = [e["kind"] for e in events if e["release_id"] == release_id]
    assert {"submitted", "started", "succeeded"} <= set(kinds)


def test_failing_step_rolls_back_applied_steps_in_reverse(stack) -> None:
    stack.apply_shop()
    stack.worker()
    first = int(stack.cli("release", "trigger", "-p", "shop", "-e", "staging",
                          check=True).stdout)
    assert str(stack.wait_status(first).status) == "succeeded"
    stack.cli("resource", "set", "-p", "shop", "-e", "staging", "service/payments",
              "image=payments:1.5.0", check=True)
    stack.cli("resource", "set", "-p", "shop", "-e", "staging", "service/catalog",
              "image=catalog:2.1.0", check=True)
    stack.cli("resource", "set", "-p", "shop", "-e", "staging", "service/frontend",
              "image=frontend:4.0.0", "fail=true", check=True)
    second = int(stack.cli("release", "trigger", "-p", "shop", "-e", "staging",
                           check=True).stdout)
    release = stack.wait_status(second)
    assert str(release.status) == "rolled_back", release.error
    forward = [(s.resource, str(s.action)) for s in release.steps if str(s.phase) == "forward"]
    rollback = [(s.resource, str(s.action)) for s in release.steps if str(s.phase) == "rollback"]
    assert forward[-1] == ("service/frontend", "apply")
    applied = [r for r, _ in forward[:-1]]
    assert sorted(applied) == ["service/catalog", "service/payments"]
    assert [r for r, _ in rollback] == list(reversed(applied))
    assert all(a == "apply" for _, a in rollback)
    # what the scripts saw: forward applies, then the rollback applies in reverse order
    log = calls(stack.execution_log(), second)
    assert [r for r, _ in log] == [*applied, "service/frontend", *reversed(applied)]
    # the rolled-back services run their previous spec again
    state = stack.state_dir / "shop" / "staging" / "service" / "payments.json"
    assert json.loads(state.read_text())["image"] == "payments:1.4.2"
    statuses = {r["resource"]: r for r in json.loads(stack.cli(
        "resource", "list", "-p", "shop", "-e", "staging", "-o", "json", check=True).stdout)}
    assert statuses["service/frontend"]["health"] == "Degraded"
    assert statuses["service/payments"]["sync"] == "OutOfSync"
    assert statuses["service/payments"]["applied_spec"]["image"] == "payments:1.4.2"
    # --no-rollback: the same failure ends "failed" and nothing is rolled back
    third = int(stack.cli("release", "trigger", "-p", "shop", "-e", "staging", "--no-rollback",
                          check=True).stdout)
    release = stack.wait_status(third)
    assert str(release.status) == "failed"
    assert not [s for s in release.steps if str(s.phase) == "rollback"]


def test_first_step_failing_ends_failed_and_wait_exits_1(stack) -> None:
    stack.apply_shop()
    stack.worker()
    stack.cli("resource", "set", "-p", "shop", "-e", "staging", "database/orders", "fail=true",
              check=True)
    result = stack.cli("release", "trigger", "-p", "shop", "-e", "staging", "--wait",
                       "--timeout", "60")
    assert result.returncode == 1, result.stderr
    assert "failed" in result.stderr and "database/orders" in result.stderr


def test_destroy_runs_in_reverse_dependency_order_and_needs_allow_destroy(stack) -> None:
    stack.apply_shop()
    stack.worker()
    first = int(stack.cli("release", "trigger", "-p", "shop", "-e", "staging", "--type",
                          "launch", check=True).stdout)
    assert str(stack.wait_status(first).status) == "succeeded"
    refused = stack.cli("release", "trigger", "-p", "shop", "-e", "staging", "--type",
                        "destroy")
    assert refused.returncode == 1
    assert "without allow_destroy" in refused.stderr
    refused_id = int(refused.stdout)
    assert str(stack.client.get(refused_id).status) == "failed"
    assert stack.client.get(refused_id).steps == []
    destroy = int(stack.cli("release", "trigger", "-p", "shop", "-e", "staging", "--type",
                            "destroy", "--allow-destroy", check=True).stdout)
    release = stack.wait_status(destroy)
    assert str(release.status) == "succeeded", release.error
    order = [r for r, a in calls(stack.execution_log(), destroy)]
    assert order[0] == "service/frontend" and order[-1] == "database/orders"
    assert all(a == "destroy" for _, a in calls(stack.execution_log(), destroy))
    statuses = json.loads(stack.cli("resource", "list", "-p", "shop", "-e", "staging", "-o",
                                    "json", check=True).stdout)
    assert {r["health"] for r in statuses} == {"Missing"}


def test_duplicate_messages_run_steps_exactly_once(stack) -> None:
    stack.apply_shop()
    stack.worker(name="w1")
    stack.worker(name="w2")
    transport = CeleryTransport(make_app(stack.client.config), stack.client.config)
    ids = []
    for _ in range(3):
        release = stack.client.submit("shop", "staging", "full", force=True)
        ids.append(release.id)
        hint = hint_of(stack.client, release.id)
        for copy in range(5):  # the same message, delivered again and again (with its hint,
            # and without one as an older relo published it)
            transport.send_release("shop", "staging", release.id, "duplicate",
                                   hint=hint if copy % 2 == 0 else None)
    for release_id in ids:
        assert str(stack.wait_status(release_id).status) == "succeeded"
    log = stack.execution_log()
    for release_id in ids:
        starts = calls(log, release_id)
        assert sorted(r for r, _ in starts) == sorted(SHOP), starts
    # never two releases of the environment at once (parallel is off in staging)
    open_calls: set[str] = set()
    for fields in log:
        if fields[5] == "start":
            assert not open_calls, f"overlap: {fields} while {open_calls} running"
            open_calls.add(fields[1] + fields[3])
        else:
            open_calls.discard(fields[1] + fields[3])


def test_shell_injection_through_spec_values_never_executes(stack, tmp_path) -> None:
    stack.apply_shop()
    stack.worker()
    marker = tmp_path / "pwned"
    stack.cli("resource", "set", "-p", "shop", "-e", "staging", "service/payments",
              f"image=$(touch {marker})", f"note=`touch {marker}`; touch {marker}", check=True)
    release = stack.client.submit("shop", "staging", "selective",
                                  targets=["service/payments"])
    assert str(stack.wait_status(release.id).status) == "succeeded"
    assert not marker.exists()
    state = stack.state_dir / "shop" / "staging" / "service" / "payments.json"
    assert f"$(touch {marker})" in state.read_text()


def test_worker_environments_option_consumes_only_those_queues(stack) -> None:
    stack.apply_shop()
    stack.worker("--environments", "shop/prod", name="prodonly")
    staging = stack.client.submit("shop", "staging", "full").id
    prod = stack.client.submit("shop", "prod", "full").id
    assert str(stack.wait_status(prod).status) == "succeeded"
    assert str(stack.client.get(staging).status) == "queued"
    assert calls(stack.execution_log(), staging) == []
    # a worker that follows every environment, including ones created after it started
    stack.worker(name="all")
    assert str(stack.wait_status(staging).status) == "succeeded"
    blueprint = (stack.tmp / "more.yaml")
    from tests.conftest import ROOT

    text = (ROOT / "examples/shop/shop.yaml").read_text().replace(
        "  - name: staging\n", "  - name: staging\n  - name: qa\n")
    blueprint.write_text(text)
    # keep the scripts' relative paths working: the blueprint's directory is the working dir
    (stack.tmp / "scripts").symlink_to(ROOT / "examples/shop/scripts")
    stack.cli("blueprint", "apply", "-f", str(blueprint), check=True)
    qa = stack.client.submit("shop", "qa", "selective", targets=["service/payments"]).id
    assert str(stack.wait_status(qa).status) == "succeeded"
    bad = stack.cli("worker", "--environments", "shop/nope")
    assert bad.returncode == 2 and "unknown environment 'nope'" in bad.stderr
