"""relo dispatch latency on an idle environment vs the raw Celery round trip, same run.

Dispatch latency is the time from the moment ``Client.submit`` is called to the
``started_at`` of the release's first step, as the worker recorded it (same machine clock):
it covers the submit transaction (admission decision included), publishing, the worker
picking the message up, the lock script, the claim and the step row. The release is a
selective release of one ``simulated`` resource at duration 0 on an environment with nothing
else queued or running; the next one is submitted once the previous one has finished.

Baseline: an empty Celery task round trip (``apply_async`` → result) on a raw worker with
the same settings (prefork -c 2, ``celeryconfig``), interleaved with the relo samples in each
repetition so both see the same machine load. For context, the one-way part of it (publish →
the task starts in the worker, same clock) is relo's floor: the rest of relo's latency is its
own bookkeeping (admission, state locks, the claim).
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
    first_step_started,
    fmt_ratio,
    latency_row,
    now,
    relo_client,
    relo_env,
    wait_final,
)

ENV = "idle"
TARGET = "service/app"


def measure(client: Any, project: str, environment: str, n: int, poll: float = 0.005,
            target: str = TARGET) -> tuple[list[float], list[float]]:
    """``n`` sequential releases: (dispatch latencies, submit call durations), seconds."""
    started: dict[int, Any] = {}
    calls = []
    for _ in range(n):
        t0 = now()
        p0 = time.perf_counter()
        release = client.submit(project, environment, "selective", targets=[target])
        calls.append(time.perf_counter() - p0)
        started[release.id] = t0
        wait_final(client, [release.id], interval=poll)
    steps = first_step_started(client, list(started))
    missing = [rid for rid in started if rid not in steps]
    if missing:
        raise RuntimeError(f"releases without a step: {missing[:5]}")
    return [(steps[rid] - t0).total_seconds() for rid, t0 in started.items()], calls


def run(redis_url: str = DEFAULT_REDIS, repeat: int = 5, *, samples: int = 100,
        raw_samples: int = 200, database_url: str | None = None) -> list[dict[str, Any]]:
    """Rows: raw round trip, relo dispatch latency, relo submit call, ratios."""
    with tempfile.TemporaryDirectory(prefix="relo-bench-dispatch-") as tmp:
        work = Path(tmp)
        db = database_url or f"sqlite:///{work / 'relo.db'}"
        project = f"d{uuid.uuid4().hex[:8]}"
        client = relo_client(db, redis_url)
        client.apply_blueprint_text(blueprint(project, [ENV], [TARGET]))
        procs = Procs(work)
        try:
            procs.relo_worker(relo_env(db, redis_url), name="relo-dispatch")
            rig = RawRig(procs, redis_url, raw_queues(1), name="raw-dispatch")
            measure(client, project, ENV, 10)  # warm up both worker children
            raw, oneway, relo, calls = [], [], [], []
            for _ in range(repeat):
                raw.append(rig.round_trips(raw_samples))
                oneway.append(rig.one_way(raw_samples))
                lat, call = measure(client, project, ENV, samples)
                relo.append(lat)
                calls.append(call)
            rig.close()
        finally:
            procs.stop_all()
            client.ctx.db.dispose()
    base = latency_row("raw Celery empty-task round trip (baseline)", raw)
    disp = latency_row("relo dispatch latency, idle environment (submit → first step started)",
                       relo)
    call = latency_row("relo Client.submit() call", calls)
    floor = latency_row("raw Celery publish → empty task started (one way; relo's floor)", oneway)
    disp["ratio_p50"] = disp["p50_ms"] / base["p50_ms"]
    disp["ratio_p99"] = disp["p99_ms"] / base["p99_ms"]
    disp["target"] = "p50 ≤ 2x, p99 ≤ 3x"
    disp["met"] = disp["ratio_p50"] <= 2 and disp["ratio_p99"] <= 3
    return [base, disp, floor, call]


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| measurement | p50 ms | p99 ms | ratio p50 / p99 to baseline | target |",
             "|---|---:|---:|---:|---|"]
    for r in rows:
        ratio = (f"{fmt_ratio(r['ratio_p50'])} / {fmt_ratio(r['ratio_p99'])}"
                 if "ratio_p50" in r else "")
        target = f"{r['target']}: {'met' if r['met'] else 'MISSED'}" if "target" in r else ""
        lines.append(f"| {r['name']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {ratio} "
                     f"| {target} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table(run(repeat=3, samples=50)))
