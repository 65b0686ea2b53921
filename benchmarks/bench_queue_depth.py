"""Dispatch with 10,000 releases queued in one environment vs an empty queue.

What the operator cares about when a queue is long:

* **parallel environment, a free resource**: with parallel releases on, a selective release
  on a resource nobody else touches must start at once, however many releases wait for
  *other* resources (§3, §5). Measured: dispatch latency (``submit`` → first step started)
  of a selective release of ``service/app`` while ``depth`` selective releases of
  ``service/blocker`` wait in the same environment, held by a state lock on
  ``service/blocker``. Compared with the same environment layout and lock, queue empty.
* **serial environment, the head of the queue**: with parallel releases off, when the running
  release finishes the next one must start with no cost that grows with what waits behind
  it. Measured: hand-off latency (``finished_at`` of a release → first step started of the
  next) for ``handoffs`` consecutive releases at the head of a queue with ``depth`` releases
  behind them, vs nothing behind them. The waiting releases sit behind a "barrier" release
  held by a state lock, so they never run.

The ``depth`` releases are inserted directly into the database (exactly the rows ``submit``
writes), which takes a second instead of minutes; the measured releases go through the real
client and a real ``relo worker`` (prefork -c 2).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from .common import (
    DEFAULT_REDIS,
    Procs,
    blueprint,
    finished_times,
    first_step_started,
    fmt_ratio,
    latency_row,
    now,
    relo_client,
    relo_env,
    wait_final,
)

APP = "service/app"
BLOCKER = "service/blocker"
BARRIER_SEQ = 999_999
BULK_SEQ = 1_000_000


def _env_id(client: Any, project: str, environment: str) -> int:
    from release_orchestrator.storage.repository import Repository

    with client.ctx.db.session(write=False) as s:
        return Repository(s).environment(project, environment)[1].id


def insert_queued(client: Any, env_id: int, seqs: Sequence[int], target: str) -> list[int]:
    """Queued selective releases of ``target`` with the given FIFO sequence numbers."""
    from release_orchestrator.storage.tables import EnvironmentRow, ReleaseRow

    at = now()
    rows = [
        {
            "environment_id": env_id, "type": "selective", "status": "queued", "queue_seq": seq,
            "dispatch_count": 0, "refresh": False, "force": False, "allow_destroy": False,
            "no_rollback": False, "triggered_by": "bench", "trigger": "api",
            "targets": [{"resource": target, "action": "apply"}], "extra_args": [],
            "extra_vars": {}, "created_at": at,
        }
        for seq in seqs
    ]
    table = ReleaseRow.__table__
    with client.ctx.db.session() as s:
        before = s.scalar(select(ReleaseRow.id).order_by(ReleaseRow.id.desc()).limit(1)) or 0
        for start in range(0, len(rows), 1000):
            s.execute(insert(table), rows[start:start + 1000])
        s.execute(
            update(EnvironmentRow)
            .where(EnvironmentRow.id == env_id, EnvironmentRow.queue_counter < max(seqs))
            .values(queue_counter=max(seqs))
        )
        ids = list(s.scalars(select(ReleaseRow.id).where(ReleaseRow.id > before,
                                                         ReleaseRow.environment_id == env_id)
                             .order_by(ReleaseRow.queue_seq)))
    return ids


def cancel(client: Any, ids: Sequence[int]) -> None:
    from release_orchestrator.storage.tables import ReleaseRow

    with client.ctx.db.session() as s:
        for start in range(0, len(ids), 500):
            s.execute(update(ReleaseRow)
                      .where(ReleaseRow.id.in_(list(ids[start:start + 500])),
                             ReleaseRow.status == "queued")
                      .values(status="cancelled", finished_at=now(), queue_seq=None))


def hold(client: Any, project: str, environment: str) -> None:
    """A state lock on ``service/blocker`` held by no release (like a manual lock)."""
    from release_orchestrator.locks import LockRequest

    client.ctx.locks.acquire(LockRequest(env_key=f"{project}/{environment}",
                                         owner=f"bench-holder-{environment}", exclusive=False,
                                         resources=(BLOCKER,), ttl_ms=3_600_000))


def dispatch_samples(client: Any, project: str, environment: str,
                     n: int) -> tuple[list[float], list[float]]:
    """Sequential selective releases of ``service/app``: (latencies, submit call times)."""
    import time

    started, calls = {}, []
    for _ in range(n):
        t0 = now()
        p0 = time.perf_counter()
        rid = client.submit(project, environment, "selective", targets=[APP]).id
        calls.append(time.perf_counter() - p0)
        started[rid] = t0
        wait_final(client, [rid], interval=0.005)
    steps = first_step_started(client, list(started))
    return [(steps[r] - t).total_seconds() for r, t in started.items()], calls


def handoff_samples(client: Any, env_id: int, first_seq: int, n: int) -> list[float]:
    """``n`` releases inserted at the head of a serial queue: gaps finish → next start."""
    from release_orchestrator.services import dispatch

    ids = insert_queued(client, env_id, range(first_seq, first_seq + n), APP)
    dispatch.evaluate(client.ctx, env_id)
    wait_final(client, ids, interval=0.02)
    steps = first_step_started(client, ids)
    finished = finished_times(client, ids)
    return [(steps[ids[i + 1]] - finished[ids[i]]).total_seconds() for i in range(n - 1)]


def run(redis_url: str = DEFAULT_REDIS, repeat: int = 5, *, depth: int = 10_000,
        samples: int = 50, handoffs: int = 30,
        database_url: str | None = None) -> list[dict[str, Any]]:
    envs = {"par-empty": True, "par-deep": True, "ser-empty": False, "ser-deep": False}
    with tempfile.TemporaryDirectory(prefix="relo-bench-depth-") as tmp:
        work = Path(tmp)
        db = database_url or f"sqlite:///{work / 'relo.db'}"
        project = f"q{uuid.uuid4().hex[:8]}"
        client = relo_client(db, redis_url)
        for name, parallel in envs.items():
            client.apply_blueprint_text(blueprint(project, [name], [APP, BLOCKER],
                                                  settings={"parallel_releases": parallel}))
        ids = {name: _env_id(client, project, name) for name in envs}
        for name in envs:
            hold(client, project, name)
        barriers = {name: insert_queued(client, ids[name], [BARRIER_SEQ], BLOCKER)
                    for name in ("ser-empty", "ser-deep")}
        t0 = now()
        bulk = insert_queued(client, ids["par-deep"], range(1, depth + 1), BLOCKER)
        bulk += insert_queued(client, ids["ser-deep"], range(BULK_SEQ, BULK_SEQ + depth),
                              BLOCKER)
        insert_s = (now() - t0).total_seconds()
        procs = Procs(work)
        try:
            procs.relo_worker(relo_env(db, redis_url), name="relo-depth")
            for name in ("par-empty", "par-deep"):
                dispatch_samples(client, project, name, 5)  # warm up
            lat: dict[str, list[list[float]]] = {n: [] for n in envs}
            calls: dict[str, list[list[float]]] = {n: [] for n in envs}
            for rep in range(repeat):
                for name in ("par-empty", "par-deep"):
                    latencies, call = dispatch_samples(client, project, name, samples)
                    lat[name].append(latencies)
                    calls[name].append(call)
                for name in ("ser-empty", "ser-deep"):
                    lat[name].append(handoff_samples(client, ids[name], 1 + rep * 1000,
                                                     handoffs + 1))
        finally:
            procs.stop_all()
            cancel(client, bulk + [b for v in barriers.values() for b in v])
            client.ctx.db.dispose()
    rows = []
    for kind, label in (("par", "dispatch latency of a free-resource release, parallel env"),
                        ("ser", "hand-off latency at the head of a serial queue")):
        empty = latency_row(f"{label}, queue empty", lat[f"{kind}-empty"], depth=0)
        deep = latency_row(f"{label}, {depth:,} queued", lat[f"{kind}-deep"], depth=depth)
        if kind == "par":
            empty["submit_p50_ms"] = latency_row("", calls["par-empty"])["p50_ms"]
            deep["submit_p50_ms"] = latency_row("", calls["par-deep"])["p50_ms"]
        deep["ratio_p50"] = deep["p50_ms"] / empty["p50_ms"]
        deep["ratio_p99"] = deep["p99_ms"] / empty["p99_ms"]
        deep["target"] = "p50 ≤ 2x"
        deep["met"] = deep["ratio_p50"] <= 2
        rows += [empty, deep]
    rows[0]["insert_s"] = insert_s
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| measurement | p50 ms | p99 ms | submit() p50 ms | ratio p50 / p99 to empty "
             "| target |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        ratio = (f"{fmt_ratio(r['ratio_p50'])} / {fmt_ratio(r['ratio_p99'])}"
                 if "ratio_p50" in r else "")
        target = f"{r['target']}: {'met' if r['met'] else 'MISSED'}" if "target" in r else ""
        submit = f"{r['submit_p50_ms']:.2f}" if "submit_p50_ms" in r else ""
        lines.append(f"| {r['name']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {submit} "
                     f"| {ratio} | {target} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table(run(repeat=2, samples=20, handoffs=10)))
