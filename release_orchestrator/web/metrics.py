"""Domain metrics in Prometheus format, read from the database on each scrape.

Per environment (labels ``project``, ``environment``):

- ``relo_queue_depth``: queued releases (the FIFO queue, held or about to start);
- ``relo_releases_running``, ``relo_releases_pending_approval``;
- ``relo_environment_paused``: 1 while the environment or its project is paused;
- ``relo_releases_held{reason}``: queued releases by the admission policy's reason codes
  (``waiting_behind``, ``state_lock_held``, ``environment_paused``, …; a release held for
  several reasons counts under each);
- ``relo_lock_waits``: queued releases held by a state lock (``state_lock_held``);
- ``relo_scheduled_releases_skipped_total{reason}``: scheduled releases skipped
  (``busy``, ``paused``, ``schedule_paused``, ``outside_window``).

Across environments (labels ``type``, ``status``):

- ``relo_releases_finished_total``: releases that reached a final status;
- ``relo_release_duration_seconds``: histogram of start→end of releases that ran.

Counters are recomputed from the history, so every web process reports the same values and
a restart is not a reset. The history is read once; afterwards a scrape reads only releases
newer than a watermark plus the few that were still in flight (:class:`FinalTally`).
Held reasons need the admission policy (and Redis, for the locks), so they are computed only
for environments with queued releases.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from ..storage.repository import Repository
from .queries import FinalRelease, active_counts, environment_names, final_among, releases_after

if TYPE_CHECKING:
    from ..client import Client

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the release duration histogram: releases take minutes to hours.
DURATION_BUCKETS: tuple[float, ...] = (
    10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, math.inf,
)


class FinalTally:
    """Running totals over final releases, read incrementally.

    A final release never changes, so each is counted once. Invariant: every release with
    id <= ``watermark`` is counted or in ``pending`` (not final yet); ids above it are
    re-read each time and ``counted_above`` remembers which are already counted. The
    watermark only passes releases created more than ``settle`` ago, so a release whose
    transaction commits after one with a higher id (PostgreSQL sequences) is not skipped.
    """

    def __init__(self, settle: timedelta = timedelta(minutes=5), batch: int = 5000) -> None:
        self.settle = settle
        self.batch = batch
        self.watermark = 0
        self.pending: set[int] = set()
        self.counted_above: set[int] = set()
        self.finished: Counter[tuple[str, str]] = Counter()
        #: (type, status) → per-bucket counts (not cumulative) and the sum of durations.
        self.durations: dict[tuple[str, str], tuple[list[int], float]] = {}
        self.skipped: Counter[tuple[int, str]] = Counter()

    def _count(self, r: FinalRelease) -> None:
        key = (str(r.type), str(r.status))
        self.finished[key] += 1
        if r.skip_reason:
            self.skipped[(r.environment_id, str(r.skip_reason))] += 1
        duration = r.duration_s
        if duration is not None:
            buckets, total = self.durations.get(key, ([0] * len(DURATION_BUCKETS), 0.0))
            for i, bound in enumerate(DURATION_BUCKETS):
                if duration <= bound:
                    buckets[i] += 1
                    break
            self.durations[key] = (buckets, total + duration)

    def update(self, s: Session, now: datetime) -> None:
        """Count what became final since the last call."""
        for r in final_among(s, self.pending):
            self._count(r)
            self.pending.discard(r.id)
        settled_before = now - self.settle
        watermark, advancing, cursor = self.watermark, True, self.watermark
        newly_pending: list[int] = []
        while True:
            rows = releases_after(s, cursor, self.batch)
            for release, final, created_at in rows:
                if final and release.id not in self.counted_above:
                    self._count(release)
                    self.counted_above.add(release.id)
                if advancing and created_at <= settled_before:
                    watermark = release.id
                    if not final:
                        newly_pending.append(release.id)
                else:
                    advancing = False
            if len(rows) < self.batch:
                break
            cursor = rows[-1][0].id
        self.pending.update(newly_pending)
        self.watermark = watermark
        self.counted_above = {i for i in self.counted_above if i > watermark}

    def histogram(self, key: tuple[str, str]) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` buckets and the sum, as Prometheus wants them."""
        buckets, total = self.durations[key]
        out, running = [], 0
        for bound, count in zip(DURATION_BUCKETS, buckets, strict=True):
            running += count
            out.append(("+Inf" if math.isinf(bound) else repr(float(bound)), float(running)))
        return out, total


