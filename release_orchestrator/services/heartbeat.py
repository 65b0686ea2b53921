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

    def __init__(self) -> None:
        self._pid = -1
        self._lock = threading.Lock()
        self._beats: dict[int, _Beat] = {}
        self._wake = threading.Condition(self._lock)

    def add(self, beat: _Beat) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: start our thread
                self._pid = os.getpid()
                self._beats = {}
                threading.Thread(target=self._loop, name="relo-heartbeat", daemon=True).start()
            self._beats[id(beat)] = beat
            self._wake.notify()

    def remove(self, beat: _Beat) -> None:
        with beat.busy:  # wait for a beat in progress
            beat.done = True
        with self._lock:
            self._beats.pop(id(beat), None)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._beats:
                    self._wake.wait()
                wait = min(min(b.next_flush, b.next_extend) for b in self._beats.values()) - (
                    time.monotonic())
                if wait > 0:  # add() wakes us: a new release may be due sooner
                    self._wake.wait(min(wait, 1.0))
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
