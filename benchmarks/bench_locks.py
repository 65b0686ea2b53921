"""Benchmark: relo's one-script lock acquisition vs redis-py ``Lock`` taken per key.

For 1, 10 and 100 resources, one operation is "acquire every lock, then release every lock":

* ``relo``: ``RedisLockStore.acquire`` (one EVALSHA) + ``release`` (one EVALSHA);
* ``redis-py``: one ``redis.lock.Lock`` per resource key, ``acquire(blocking=False)`` on each
  (one SET NX PX each), then ``release`` on each (one EVALSHA each).

Both run in the same process against the same Redis, interleaved, ``--repeat`` times for
``--seconds`` each.  Reported: median ops/s over the repetitions, median and p99 latency of a
single operation over all repetitions, and the ops/s ratio relo / redis-py.  All keys live under
a unique prefix and are deleted afterwards.

Usage: ``python benchmarks/bench_locks.py [--redis redis://127.0.0.1:6379/15] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis

from release_orchestrator.locks import LockRequest, RedisLockStore

DEFAULT_URL = "redis://127.0.0.1:6379/15"
SIZES = (1, 10, 100)
ENV = "bench/locks"
IMPL_RELO = "relo"
IMPL_REDIS_PY = "redis-py"


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _measure(op: Callable[[int], None], seconds: float, min_ops: int) -> tuple[float, list[float]]:
    """Run ``op`` for ``seconds`` (and at least ``min_ops`` times): (ops/s, latencies in s)."""
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    i = 0
    while True:
        t0 = time.perf_counter()
        op(i)
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        i += 1
        if t1 >= deadline and i >= min_ops:
            break
    return i / (time.perf_counter() - started), latencies


def _relo_op(store: RedisLockStore, resources: tuple[str, ...]) -> Callable[[int], None]:
    def op(i: int) -> None:
        lease = store.acquire(
            LockRequest(env_key=ENV, owner=f"bench:{i}", exclusive=False, resources=resources)
        )
        store.release(lease)

    return op


def _redis_py_op(client: redis.Redis, keys: list[str]) -> Callable[[int], None]:
    def op(i: int) -> None:
        locks = [client.lock(key, timeout=60) for key in keys]
        for lock in locks:
            if not lock.acquire(blocking=False):
                raise RuntimeError(f"benchmark key {lock.name!r} unexpectedly locked")
        for lock in locks:
            lock.release()

    return op


def _cleanup(client: redis.Redis, prefix: str) -> None:
    batch: list[Any] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def run(
    redis_url: str = DEFAULT_URL,
    repeat: int = 5,
    *,
    sizes: Sequence[int] = SIZES,
    seconds: float = 0.5,
    min_ops: int = 20,
) -> list[dict[str, Any]]:
    """Run the benchmark and return one row per (resources, implementation).

    Row keys: ``resources``, ``impl`` ("relo" | "redis-py"), ``ops_per_s`` (median over the
    repetitions), ``median_ms`` and ``p99_ms`` (latency of one acquire+release over all
    repetitions), ``ops`` (total), ``repeat``, ``round_trips`` (per operation) and ``ratio``
    (ops/s of this implementation divided by redis-py's at the same size).
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    client = redis.Redis.from_url(redis_url)
    prefix = f"relobench-{uuid.uuid4().hex[:12]}"
    rows: list[dict[str, Any]] = []
    try:
        client.ping()
        store = RedisLockStore(client, prefix=prefix)
        for size in sizes:
            resources = tuple(f"service/s{i:03d}" for i in range(size))
            keys = [f"{prefix}:pylock:{ENV}:{r}" for r in resources]
            ops = {
                IMPL_RELO: _relo_op(store, resources),
                IMPL_REDIS_PY: _redis_py_op(client, keys),
            }
            for op in ops.values():  # warm up: script loading, connection, allocator
                _measure(op, 0.05, 5)
            rates: dict[str, list[float]] = {name: [] for name in ops}
            lat: dict[str, list[float]] = {name: [] for name in ops}
            for rep in range(repeat):
                order = list(ops) if rep % 2 == 0 else list(reversed(ops))
                for name in order:
                    rate, latencies = _measure(ops[name], seconds, min_ops)
                    rates[name].append(rate)
                    lat[name].extend(latencies)
            base = statistics.median(rates[IMPL_REDIS_PY])
            for name in ops:
                ordered = sorted(lat[name])
                ops_per_s = statistics.median(rates[name])
                rows.append(
                    {
                        "resources": size,
                        "impl": name,
                        "ops_per_s": ops_per_s,
                        "median_ms": statistics.median(ordered) * 1000,
                        "p99_ms": _percentile(ordered, 99) * 1000,
                        "ops": len(ordered),
                        "repeat": repeat,
                        "round_trips": 2 if name == IMPL_RELO else 2 * size,
                        "ratio": ops_per_s / base,
                    }
                )
    finally:
        try:
            _cleanup(client, prefix)
        finally:
            client.close()
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render ``run()`` rows as a markdown table, one line per resource count."""
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_size.setdefault(row["resources"], {})[row["impl"]] = row
    lines = [
        "| resources | relo ops/s | redis-py Lock ops/s | ratio (relo / redis-py) "
        "| relo median / p99 ms | redis-py median / p99 ms | round trips relo / redis-py |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, impls in sorted(by_size.items()):
        relo, py = impls[IMPL_RELO], impls[IMPL_REDIS_PY]
        lines.append(
            f"| {size} | {relo['ops_per_s']:,.0f} | {py['ops_per_s']:,.0f} "
            f"| {relo['ratio']:.2f}x "
            f"| {relo['median_ms']:.3f} / {relo['p99_ms']:.3f} "
            f"| {py['median_ms']:.3f} / {py['p99_ms']:.3f} "
            f"| {relo['round_trips']} / {py['round_trips']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; prints the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis", default=DEFAULT_URL, help="Redis URL (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (default: 5)")
    parser.add_argument(
        "--seconds", type=float, default=0.5, help="seconds per repetition (default: 0.5)"
    )
    args = parser.parse_args(argv)
    try:
        rows = run(args.redis, args.repeat, seconds=args.seconds)
    except redis.exceptions.RedisError as exc:
        print(f"benchmark needs a reachable Redis: {type(exc).__name__}", file=sys.stderr)
        return 2
    info = redis.Redis.from_url(args.redis)
    try:
        version = info.info("server").get("redis_version", "?")
    finally:
        info.close()
    print(
        f"Redis {version}, Python {platform.python_version()}, redis-py {redis.__version__}; "
        f"{args.repeat} repetitions x {args.seconds} s per implementation and size; "
        "one op = acquire all + release all"
    )
    print()
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
