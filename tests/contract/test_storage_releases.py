"""Storage contract, releases: ids, queue positions, compare-and-set, fencing, lost workers,
delete/approve/settings refusals and the audit history — on SQLite and PostgreSQL.

Fixtures and helpers come from ``test_storage`` (see its docstring).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import pytest
import test_storage as shared
from sqlalchemy import select
from test_storage import (
    BLUEPRINT,
    USER,
    WORKER,
    Clients,
    claim,
    dump,
    event_rows,
    release_rows,
    run_worker,
)

from release_orchestrator import Client
from release_orchestrator.domain import ReleaseStatus, SyncStatus
from release_orchestrator.errors import (
    InvalidRequest,
    NotFound,
    ReleaseFailed,
    StateLockError,
)
from release_orchestrator.services import engine
from release_orchestrator.services.dispatch import evaluate
from release_orchestrator.storage.repository import Repository
from release_orchestrator.storage.tables import StepRow

# the backend-parametrized fixtures, shared with the sibling modules
database_url, clients, client = shared.database_url, shared.clients, shared.client

Q, R, P = ReleaseStatus.QUEUED, ReleaseStatus.RUNNING, ReleaseStatus.PENDING_APPROVAL


def sent(client: Client) -> list[int]:
    """Ids of the releases dispatched since the last call (consumes the transport)."""
    return [m.release_id for m in client.ctx.transport.take()]  # type: ignore[attr-defined]


# -- ids and queue -------------------------------------------------------------------------
def test_release_ids_are_increasing_integers(client: Client) -> None:
    client.apply_blueprint_text(
        "project: blog\nenvironments: [{name: dev}]\n"
        "resources: [{type: service, name: web, executor: simulated}]\n"
    )
    ids = [
        client.submit("shop", "prod").id,
        client.submit("blog", "dev").id,
        client.submit("shop", "staging", "selective", targets=["catalog"]).id,
        client.submit("shop", "prod").id,
    ]
    with pytest.raises(ReleaseFailed) as failed:  # recorded, failed before any step
        client.submit("shop", "prod", "destroy")
    assert failed.value.details["release"] is not None
    ids.append(failed.value.details["release"].id)
    with pytest.raises(StateLockError) as conflict:
        client.submit("shop", "prod", fail_on_conflict=True)
    ids.append(conflict.value.details["release"].id)
    client.delete([ids[3]])
    ids.append(client.submit("blog", "dev").id)
    assert all(type(i) is int for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    history = client.list("shop", "prod") + client.list("blog", "dev")
    assert sorted(r.id for r in history) == [ids[0], ids[1], ids[3], ids[4], ids[5], ids[6]]


def test_launch_of_a_launched_environment_records_nothing(client: Client) -> None:
    client.submit("shop", "prod", "launch")
    run_worker(client)
    assert client.environment("shop", "prod").launched
    before = dump(client)
    with pytest.raises(InvalidRequest, match="already launched"):
        client.submit("shop", "prod", "launch")
    assert dump(client) == before


def _view(releases: list[Any]) -> list[tuple[int, str, int | None]]:
    return [(r.id, str(r.status), r.position) for r in releases]


def test_queue_positions_are_fifo_and_active_orders_running_queued_pending(
    client: Client, clients: Clients
) -> None:
    a = client.submit("shop", "prod").id
    assert sent(client) == [a]
    claim(client, a)
    b = client.submit("shop", "prod").id
    c = client.submit("shop", "prod", "selective", targets=["payments"]).id
    client.settings("shop", "prod", approval=True)
    d = client.submit("shop", "prod").id
    e = client.submit("shop", "prod").id
    assert sent(client) == []
    reader = clients()  # positions are computed from the database, by any process
    assert _view(reader.active("shop", "prod")) == [
        (a, "running", None),
        (b, "queued", 1),
        (c, "queued", 2),
        (d, "pending_approval", None),
        (e, "pending_approval", None),
    ]
    assert [reader.get(i).position for i in (a, b, c, d, e)] == [None, 1, 2, None, None]

    client.approve(e)  # joins the queue at its end: FIFO by queue time, not by id
    assert _view(reader.active("shop", "prod"))[1:] == [
        (b, "queued", 1),
        (c, "queued", 2),
        (e, "queued", 3),
        (d, "pending_approval", None),
    ]
    client.delete([b])
    assert [reader.get(i).position for i in (b, c, e)] == [None, 1, 2]
    assert {r.id: r.position for r in reader.list("shop", "prod")} == {
        a: None,
        b: None,
        c: 1,
        d: None,
        e: 2,
    }
    rows = {r.id: r for r in release_rows(client)}
    assert rows[a].queue_seq is None  # claimed: off the queue
    assert rows[c].queue_seq < rows[e].queue_seq  # type: ignore[operator]


# -- compare-and-set -----------------------------------------------------------------------
def test_set_status_refuses_a_transition_from_a_wrong_old_status(client: Client) -> None:
    a = client.submit("shop", "prod").id
    before = dump(client)
    with client.ctx.db.session() as s:
        repo = Repository(s)
        assert repo.set_status(a, R, ReleaseStatus.SUCCEEDED, error="x") is False
        assert repo.set_status(a, [P, R], ReleaseStatus.FAILED, error="x") is False
        assert repo.set_status(a + 1000, Q, R) is False
    assert dump(client) == before
    with client.ctx.db.session() as s:
        repo = Repository(s)
        assert repo.set_status(a, [P, Q], R, worker="w") is True
        assert repo.set_status(a, Q, R, worker="other") is False
    [row] = release_rows(client)
    assert (row.status, row.worker) == ("running", "w")


def test_second_execution_of_a_release_is_a_no_op(client: Client) -> None:
    a = client.submit("shop", "prod").id
    [(_, outcome)] = run_worker(client)
    assert outcome == "succeeded"
    with client.ctx.db.session(write=False) as s:
        steps = len(Repository(s).steps(a))
    assert steps == 3
    before = dump(client)
    again = engine.execute(client.ctx, a, "worker-2")  # the message delivered twice
    assert again.startswith("skipped")
    assert dump(client) == before
    assert sent(client) == []

    # a queued release that was never dispatched is not run either
    b = client.submit("shop", "prod").id
    claim(client, b)
    c = client.submit("shop", "prod").id
    before = dump(client)
    assert engine.execute(client.ctx, c, WORKER).startswith("skipped")
    assert dump(client) == before


def test_the_message_hint_names_what_the_release_locks(client: Client) -> None:
    full = client.submit("shop", "prod").id
    [message] = client.ctx.transport.take()  # type: ignore[attr-defined]
    assert message.release_id == full
    eid = message.hint["env_id"]
    assert message.hint == {"env_id": eid, "project": "shop", "environment": "prod",
                            "whole": True, "resources": []}
    assert engine.execute(client.ctx, full, WORKER, hint=message.hint) == "succeeded"
    client.settings("shop", "prod", parallel=True)
    sel = client.submit("shop", "prod", "selective",
                        targets=["service/payments", "database/orders:refresh"]).id
    [message] = client.ctx.transport.take()  # type: ignore[attr-defined]
    assert message.hint == {"env_id": eid, "project": "shop", "environment": "prod",
                            "whole": False, "resources": ["database/orders", "service/payments"]}
    assert engine.execute(client.ctx, sel, WORKER, hint=message.hint) == "succeeded"
    # a late duplicate with its hint: takes the locks for a moment, changes nothing
    before = dump(client)
    assert engine.execute(client.ctx, sel, "worker-2", hint=message.hint) == (
        f"skipped: release {sel} is succeeded")
    assert dump(client) == before
    assert client.ctx.locks.holders("shop/prod") == []


@pytest.mark.parametrize(
    ("hint", "mismatch"),
    [
        ({"whole": False, "resources": ["service/catalog"]}, True),  # not what it locks
        ({"project": "shop", "environment": "staging"}, True),  # another environment's locks
        ({"resources": "service/payments"}, False),  # malformed: a string, not a list
        ({"env_id": None}, False),  # malformed
    ],
)
def test_a_hint_that_does_not_match_the_release_is_not_trusted(
    client: Client, hint: dict[str, Any], mismatch: bool, caplog: pytest.LogCaptureFixture
) -> None:
    a = client.submit("shop", "prod").id
    [message] = client.ctx.transport.take()  # type: ignore[attr-defined]
    with caplog.at_level("WARNING", logger="release_orchestrator.services.engine"):
        outcome = engine.execute(client.ctx, a, WORKER, hint={**message.hint, **hint})
    assert outcome == "succeeded"
    assert ("lock hint does not match" in caplog.text) is mismatch
    with client.ctx.db.session(write=False) as s:
        steps = [(st.resource, st.status) for st in Repository(s).steps(a)]
    assert steps == [("database/orders", "succeeded"), ("service/payments", "succeeded"),
                     ("service/catalog", "succeeded")]
    assert client.ctx.locks.holders("shop/prod") == []
    assert client.ctx.locks.holders("shop/staging") == []


def test_a_queued_release_says_at_submit_what_holds_it_as_explain_does(client: Client) -> None:
    from release_orchestrator.services.explain import explain

    releases = [client.submit("shop", "prod")]  # starts
    releases.append(client.submit("shop", "prod"))
    client.pause("shop", "prod", reason="freeze")
    releases.append(client.submit("shop", "prod", "selective", targets=["service/catalog"]))
    releases.append(client.submit("shop", "prod", "custom"))
    assert releases[0].held == [] and releases[0].position == 1
    assert [h.code for h in releases[1].held] == ["state_lock_held"]  # before the pause
    held = explain(client.ctx, "shop", "prod")
    assert [r.position for r in releases[1:]] == [2, 3, 4]
    for release in releases[2:]:
        assert release.held == held[release.id]
    assert [(h.code, h.release_id) for h in releases[3].held] == [
        ("environment_paused", None),
        ("state_lock_held", releases[0].id),
        ("waiting_behind", releases[1].id),
    ]


def test_fenced_update_with_a_stale_token_writes_nothing(client: Client) -> None:
    a = client.submit("shop", "prod").id
    claim(client, a, token=7)
    later = client.ctx.clock.now().replace(year=2030)
    before = dump(client)
    with client.ctx.db.session() as s:
        repo = Repository(s)
        assert repo.fenced_update(a, 6) is False
        assert repo.fenced_update(a, 6, heartbeat_at=later, error="stale") is False
        assert repo.fenced_update(a, 8, status="succeeded") is False
    assert dump(client) == before
    with client.ctx.db.session() as s:
        repo = Repository(s)
        assert repo.fenced_update(a, 7) is True
        assert repo.fenced_update(a, 7, heartbeat_at=later) is True
        assert repo.fenced_update(a, 7, status="succeeded", finished_at=later) is True
    with client.ctx.db.session() as s:  # no longer running: even the right token is refused
        assert Repository(s).fenced_update(a, 7, error="late") is False
    [row] = release_rows(client)
    assert (row.status, row.heartbeat_at, row.error) == ("succeeded", later, None)


LOST_BLUEPRINT = """
project: lost
environments: [{name: prod}]
resources:
  - {type: database, name: db, executor: simulated, spec: {v: 1}}
  - type: service
    name: slow
    executor: simulated
    spec: {v: 1}
    depends_on: [database/db]
