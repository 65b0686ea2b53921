"""The raw-stack baseline: a minimal Celery app with relo's worker settings and an empty task.

It loads the same ``celeryconfig`` as relo (early ack, prefetch disabled, ``priority_steps=[0]``,
task events on) and adds a Redis result backend so that a round trip (``apply_async`` →
``get``) can be timed. ``RELO_BENCH_BROKER`` names the Redis database (broker and backend).
Stock Celery and kombu unless ``RELO_BENCH_KOMBU_REUSE=1``: then with relo's Celery tuning, the
kombu Redis client reuse, the ``BRPOP`` packed once per queue, the consumed queues listed once
per change, the worker's batched task events and kombu's ack emulation off.
"""

from __future__ import annotations

import os
import time

from celery import Celery

from benchmarks.common import DEFAULT_REDIS

URL = os.environ.get("RELO_BENCH_BROKER", DEFAULT_REDIS)
#: "1": the raw worker reuses kombu's Redis clients as relo's processes do
#: (release_orchestrator.celery_transport.reuse_kombu_redis_clients), packs its BRPOP once per
#: queue (pack_brpop_once), lists its consumed queues once per change (cache_active_queues),
#: batches its task events as relo's workers do (BatchTaskEvents) and runs without kombu's
#: ack emulation (make_app); else stock Celery and kombu.
TUNED = os.environ.get("RELO_BENCH_KOMBU_REUSE") == "1"
if TUNED:
    from release_orchestrator.celery_transport import tune_kombu_redis

    tune_kombu_redis()

NOOP = "bench.noop"
NOW = "bench.now"


def build_app(url: str = URL) -> Celery:
    """The baseline app on Redis ``url`` (broker and result backend)."""
    app = Celery("relobench_raw", broker=url, backend=url, set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.update(result_backend=url, task_ignore_result=False, task_default_queue="bench.raw")
    if TUNED:
        from release_orchestrator.celery_transport import BatchTaskEvents

        app.steps["consumer"].add(BatchTaskEvents)
        app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                             "ack_emulation": False}

    @app.task(name=NOOP)
    def noop() -> None:
        """Does nothing: the whole cost is Celery's and Redis's."""
        return None

    @app.task(name=NOW)
    def now() -> float:
        """The worker's clock when the task started (one-way publish → start latency)."""
        return time.time()

    return app


app = build_app()
