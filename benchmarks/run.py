"""Run every benchmark, print the tables and append a section to ``BENCHMARKS.md``.

Usage::

    python -m benchmarks.run [--only dispatch,throughput] [--repeat 5] [--label TEXT]
                             [--redis redis://127.0.0.1:6379/12] [--database-url URL]
                             [--no-write]

Benchmarks: ``dispatch`` (latency vs raw Celery round trip), ``throughput`` (100 environments
vs raw Celery empty tasks), ``locks`` (1/10/100 resources vs per-key redis-py locks),
``depth`` (10,000 queued vs empty), ``many`` (a worker on 1,000 environment queues vs 1),
``schedule`` (fire lateness with a real beat). Each starts its own worker processes on the
Redis database given by ``--redis`` (flushed first: use one nothing else uses) and on
temporary SQLite files, or on ``--database-url`` (e.g. PostgreSQL). Every figure is the
median over ``--repeat`` repetitions; ratios are against the baseline measured in the same
run. A full run takes about 3 to 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from release_orchestrator.settings import redact_url

from . import common

ORDER = ("dispatch", "throughput", "locks", "depth", "many", "schedule")
TITLES = {
    "dispatch": "1. Dispatch latency, idle environment, vs raw Celery round trip",
    "throughput": "2. Throughput across 100 environments vs raw Celery empty tasks",
    "locks": "3. State locks: one Lua script vs per-key redis-py Lock",
    "depth": "4. Queue depth: a long queue vs empty",
    "many": "5. One worker on 1,000 environment queues vs 1",
    "schedule": "6. Scheduled release fire lateness",
}


def _git() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.ROOT,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!BENCHMARKS.md"],
                               cwd=common.ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return rev + (" (uncommitted changes in the tree)" if dirty else "")
    except Exception:
        return "?"


def _bench(name: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Run one benchmark: (rows, markdown table)."""
    r, db = args.repeat, args.database_url
    if name == "dispatch":
        from . import bench_dispatch as m

        return (rows := m.run(args.redis, r, database_url=db)), m.markdown_table(rows)
    if name == "throughput":
        from . import bench_throughput as t

        return (rows := t.run(args.redis, r, database_url=db)), t.markdown_table(rows)
    if name == "locks":
        from . import bench_locks as lk

        rows = lk.run(args.redis, r)
        return rows, lk.markdown_table(rows)
    if name == "depth":
        from . import bench_queue_depth as q

        rows = q.run(args.redis, r, depth=args.depth, database_url=db)
        return rows, q.markdown_table(rows)
    if name == "many":
        from . import bench_many_envs as me

        return (rows := me.run(args.redis, r, database_url=db)), me.markdown_table(rows)
    if name == "schedule":
        try:
            from . import bench_schedule as sc
        except ImportError:
            return [], "(no schedule benchmark in this tree)"
        rows = sc.run(args.redis, ticks=(1.0,), fires=20, spread=20.0, claims=200)
        return rows, sc.markdown_table(rows)
    raise ValueError(name)


def _targets(results: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, str, str, str]]:
    """(target, relo, baseline, ratio, met) lines of the summary table."""
    out = []

    def ok(flag: bool) -> str:
        return "met" if flag else "**MISSED**"

    if rows := results.get("dispatch"):
        base, disp = rows[0], rows[1]
        out.append(("dispatch latency p50 ≤ 2x raw round trip p50", f"{disp['p50_ms']:.2f} ms",
                    f"{base['p50_ms']:.2f} ms", f"{disp['ratio_p50']:.2f}x",
                    ok(disp["ratio_p50"] <= 2)))
        out.append(("dispatch latency p99 ≤ 3x raw round trip p99", f"{disp['p99_ms']:.2f} ms",
                    f"{base['p99_ms']:.2f} ms", f"{disp['ratio_p99']:.2f}x",
                    ok(disp["ratio_p99"] <= 3)))
    if rows := results.get("throughput"):
        base, relo = rows[0], rows[1]
        out.append(("throughput (100 envs) ≥ 0.5x raw Celery empty tasks (stock kombu)",
                    f"{relo['per_s']:,.1f}/s", f"{base['per_s']:,.1f}/s",
                    f"{relo['ratio']:.2f}x", ok(relo["ratio"] >= 0.5)))
        if "paired_median" in relo:  # each repetition against its own raw run: information
            out.append(("(information) throughput, median of the repetitions' own ratios",
                        f"{min(relo['paired_ratios']):.2f}x-{max(relo['paired_ratios']):.2f}x",
                        "(the raw run of the same repetition)",
                        f"{relo['paired_median']:.2f}x", "-"))
        if len(rows) > 2:  # the raw stack with relo's Celery tuning: information
            info = rows[2]
            out.append(("(information) throughput vs raw Celery with relo's Celery tuning",
                        f"{relo['per_s']:,.1f}/s", f"{info['per_s']:,.1f}/s",
                        f"{relo['per_s'] / info['per_s']:.2f}x", "-"))
        if len(rows) > 3:  # the raw stack on as many queues as environments: information
            spread = rows[3]
            out.append(("(information) throughput vs raw Celery on 100 queues",
                        f"{relo['per_s']:,.1f}/s", f"{spread['per_s']:,.1f}/s",
                        f"{relo['per_s'] / spread['per_s']:.2f}x", "-"))
    if rows := results.get("locks"):
        by = {(x["resources"], x["impl"]): x for x in rows}
        if (100, "relo") in by:
            relo, py = by[(100, "relo")], by[(100, "redis-py")]
            out.append(("100-resource lock ≥ 30x per-key redis-py Lock",
                        f"{relo['ops_per_s']:,.0f} ops/s", f"{py['ops_per_s']:,.0f} ops/s",
                        f"{relo['ratio']:.1f}x", ok(relo["ratio"] >= 30)))
    if rows := results.get("depth"):
        for r in rows:
            if "ratio_p50" in r:
                out.append((f"{r['name']}: p50 ≤ 2x empty", f"{r['p50_ms']:.2f} ms",
                            "(same, queue empty)", f"{r['ratio_p50']:.2f}x",
                            ok(r["ratio_p50"] <= 2)))
    if rows := results.get("many"):
        one, many = rows
        out.append(("1,000 envs: dispatch latency p50 ≤ 2x one env", f"{many['p50_ms']:.2f} ms",
                    f"{one['p50_ms']:.2f} ms", f"{many['ratio_p50']:.2f}x",
                    ok(many["met_latency"])))
        out.append(("1,000 envs: throughput ≥ 0.5x single queue", f"{many['per_s']:,.1f}/s",
                    f"{one['per_s']:,.1f}/s", f"{many['ratio_rate']:.2f}x",
                    ok(many["met_rate"])))
        out.append(("1,000 envs: idle worker < 1% of a core",
                    f"{many['idle_cpu_pct']:.2f}%", f"{one['idle_cpu_pct']:.2f}% (1 env)", "-",
                    ok(many["met_idle"])))
    return out


