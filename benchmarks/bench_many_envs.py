"""One ``relo worker`` consuming 1,000 environment queues vs one consuming a single queue.

Two independent relo installations share the Redis broker (different databases, different
project names, so different queues), each with its own ``relo worker`` (prefork -c 2) that
follows every environment of its database:

* ``one``: 1 environment → the worker consumes 1 release queue;
* ``many``: ``environments`` (1,000) environments → the worker consumes 1,000 release queues.

Every environment has parallel releases on and ``resources`` resources, so the single
environment can run releases side by side like the many. Measured, interleaved per
repetition:

* idle CPU of each worker's whole process tree (main process + pool children), from
  ``/proc/<pid>/stat`` over ``idle_seconds`` per repetition, in % of one core;
* dispatch latency (``submit`` → first step started) to one environment (the middle one of
  ``many``), idle, vs the single environment;
* throughput: ``releases`` selective releases submitted round-robin over all the
  environments of ``many`` (a different slice each repetition) vs the same number into the
  single environment's one queue (cycling over its resources).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bench_dispatch import measure
from .bench_throughput import env_names, relo_throughput
from .common import (
    DEFAULT_REDIS,
    Procs,
    blueprint,
    fmt_ratio,
    latency_row,
    median,
    relo_client,
    relo_env,
    tree_cpu_share,
)

SETTINGS = {"parallel_releases": True, "max_parallel_releases": 10}


def run(redis_url: str = DEFAULT_REDIS, repeat: int = 5, *, environments: int = 1000,
        resources: int = 20, samples: int = 50, releases: int = 400,
        idle_seconds: float = 4.0, database_url: str | None = None) -> list[dict[str, Any]]:
    res = [f"service/r{i:02d}" for i in range(resources)]
    with tempfile.TemporaryDirectory(prefix="relo-bench-many-") as tmp:
        work = Path(tmp)
        tag = uuid.uuid4().hex[:6]
        setups = {"one": 1, "many": environments}
        clients, projects, names, workers, dbs = {}, {}, {}, {}, {}
        procs = Procs(work)
        try:
            for label, count in setups.items():
                db = (database_url if database_url and label == "many"
                      else f"sqlite:///{work / f'{label}.db'}")
                projects[label] = f"{label}{tag}"
                names[label] = env_names(count)
                clients[label] = relo_client(db, redis_url)
                clients[label].apply_blueprint_text(
                    blueprint(projects[label], names[label], res, settings=SETTINGS))
                dbs[label] = db
            # start the workers only now: a blueprint apply broadcasts its queues to every
            # worker on the broker, and "one" must not follow the queues of "many"
            for label in setups:
                workers[label] = procs.relo_worker(relo_env(dbs[label], redis_url),
                                                   name=f"relo-{label}")
            probe = {"one": names["one"][0], "many": names["many"][len(names["many"]) // 2]}
            for label in setups:  # warm up
                measure(clients[label], projects[label], probe[label], 5, target=res[0])
            time.sleep(2)
            cpu: dict[str, list[float]] = {k: [] for k in setups}
            lat: dict[str, list[list[float]]] = {k: [] for k in setups}
            rate: dict[str, list[float]] = {k: [] for k in setups}
            for rep in range(repeat):
                for label in setups:
                    cpu[label].append(tree_cpu_share(workers[label].pid, idle_seconds))
                for label in setups:
                    lat[label].append(measure(clients[label], projects[label], probe[label],
                                              samples, target=res[0])[0])
                for label in setups:
                    envs = names[label]
                    if len(envs) > 1:  # a different slice of the environments each time
                        shift = (rep * releases) % len(envs)
                        envs = envs[shift:] + envs[:shift]
                    rate[label].append(relo_throughput(clients[label], projects[label], envs,
                                                       releases, targets=res))
                time.sleep(1)  # let the workers go idle again
        finally:
            procs.stop_all()
            for c in clients.values():
                c.ctx.db.dispose()
    rows = []
    for label, count in setups.items():
        row = latency_row(f"worker on {count:,} environment queue(s)", lat[label],
                          queues=count)
        row["idle_cpu_pct"] = median(cpu[label]) * 100
        row["reps_idle_cpu_pct"] = [round(c * 100, 2) for c in cpu[label]]
        row["per_s"] = median(rate[label])
        row["reps_per_s"] = [round(r, 1) for r in rate[label]]
        rows.append(row)
    one, many = rows
    many["ratio_p50"] = many["p50_ms"] / one["p50_ms"]
    many["ratio_p99"] = many["p99_ms"] / one["p99_ms"]
    many["ratio_rate"] = many["per_s"] / one["per_s"]
    many["met_latency"] = many["ratio_p50"] <= 2
    many["met_rate"] = many["ratio_rate"] >= 0.5
    many["met_idle"] = many["idle_cpu_pct"] < 1
    many["met"] = many["met_latency"] and many["met_rate"] and many["met_idle"]
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| worker consuming | idle CPU (% of a core) | dispatch p50 / p99 ms "
             "| releases/s | ratio to 1 queue: p50 latency / throughput | targets |",
             "|---|---:|---:|---:|---:|---|"]

    def ok(flag: bool) -> str:
        return "met" if flag else "MISSED"

    for r in rows:
        ratio, target = "", ""
        if "ratio_p50" in r:
            ratio = f"{fmt_ratio(r['ratio_p50'])} / {fmt_ratio(r['ratio_rate'])}"
            target = (f"latency ≤ 2x: {ok(r['met_latency'])}; throughput ≥ 0.5x: "
                      f"{ok(r['met_rate'])}; idle < 1%: {ok(r['met_idle'])}")
        lines.append(f"| {r['queues']:,} queue(s) | {r['idle_cpu_pct']:.2f} "
                     f"| {r['p50_ms']:.2f} / {r['p99_ms']:.2f} | {r['per_s']:,.1f} | {ratio} "
                     f"| {target} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table(run(repeat=2, samples=20, releases=200, idle_seconds=3)))
