"""Storage contract, concurrency: many writers and dispatchers on one environment, on SQLite
(``BEGIN IMMEDIATE`` + busy timeout) and PostgreSQL (the environment row lock).

Each thread uses its own client (its own engines and pools), as separate processes would;
they share the transport, the lock store and the clock. Fixtures come from ``test_storage``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import test_storage as shared
from sqlalchemy import and_, func, or_, select
from test_storage import (
    WORKER,
    Clients,
    env_id,
    event_rows,
    in_threads,
    release_rows,
    run_worker,
)

from release_orchestrator import Client
from release_orchestrator.domain import ReleaseStatus
from release_orchestrator.services import dispatch, engine
from release_orchestrator.storage.repository import Repository
from release_orchestrator.storage.tables import EnvironmentRow, ReleaseRow, StepRow

# the backend-parametrized fixtures, shared with the sibling modules
database_url, clients, client = shared.database_url, shared.clients, shared.client

#: 8 x 15: every submit also renders its holds, which costs O(queue length^2) in the policy
THREADS, PER_THREAD = 8, 15


def _sent(client: Client) -> list[int]:
    return [m.release_id for m in client.ctx.transport.take()]  # type: ignore[attr-defined]


def _in_flight(client: Client, eid: int) -> int:
    """Releases running or dispatched to a worker, read in one statement."""
    with client.ctx.db.session(write=False) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(ReleaseRow)
                .where(
                    ReleaseRow.environment_id == eid,
                    or_(
                        ReleaseRow.status == ReleaseStatus.RUNNING,
                        and_(
                            ReleaseRow.status == ReleaseStatus.QUEUED,
                            ReleaseRow.dispatched_at.is_not(None),
                        ),
                    ),
                )
            )
            or 0
        )


def _undispatch_all(client: Client, eid: int) -> None:
    """Forget every dispatch decision (as a lock conflict does): all of the queue may start."""
    with client.ctx.db.session() as s:
        for row in s.scalars(
            select(ReleaseRow).where(
                ReleaseRow.environment_id == eid, ReleaseRow.status == ReleaseStatus.QUEUED
            )
        ):
            row.dispatched_at = None


def test_concurrent_submissions_are_all_recorded_in_fifo_order(
    client: Client, clients: Clients
) -> None:
    submitters = [clients(f"user-{i}") for i in range(THREADS)]

    def submit(i: int) -> list[int]:
        c = submitters[i]
        return [c.submit("shop", "prod", comment=f"{i}-{n}").id for n in range(PER_THREAD)]

    per_thread = in_threads(THREADS, submit)
    ids = [i for batch in per_thread for i in batch]
    assert len(ids) == len(set(ids)) == THREADS * PER_THREAD
    for batch in per_thread:  # each submitter's releases in its own order
        assert batch == sorted(batch)

    rows = release_rows(client)
    assert sorted(r.id for r in rows) == sorted(ids)
    assert {r.status for r in rows} == {"queued"}
    seqs = [r.queue_seq for r in rows]  # rows are in id order
    assert seqs == list(range(1, len(ids) + 1))  # strictly increasing, no gap, no duplicate
    with client.ctx.db.session(write=False) as s:
        counter = s.scalar(
            select(EnvironmentRow.queue_counter).where(EnvironmentRow.id == rows[0].environment_id)
        )
    assert counter == len(ids)
    submitted = [e for e in event_rows(client) if e[3] == "submitted"]
    assert sorted(e[6] for e in submitted) == sorted(ids)
    assert {e[2] for e in submitted} == {f"user-{i}" for i in range(THREADS)}
    # parallel off: exactly the head of the queue was dispatched, once
    assert _sent(client) == [rows[0].id]
    active = client.active("shop", "prod")
    assert [(r.id, r.position) for r in active] == [(r.id, n) for n, r in enumerate(rows, start=1)]


def test_concurrent_compare_and_set_has_exactly_one_winner(
    client: Client, clients: Clients
) -> None:
    a = client.submit("shop", "prod").id
    racers = [clients() for _ in range(6)]

    def race(i: int) -> bool:
        with racers[i].ctx.db.session() as s:
            return Repository(s).set_status(
                a, ReleaseStatus.QUEUED, ReleaseStatus.RUNNING, worker=f"w{i}"
            )

    won = in_threads(len(racers), race)
    assert won.count(True) == 1
    [row] = release_rows(client)
    assert (row.status, row.worker) == ("running", f"w{won.index(True)}")


DUPLICATE_BLUEPRINT = """
project: dup
environments: [{name: prod}]
resources:
  - {type: service, name: a, executor: simulated, options: {duration: 0.3}}
  - {type: service, name: b, executor: simulated, depends_on: [service/a]}
