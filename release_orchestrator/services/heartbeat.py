"""Heartbeats of running releases: output flushes and lease extensions (SPEC §5, §11).

While a release runs, its output so far is written every second (``release logs --follow``)
and every third of the lease TTL its state locks are extended and its row's heartbeat is
updated. When the lease is lost (expired, broken, or fenced out by a newer holder) the
release's running step is cancelled and the engine stops it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import Context
    from .engine import Runner

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """This worker no longer holds the release (lease expired, broken, or fenced out)."""


class _Beat:
    """Heartbeat bookkeeping of one running release."""

    def __init__(self, ctx: Context, runner: Runner) -> None:
        self.ctx = ctx
        self.runner = runner
        self.ttl = ctx.settings.lock_ttl
        self.interval = self.ttl / 3
        now = time.monotonic()
        self.last_ok = now
        self.next_extend = now + self.interval
        self.next_flush = now + min(1.0, self.interval)
        #: Held while beating; :meth:`Heartbeat.stop` takes it so no beat outlives it.
        self.busy = threading.Lock()
        self.done = False

    def beat(self) -> None:
        """Extend the lease every third of the TTL; flush output every second (at most).

        The lease goes first: it is what keeps the release alive, and it is one Redis round
        trip, while the database writes after it may wait behind other writers.
        """
        now = time.monotonic()
        if now < self.next_flush and now < self.next_extend:
            return
        if now >= self.next_extend:
            self.next_extend = now + self.interval
            try:
                if not self.ctx.locks.extend(self.runner.lease):
                    self.lose("state lock lost (expired or broken)")
                    return
                self.last_ok = time.monotonic()
            except Exception:
                log.warning("lease extension of release %s failed", self.runner.release_id,
                            exc_info=True)
                if time.monotonic() - self.last_ok > self.ttl:
                    self.lose("lease extension failing for longer than the lease TTL")
                    return
            try:
                self.runner.heartbeat()
            except LeaseLost:
                self.lose("fenced out")
                return
            except Exception:
                log.warning("heartbeat of release %s not recorded", self.runner.release_id,
                            exc_info=True)
        if time.monotonic() >= self.next_flush:
            self.next_flush = time.monotonic() + min(1.0, self.interval)
            try:
                self.runner.flush_output()
            except LeaseLost:
                self.lose("fenced out")
            except Exception:
                log.debug("output flush failed", exc_info=True)

    def lose(self, why: str) -> None:
        log.error("release %s: %s; stopping it", self.runner.release_id, why)
        self.done = True
        self.runner.lost.set()
        self.runner.cancel.set()


class _Heartbeats:
    """One daemon thread per process beats for every release the process runs.

    Starting and joining a thread per release cost about a tenth of a short release's time
    in a worker (thread start-up and the wake-up of ``join`` under a busy GIL).
    """

    #: How long the thread stays awake with nothing to beat before it sleeps until woken: a
    #: busy worker starts its next release within it, and need not wake the thread for it.
    LINGER = 1.0

    def __init__(self) -> None:
        self._pid = -1
        self._lock = threading.Lock()
        self._beats: dict[int, _Beat] = {}
        self._wake = threading.Condition(self._lock)
        #: When the thread wakes next by itself (monotonic); None: only when notified.
        self._deadline: float | None = None

    def add(self, beat: _Beat) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: start our thread
                self._pid = os.getpid()
                self._beats = {}
                self._deadline = None
                threading.Thread(target=self._loop, name="relo-heartbeat", daemon=True).start()
            self._beats[id(beat)] = beat
            # wake the thread only when it would sleep past this release's first beat
            due = min(beat.next_flush, beat.next_extend)
            if self._deadline is None or due < self._deadline:
                self._wake.notify()

    def remove(self, beat: _Beat) -> None:
        with beat.busy:  # wait for a beat in progress
            beat.done = True
        with self._lock:
            self._beats.pop(id(beat), None)

    def _loop(self) -> None:
        idle_since: float | None = None
        while True:
            with self._lock:
                now = time.monotonic()
                if not self._beats:
                    if idle_since is None:
                        idle_since = now
                    if now - idle_since >= self.LINGER:
                        self._deadline = None  # asleep: add() must wake us
                        self._wake.wait()
                        idle_since = None
                        continue
                    self._deadline = idle_since + self.LINGER
                    self._wake.wait(self._deadline - now)
                    continue
                idle_since = None
                due = min(min(b.next_flush, b.next_extend) for b in self._beats.values())
                if due > now:  # add() wakes us when a new release is due sooner
                    self._deadline = min(due, now + 1.0)
                    self._wake.wait(self._deadline - now)
                    continue
                beats = list(self._beats.values())
            for beat in beats:
                with beat.busy:
                    if not beat.done:
                        beat.beat()


_HEARTBEATS = _Heartbeats()


class Heartbeat:
    """Extends the lease every third of the TTL; on loss, cancels the running step."""

    def __init__(self, ctx: Context, runner: Runner) -> None:
        self._beat = _Beat(ctx, runner)

    def start(self) -> None:
        _HEARTBEATS.add(self._beat)

    def stop(self) -> None:
        """No beat of this release runs after this returns."""
        _HEARTBEATS.remove(self._beat)