"""


class _Gated:
    """An executor that holds ``service/slow`` in flight until the gate opens."""

    def __init__(self, inner: Any, gate: threading.Event) -> None:
        self.inner, self.gate = inner, gate

    def run(self, ctx: Any) -> Any:
        if ctx.resource_name == "slow":
            assert self.gate.wait(60)
        return self.inner.run(ctx)


def test_fail_lost_release_fails_it_and_fences_the_lost_worker_out(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real = engine.get_executor
    monkeypatch.setattr(engine, "get_executor", lambda name: _Gated(real(name), gate))
    client.apply_blueprint_text(LOST_BLUEPRINT)
    a = client.submit("lost", "prod").id
    assert sent(client) == [a]
    outcome: list[str] = []
    worker = threading.Thread(
        target=lambda: outcome.append(engine.execute(client.ctx, a, WORKER)), daemon=True
    )
    worker.start()
    deadline = time.monotonic() + 30
    while True:  # wait until the slow step is in flight
        with client.ctx.db.session(write=False) as s:
            running = s.scalar(
                select(StepRow.resource).where(StepRow.release_id == a, StepRow.status == "running")
            )
        if running == "service/slow":
            break
        assert time.monotonic() < deadline and worker.is_alive(), "the slow step never started"
        time.sleep(0.02)
    now = client.ctx.clock.now()
    assert engine.fail_lost_release(client.ctx, a, now) is True
    assert engine.fail_lost_release(client.ctx, a, now) is False  # compare-and-set: once
    gate.set()  # the lost worker comes back and tries to record its step
    worker.join(30)
    assert not worker.is_alive()
    assert outcome[0].startswith("lease lost")

    release = client.get(a)
    assert release.status is ReleaseStatus.FAILED and release.finished_at == now
    assert release.error is not None and "worker lost" in release.error
    assert WORKER in release.error
    assert [(s.resource, str(s.status), s.error) for s in release.steps] == [
        ("database/db", "succeeded", None),
        ("service/slow", "failed", "worker lost"),  # the lost worker's late write was refused
    ]
    status = {r.resource: r for r in client.resources("lost", "prod")}
    assert status["service/slow"].sync is SyncStatus.UNKNOWN
    assert status["service/slow"].applied_spec is None
    assert status["database/db"].sync is SyncStatus.SYNCED
    events = [e for e in event_rows(client) if e[6] == a]
    assert [(e[3], e[2]) for e in events] == [
        ("submitted", USER),
        ("started", WORKER),
        ("failed", "relo"),
    ]
    assert "worker lost" in events[-1][7]


def test_fail_on_conflict_behind_a_waiting_release_fails_at_once(client: Client) -> None:
    a = client.submit("shop", "prod").id  # dispatched
    b = client.submit("shop", "prod").id  # waits behind a
    with pytest.raises(StateLockError, match=rf"release {a} on .*release {b} on") as err:
        client.submit("shop", "prod", fail_on_conflict=True)
    c = err.value.details["release"]
    assert (c.status, c.position) == (ReleaseStatus.FAILED, None)
    assert c.error.startswith("state lock conflict")
    assert _view(client.active("shop", "prod")) == [(a, "queued", 1), (b, "queued", 2)]
    assert [e[3] for e in event_rows(client) if e[6] == c.id] == ["submitted", "failed"]


# -- delete, approve, settings ---------------------------------------------------------------
def test_delete_is_all_or_nothing(client: Client, clients: Clients) -> None:
    a = client.submit("shop", "prod").id
    claim(client, a)
    b = client.submit("shop", "prod").id
    c = client.submit("shop", "prod").id
    with pytest.raises(ReleaseFailed) as failed:
        client.submit("shop", "prod", "destroy")
    f = failed.value.details["release"].id
    before = dump(client)
    with pytest.raises(InvalidRequest, match=rf"release {a} is running"):
        client.delete([b, a, c])
    assert dump(client) == before
    with pytest.raises(InvalidRequest, match=rf"release {f} is failed"):
        client.delete([b, c, f])
    assert dump(client) == before
    with pytest.raises(NotFound, match="unknown release id 9999"):
        client.delete([b, 9999])
    assert dump(client) == before

    bob = clients("bob")
    now = clients.clock.advance(5)
    assert bob.delete([c, b, c]) == [c, b]
    rows = {r.id: r for r in release_rows(client)}
    assert (rows[b].status, rows[c].status, rows[b].finished_at) == ("cancelled", "cancelled", now)
    assert rows[a].status == "running"
    cancelled = [e for e in event_rows(client) if e[3] == "cancelled"]
    assert [(e[6], e[2], e[1]) for e in cancelled] == [(c, "bob", now), (b, "bob", now)]
    before = dump(client)
    with pytest.raises(InvalidRequest, match=rf"release {b} is cancelled"):
        client.delete([b])
    assert dump(client) == before


def test_delete_starts_what_it_unblocks_and_all_queued_takes_pending_too(
    client: Client,
) -> None:
    a = client.submit("shop", "prod").id
    b = client.submit("shop", "prod").id
    assert sent(client) == [a]
    client.delete([a])  # the head of the queue: the next one starts at once
    assert sent(client) == [b]
    claim(client, b)
    c = client.submit("shop", "prod").id
    client.settings("shop", "prod", approval=True)
    d = client.submit("shop", "prod").id
    other = client.submit("shop", "staging").id
    assert client.delete(all_queued=("shop", "prod")) == [c, d]
    assert [(r.id, str(r.status)) for r in client.active("shop", "prod")] == [(b, "running")]
    assert [r.id for r in client.active("shop", "staging")] == [other]


def test_approve_and_reject_only_from_pending_approval(client: Client) -> None:
    client.settings("shop", "prod", approval=True)
    a = client.submit("shop", "prod").id
    b = client.submit("shop", "prod").id
    assert client.get(a).status is P and sent(client) == []
    approved = client.approve(a)
    assert approved.status is Q and approved.position == 1
    assert sent(client) == [a]
    before = dump(client)
    for refused in (lambda: client.approve(a), lambda: client.reject(a)):
        with pytest.raises(InvalidRequest, match=rf"release {a} is queued, not pending_approval"):
            refused()
        assert dump(client) == before
    assert client.reject(b).status is ReleaseStatus.REJECTED
    before = dump(client)
    with pytest.raises(InvalidRequest, match="rejected, not pending_approval"):
        client.approve(b)
    with pytest.raises(NotFound):
        client.approve(b + 100)
    assert dump(client) == before
    assert engine.execute(client.ctx, a, WORKER) == "succeeded"
    before = dump(client)
    with pytest.raises(InvalidRequest, match="succeeded, not pending_approval"):
        client.reject(a)
    assert dump(client) == before


def test_settings_refuse_max_parallel_below_one(client: Client) -> None:
    before = dump(client)
    for bad in (0, -1):
        with pytest.raises(InvalidRequest, match="--max-parallel must be an integer >= 1"):
            client.settings("shop", "prod", max_parallel=bad, parallel=True)
        assert dump(client) == before
    shown = client.settings("shop", "prod")  # show only: no change, no event
    assert (shown.parallel_releases, shown.max_parallel_releases) == (False, 10)
    assert dump(client) == before
    changed = client.settings("shop", "prod", parallel=True, max_parallel=3)
    assert (changed.parallel_releases, changed.max_parallel_releases) == (True, 3)
    [event] = [e for e in event_rows(client) if e[3] == "settings_changed"]
    assert event[8] == {
        "parallel_releases": {"from": False, "to": True},
        "max_parallel_releases": {"from": 10, "to": 3},
    }


# -- the audit history -----------------------------------------------------------------------
def test_every_state_change_appends_an_ordered_event(clients: Clients) -> None:
    c = clients()
    bob = clients("bob")
    clock = clients.clock
    history: list[tuple[Any, ...]] = []

    def step(action: Any) -> list[tuple[str, str, int | None]]:
        """Run ``action`` one minute later; return (kind, actor, release) of its events."""
        clock.advance(60)
        with contextlib.suppress(ReleaseFailed, InvalidRequest):
            action()
        rows = event_rows(c)
        assert rows[: len(history)] == history  # append-only: nothing earlier changed
        new = rows[len(history) :]
        history.extend(new)
        for e in new:
            assert e[1] == clock.now() and e[7]  # when and what
        return [(e[3], e[2], e[6]) for e in new]

    assert step(lambda: c.apply_blueprint_text(BLUEPRINT)) == [("blueprint_applied", USER, None)]
    assert step(lambda: c.set_resource("shop", "prod", "catalog", ["x=1"])) == [
        ("resource_set", USER, None)
    ]
    assert step(lambda: c.settings("shop", "prod", max_parallel=0)) == []
    assert step(lambda: c.settings("shop", "prod", max_parallel=4)) == [
        ("settings_changed", USER, None)
    ]
    ids: list[int] = []
    assert step(lambda: ids.append(c.submit("shop", "prod").id)) == [("submitted", USER, ids[-1])]
    a = ids[-1]
    assert step(lambda: run_worker(c)) == [("started", WORKER, a), ("succeeded", WORKER, a)]
    assert step(lambda: ids.append(c.submit("shop", "prod").id)) == [("submitted", USER, ids[-1])]
    assert step(lambda: ids.append(c.submit("shop", "prod").id)) == [("submitted", USER, ids[-1])]
    b, d = ids[-2:]
    assert step(lambda: bob.delete([d])) == [("cancelled", "bob", d)]
    assert step(lambda: bob.delete([d])) == []  # refused: nothing recorded
    assert step(lambda: run_worker(c)) == [("started", WORKER, b), ("succeeded", WORKER, b)]
    assert step(lambda: c.settings("shop", "prod", approval=True)) == [
        ("settings_changed", USER, None)
    ]
    assert step(lambda: ids.append(c.submit("shop", "prod").id)) == [("submitted", USER, ids[-1])]
    assert step(lambda: bob.reject(ids[-1])) == [("rejected", "bob", ids[-1])]
    assert step(lambda: ids.append(c.submit("shop", "prod").id)) == [("submitted", USER, ids[-1])]
    e = ids[-1]
    assert step(lambda: bob.approve(e)) == [("approved", "bob", e)]
    assert step(lambda: run_worker(c)) == [("started", WORKER, e), ("succeeded", WORKER, e)]
    assert step(lambda: c.submit("shop", "prod", "destroy")) == [
        ("submitted", USER, e + 1),
        ("failed", "relo", e + 1),
    ]

    assert [h[0] for h in history] == sorted({h[0] for h in history})  # ids strictly increase
    assert [h[1] for h in history] == sorted(h[1] for h in history)  # times never go back
    release_events = [h for h in history if h[6] is not None]
    assert {(h[4], h[5]) for h in release_events} == {("shop", "prod")}
    listed = bob.events("shop", "prod", limit=100)  # newest first
    assert [ev.id for ev in listed] == [h[0] for h in reversed(history) if h[5] == "prod"]
    assert [ev.id for ev in bob.events("shop", limit=3)] == [h[0] for h in history[::-1][:3]]


# -- the hot path's plain reads and writes ---------------------------------------------------
def _orm_view(client: Client) -> dict[str, Any]:
    """What admission and the runner read, through the ORM reads."""
    with client.ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment("shop", "prod")
        head = repo.waiting_rows(env.id)[:1]
        states = repo.states(env)
        return {
            "env": (env.id, env.name, env.parallel_releases, env.max_parallel_releases,
                    env.approval_required, env.launched, env.pause_at, env.pause_until),
            "project": (prow.id, prow.name, prow.pause_at, prow.pause_until),
            "running": repo.running_claims(env.id),
            "head": [(r.id, r.type, r.targets, r.queue_seq) for r in head],
            "resources": [
                (r.id, r.rtype, r.name, states[r.id].id, states[r.id].desired_spec,
                 states[r.id].applied_spec)
                for r in repo.resources(prow)
            ],
        }


def _hot_view(client: Client) -> dict[str, Any]:
    """The same, through the hot path's one-statement reads."""
    with client.ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment_view("shop", "prod")
        running, head = repo.running_claims_and_head(env.id)
        return {
            "env": (env.id, env.name, env.parallel_releases, env.max_parallel_releases,
                    env.approval_required, env.launched, env.pause_at, env.pause_until),
            "project": (prow.id, prow.name, prow.pause_at, prow.pause_until),
            "running": running,
            "head": [(r.id, r.type, r.targets, r.queue_seq) for r in head],
            "resources": [
                (r.id, r.rtype, r.name, r.state_id, r.state_desired_spec, r.state_applied_spec)
                for r in repo.resources_with_states(prow, env)
            ],
        }


