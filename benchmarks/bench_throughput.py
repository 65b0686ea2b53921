"""relo end-to-end release throughput across 100 environments vs raw Celery empty tasks.

One client submits ``releases`` selective releases (one ``simulated`` resource at duration 0)
round-robin over ``environments`` environments as fast as it can; one ``relo worker``
(prefork -c 2) consumes every environment's queue. Releases of one environment run one after
the other (parallel releases off, the default), so each submission to a busy environment is
queued and started by the finish of the one before it. Throughput is releases divided by the
time from the first ``submit`` call to the last ``finished_at``.

Baseline, interleaved in each repetition: raw Celery empty tasks (results ignored) published
by one client to a raw worker with the same settings, until the queue is drained.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bench_celery import RawRig, raw_queues
from .common import (
    DEFAULT_REDIS,
    Procs,
    blueprint,
    finished_times,
    fmt_ratio,
    now,
    rate_row,
    relo_client,
    relo_env,
    wait_final,
)

TARGET = "service/app"


def env_names(count: int) -> list[str]:
    return [f"e{i:04d}" for i in range(count)]


def relo_throughput(client: Any, project: str, environments: Sequence[str], releases: int,
                    targets: Sequence[str] = (TARGET,), timeout: float = 600) -> float:
    """Releases per second, ``releases`` of them submitted round-robin over ``environments``."""
    ids = []
    t0 = now()
    for i in range(releases):
        env = environments[i % len(environments)]
        target = targets[(i // len(environments)) % len(targets)]
        ids.append(client.submit(project, env, "selective", targets=[target]).id)
    got = wait_final(client, ids, timeout=timeout, interval=0.1)
    bad = {rid: s for rid, s in got.items() if s != "succeeded"}
    if bad:
        raise RuntimeError(f"{len(bad)} release(s) did not succeed: {list(bad.items())[:5]}")
    last = max(finished_times(client, ids).values())
    return releases / (last - t0).total_seconds()


def run(redis_url: str = DEFAULT_REDIS, repeat: int = 5, *, environments: int = 100,
        releases: int = 500, tasks: int = 2000,
        database_url: str | None = None) -> list[dict[str, Any]]:
    """Rows: raw Celery throughput (baseline), relo throughput with its ratio."""
    with tempfile.TemporaryDirectory(prefix="relo-bench-throughput-") as tmp:
        work = Path(tmp)
        db = database_url or f"sqlite:///{work / 'relo.db'}"
        project = f"t{uuid.uuid4().hex[:8]}"
        names = env_names(environments)
        client = relo_client(db, redis_url)
        client.apply_blueprint_text(blueprint(project, names, [TARGET]))
        procs = Procs(work)
        try:
            procs.relo_worker(relo_env(db, redis_url), name="relo-throughput")
            rig = RawRig(procs, redis_url, raw_queues(1), name="raw-throughput")
            relo_throughput(client, project, names, min(50, releases))  # warm up
            raw, relo = [], []
            for _ in range(repeat):
                raw.append(rig.throughput(tasks))
                time.sleep(0.2)
                relo.append(relo_throughput(client, project, names, releases))
            rig.close()
        finally:
            procs.stop_all()
            client.ctx.db.dispose()
    base = rate_row("raw Celery empty tasks/s, 1 queue (baseline)", raw, items=tasks)
    row = rate_row(f"relo releases/s end to end, {environments} environments", relo,
                   items=releases)
    row["ratio"] = row["per_s"] / base["per_s"]
    row["target"] = "≥ 0.50x"
    row["met"] = row["ratio"] >= 0.5
    return [base, row]


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| measurement | per s (median) | min-max | ratio to baseline | target |",
             "|---|---:|---:|---:|---|"]
    for r in rows:
        ratio = fmt_ratio(r["ratio"]) if "ratio" in r else ""
        target = f"{r['target']}: {'met' if r['met'] else 'MISSED'}" if "target" in r else ""
        lines.append(f"| {r['name']} | {r['per_s']:,.1f} | {r['min_per_s']:,.1f}-"
                     f"{r['max_per_s']:,.1f} | {ratio} | {target} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table(run(repeat=3, releases=300)))
