"""Baseline: the raw Celery + Redis stack with relo's worker settings (prefork, -c 2).

* round trip: ``apply_async`` of an empty task → ``AsyncResult.get`` (Redis result backend),
  one at a time;
* throughput: ``n`` empty tasks published as fast as one client can (results ignored, like
  relo's release tasks), spread round-robin over the worker's queues; the clock stops when
  every queue is empty and a final round trip has come back.

The other benchmarks import :func:`start_raw_worker`, :func:`round_trips` and
:func:`throughput` to measure the baseline in the same run as the relo figures.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from .common import DEFAULT_REDIS, Procs, base_env, latency_row, rate_row
from .raw_app import NOOP, NOW, build_app

RAW_QUEUE = "bench.raw"
_SUM_LLEN = "local n = 0 for _, k in ipairs(KEYS) do n = n + redis.call('LLEN', k) end return n"


def raw_queues(count: int) -> list[str]:
    return [RAW_QUEUE] if count == 1 else [f"bench.raw.q{i:04d}" for i in range(count)]


def start_raw_worker(procs: Procs, redis_url: str, queues: Sequence[str], *,
                     name: str = "raw-worker", concurrency: int = 2, reuse: bool = False) -> Any:
    """A plain ``celery worker`` with the same options ``relo worker`` passes (stock kombu, or
    with relo's client reuse when ``reuse``)."""
    argv = [sys.executable, "-m", "celery", "-A", "benchmarks.raw_app", "worker",
            f"--concurrency={concurrency}", "--pool=prefork", "--loglevel=INFO",
            "-Q", ",".join(queues), "--without-gossip", "--without-mingle",
            "--hostname", f"{name}@%h"]
    env = base_env(RELO_BENCH_BROKER=redis_url, RELO_BENCH_KOMBU_REUSE="1" if reuse else "0")
    return procs.start(argv, env, name=name)


@contextmanager
def kombu_mode(reuse: bool) -> Iterator[None]:
    """Publish from this process with stock kombu, or with relo's Redis client reuse
    (:func:`release_orchestrator.celery_transport.reuse_kombu_redis_clients`), for the block.

    The benchmark process imports relo, which turns the reuse on for the whole process: the
    stock baseline turns it off while it publishes."""
    from kombu.transport import redis as kombu_redis

    from release_orchestrator.celery_transport import reuse_kombu_redis_clients

    current = kombu_redis.Channel._create_client
    if reuse:
        reuse_kombu_redis_clients()
    else:
        original = getattr(current, "relo_original", current)
        kombu_redis.Channel._create_client = original  # type: ignore[method-assign]
    try:
        yield
    finally:
        kombu_redis.Channel._create_client = current  # type: ignore[method-assign]


def round_trips(app: Any, queue: str, n: int) -> list[float]:
    """``n`` sequential empty-task round trips (seconds each)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        app.send_task(NOOP, queue=queue).get(timeout=30)
        out.append(time.perf_counter() - t0)
    return out


def one_way(app: Any, queue: str, n: int) -> list[float]:
    """``n`` sequential publish → task started latencies (seconds, one machine clock)."""
    out = []
    for _ in range(n):
        t0 = time.time()
        started = app.send_task(NOW, queue=queue).get(timeout=30)
        out.append(started - t0)
    return out


def throughput(app: Any, client: redis.Redis, queues: Sequence[str], n: int,
               timeout: float = 300) -> float:
    """Empty tasks per second, ``n`` of them spread over ``queues``."""
    pending = client.register_script(_SUM_LLEN)
    t0 = time.perf_counter()
    for i in range(n):
        app.send_task(NOOP, queue=queues[i % len(queues)], ignore_result=True)
    deadline = time.monotonic() + timeout
    while int(pending(keys=list(queues))) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("raw Celery worker did not drain its queues")
        time.sleep(0.01)
    app.send_task(NOOP, queue=queues[0]).get(timeout=30)
    return n / (time.perf_counter() - t0)


class RawRig:
    """A raw worker on ``queues`` plus the in-process app that talks to it: stock Celery and
    kombu (the baseline), or with relo's Celery tuning (kombu client reuse on both sides, the
    worker's ``BRPOP`` packed once per queue, its consumed queues listed once per change, its
    batched task events and no ack emulation) when ``reuse``."""

    def __init__(self, procs: Procs, redis_url: str, queues: Sequence[str], name: str,
                 reuse: bool = False) -> None:
        self.queues = list(queues)
        self.reuse = reuse
        self.proc = start_raw_worker(procs, redis_url, self.queues, name=name, reuse=reuse)
        self.app = build_app(redis_url)
        self.redis = redis.Redis.from_url(redis_url)
        self.round_trips(20)  # warm up: connections, pool, subscriptions

    def round_trips(self, n: int, queue: str | None = None) -> list[float]:
        with kombu_mode(self.reuse):
            return round_trips(self.app, queue or self.queues[0], n)

    def one_way(self, n: int, queue: str | None = None) -> list[float]:
        with kombu_mode(self.reuse):
            return one_way(self.app, queue or self.queues[0], n)

    def throughput(self, n: int) -> float:
        with kombu_mode(self.reuse):
            return throughput(self.app, self.redis, self.queues, n)

    def close(self) -> None:
        self.redis.close()
        self.app.close()


def run(redis_url: str = DEFAULT_REDIS, repeat: int = 5, *, samples: int = 200,
        tasks: int = 2000, queue_counts: Sequence[int] = (1,)) -> list[dict[str, Any]]:
    """Round trip and throughput rows for each queue count (one worker on all the queues)."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="relo-bench-celery-") as tmp:
        procs = Procs(Path(tmp))
        try:
            for count in queue_counts:
                rig = RawRig(procs, redis_url, raw_queues(count), name=f"raw{count}")
                lat, rates = [], []
                for _ in range(repeat):
                    lat.append(rig.round_trips(samples))
                    rates.append(rig.throughput(tasks))
                rig.close()
                procs.stop(rig.proc)
                rows.append(latency_row(f"raw Celery round trip, {count} queue(s)", lat,
                                        queues=count))
                rows.append(rate_row(f"raw Celery throughput, {count} queue(s)", rates,
                                     queues=count, tasks=tasks))
        finally:
            procs.stop_all()
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| measurement | p50 / p99 ms (median of reps) | per s (median; min-max) |",
             "|---|---:|---:|"]
    for r in rows:
        if "p50_ms" in r:
            lines.append(f"| {r['name']} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} | |")
        else:
            lines.append(f"| {r['name']} | | {r['per_s']:,.0f} "
                         f"({r['min_per_s']:,.0f}-{r['max_per_s']:,.0f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    result = run(queue_counts=(1, 1000), repeat=3)
    print(markdown_table(result))