def test_the_hot_path_reads_agree_with_the_orm_reads(client: Client) -> None:
    views = [(_orm_view(client), _hot_view(client))]  # nothing queued or running
    first = client.submit("shop", "prod", "selective", targets=["service/catalog"]).id
    client.submit("shop", "prod")
    client.submit("shop", "prod", "selective", targets=["database/orders"])
    client.pause("shop", reason="audit")
    views.append((_orm_view(client), _hot_view(client)))  # one dispatched, two waiting
    claim(client, first, token=3)
    views.append((_orm_view(client), _hot_view(client)))  # one running
    client.resume("shop")
    run_worker(client)  # the claimed release was never run: the rest waits behind it
    views.append((_orm_view(client), _hot_view(client)))
    with client.ctx.db.session() as s:
        assert Repository(s).fenced_update(first, 3, status="succeeded")
    evaluate(client.ctx, shared.env_id(client))
    run_worker(client)
    views.append((_orm_view(client), _hot_view(client)))  # all done: specs applied
    for orm, hot in views:
        assert hot == orm
    assert all(r[5] is not None for r in views[-1][1]["resources"])  # applied by now
    assert views[1][1]["head"][0][1] == "full" and views[2][1]["running"][0][0] == first
    with client.ctx.db.session(write=False) as s:
        row, project, env = Repository(s).release_for_claim(first)
        assert (row.id, row.type, row.status, project.name, env.name) == (
            first, "selective", "succeeded", "shop", "prod")
        with pytest.raises(NotFound, match="unknown release id"):
            Repository(s).release_for_claim(first + 100)