class DomainCollector(Collector):
    """A prometheus_client collector over relo's database (and Redis, for held reasons)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.tally = FinalTally()
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        from ..services.explain import decision_for

        ctx = self.client.ctx
        now = ctx.clock.now()
        env_labels = ["project", "environment"]
        with self._lock:
            with ctx.db.session(write=False) as s:
                names = environment_names(s)
                counts = active_counts(s)
                repo = Repository(s)
                paused = {
                    env.id: _paused(project, now) or _paused(env, now)
                    for project, env in repo.environments()
                }
                waiting = sorted(set(repo.environments_with_waiting()))
                self.tally.update(s, now)
            queue = GaugeMetricFamily(
                "relo_queue_depth", "Queued releases of the environment.", labels=env_labels
            )
            running = GaugeMetricFamily(
                "relo_releases_running", "Running releases of the environment.", labels=env_labels
            )
            pending = GaugeMetricFamily(
                "relo_releases_pending_approval",
                "Releases of the environment waiting for approval.",
                labels=env_labels,
            )
            paused_g = GaugeMetricFamily(
                "relo_environment_paused",
                "1 while the environment or its project is paused.",
                labels=env_labels,
            )
            for env_id, (project, env) in sorted(names.items(), key=lambda x: x[1]):
                c = counts.get(env_id, Counter())
                labels = [project, env]
                queue.add_metric(labels, c["queued"])
                running.add_metric(labels, c["running"])
                pending.add_metric(labels, c["pending_approval"])
                paused_g.add_metric(labels, 1 if paused.get(env_id) else 0)
            yield from (queue, running, pending, paused_g)

            held = GaugeMetricFamily(
                "relo_releases_held",
                "Queued releases held, by the admission policy's reason code.",
                labels=[*env_labels, "reason"],
            )
            lock_waits = GaugeMetricFamily(
                "relo_lock_waits",
                "Queued releases held by a state lock (state_lock_held).",
                labels=env_labels,
            )
            waits: dict[int, int] = {}
            for env_id in waiting:
                if env_id not in names:
                    continue
                project, env = names[env_id]
                try:
                    decision = decision_for(ctx, project, env)
                except Exception:  # one environment's trouble must not fail the scrape
                    log.warning("metrics: cannot evaluate %s/%s", project, env, exc_info=True)
                    continue
                by_code: Counter[str] = Counter()
                for reasons in decision.held.values():
                    for code in {str(r.code) for r in reasons}:
                        by_code[code] += 1
                for code, n in sorted(by_code.items()):
                    held.add_metric([project, env, code], n)
                waits[env_id] = by_code.get("state_lock_held", 0)
            for env_id, (project, env) in sorted(names.items(), key=lambda x: x[1]):
                lock_waits.add_metric([project, env], waits.get(env_id, 0))
            yield from (held, lock_waits)

            skipped = CounterMetricFamily(
                "relo_scheduled_releases_skipped",
                "Scheduled releases skipped, by reason.",
                labels=[*env_labels, "reason"],
            )
            for (env_id, reason), n in sorted(self.tally.skipped.items()):
                if env_id in names:
                    skipped.add_metric([*names[env_id], reason], n)
            finished = CounterMetricFamily(
                "relo_releases_finished",
                "Releases that reached a final status.",
                labels=["type", "status"],
            )
            for (rtype, status), n in sorted(self.tally.finished.items()):
                finished.add_metric([rtype, status], n)
            durations = HistogramMetricFamily(
                "relo_release_duration_seconds",
                "Start to end of releases that ran, by type and final status.",
                labels=["type", "status"],
            )
            for key in sorted(self.tally.durations):
                buckets, total = self.tally.histogram(key)
                durations.add_metric(list(key), buckets, total)
            yield from (skipped, finished, durations)


def _paused(row: object, now: datetime) -> bool:
    by = getattr(row, "pause_by", None)
    until = getattr(row, "pause_until", None)
    return by is not None and (until is None or until > now)
