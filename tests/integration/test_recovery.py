"""The reconciler repairs what lost messages and dead workers leave behind (SPEC §3, §10)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh(tmp_path: Path):
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB).flushdb()
    stacks: list[Stack] = []

    def make(**kw) -> Stack:
        s = Stack(tmp_path, **kw)
        stacks.append(s)
        return s

    yield make
    for s in stacks:
        s.close()


def test_lost_message_is_resent_by_the_reconciler(fresh) -> None:
    s = fresh(redispatch_after=2)
    s.apply_shop()
    release = s.client.submit("shop", "staging", "selective", targets=["service/payments"])
    r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    assert r.llen("release.shop.staging") == 1
    r.delete("release.shop.staging")  # the broker lost the message
    s.worker()
    s.start("beat")
    done = s.wait_status(release.id, timeout=60)
    assert str(done.status) == "succeeded"
    starts = [f for f in s.execution_log() if f[1] == str(release.id) and f[5] == "start"]
    assert len(starts) == 1


def test_killed_worker_fails_its_release_and_the_queue_moves_on(fresh) -> None:
    s = fresh(lock_ttl=4, deploy_seconds=8)
    s.apply_shop()
    victim = s.worker(name="victim")
    first = s.client.submit("shop", "staging", "selective", targets=["service/payments"])
    s.wait_status(first.id, {"running"})
    second = s.client.submit("shop", "staging", "selective", targets=["service/catalog"])
    # wait until the script really runs, then kill the worker and its pool at once
    deadline = time.monotonic() + 30
    while not any(f[1] == str(first.id) for f in s.execution_log()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()
    s.cli("resource", "set", "-p", "shop", "-e", "staging", "service/catalog",
          "deploy_seconds=0.2", check=True)
    s.worker(name="rescuer")
    s.start("beat")
    lost = s.wait_status(first.id, timeout=60)
    detected_after = time.monotonic() - killed_at
    assert str(lost.status) == "failed"
    assert "worker lost" in (lost.error or "")
    assert detected_after < 4 * 2 + 10  # about two lease TTLs, with slack for a loaded machine
    statuses = {r["resource"]: r for r in json.loads(s.cli(
        "resource", "list", "-p", "shop", "-e", "staging", "-o", "json", check=True).stdout)}
    assert statuses["service/payments"]["sync"] == "Unknown"
    assert str(s.wait_status(second.id).status) == "succeeded"
    # no lock outlives the lease; the killed release's step never ran again
    assert json.loads(s.cli("lock", "list", "-p", "shop", "-e", "staging", "-o", "json",
                            check=True).stdout) == []
    starts = [f for f in s.execution_log() if f[1] == str(first.id) and f[5] == "start"]
    assert len(starts) == 1
