"""Run the fault-injection scenarios at soak size and print the RELIABILITY.md table.

    .venv/bin/python -m tests.reliability.report [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from . import scenarios

COMMANDS = {
    "worker SIGKILL mid-release": "pytest -m slow tests/reliability -k worker_sigkill_soak",
    "duplicate delivery": "pytest -m slow tests/reliability -k duplicate_delivery_soak",
    "Redis flushed and restarted": "pytest tests/reliability -k redis_flushed",
    "concurrent submitters": "pytest -m slow tests/reliability -k concurrent_submitters_soak",
    "beat killed/restarted, two beats at once": "pytest -m slow tests/reliability -k beats",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fast-subset sizes")
    args = parser.parse_args()
    q = args.quick
    runs = [
        lambda d: scenarios.worker_sigkill(d, trials=2 if q else 20),
        lambda d: scenarios.duplicate_delivery(d, releases=12 if q else 100),
        lambda d: scenarios.redis_restart(d, releases=4 if q else 8),
        lambda d: scenarios.concurrent_submitters(d, processes=6 if q else 50,
                                                  each=8 if q else 20),
        lambda d: scenarios.beats(d, due_times=2 if q else 3),
    ]
    rows = []
    ok = True
    for run in runs:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            outcome = run(Path(tmp))
            took = time.monotonic() - started
        ok = ok and outcome.ok
        key = next((k for k in COMMANDS if k.split()[0] in outcome.scenario),
                   outcome.scenario)
        rows.append((outcome, took, COMMANDS.get(key, "")))
        print(f"{outcome.scenario}: {outcome}", file=sys.stderr)
    print("| scenario | trials | survived | lost | duplicated | checks | seconds | reproduce |")
    print("|---|---:|---:|---:|---:|---|---:|---|")
    for o, took, cmd in rows:
        checks = "all hold" if not o.problems else "; ".join(o.problems[:3])
        print(f"| {o.scenario} | {o.trials} | {o.survived} | {o.lost} | {o.duplicated} | "
              f"{checks} | {took:.0f} | `{cmd}` |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
