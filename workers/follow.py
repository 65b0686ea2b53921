"""Per-environment queues: which ``release.<project>.<environment>`` queues a worker consumes.

A worker without ``--environments`` consumes every environment's queue and follows
environments created after it started: at start it reads them from the database, then
re-reads every ``RELO_FOLLOW_INTERVAL`` seconds (and at once when a blueprint apply
broadcasts ``relo_follow``). ``--environments P/E,...`` consumes only those.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.worker.control import control_command
from click import Option

from release_orchestrator.domain.names import queue_name

log = logging.getLogger(__name__)


def add_worker_options(app: Any) -> None:
    app.user_options["worker"].add(
        Option(
            ["--environments"],
            default=None,
            help="Comma-separated PROJECT/ENVIRONMENT list to consume (default: all).",
        )
    )


def parse_environments(text: str | None) -> list[str] | None:
    if not text:
        return None
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        project, sep, env = item.partition("/")
        if not sep or not project or not env:
            raise ValueError(f"--environments: '{item}' must be PROJECT/ENVIRONMENT")
        out.append(queue_name(project, env))
    return out


class FollowEnvironments(bootsteps.StartStopStep):
    """Consumer bootstep that adds environment queues to this worker."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, environments: str | None = None, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.fixed = parse_environments(environments)
        self.known: set[str] = set()
        self.tref: Any = None
        #: What the environments table looked like at the last full read.
        self.signature: Any = None

    def start(self, c: Any) -> None:
        c.relo_follow_all = self.fixed is None
        c.relo_known_queues = self.known
        self.sync(c)
        if self.fixed is None:
            from . import wiring

            interval = wiring.context().settings.follow_interval
            self.tref = c.timer.call_repeatedly(interval, self.sync, (c,), priority=10)

    def stop(self, c: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def sync(self, c: Any) -> None:
        signature = None
        try:
            if self.fixed is not None:
                wanted = self.fixed
            else:
                # a cheap look first: reading every environment each interval cost a worker
                # following 1,000 of them ~20 ms of CPU every 5 s (0.4% of a core, idle)
                signature = environments_signature()
                if signature == self.signature:
                    return
                wanted = all_environment_queues()
        except Exception:
            log.warning("could not read environments; retrying", exc_info=True)
            return
        add_queues(c, wanted)
        self.signature = signature


def add_queues(c: Any, queues: list[str]) -> None:
    known: set[str] = c.relo_known_queues
    for queue in queues:
        if queue in known:
            continue
        c.add_task_queue(queue)
        known.add(queue)
        log.info("consuming %s", queue)


def environments_signature() -> Any:
    """Changes whenever an environment is created or deleted (count, last id, last creation)."""
    from release_orchestrator.storage.repository import Repository

    from . import wiring

    with wiring.context().db.session(write=False) as s:
        return Repository(s).environments_signature()


def all_environment_queues() -> list[str]:
    from release_orchestrator.storage.repository import Repository

    from . import wiring

    ctx = wiring.context()
    with ctx.db.session(write=False) as s:
        return [queue_name(p.name, e.name) for p, e in Repository(s).environments()]


@control_command(args=[("queues", list)], signature="<queues>")
def relo_follow(state: Any, queues: list[str]) -> dict[str, Any]:
    """Consume new environment queues now (workers that follow every environment)."""
    c = state.consumer
    if not getattr(c, "relo_follow_all", False):
        return {"ok": "ignored: this worker consumes a fixed list of environments"}
    add_queues(c, [q for q in queues if q.startswith("release.")])
    return {"ok": f"following {len(queues)} queue(s)"}
