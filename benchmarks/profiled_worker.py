"""``relo worker`` with cProfile in its pool processes or its main process.

Started by :mod:`benchmarks.profile_worker` in place of ``python -m
release_orchestrator.cli.main``, with the same arguments. Environment:

* ``BENCH_PROFILE``: ``pool`` (each pool process profiles its main thread, where tasks run)
  or ``main`` (the worker's main process: Celery's event loop);
* ``BENCH_PROFILE_CLOCK``: ``cpu`` (``time.thread_time``: CPU time of the profiled thread,
  waits do not count) or ``wall`` (``time.perf_counter``);
* ``BENCH_PROFILE_DIR``: where the commands are read (``cmd``) and the profiles written
  (``<process>_<pid>.prof``).

On ``SIGUSR2`` a profiled process reads ``cmd``: ``reset`` starts a new profile (after the
warm-up), ``dump`` writes the profile so far. Celery's main process leaves ``SIGUSR2`` alone
unless ``CELERY_RDBSIG`` is set.
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


class _Profiler:
    def __init__(self, label: str, clock: Any, out: Path) -> None:
        self.label = label
        self.clock = clock
        self.out = out
        self.profile = cProfile.Profile(clock)

    def install(self) -> None:
        signal.signal(signal.SIGUSR2, self._on_signal)
        self.profile.enable()

    def _on_signal(self, _signum: int, _frame: Any) -> None:
        self.profile.disable()
        command = (self.out / "cmd").read_text().strip()
        if command == "dump":
            self.profile.dump_stats(str(self.out / f"{self.label}_{os.getpid()}.prof"))
        else:  # reset
            self.profile = cProfile.Profile(self.clock)
        self.profile.enable()


def main() -> None:
    where = os.environ["BENCH_PROFILE"]
    clock = time.thread_time if os.environ.get("BENCH_PROFILE_CLOCK") != "wall" else (
        time.perf_counter)
    out = Path(os.environ["BENCH_PROFILE_DIR"])
    if where == "main":
        _Profiler("main", clock, out).install()
    elif where == "pool":
        from celery.signals import worker_process_init

        @worker_process_init.connect(weak=False)
        def _start(**_kwargs: Any) -> None:
            _Profiler("pool", clock, out).install()
    else:
        raise SystemExit(f"BENCH_PROFILE must be pool or main, not {where!r}")

    from release_orchestrator.cli.main import main as relo_main

    sys.exit(relo_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