def _summary(lines: Sequence[tuple[str, str, str, str, str]]) -> str:
    rows = ["| target | relo | baseline (same run) | ratio | |", "|---|---:|---:|---:|---|"]
    rows += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in lines]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description="relo benchmarks vs the raw Celery stack")
    parser.add_argument("--only", default=",".join(ORDER),
                        help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--redis", default="private",
                        help="'private' (default: start a throw-away redis-server on a free "
                             "port) or the URL of a Redis database the benchmarks own "
                             "(flushed at start)")
    parser.add_argument("--database-url", default=None,
                        help="relo database (default: temporary SQLite files)")
    parser.add_argument("--depth", type=int, default=10_000,
                        help="queued releases in the queue-depth benchmark (default 10,000)")
    parser.add_argument("--label", default="", help="a note for the BENCHMARKS.md section")
    parser.add_argument("--output", default=str(common.ROOT / "BENCHMARKS.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.database_url and args.database_url.startswith("postgresql://"):
        args.database_url = "postgresql+psycopg://" + args.database_url[len("postgresql://"):]

    private = None
    if args.redis == "private":
        import tempfile

        private = common.PrivateRedis(Path(tempfile.mkdtemp(prefix="relo-bench-redis-")))
        args.redis = private.url
    args.redis_kind = "a private redis-server" if private else "flushed"
    try:
        return _run(args, names, argv)
    finally:
        if private is not None:
            private.stop()


def _run(args: argparse.Namespace, names: list[str], argv: Sequence[str] | None) -> int:
    started = datetime.now(timezone.utc)
    command = " ".join(shlex.quote(a) for a in
                       [Path(sys.executable).name, "-m", "benchmarks.run", *(argv or sys.argv[1:])])
    machine = common.machine()
    versions = common.versions(args.redis)
    common.flush_redis(args.redis)
    others = common.other_clients(args.redis)
    header = [
        f"## {started:%Y-%m-%d %H:%M} UTC{' — ' + args.label if args.label else ''}",
        "",
        f"- command: `{command}` (git {_git()})",
        f"- machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['ram_gib']} GiB RAM, "
        f"{machine['os']}; load average at start {machine['loadavg']} (shared machine)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- Redis {args.redis} ({args.redis_kind}; {others} other client(s) connected at start); "
        f"database: {redact_url(args.database_url) if args.database_url else 'SQLite (temp)'}",
        f"- every figure: median over {args.repeat} repetitions (p50/p99 are medians of each "
        "repetition's percentile); baselines measured in the same run, interleaved",
    ]
    print("\n".join(header), flush=True)
    results: dict[str, list[dict[str, Any]]] = {}
    sections: list[str] = []
    for name in names:
        t0 = time.monotonic()
        print(f"\n### {TITLES[name]} ...", flush=True)
        try:
            rows, table = _bench(name, args)
        except Exception as exc:  # one broken benchmark must not lose the others
            rows, table = [], f"(failed: {type(exc).__name__}: {exc})"
        results[name] = rows
        took = time.monotonic() - t0
        section = f"### {TITLES[name]} ({took:.0f} s)\n\n{table}"
        print(section, flush=True)
        sections.append(section)
    summary = _summary(_targets(results))
    elapsed = (datetime.now(timezone.utc) - started).total_seconds()
    text = "\n".join(header) + f"\n- total time: {elapsed:.0f} s\n\n### Targets\n\n{summary}\n\n"
    text += "\n\n".join(sections) + "\n"
    print(f"\n### Targets\n\n{summary}\n\ntotal time {elapsed:.0f} s")
    if not args.no_write:
        out = Path(args.output)
        if not out.exists():
            out.write_text("# relo benchmarks\n\nAppended by `make bench` "
                           "(`python -m benchmarks.run`); newest last.\n")
        with out.open("a") as handle:
            handle.write("\n" + text)
        print(f"appended to {out}")
    # missed targets are results, not errors; a benchmark that crashed is an error
    return 1 if any(not results[n] and n != "schedule" for n in names) else 0


if __name__ == "__main__":
    raise SystemExit(main())
