"""Queued and parallel releases with real workers (SPEC §3, §5): two prefork workers with
concurrency 2 run the shop's shell scripts; overlap in time is read from the execution log
the scripts write."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def slow_stack(tmp_path: Path):
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB).flushdb()
    s = Stack(tmp_path, deploy_seconds=1.5)
    try:
        s.apply_shop()
        s.worker(name="w1")
        s.worker(name="w2")
        yield s
    finally:
        s.close()


def intervals(stack: Stack) -> dict[int, tuple[float, float]]:
    """Release id → (first start, last end) seen in the execution log."""
    out: dict[int, list[float]] = {}
    for t, rid, _env, _res, _action, edge in stack.execution_log():
        span = out.setdefault(int(rid), [float("inf"), 0.0])
        if edge == "start":
            span[0] = min(span[0], float(t))
        else:
            span[1] = max(span[1], float(t))
    return {k: (v[0], v[1]) for k, v in out.items()}


def overlapping(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def max_concurrency(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = cur = 0
    for _, delta in edges:
        cur += delta
        best = max(best, cur)
    return best


def selective(stack: Stack, env: str, *targets: str, **kw) -> int:
    return stack.client.submit("shop", env, "selective", targets=list(targets), **kw).id


def test_parallel_off_never_overlaps(slow_stack: Stack) -> None:
    s = slow_stack
    ids = [selective(s, "staging", t) for t in
           ("database/orders", "service/payments", "service/catalog", "service/frontend")]
    for i in ids:
        assert str(s.wait_status(i).status) == "succeeded"
    spans = intervals(s)
    assert max_concurrency([spans[i] for i in ids]) == 1
    # FIFO: started in submission order
    assert sorted(ids, key=lambda i: spans[i][0]) == ids


def test_parallel_on_disjoint_selective_releases_overlap(slow_stack: Stack) -> None:
    s = slow_stack
    a = selective(s, "prod", "service/payments")
    b = selective(s, "prod", "service/catalog")
    for i in (a, b):
        assert str(s.wait_status(i).status) == "succeeded"
    spans = intervals(s)
    assert overlapping(spans[a], spans[b]), spans


def test_parallel_on_overlapping_selective_releases_never_overlap(slow_stack: Stack) -> None:
    s = slow_stack
    a = selective(s, "prod", "service/payments", "service/catalog")
    b = selective(s, "prod", "service/catalog")
    c = selective(s, "prod", "service/payments")
    for i in (a, b, c):
        assert str(s.wait_status(i).status) == "succeeded"
    spans = intervals(s)
    assert not overlapping(spans[a], spans[b])
    assert not overlapping(spans[a], spans[c])
    # b and c are disjoint from each other: they may overlap, both after a
    assert spans[b][0] >= spans[a][1] and spans[c][0] >= spans[a][1]


def test_max_parallel_caps_running_releases(slow_stack: Stack) -> None:
    s = slow_stack
    s.cli("env", "settings", "-p", "shop", "-e", "prod", "--max-parallel", "2", check=True)
    ids = [selective(s, "prod", t) for t in
           ("database/orders", "service/payments", "service/catalog", "service/frontend")]
    for i in ids:
        assert str(s.wait_status(i).status) == "succeeded"
    spans = intervals(s)
    assert max_concurrency([spans[i] for i in ids]) == 2


def test_full_release_waits_for_running_selective_and_blocks_later_ones(slow_stack) -> None:
    s = slow_stack
    hold_payments(s)  # still running while we look at the queue
    first = selective(s, "prod", "service/payments")
    s.wait_status(first, {"running"})
    full = s.client.submit("shop", "prod", "full", force=True).id
    later = selective(s, "prod", "service/catalog")  # disjoint from `first`, but behind `full`
    active = {r["id"]: r for r in json.loads(s.cli("release", "active", "-p", "shop", "-e",
                                                    "prod", "-o", "json", check=True).stdout)}
    assert active[full]["position"] == 1 and active[later]["position"] == 2
    assert {h["code"] for h in active[later]["held"]} >= {"waiting_behind"}
    assert active[later]["held"][0]["release_id"] == full or any(
        h["release_id"] == full for h in active[later]["held"])
    for i in (first, full, later):
        assert str(s.wait_status(i).status) == "succeeded"
    spans = intervals(s)
    assert spans[full][0] >= spans[first][1]
    assert spans[later][0] >= spans[full][1]


def test_deleting_a_blocking_queued_release_lets_the_next_start_at_once(slow_stack) -> None:
    s = slow_stack
    hold_payments(s)
    first = selective(s, "prod", "service/payments")
    s.wait_status(first, {"running"})
    blocker = s.client.submit("shop", "prod", "full", force=True).id
    later = selective(s, "prod", "service/catalog")
    time.sleep(1)
    assert str(s.client.get(later).status) == "queued"
    out = s.cli("release", "delete", str(blocker), check=True)
    assert "deleted 1" in out.stderr
    assert str(s.wait_status(later, {"running", "succeeded"}).status) in {"running", "succeeded"}
    assert str(s.client.get(first).status) == "running"  # it started while `first` still ran
    assert str(s.client.get(blocker).status) == "cancelled"
    # deleting a running or finished release is refused and changes nothing
    refused = s.cli("release", "delete", str(first))  # running, or just finished
    assert refused.returncode == 2, refused.stderr
    assert "only queued or pending releases can be deleted" in refused.stderr
    assert str(s.wait_status(first).status) == "succeeded"
    events = json.loads(s.cli("events", "-p", "shop", "-e", "prod", "-o", "json").stdout)
    assert any(e["kind"] == "cancelled" and e["release_id"] == blocker and e["actor"] == "tester"
               for e in events)


def hold_payments(s: Stack) -> None:
    """service/payments deploys for 6 s in prod: long enough for the next CLI process (a
    second or more on a loaded machine) to find its release still running."""
    s.cli("resource", "set", "-p", "shop", "-e", "prod", "service/payments",
          "deploy_seconds=6", check=True)


def test_fail_on_conflict_exits_4_naming_the_conflict(slow_stack) -> None:
    s = slow_stack
    hold_payments(s)
    first = selective(s, "prod", "service/payments")
    s.wait_status(first, {"running"})
    result = s.cli("release", "trigger", "-p", "shop", "-e", "prod", "--type", "selective",
                   "--target", "service/payments", "--fail-on-conflict")
    assert result.returncode == 4, result.stderr
    assert f"release {first}" in result.stderr and "service/payments" in result.stderr
    failed = int(result.stdout)
    assert str(s.client.get(failed).status) == "failed"
    # a disjoint one does not conflict under parallel: it runs
    ok = s.cli("release", "trigger", "-p", "shop", "-e", "prod", "--type", "selective",
               "--target", "service/catalog", "--fail-on-conflict")
    assert ok.returncode == 0, ok.stderr


def test_lock_list_and_break_and_foreign_lock(slow_stack) -> None:
    s = slow_stack
    hold_payments(s)
    first = selective(s, "prod", "service/payments")
    s.wait_status(first, {"running"})
    holders = json.loads(s.cli("lock", "list", "-p", "shop", "-e", "prod", "-o", "json",
                               check=True).stdout)
    assert {(h["scope"], h["resource"], h["release_id"]) for h in holders} >= {
        ("slot", None, first), ("resource", "service/payments", first)}
    assert str(s.wait_status(first).status) == "succeeded"
    assert json.loads(s.cli("lock", "list", "-p", "shop", "-e", "prod", "-o", "json").stdout) == []
    # a lock nobody in relo owns blocks a conflicting release until broken
    r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    r.set("relo:lock:shop/prod:res:service/catalog", "ops-manual", px=120_000)
    blocked = selective(s, "prod", "service/catalog")
    time.sleep(1.5)
    release = s.client.get(blocked)
    assert str(release.status) == "queued"
    assert any(h.code == "state_lock_held" and "ops-manual" in h.message for h in release.held)
    out = s.cli("lock", "break", "-p", "shop", "-e", "prod", "service/catalog", "--reason",
                "manual lock left behind")
    assert out.returncode == 0, out.stderr
    assert str(s.wait_status(blocked).status) == "succeeded"
    events = json.loads(s.cli("events", "-p", "shop", "-e", "prod", "-o", "json").stdout)
    assert any(e["kind"] == "lock_broken" and "manual lock left behind" in e["message"]
               for e in events)


def test_approval_workflow(slow_stack) -> None:
    s = slow_stack
    s.cli("env", "settings", "-p", "shop", "-e", "prod", "--approval", "on", check=True)
    a = selective(s, "prod", "service/payments")
    b = selective(s, "prod", "service/catalog")
    assert str(s.client.get(a).status) == "pending_approval"
    active = json.loads(s.cli("release", "active", "-p", "shop", "-e", "prod", "-o", "json",
                              check=True).stdout)
    assert [(r["id"], r["status"], r["position"]) for r in active] == [
        (a, "pending_approval", None), (b, "pending_approval", None)]
    assert s.cli("release", "reject", str(b)).returncode == 0
    assert str(s.client.get(b).status) == "rejected"
    assert s.cli("release", "approve", str(a)).returncode == 0
    assert str(s.wait_status(a).status) == "succeeded"
    again = s.cli("release", "approve", str(a))
    assert again.returncode == 2 and "not pending_approval" in again.stderr
