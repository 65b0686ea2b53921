"""relo's own cost per release, in one process: ``submit``, then ``engine.execute``.

No Celery: releases are "published" to an in-memory transport and executed in the same
process, one after the other (as a worker would take them), on a real SQLite file and the
real Redis lock store. What is left is exactly what relo adds on top of a Celery message:
the three write transactions (submit; claim with the first step; finish with the next
dispatch), the three lock scripts and the Python around them. ``releases`` selective
releases (one ``simulated`` resource at duration 0) go round-robin over 100 environments,
so most of them queue behind the one before and are started by its finish, as in
``bench_throughput``.

Prints the CPU time per release of each phase, the best of ``rounds`` rounds (the machine is
shared: the best round is the least disturbed one). For a figure that does not move with
the machine's load, count instructions instead; the difference of two runs removes the
start-up (imports, schema, compiling the statements)::

    valgrind --tool=callgrind python -m benchmarks.bench_inprocess --rounds 1 --releases 100
    valgrind --tool=callgrind python -m benchmarks.bench_inprocess --rounds 1 --releases 400
    # (instructions of the second - of the first) / 300 = instructions per release

``--plain`` runs every statement through SQLAlchemy's ``Connection.execute`` (no prepared
statements, see ``release_orchestrator/storage/prepared.py``), for a comparison in one run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from .bench_throughput import TARGET, env_names
from .common import DEFAULT_REDIS, blueprint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_inprocess")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--releases", type=int, default=300, help="per round")
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    parser.add_argument("--plain", action="store_true",
                        help="no prepared statements: SQLAlchemy's execution for all")
    args = parser.parse_args(argv)

    from release_orchestrator import Client, Settings
    from release_orchestrator.services import engine
    from release_orchestrator.storage.prepared import PREPARED
    from release_orchestrator.testing import MemoryTransport

    if args.plain:
        PREPARED.LIMIT = 0
    with tempfile.TemporaryDirectory(prefix="relo-bench-inprocess-") as tmp:
        transport = MemoryTransport()
        client = Client(Settings(database_url=f"sqlite:///{Path(tmp) / 'relo.db'}",
                                 redis_url=args.redis, user="bench"), transport=transport)
        project = f"i{uuid.uuid4().hex[:8]}"
        names = env_names(100)
        client.apply_blueprint_text(blueprint(project, names, [TARGET]))
        best_submit = best_execute = float("inf")
        for _ in range(args.rounds):
            started = time.process_time()
            for i in range(args.releases):
                client.submit(project, names[i % len(names)], "selective", targets=[TARGET])
            submit = (time.process_time() - started) / args.releases
            started, done = time.process_time(), 0
            while sent := transport.take():
                for message in sent:
                    engine.execute(client.ctx, message.release_id, "bench", hint=message.hint)
                    done += 1
            execute = (time.process_time() - started) / max(done, 1)
            best_submit, best_execute = min(best_submit, submit), min(best_execute, execute)
        client.ctx.db.dispose()
    print(f"CPU per release, best of {args.rounds} rounds of {args.releases}"
          f"{' (plain SQLAlchemy execution)' if args.plain else ''}: "
          f"submit {best_submit * 1000:.3f} ms, engine {best_execute * 1000:.3f} ms")


if __name__ == "__main__":
    main()