def test_without_update_returning_the_engine_writes_the_same(
    clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite before 3.35 has no ``UPDATE … RETURNING``: the queue counter and the fenced state
    writes then take a second statement, with the same results."""

    def scenario(c: Client, project: str) -> list[tuple[Any, ...]]:
        c.apply_blueprint_text(BLUEPRINT.replace("project: shop", f"project: {project}"))
        ids = [c.submit(project, "prod").id]
        ids.append(c.submit(project, "prod", "selective", targets=["service/catalog"]).id)
        c.set_resource(project, "prod", "service/payments", ["replicas=5"])
        ids.append(c.submit(project, "prod", "selective", targets=["service/payments"]).id)
        positions = [c.get(i).position for i in ids]
        run_worker(c)
        out: list[tuple[Any, ...]] = [(positions,)]
        out += [(r.type, r.status, r.error, len(r.steps)) for r in map(c.get, ids)]
        return out + [(s.resource, s.sync, s.health) for s in c.resources(project, "prod")]

    expected = scenario(clients(), "before")
    assert expected[0] == ([1, 2, 3],) and expected[1][1] == "succeeded"
    init = Repository.__init__

    def without_returning(self: Repository, session: Any) -> None:
        init(self, session)
        self._returning = False

    monkeypatch.setattr(Repository, "__init__", without_returning)
    c = clients()
    with c.ctx.db.session() as s:  # a stale token is still fenced out on this path
        assert Repository(s).write_state(10**6, 1, unknown=True) is None
    assert scenario(c, "after") == expected


def test_the_prepared_statements_write_and_read_what_sqlalchemy_does(
    clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the hot path's prebuilt statements run on the DBAPI cursor (storage/
    prepared.py); with that turned off (SQLAlchemy's execution, as on PostgreSQL) the same
    scenario records the same releases, steps, events and states."""
    from release_orchestrator.storage import repository
    from release_orchestrator.storage.prepared import PREPARED, Prepared

    def scenario(c: Client, project: str) -> list[Any]:
        c.apply_blueprint_text(BLUEPRINT.replace("project: shop", f"project: {project}"))
        ids = [c.submit(project, "prod").id]
        ids.append(c.submit(project, "prod", "selective", targets=["service/catalog"]).id)
        c.set_resource(project, "prod", "service/payments", ["replicas=5"])
        ids.append(c.submit(project, "prod", "selective", targets=["service/payments"]).id)
        ids.append(c.submit(project, "prod", "selective", targets=["service/payments"],
                            comment="twice").id)
        c.delete([ids[-1]])
        positions = [c.get(i).position for i in ids[:3]]
        run_worker(c)
        out: list[Any] = [positions]
        for r in map(c.get, ids):
            out.append((r.type, r.status, r.error, r.comment, r.targets,
                        [(st.seq, st.resource, st.action, st.phase, st.status, st.error)
                         for st in r.steps]))
        out.append([(e.kind, e.actor, e.message.replace(f"release {e.release_id}", "release N"))
                    for e in reversed(c.events(project, "prod", limit=100))])
        out.append([(st.resource, st.sync, st.health, st.desired_spec, st.applied_spec)
                     for st in c.resources(project, "prod")])
        return out

    c = clients()
    expected = scenario(c, "prepared")
    sqlite = c.ctx.db.is_sqlite
    hot = [repository._RUNNING_AND_HEAD, repository._RELEASE_FOR_CLAIM, repository._WRITE_STATE,
           repository._INSERT_EVENT, repository._INSERT_STEP, repository._SET_STATUS_FROM,
           repository._INSERT_RELEASE, repository._FENCED_UPDATE, repository._MARK_DISPATCHED]
    made = {**PREPARED.plans(c.ctx.db._write.dialect), **PREPARED.plans(c.ctx.db._read.dialect)}
    for statement in hot:  # every one ran prepared on SQLite (none on PostgreSQL)
        plans = [p for (sid, _), p in made.items() if sid == id(statement)]
        assert plans, statement
        assert all((p is not None) is sqlite for p in plans), statement
    monkeypatch.setattr(Prepared, "plan", lambda *a, **k: None)
    assert scenario(clients(), "plain") == expected
    assert expected[1][1] == "succeeded" and expected[4][1] == "cancelled"



def test_the_hot_path_statements_are_compiled_once_on_sqlite(clients: Clients) -> None:
    """SQLite compiles a cached statement again on every execution when a bound value decides
    whether a partial index applies (``releases.status`` against ix_releases_dispatched and
    ix_releases_waiting_claims): the dispatcher's statements compare it with literals. The
    authorizer runs only while SQLite compiles, so it counts the compilations per executed
    statement (COMMIT is compiled by Python's sqlite3 module on each commit)."""
    import sqlite3

    from sqlalchemy import event

    c = clients()
    if not c.ctx.db.is_sqlite:
        pytest.skip("a SQLite statement cache property")
    c.apply_blueprint_text(BLUEPRINT)
    compiled = [0]
    recompiled: list[str] = []
    executed: list[str] = []

    def authorizer(*_: Any) -> int:
        compiled[0] += 1
        return sqlite3.SQLITE_OK

    def traced(sql: str) -> None:
        executed.append(sql)
        if compiled[0] and armed:
            recompiled.append(sql.split("\n")[0][:120])
        compiled[0] = 0

    def watch(dbapi: Any, _record: Any) -> None:
        dbapi.set_authorizer(authorizer)
        dbapi.set_trace_callback(traced)

    for engine_ in (c.ctx.db._write, c.ctx.db._read):
        event.listen(engine_, "connect", watch)
    c.ctx.db.dispose()  # new connections from here on
    armed = False
    for _ in range(2):  # every statement into each connection's cache
        c.submit("shop", "prod", "selective", targets=["service/catalog"])
        c.submit("shop", "prod", "selective", targets=["service/catalog"])
        run_worker(c)
    armed, executed[:] = True, []
    for _ in range(3):
        c.submit("shop", "prod", "selective", targets=["service/catalog"])
        c.submit("shop", "prod", "selective", targets=["service/catalog"])
        run_worker(c)
    assert len(executed) > 50
    assert [sql for sql in recompiled if sql != "COMMIT"] == []

# -- locks read before the transaction ------------------------------------------------------
def _lock_of(release_id: int, scope: str = "environment", resource: str | None = None) -> Any:
    from release_orchestrator.policy.admission import LockInfo

    return LockInfo(scope=scope, resource=resource, owner=f"{release_id}:w", release_id=release_id)


def test_a_submit_that_read_the_lock_of_a_release_finished_since_still_starts(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`submit` reads the locks before its transaction; the release holding them can finish
    in between (it releases them before its finishing transaction commits). The new release
    must not wait for that lock: nothing else would start it before the reconciler."""
    from release_orchestrator.services import releases

    first = client.submit("shop", "prod").id
    run_worker(client)
    assert client.get(first).status == "succeeded"
    real = releases.lock_infos
    calls: list[int] = []

    def stale_first(ctx: Any, key: str, strict: bool = False) -> Any:
        calls.append(1)
        return (_lock_of(first),) if len(calls) == 1 else real(ctx, key, strict)

    monkeypatch.setattr(releases, "lock_infos", stale_first)
    second = client.submit("shop", "prod")
    assert second.held == [] and second.position == 1
    assert sent(client) == [second.id]
    assert len(calls) == 1  # the second read happened in the dispatcher (below)


def test_the_dispatcher_reads_the_locks_again_when_a_stale_one_holds_a_release(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finishing release passes the locks it read after releasing its own; another release
    may have finished and released its locks since. With parallel releases on: `a` runs on
    database/orders, `c` on service/catalog finished, `w` needs both and waits for `a` only."""
    from release_orchestrator.services import dispatch
    from release_orchestrator.services.dispatch import decide_and_mark

    client.settings("shop", "prod", parallel=True)
    a = client.submit("shop", "prod", "selective", targets=["database/orders"]).id
    c = client.submit("shop", "prod", "selective", targets=["service/catalog"]).id
    claim(client, a, token=1)
    claim(client, c, token=2)
    with client.ctx.db.session() as s:
        assert Repository(s).fenced_update(c, 2, status="succeeded")
    w = client.submit("shop", "prod", "selective",
                      targets=["database/orders", "service/catalog"]).id
    reads: list[int] = []
    monkeypatch.setattr(dispatch, "lock_infos",
                        lambda ctx, key, strict=False: reads.append(1) or (_lock_of(a, "slot"),))
    stale = (_lock_of(a, "slot"), _lock_of(c, "resource", "service/catalog"))
    with client.ctx.db.session() as s:
        repo = Repository(s)
        project, env = repo.environment_view("shop", "prod", lock=True)
        decision, started = decide_and_mark(client.ctx, repo, project, env,
                                            client.ctx.clock.now(), stale)
    assert started == [] and reads == [1]
    # held by the running release only (the stale lock of `c` would have been a second reason)
    assert [(r.code, r.release_id, r.facts["holder"]) for r in decision.held[w]] == [
        ("state_lock_held", a, "release")]
