"""Where a ``relo worker``'s CPU goes per release: cProfile in its pool or main process.

Runs relo alone as ``bench_throughput`` does (one client submitting selective releases of
one ``simulated`` resource at duration 0, round-robin over 100 environments; one worker,
prefork -c 2), with the worker started through :mod:`benchmarks.profiled_worker`. After a
warm-up the profiles start afresh; after ``--releases`` more they are written and printed,
summed over the profiled processes, with the number of releases they cover::

    python -m benchmarks.profile_worker [--process pool|main] [--clock cpu|wall]
                                        [--releases 1000] [--sort cumulative] [--top 50]
                                        [--redis redis://127.0.0.1:6379/12]

``--clock cpu`` (the default) times each function with the CPU time of the profiled thread
(``time.thread_time``), so waits (for Redis, the SQLite writer's turn, the next task) do not
count; ``--clock wall`` counts them. cProfile's own overhead inflates Python-heavy functions
(about 2-3x here): compare shares within one run, not absolute figures with other tools.
"""

from __future__ import annotations

import argparse
import glob
import os
import pstats
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .bench_throughput import TARGET, env_names, relo_throughput
from .common import (
    DEFAULT_REDIS,
    Procs,
    blueprint,
    descendants,
    flush_redis,
    relo_client,
    relo_env,
)


def _signal_all(pids: list[int], out: Path, command: str) -> None:
    (out / "cmd").write_text(command)
    for pid in pids:
        os.kill(pid, signal.SIGUSR2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_worker")
    parser.add_argument("--process", choices=("pool", "main"), default="pool")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--releases", type=int, default=1000)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    args = parser.parse_args(argv)

    flush_redis(args.redis)
    with tempfile.TemporaryDirectory(prefix="relo-bench-profile-") as tmp:
        work = Path(tmp)
        out = work / "profiles"
        out.mkdir()
        db = f"sqlite:///{work / 'relo.db'}"
        project = f"p{uuid.uuid4().hex[:8]}"
        names = env_names(100)
        client = relo_client(db, args.redis)
        client.apply_blueprint_text(blueprint(project, names, [TARGET]))
        procs = Procs(work)
        env = relo_env(db, args.redis)
        env.update(BENCH_PROFILE=args.process, BENCH_PROFILE_CLOCK=args.clock,
                   BENCH_PROFILE_DIR=str(out))
        argv_worker = [sys.executable, "-m", "benchmarks.profiled_worker", "worker",
                       "--concurrency=2", "--loglevel=INFO", "--hostname", "relo-profile@%h"]
        try:
            worker = procs.start(argv_worker, env, name="relo-profile")
            relo_throughput(client, project, names, 300)  # warm-up
            pids = ([p for p in descendants(worker.pid) if p != worker.pid]
                    if args.process == "pool" else [worker.pid])
            _signal_all(pids, out, "reset")
            time.sleep(0.5)
            rate = relo_throughput(client, project, names, args.releases)
            _signal_all(pids, out, "dump")
            deadline = time.monotonic() + 30
            while len(glob.glob(str(out / "*.prof"))) < len(pids):
                if time.monotonic() > deadline:
                    raise RuntimeError("the profiled processes wrote no profile")
                time.sleep(0.1)
            time.sleep(0.5)  # the files are complete once every process has written its own
        finally:
            procs.stop_all()
            client.ctx.db.dispose()
        print(f"{args.releases} releases at {rate:.0f}/s (profiling slows them); "
              f"{args.process} process(es) {pids}, clock {args.clock}")
        stats = pstats.Stats(*sorted(glob.glob(str(out / "*.prof"))))
        stats.sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