"""


@pytest.mark.parametrize("with_hint", [True, False], ids=["hint", "no-hint"])
def test_a_message_delivered_to_several_workers_runs_once(
    client: Client, clients: Clients, with_hint: bool
) -> None:
    client.apply_blueprint_text(DUPLICATE_BLUEPRINT)
    a = client.submit("dup", "prod").id
    [message] = client.ctx.transport.take()  # type: ignore[attr-defined]
    assert message.release_id == a
    hint = message.hint if with_hint else None
    workers = [clients() for _ in range(4)]
    outcomes = in_threads(
        len(workers), lambda i: engine.execute(workers[i].ctx, a, f"worker-{i}", hint=hint)
    )
    assert sorted(o.split(":")[0] for o in outcomes) == ["skipped"] * 3 + ["succeeded"]
    with client.ctx.db.session(write=False) as s:
        steps = list(s.scalars(select(StepRow.resource).where(StepRow.release_id == a)))
    assert steps == ["service/a", "service/b"]
    kinds = [e[3] for e in event_rows(client) if e[6] == a]
    assert kinds == ["submitted", "started", "succeeded"]


def test_concurrent_evaluate_dispatches_one_release_at_a_time(
    client: Client, clients: Clients
) -> None:
    eid = env_id(client)
    ids = [client.submit("shop", "prod").id for _ in range(4)]
    assert _sent(client) == ids[:1]
    dispatchers = [clients() for _ in range(6)]
    for expected in ids:
        _undispatch_all(client, eid)  # nothing in flight: every call may want to start one
        started = in_threads(len(dispatchers), lambda i: dispatch.evaluate(dispatchers[i].ctx, eid))
        assert sorted(i for batch in started for i in batch) == [expected]
        assert _sent(client) == [expected] and _in_flight(client, eid) == 1
        assert engine.execute(client.ctx, expected, WORKER) == "succeeded"
        _sent(client)  # the engine dispatched the next one itself
    assert {r.status for r in release_rows(client)} == {"succeeded"}


def test_concurrent_evaluate_with_parallel_on_never_dispatches_a_conflict(
    client: Client, clients: Clients
) -> None:
    client.settings("shop", "prod", parallel=True)
    eid = env_id(client)
    targets = [["payments"], ["payments", "orders"], ["catalog"], ["orders"], ["catalog"]]
    ids = [client.submit("shop", "prod", "selective", targets=t).id for t in targets]
    _undispatch_all(client, eid)
    _sent(client)
    dispatchers = [clients() for _ in range(6)]
    started = in_threads(len(dispatchers), lambda i: dispatch.evaluate(dispatchers[i].ctx, eid))
    # payments and catalog start; orders waits behind the release that wants payments+orders
    assert sorted(i for batch in started for i in batch) == [ids[0], ids[2]]
    assert sorted(_sent(client)) == [ids[0], ids[2]]


def test_submitters_dispatchers_and_workers_never_overlap_releases(
    client: Client, clients: Clients
) -> None:
    """Parallel off under load: the audit history shows strictly one release at a time."""
    eid = env_id(client)
    total = 12
    done = threading.Event()
    seen_in_flight: list[int] = []
    submitters = [clients(f"user-{i}") for i in range(3)]
    workers = [clients() for _ in range(2)]
    dispatcher, monitor = clients(), clients()

    def role(i: int) -> Any:
        if i < 3:  # submitters
            for _ in range(total // 3):
                submitters[i].submit("shop", "prod")
                time.sleep(0.01)
            return None
        if i < 5:  # workers take whatever the transport holds
            c = workers[i - 3]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                messages = c.ctx.transport.take()  # type: ignore[attr-defined]
                for m in messages:
                    engine.execute(c.ctx, m.release_id, f"worker-{i}", hint=m.hint)
                rows = release_rows(c)
                if len(rows) == total and all(r.status == "succeeded" for r in rows):
                    done.set()
                    return None
                if not messages:
                    time.sleep(0.01)
            raise AssertionError("releases did not finish")
        if i == 5:  # a reconciler-like dispatcher
            while not done.is_set():
                dispatch.evaluate(dispatcher.ctx, eid)
                time.sleep(0.005)
            return None
        while not done.is_set():  # a monitor
            seen_in_flight.append(_in_flight(monitor, eid))
            time.sleep(0.005)
        return None

    in_threads(7, role)
    assert max(seen_in_flight) <= 1
    running: int | None = None
    order = []
    for e in event_rows(client):
        if e[3] == "started":
            assert running is None, f"release {e[6]} started while {running} was running"
            running = e[6]
            order.append(e[6])
        elif e[3] == "succeeded":
            assert running == e[6]
            running = None
    rows = release_rows(client)
    assert order == [r.id for r in sorted(rows, key=lambda r: r.id)]  # FIFO
    assert run_worker(client) == []
