"""relo end-to-end release throughput across 100 environments vs raw Celery empty tasks.

One client submits ``releases`` selective releases (one ``simulated`` resource at duration 0)
round-robin over ``environments`` environments as fast as it can; one ``relo worker``
(prefork -c 2) consumes every environment's queue. Releases of one environment run one after
the other (parallel releases off, the default), so each submission to a busy environment is
queued and started by the finish of the one before it. Throughput is releases divided by the
time from the first ``submit`` call to the last ``finished_at``.

Baseline, interleaved in each repetition: raw Celery empty tasks (results ignored) published
by one client to a raw worker with the same settings, until the queue is drained; stock Celery
and kombu on one queue (the target's baseline) and, for information, the same raw stack with
relo's Celery tuning: the kombu Redis client reuse that relo's processes turn on
(``reuse_kombu_redis_clients``), the worker's ``BRPOP`` packed once per queue
(``pack_brpop_once``), the consumed queues listed once per change (``cache_active_queues``),
the batched task events of relo's workers (``BatchTaskEvents``) and kombu's ack emulation
off, as relo's app runs (``make_app``),
and the stock raw stack with its tasks spread round-robin over as many queues as relo has
environments, one worker consuming them all (what the queue count alone costs Celery).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .bench_celery import RawRig, raw_queues
from .common import (
    DEFAULT_REDIS,
    Procs,
    blueprint,
    cpu_seconds,
    descendants,
    finished_times,
    fmt_ratio,
    median,
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
    wait_drained(client, ids, timeout=timeout)
    got = wait_final(client, ids, timeout=timeout, interval=0.1)
    bad = {rid: s for rid, s in got.items() if s != "succeeded"}
    if bad:
        raise RuntimeError(f"{len(bad)} release(s) did not succeed: {list(bad.items())[:5]}")
    last = max(finished_times(client, ids).values())
    return releases / (last - t0).total_seconds()


def wait_drained(client: Any, ids: Sequence[int], timeout: float = 600) -> None:
    """Wait until none of ``ids`` is waiting or running.

    The polling client shares the CPU with the system it measures, so a poll must cost about
    what the raw baseline's queue-length check costs: one aggregate query over the status
    index (it visits only the releases still active), and polls spaced by what is left (a
    quarter of a second while hundreds are, 20 ms near the end). The measured time does not
    depend on when the last poll comes: it ends at the last release's ``finished_at``.
    """
    from sqlalchemy import text

    query = text("SELECT count(*) FROM releases WHERE status IN ('queued', 'running',"
                 " 'pending_approval') AND id BETWEEN :lo AND :hi")
    deadline = time.monotonic() + timeout
    while True:
        with client.ctx.db.session(write=False) as s:
            left = int(s.execute(query, {"lo": min(ids), "hi": max(ids)}).scalar() or 0)
        if left == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{left} release(s) not final after {timeout}s")
        time.sleep(min(0.25, max(0.02, left / 1000)))


class CpuSplit:
    """CPU time used per item by the client (this process), the worker's main process and
    its pool processes while the block runs (from /proc/<pid>/stat)."""

    def __init__(self, worker_pid: int, items: int) -> None:
        self.worker_pid = worker_pid
        self.items = items
        self.per_item: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        pool = [p for p in descendants(self.worker_pid) if p != self.worker_pid]
        return {
            "client": cpu_seconds([os.getpid()]),
            "worker main": cpu_seconds([self.worker_pid]),
            "worker pool": cpu_seconds(pool),
        }

    def __enter__(self) -> CpuSplit:
        self._before = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self._sample()
        self.per_item = {k: (after[k] - v) * 1000 / self.items for k, v in self._before.items()}


def _median_split(splits: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: median(s[k] for s in splits) for k in splits[0]} if splits else {}


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
            relo_worker = procs.relo_worker(relo_env(db, redis_url), name="relo-throughput")
            rig = RawRig(procs, redis_url, raw_queues(1), name="raw-throughput")
            rig_reuse = RawRig(procs, redis_url, [f"{raw_queues(1)[0]}.reuse"],
                               name="raw-throughput-reuse", reuse=True)
            # information: the raw stack on as many queues as relo's environments (the
            # worker's BRPOP then names every one of them, as relo's does)
            rig_many = RawRig(procs, redis_url, raw_queues(environments),
                              name="raw-throughput-many")
            # warm up: every environment twice, so that the client and both pool processes
            # have declared every queue (kombu declares a queue once per connection; in a
            # long-running deployment that cost is long gone)
            relo_throughput(client, project, names, 2 * len(names))
            # interleaved in each repetition, so that all see the same machine load:
            # name -> (worker pid, items per run, one run)
            subjects: dict[str, tuple[int, int, Callable[[], float]]] = {
                "raw": (rig.proc.pid, tasks, lambda: rig.throughput(tasks)),
                "relo": (relo_worker.pid, releases,
                         lambda: relo_throughput(client, project, names, releases)),
                "reuse": (rig_reuse.proc.pid, tasks, lambda: rig_reuse.throughput(tasks)),
                "many": (rig_many.proc.pid, tasks, lambda: rig_many.throughput(tasks)),
            }
            rates: dict[str, list[float]] = {k: [] for k in subjects}
            cpus: dict[str, list[dict[str, float]]] = {k: [] for k in subjects}
            for _ in range(repeat):
                for key, (pid, items, one_run) in subjects.items():
                    with CpuSplit(pid, items) as split:
                        rates[key].append(one_run())
                    cpus[key].append(split.per_item)
                    time.sleep(0.2)
            rig.close()
            rig_reuse.close()
            rig_many.close()
        finally:
            procs.stop_all()
            client.ctx.db.dispose()
    def measured(key: str, name: str, items: int) -> dict[str, Any]:
        return rate_row(name, rates[key], items=items, cpu_ms=_median_split(cpus[key]))

    base = measured("raw", "raw Celery empty tasks/s, 1 queue (baseline)", tasks)
    row = measured("relo", f"relo releases/s end to end, {environments} environments", releases)
    row["ratio"] = row["per_s"] / base["per_s"]
    row["target"] = "≥ 0.50x"
    row["met"] = row["ratio"] >= 0.5
    # information: each repetition's relo figure against the raw run just before it (the
    # same moment of the machine's load), their median and range
    paired = [r / b for r, b in zip(rates["relo"], rates["raw"], strict=True)]
    row["paired_ratios"] = [round(x, 3) for x in paired]
    row["paired_median"] = median(paired)
    info = measured("reuse", "raw Celery empty tasks/s, 1 queue, with relo's Celery tuning: "
                    "kombu client reuse, packed BRPOP, batched task events, no ack emulation "
                    "(information)",
                    tasks)
    spread = measured("many", f"raw Celery empty tasks/s, {environments} queues, one worker "
                      "on all (information)", tasks)
    for other in (info, spread):
        other["ratio_note"] = f"relo = {row['per_s'] / other['per_s']:.2f}x of this"
    return [base, row, info, spread]


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| measurement | per s (median) | min-max | ratio to baseline | target "
             "| CPU ms per item: client / worker main / worker pool |",
             "|---|---:|---:|---:|---|---:|"]
    for r in rows:
        ratio = fmt_ratio(r["ratio"]) if "ratio" in r else r.get("ratio_note", "")
        if "paired_median" in r:
            ratio += (f" (per repetition: median {r['paired_median']:.2f}x, "
                      f"{min(r['paired_ratios']):.2f}-{max(r['paired_ratios']):.2f}x)")
        target = f"{r['target']}: {'met' if r['met'] else 'MISSED'}" if "target" in r else ""
        cpu = r.get("cpu_ms") or {}
        split = " / ".join(f"{cpu[k]:.2f}" for k in ("client", "worker main", "worker pool")
                           if k in cpu)
        lines.append(f"| {r['name']} | {r['per_s']:,.1f} | {r['min_per_s']:,.1f}-"
                     f"{r['max_per_s']:,.1f} | {ratio} | {target} | {split} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table(run(repeat=3, releases=300)))
