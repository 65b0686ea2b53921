"""The Celery-layer costs relo tunes, in one process: a release's publish and a worker's BRPOP.

* publish: CPU per ``CeleryTransport.send_release`` (the task and its ``task-sent`` event on a
  real Redis) through relo's direct publish (``_DirectPublish``: one round trip packed by
  relo), through ``send_task`` on the same kept producer (what relo did before), and through
  plain ``send_task`` (stock);
* BRPOP: CPU to build and pack the ``BRPOP`` a worker sends over ``--queues`` queues, by
  kombu as shipped and with relo's packing (``pack_brpop_once``), without sending it.

Prints the median of ``--rounds`` rounds (the machine is shared: compare the rows of one
run, not figures across runs)::

    python -m benchmarks.bench_kombu [--rounds 5] [--publishes 2000] [--queues 100]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import DEFAULT_REDIS

HINT = {"env_id": 5, "project": "shop", "environment": "e0001", "whole": False,
        "resources": ["service/app"]}


def cpu_us(fn: Callable[[], None], n: int) -> float:
    """CPU microseconds per call of ``fn``, over ``n`` calls."""
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n * 1e6


def publish_rows(redis_url: str, rounds: int, n: int) -> list[tuple[str, float]]:
    import redis

    from release_orchestrator.celery_transport import (
        EXECUTE_RELEASE,
        CeleryTransport,
        make_app,
    )
    from release_orchestrator.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(redis_url=redis_url, database_url=f"sqlite:///{Path(tmp) / 'x.db'}")
        transport = CeleryTransport(make_app(settings), settings)
        app = transport.app
        flush = redis.Redis.from_url(redis_url)
        kwargs = {"project": "shop", "environment": "e0001", "hint": HINT}
        options: dict[str, Any] = {"args": (7,), "kwargs": kwargs, "queue": "release.shop.e0001",
                                   "argsrepr": "(7,)", "kwargsrepr": "release=7",
                                   "ignore_result": True}

        def direct() -> None:
            transport.send_release("shop", "e0001", 7, "release=7", hint=HINT)

        def kept() -> None:
            producer = transport._kept().producer
            with producer.batch():
                app.send_task(EXECUTE_RELEASE, producer=producer, declare=[], retry=False,
                              **options)

        def stock() -> None:
            app.send_task(EXECUTE_RELEASE, **options)

        direct()  # connections, the kept producer, the queue's first declaration
        stock()
        assert transport._kept().direct is not None, "the direct publish is not in use"
        got: dict[str, list[float]] = {"direct": [], "kept": [], "stock": []}
        for _ in range(rounds):
            for name, fn in (("direct", direct), ("kept", kept), ("stock", stock)):
                got[name].append(cpu_us(fn, n))
                flush.flushdb()
        transport.close()
        app.close()
        flush.close()
    return [
        ("publish, relo's direct publish (_DirectPublish)", statistics.median(got["direct"])),
        ("publish, send_task on the kept producer (before)", statistics.median(got["kept"])),
        ("publish, plain send_task (stock Celery)", statistics.median(got["stock"])),
    ]


def brpop_rows(queues: int, rounds: int, n: int) -> list[tuple[str, float]]:
    """Build and pack the BRPOP of a channel consuming ``queues`` queues (nothing is sent)."""
    from kombu import Connection
    from kombu.transport import redis as kombu_redis
    from redis.connection import Connection as RedisConnection

    from release_orchestrator.celery_transport import pack_brpop_once

    pack_brpop_once()
    patched = kombu_redis.Channel._brpop_start
    original = patched.relo_original
    names = [f"release.shop.e{i:04d}" for i in range(queues)]
    with Connection("redis://127.0.0.1:6379/0",
                    transport_options={"priority_steps": [0]}) as conn:
        channel = conn.default_channel
        channel._active_queues.extend(names)
        channel._queue_cycle.update(names)
        fake = RedisConnection()  # never connected: both methods only pack and "send"
        fake.send_packed_command = lambda command, check_health=True: None  # type: ignore
        fake.send_command = lambda *args, **kw: fake._command_packer.pack(*args)  # type: ignore
        channel.client.connection = fake
        got: dict[str, list[float]] = {"stock": [], "packed": []}
        for _ in range(rounds):
            got["stock"].append(cpu_us(lambda: original(channel, 1), n))
            got["packed"].append(cpu_us(lambda: patched(channel, 1), n))
        channel._in_poll = None
        channel.client.connection = None
    return [
        (f"BRPOP over {queues} queues, kombu as shipped", statistics.median(got["stock"])),
        (f"BRPOP over {queues} queues, packed once per queue (pack_brpop_once)",
         statistics.median(got["packed"])),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_kombu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--publishes", type=int, default=2000, help="per round and path")
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    args = parser.parse_args(argv)
    rows = publish_rows(args.redis, args.rounds, args.publishes)
    rows += brpop_rows(args.queues, args.rounds, args.publishes)
    print(f"| measurement (median of {args.rounds} rounds) | CPU µs per call |")
    print("|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value:.0f} |")


if __name__ == "__main__":
    main()
