"""Paused releases and availability windows with a real worker (SPEC §4): the shop's shell
scripts run under ``relo worker``; pauses and windows are set with the real ``relo`` command;
what ran, and when, is read from the execution log the scripts write."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path

import pytest
import redis

from tests.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, Stack, redis_available

pytestmark = pytest.mark.integration

SHOP = ["database/orders", "service/payments", "service/catalog", "service/frontend"]
#: How long a held release is watched to make sure it does not start (no tight timing: the
#: assertion is only that nothing ran, and a worker picks up a free release in well under 1 s).
HOLD_CHECK = 3.0


def make_stack(tmp_path: Path, **settings: object) -> Stack:
    if not redis_available():
        pytest.fail("Redis is not answering on 127.0.0.1:6379 (start it; .ci/run does)")
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB).flushdb()
    s = Stack(tmp_path, **settings)
    s.apply_shop()
    return s


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Stack]:
    """The shop applied, one worker running (steps take 0.2 s each)."""
    s = make_stack(tmp_path)
    try:
        s.worker()
        yield s
    finally:
        s.close()


def trigger(stack: Stack, env: str, *args: str) -> int:
    return int(stack.cli("release", "trigger", "-p", "shop", "-e", env, *args, check=True).stdout)


def started_releases(stack: Stack) -> list[int]:
    """Release ids in the order their first step started (execution log)."""
    out: list[int] = []
    for _t, rid, _env, _res, _action, edge in stack.execution_log():
        if edge == "start" and int(rid) not in out:
            out.append(int(rid))
    return out


def spans(stack: Stack) -> dict[int, tuple[float, float]]:
    """Release id → (first step start, last step end) from the execution log."""
    out: dict[int, list[float]] = {}
    for t, rid, _env, _res, _action, edge in stack.execution_log():
        span = out.setdefault(int(rid), [float("inf"), 0.0])
        if edge == "start":
            span[0] = min(span[0], float(t))
        else:
            span[1] = max(span[1], float(t))
    return {k: (v[0], v[1]) for k, v in out.items()}


def assert_held(stack: Stack, release_ids: list[int], code: str, seconds: float = HOLD_CHECK
                ) -> None:
    """Each release stays queued, held for ``code``, and none of its steps runs."""
    deadline = time.monotonic() + seconds
    while True:
        for release_id in release_ids:
            release = stack.client.get(release_id)
            assert str(release.status) == "queued", (release.status, release.error)
            assert code in [h.code for h in release.held], release.held
            assert release_id not in started_releases(stack)
        if time.monotonic() >= deadline:
            return
        time.sleep(0.5)


def succeeded(stack: Stack, release_id: int) -> None:
    release = stack.wait_status(release_id, timeout=90)
    assert str(release.status) == "succeeded", (release.status, release.error)


def test_project_pause_holds_releases_of_every_environment(shop: Stack) -> None:
    paused = shop.cli("env", "pause", "-p", "shop", "--reason", "holiday freeze", check=True)
    assert "project 'shop' paused by tester" in paused.stderr
    staging = trigger(shop, "staging")
    prod = trigger(shop, "prod", "--type", "selective", "--target", "service/payments")
    assert_held(shop, [staging, prod], "project_paused")
    active = shop.cli("release", "active", "-p", "shop", "-e", "prod", check=True).stdout
    assert "project 'shop' is paused by tester" in active and "holiday freeze" in active
    listed = json.loads(shop.cli("release", "active", "-p", "shop", "-e", "staging", "-o", "json",
                                 check=True).stdout)
    assert [(r["id"], r["status"], r["position"]) for r in listed] == [(staging, "queued", 1)]
    resumed = shop.cli("env", "resume", "-p", "shop", check=True)
    assert "resumed project 'shop'" in resumed.stderr
    succeeded(shop, staging)
    succeeded(shop, prod)
    kinds = [e["kind"] for e in json.loads(
        shop.cli("events", "-p", "shop", "-o", "json", check=True).stdout)]
    assert "paused" in kinds and "resumed" in kinds


def test_environment_pause_holds_it_and_not_its_sibling(shop: Stack) -> None:
    shop.cli("env", "pause", "-p", "shop", "-e", "prod", "--reason", "audit", check=True)
    prod = trigger(shop, "prod")
    staging = trigger(shop, "staging")
    succeeded(shop, staging)  # the sibling runs meanwhile
    assert_held(shop, [prod], "environment_paused")
    view = json.loads(shop.cli("env", "show", "-p", "shop", "-e", "prod", "-o", "json",
                               check=True).stdout)
    assert view["environment_pause"]["reason"] == "audit" and view["project_pause"] is None
    assert view["queue"]["queued"] == [prod] and view["can_start"] is False
    shop.cli("env", "resume", "-p", "shop", "-e", "prod", check=True)
    succeeded(shop, prod)
    assert started_releases(shop) == [staging, prod]


def test_resume_starts_held_releases_in_fifo_order(shop: Stack) -> None:
    shop.cli("env", "pause", "-p", "shop", "-e", "staging", check=True)
    ids = [trigger(shop, "staging", "--type", "selective", "--target", target)
           for target in ("service/catalog", "database/orders", "service/payments",
                          "service/frontend")]
    assert_held(shop, ids, "environment_paused", seconds=1.0)
    shop.cli("env", "resume", "-p", "shop", "-e", "staging", check=True)
    for release_id in ids:
        succeeded(shop, release_id)
    assert started_releases(shop) == ids
    # parallel is off in staging: one after the other, never two at once
    ordered = [spans(shop)[i] for i in ids]
    assert all(a[1] <= b[0] for a, b in pairwise(ordered)), ordered
    started_at = [shop.client.get(i).started_at for i in ids]
    assert started_at == sorted(started_at)


def test_release_running_when_the_pause_begins_finishes(tmp_path: Path) -> None:
    s = make_stack(tmp_path, deploy_seconds=2.0)  # a full release runs ~8 s
    try:
        s.worker()
        running = trigger(s, "staging")
        s.wait_status(running, {"running"}, timeout=60)
        s.cli("env", "pause", "-p", "shop", "--reason", "freeze", check=True)
        [paused] = [e for e in s.client.events("shop") if e.kind == "paused"]
        waiting = trigger(s, "staging", "--force")
        release = s.wait_status(running, timeout=90)
        assert str(release.status) == "succeeded", release.error
        assert sorted(st.resource for st in release.steps) == sorted(SHOP)
        assert {str(st.status) for st in release.steps} == {"succeeded"}
        # it was still running when the pause was recorded, and went on to the end
        assert spans(s)[running][1] > paused.at.timestamp()
        assert_held(s, [waiting], "project_paused")
        s.cli("env", "resume", "-p", "shop", check=True)
        succeeded(s, waiting)
    finally:
        s.close()


def test_until_in_the_near_future_resumes_by_itself(shop: Stack) -> None:
    shop.start("beat")  # the reconciler ticks every second in tests
    until = (datetime.now(timezone.utc) + timedelta(seconds=6)).replace(microsecond=0)
    shop.cli("env", "pause", "-p", "shop", "-e", "staging", "--reason", "short freeze",
             "--until", until.strftime("%Y-%m-%dT%H:%M:%SZ"), check=True)
    release_id = trigger(shop, "staging")
    held = shop.client.get(release_id)
    if datetime.now(timezone.utc) < until:  # (a very slow machine may be past it already)
        assert str(held.status) == "queued"
        assert "until" in held.held[0].message and held.held[0].code == "environment_paused"
    succeeded(shop, release_id)
    release = shop.client.get(release_id)
    assert release.started_at is not None and release.started_at >= until
    events = json.loads(shop.cli("events", "-p", "shop", "-e", "staging", "-o", "json",
                                 check=True).stdout)
    expired = [e for e in events if e["kind"] == "resumed"]
    assert len(expired) == 1 and expired[0]["actor"] == "relo"
    assert expired[0]["data"]["expired"] is True
    view = json.loads(shop.cli("env", "show", "-p", "shop", "-e", "staging", "-o", "json",
                               check=True).stdout)
    assert view["environment_pause"] is None


def test_deny_window_covering_now_holds_until_removed(shop: Stack) -> None:
    added = shop.cli("env", "window", "add", "-p", "shop", "-e", "staging", "--deny",
                     "--cron", "* * * * *", "--duration", "1h", check=True)
    window_id = int(added.stdout)
    release_id = trigger(shop, "staging")
    assert_held(shop, [release_id], "outside_window")
    active = shop.cli("release", "active", "-p", "shop", "-e", "staging", check=True).stdout
    assert f"deny window {window_id} is open" in active
    listed = json.loads(shop.cli("env", "window", "list", "-p", "shop", "-e", "staging",
                                 "-o", "json", check=True).stdout)
    assert [(w["id"], w["kind"], w["open_now"]) for w in listed] == [(window_id, "deny", True)]
    shop.cli("env", "window", "remove", "-p", "shop", "-e", "staging", str(window_id),
             check=True)
    succeeded(shop, release_id)
