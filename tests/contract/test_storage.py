"""Contract suite of the storage layer, run against SQLite (a temp file) and PostgreSQL.

Every test takes the ``database_url`` fixture, parametrized over both backends (the
PostgreSQL parameter is marked ``postgres`` and gets a fresh database per test). Clients are
built as a process would build them (``Client(Settings(...), transport=MemoryTransport(),
lock_store=MemoryLockStore(), clock=FakeClock())``) and the real engine runs in-process.

This module holds the shared fixtures and helpers (the sibling ``test_storage_*.py`` modules
import them) and the schema, round-trip and blueprint contracts.
``test_storage_releases.py``: ids, queue, compare-and-set, fencing, delete/approve, events.
``test_storage_concurrency.py``: concurrent writers and dispatchers.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError, StatementError

from release_orchestrator import Client, Settings
from release_orchestrator.domain import ReleaseStatus, SyncStatus
from release_orchestrator.errors import BlueprintError
from release_orchestrator.locks import MemoryLockStore
from release_orchestrator.services import engine
from release_orchestrator.storage import db as storage_db
from release_orchestrator.storage.db import HEAD_REVISION, Database, Transaction
from release_orchestrator.storage.repository import Repository
from release_orchestrator.storage.tables import Base, EventRow, ReleaseRow
from release_orchestrator.testing import FakeClock, MemoryTransport

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
USER = "alice"
WORKER = "worker-1"

BLUEPRINT = """
project: shop
environments:
  - name: prod
  - name: staging
    overrides:
      service/payments: {replicas: 1}
resources:
  - {type: database, name: orders, executor: simulated, spec: {size: 10}}
  - type: service
    name: payments
    executor: simulated
    spec: {image: "payments:1.0", replicas: 3}
    depends_on: [database/orders]
  - {type: service, name: catalog, executor: simulated, spec: {image: "catalog:1.0"}}
"""


# -- fixtures and helpers (imported by the sibling modules) ----------------------------------
@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend (SQLAlchemy URL, driver included)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'relo.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    return Settings(database_url=url).database_url


class Clients:
    """Builds clients on one database, as separate processes would: each has its own
    ``Database`` (engines, pools); they share the broker (transport), Redis (lock store) and
    the clock. Every engine is disposed at teardown."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.transport = MemoryTransport()
        self.locks = MemoryLockStore()
        self.clock = FakeClock()
        self.made: list[Client] = []
        self.databases: list[Database] = []

    def __call__(self, user: str = USER) -> Client:
        client = Client(
            Settings(database_url=self.url, user=user),
            transport=self.transport,
            lock_store=self.locks,
            clock=self.clock,
        )
        self.made.append(client)
        return client

    def database(self) -> Database:
        """A bare ``Database`` on the URL (no schema check done yet)."""
        db = Database(self.url)
        self.databases.append(db)
        return db

    def close(self) -> None:
        for client in self.made:
            client.ctx.db.dispose()
        for db in self.databases:
            db.dispose()


@pytest.fixture
def clients(database_url: str) -> Iterator[Clients]:
    made = Clients(database_url)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def client(clients: Clients) -> Client:
    """A client whose database has the shop blueprint applied."""
    c = clients()
    c.apply_blueprint_text(BLUEPRINT)
    return c


def run_worker(client: Client, worker: str = WORKER) -> list[tuple[int, str]]:
    """Execute every message on the transport (and those the engine sends meanwhile)."""
    transport = client.ctx.transport
    assert isinstance(transport, MemoryTransport)
    outcomes = []
    while True:
        messages = transport.take()
        if not messages:
            return outcomes
        for message in messages:
            outcomes.append(
                (
                    message.release_id,
                    engine.execute(client.ctx, message.release_id, worker, hint=message.hint),
                )
            )


def dump(client: Client) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order (for "nothing changed" checks)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with client.ctx.db.session(write=False) as s:
        for table in Base.metadata.sorted_tables:
            rows = s.execute(select(table).order_by(*table.primary_key.columns)).all()
            out[table.name] = [tuple(row) for row in rows]
        out["alembic_version"] = [
            tuple(r) for r in s.execute(text("SELECT * FROM alembic_version"))
        ]
    return out


def env_id(client: Client, project: str = "shop", environment: str = "prod") -> int:
    with client.ctx.db.session(write=False) as s:
        return Repository(s).environment(project, environment)[1].id


def release_rows(client: Client, environment: str = "prod") -> list[ReleaseRow]:
    """The environment's release rows by id (detached; read only)."""
    eid = env_id(client, environment=environment)
    with client.ctx.db.session(write=False) as s:
        return list(
            s.scalars(
                select(ReleaseRow).where(ReleaseRow.environment_id == eid).order_by(ReleaseRow.id)
            )
        )


def event_rows(client: Client) -> list[tuple[Any, ...]]:
    with client.ctx.db.session(write=False) as s:
        return [
            (e.id, e.at, e.actor, e.kind, e.project, e.environment, e.release_id, e.message, e.data)
            for e in s.scalars(select(EventRow).order_by(EventRow.id))
        ]


def claim(client: Client, release_id: int, token: int = 1, worker: str = WORKER) -> None:
    """Claim a dispatched release the way the engine does (``queued → running``)."""
    now = client.ctx.clock.now()
    with client.ctx.db.session() as s:
        assert Repository(s).set_status(
            release_id,
            ReleaseStatus.QUEUED,
            ReleaseStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            worker=worker,
            fencing_token=token,
            lock_owner=f"{release_id}:{worker}",
            queue_seq=None,
        )


def in_threads(n: int, target: Callable[[int], Any], timeout: float = 90) -> list[Any]:
    """Run ``target(i)`` in ``n`` threads started together; re-raise the first error."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread did not finish"
    if errors:
        raise errors[0]
    return results


# -- Alembic -------------------------------------------------------------------------------
def test_fresh_database_is_migrated_to_head_on_first_use(clients: Clients) -> None:
    db = clients.database()
    assert db.current_revision() is None
    with db.session(write=False) as s:  # first use of any kind migrates
        conn = s.connection()
        assert s.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            HEAD_REVISION
        )
        tables = set(inspect(conn).get_table_names())
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
        # the migrations build exactly what the ORM maps (no drift between 0001 and tables.py)
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert db.current_revision() == HEAD_REVISION


def test_upgrade_is_idempotent_and_keeps_data(
    client: Client, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.submit("shop", "prod", comment="before upgrade")
    before = dump(client)
    made: list[Engine] = []  # SQLite migrates on a throwaway engine: it must be closed

    def plain_engine(url: str) -> Engine:
        made.append(real_plain_engine(url))
        return made[-1]

    real_plain_engine = storage_db._plain_engine
    monkeypatch.setattr(storage_db, "_plain_engine", plain_engine)
    client.ctx.db.upgrade()
    client.ctx.db.upgrade("head")
    assert dump(client) == before
    assert len(made) == (2 if client.ctx.db.is_sqlite else 0)
    assert all(e.pool.checkedin() == 0 for e in made)  # no connection left open
    assert client.ctx.db.current_revision() == HEAD_REVISION

    # another process on a database at head does not migrate at all
    def no_upgrade(self: Database, revision: str = "head") -> None:
        raise AssertionError("migration run on a database already at head")

    monkeypatch.setattr(Database, "_upgrade", no_upgrade)
    other = clients()
    assert [r.comment for r in other.list("shop", "prod")] == ["before upgrade"]


_MIGRATE_SCRIPT = """
import os, sys, time
from release_orchestrator.storage.db import Database
db = Database(sys.argv[1])
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.005)
db.ensure_schema()
db.dispose()
print("migrated", flush=True)
"""


def test_concurrent_ensure_schema_on_a_fresh_database(clients: Clients, tmp_path: Path) -> None:
    """Another process, two threads and an explicit ``upgrade()`` (``relo db upgrade``)
    migrate one fresh database at the same moment: the migration lock serializes them."""
    go = tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", _MIGRATE_SCRIPT, clients.url, str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise AssertionError(proc.communicate(timeout=30)[1])
        databases = [clients.database() for _ in range(3)]
        assert [db.current_revision() for db in databases] == [None] * 3

        def migrate(i: int) -> str | None:
            if i == 0:
                go.touch()  # the other process starts too
            if i == 2:  # what `relo db upgrade` does
                databases[i].upgrade()
            else:
                databases[i].ensure_schema()
            return databases[i].current_revision()

        assert in_threads(3, migrate) == [HEAD_REVISION] * 3
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "migrated"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    with databases[0].session(write=False) as s:
        assert list(s.execute(text("SELECT version_num FROM alembic_version"))) == [
            (HEAD_REVISION,)
        ]


# -- round trips -----------------------------------------------------------------------------
MOMENTS = [
    datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=ZoneInfo("Europe/Berlin")),  # before DST
    datetime(2026, 3, 29, 3, 0, 0, 1, tzinfo=ZoneInfo("Europe/Berlin")),  # after DST
    datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin")),  # second 02:30
    datetime(2026, 1, 5, 23, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-11))),
    datetime(2026, 1, 6, 4, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
    datetime(2100, 2, 28, 0, 0, tzinfo=timezone.utc),
]


def test_utc_datetimes_round_trip_aware_and_compare_in_sql(clients: Clients) -> None:
    db = clients.database()
    with db.session() as s:
        for i, moment in enumerate(MOMENTS):
            s.add(EventRow(at=moment, actor="t", kind="k", message=str(i), data={}))
    with db.session(write=False) as s:
        rows = {int(e.message): e.at for e in s.scalars(select(EventRow))}
        for i, moment in enumerate(MOMENTS):
            # compare in UTC: PEP 495 makes == across zones false for a repeated wall time
            assert rows[i] == moment.astimezone(timezone.utc)
            assert rows[i].tzinfo is timezone.utc
        # ordering and comparisons happen in SQL on the instant, whatever the input zone
        by_sql = [int(m) for m in s.scalars(select(EventRow.message).order_by(EventRow.at))]
        assert by_sql == sorted(range(len(MOMENTS)), key=lambda i: MOMENTS[i].timestamp())
        cutoff = datetime(2026, 1, 6, 0, 0, tzinfo=ZoneInfo("Asia/Kolkata"))  # 18:30 UTC
        before = {int(m) for m in s.scalars(select(EventRow.message).where(EventRow.at < cutoff))}
        assert before == {i for i, m in enumerate(MOMENTS) if m.timestamp() < cutoff.timestamp()}
    with pytest.raises(StatementError) as err, db.session() as s:
        s.add(EventRow(at=datetime(2026, 1, 1), actor="t", kind="k", message="naive", data={}))
    assert isinstance(err.value.orig, ValueError)
    with db.session(write=False) as s:
        assert s.scalar(select(EventRow.id).where(EventRow.message == "naive")) is None


def test_a_transaction_makes_an_orm_session_only_for_orm_work(clients: Clients) -> None:
    """``Database.session`` yields a :class:`Transaction`: Core statements run on its
    connection without an ORM session; ORM work joins one to the same transaction, which
    commits (or rolls back) Core and ORM writes together."""
    db = clients.database()
    moment = MOMENTS[0]
    insert = EventRow.__table__.insert()
    with db.session() as s:
        assert isinstance(s, Transaction)
        s.connection().execute(insert, {"at": moment, "actor": "core", "kind": "k",
                                        "message": "1", "data": {}})
        assert s._orm is None and s.identity_map.get("anything") is None and not s.new
        s.add(EventRow(at=moment, actor="orm", kind="k", message="2", data={}))
        assert s._orm is not None and len(s.new) == 1
        # Core reads after ORM work see it once flushed (the repository's reads flush first)
        s.flush()
        count = s.connection().execute(text("SELECT count(*) FROM events")).scalar()
        assert count == 2
        added = s.scalars(select(EventRow).where(EventRow.actor == "orm")).one()
    assert added.message == "2" and added.at == moment  # detached, values kept
    with pytest.raises(RuntimeError, match="boom"), db.session() as s:
        s.connection().execute(insert, {"at": moment, "actor": "core", "kind": "k",
                                        "message": "3", "data": {}})
        s.add(EventRow(at=moment, actor="orm", kind="k", message="4", data={}))
        s.flush()
        raise RuntimeError("boom")
    with db.session(write=False) as s:
        assert sorted(s.scalars(select(EventRow.message))) == ["1", "2"]  # 3 and 4 rolled back
        assert s._orm is not None  # s.scalars made one
    with db.session() as s:  # ORM objects added and not flushed are flushed at commit
        s.add(EventRow(at=moment, actor="orm", kind="k", message="5", data={}))
    with db.session(write=False) as s:
        assert "5" in set(s.scalars(select(EventRow.message)))



def test_sqlite_transactions_reuse_their_threads_connection(clients: Clients) -> None:
    """On SQLite a thread keeps one connection per engine between its transactions; it goes
    back to the pool when the thread ends, after ``dispose`` and after an error that leaves
    it unusable; a transaction nested in another of the same thread gets its own; elsewhere
    every transaction checks one out of the pool."""
    db = clients.database()
    pool = db._write.pool
    connections = []
    for _ in range(3):
        with db.session() as s:
            connections.append(s.connection().connection.driver_connection)
    if not db.is_sqlite:
        assert pool.checkedout() == 0  # type: ignore[attr-defined]
        return
    assert connections[0] is connections[1] is connections[2]
    assert pool.checkedout() == 1  # type: ignore[attr-defined]
    with db.session(write=False) as outer, db.session(write=False) as inner:
        assert outer.connection() is not inner.connection()
    seen: list[Any] = []

    def in_a_thread() -> None:
        with db.session() as s:
            seen.append(s.connection().connection.driver_connection)

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    assert seen and seen[0] is not connections[0]
    gc.collect()  # the thread's state is gone: its connection was returned
    assert pool.checkedout() == 1  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError), db.session() as s:
        s.connection().execute(text("SELECT 1"))
        raise RuntimeError("rolled back, still usable")
    with pytest.raises(SQLAlchemyError), db.session() as s:  # the connection is lost
        assert s.connection().connection.driver_connection is connections[0]
        s.connection().invalidate()
    with db.session() as s:
        replaced = s.connection().connection.driver_connection
    assert replaced is not connections[0]
    db.dispose()
    with db.session() as s:
        assert s.connection().connection.driver_connection is not replaced
    # more threads than the default pool size and overflow (15), alive at once, each keeping
    # its connection (a web server's thread pool): none waits for a free one
    alive = threading.Barrier(21)
    done: list[int] = []

    def keeps_one(i: int) -> None:
        with db.session(write=False) as s:
            s.connection().execute(text("SELECT 1"))
        done.append(i)
        alive.wait(timeout=20)

    threads = [threading.Thread(target=keeps_one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    alive.wait(timeout=20)
    for t in threads:
        t.join()
    assert sorted(done) == list(range(20))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_touches_its_parents_sqlite_connection(clients: Clients) -> None:
    """A prefork worker child inherits the parent's held connection: it disposes, uses its
    own, and neither closes nor returns the parent's (which keeps working)."""
    db = clients.database()
    if not db.is_sqlite:
        pytest.skip("held connections are SQLite's")
    with db.session() as s:
        parents = s.connection().connection.driver_connection
    with warnings.catch_warnings():  # Python 3.12+ warns about forking with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: exit without pytest's teardown
        code = 1
        try:
            db.dispose()
            with db.session() as s:
                child = s.connection().connection.driver_connection
                s.connection().execute(text("SELECT count(*) FROM events")).scalar()
            code = 0 if child is not parents else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    with db.session() as s:
        assert s.connection().connection.driver_connection is parents
        assert s.connection().execute(text("SELECT 1")).scalar() == 1

NESTED = {
    "image": "payments:1.0",
    "env": {"GREETING": "grüß dich ✓ 日本語 🚀", "QUOTE": 'it\'s "quoted" \\ \n\ttab'},
    "nested": {"list": [1, 2.5, True, False, None, "x", [], {}], "deep": {"a": {"b": {"c": 0}}}},
    "big": 2**53 + 1,
    "negative": -0.125,
    "ünïcødé key": "value",
}


def test_json_specs_round_trip_nested_values_and_unicode(clients: Clients) -> None:
    c = clients()
    c.apply_blueprint_text(
        "project: shop\n"
        "environments:\n"
        "  - name: prod\n"
        "    overrides:\n"
        f"      service/payments: {json.dumps({'nested': {'deep': {'a': {'z': '✓'}}}})}\n"
        "resources:\n"
        "  - type: service\n"
        "    name: payments\n"
        "    executor: simulated\n"
        f"    spec: {json.dumps(NESTED)}\n"
    )
    expected = json.loads(json.dumps(NESTED))
    expected["nested"]["deep"]["a"]["z"] = "✓"
    other = clients()  # a second process reads what the first wrote
    [status] = other.resources("shop", "prod")
    assert status.desired_spec == expected
    assert json.dumps(status.desired_spec, sort_keys=True) == json.dumps(expected, sort_keys=True)

    status = c.set_resource(
        "shop", "prod", "payments", ["env.EMOJI=🚀", 'labels={"tier": "ünï", "n": [1, null]}']
    )
    expected["env"]["EMOJI"] = "🚀"
    expected["labels"] = {"tier": "ünï", "n": [1, None]}
    [status] = other.resources("shop", "prod")
    assert status.desired_spec == expected
    event = other.events("shop", "prod", limit=1)[0]
    assert event.kind == "resource_set" and event.data["after"] == expected

    # the applied spec the engine records round-trips too
    release = c.submit("shop", "prod")
    run_worker(c)
    assert other.get(release.id).status is ReleaseStatus.SUCCEEDED
    [status] = other.resources("shop", "prod")
    assert status.applied_spec == expected
    assert status.sync is SyncStatus.SYNCED


SUMMARY_KEYS = {
    "id", "type", "status", "position", "refresh", "force", "allow_destroy", "comment",
    "triggered_by", "targets", "created_at", "started_at", "project", "environment", "held",
}  # fmt: skip


def test_release_fields_round_trip(client: Client, clients: Clients) -> None:
    clock = clients.clock
    comment = "déploiement ✓\nsecond line: 'quotes' \"and\" backslash \\"
    release = client.submit(
        "shop",
        "prod",
        "selective",
        targets=["service/payments:apply", "orders:refresh"],
        refresh=True,
        force=True,
        allow_destroy=True,
        no_rollback=True,
        comment=comment,
        triggered_by="ci-bot ✓",
    )
    custom = client.submit(
        "shop", "prod", "custom", extra_args=["--flag", "ä b"], extra_vars={"VERSION": "1.2 ✓"}
    )
    reader = clients()
    got = reader.get(release.id)
    summary = got.summary()
    assert set(summary) == SUMMARY_KEYS
    assert summary == {
        "id": release.id,
        "type": "selective",
        "status": "queued",
        "position": 1,
        "refresh": True,
        "force": True,
        "allow_destroy": True,
        "comment": comment,
        "triggered_by": "ci-bot ✓",
        "targets": [
            {"type": "service", "name": "payments", "action": "apply"},
            {"type": "database", "name": "orders", "action": "refresh"},
        ],
        "created_at": clock.now().isoformat(),
        "started_at": None,
        "project": "shop",
        "environment": "prod",
        "held": [],
    }
    assert json.loads(json.dumps(summary)) == summary
    assert got.no_rollback is True and str(got.trigger) == "api"
    assert got.created_at == clock.now() and got.created_at.utcoffset() == timedelta(0)
    got_custom = reader.get(custom.id)
    assert got_custom.extra_args == ["--flag", "ä b"]
    assert got_custom.extra_vars == {"VERSION": "1.2 ✓"}
    assert got_custom.summary()["position"] == 2 and got_custom.summary()["targets"] == []
    assert [h.release_id for h in got_custom.held] == [release.id]

    started = clock.advance(90)
    run_worker(client)
    done = reader.get(release.id)
    assert done.status is ReleaseStatus.SUCCEEDED
    assert done.summary()["started_at"] == started.isoformat()
    assert done.summary()["position"] is None
    assert done.worker == WORKER and done.fencing_token is not None
    assert [s.seq for s in done.steps] == list(range(1, len(done.steps) + 1))
    assert (done.steps[-1].resource, str(done.steps[-1].action)) == ("service/payments", "apply")
    assert all(s.finished_at == started and str(s.status) == "succeeded" for s in done.steps)
    assert {r.id: r.summary() for r in reader.active("shop", "prod")} == {}


# -- blueprints --------------------------------------------------------------------------------
INVALID_SECOND_BLUEPRINTS = {
    "unknown executor in a later resource": BLUEPRINT.replace(
        "name: catalog, executor: simulated", "name: catalog, executor: nope"
    ),
    "dependency cycle": BLUEPRINT.replace(
        "{type: database, name: orders, executor: simulated,",
        "{type: database, name: orders, executor: simulated, depends_on: [service/payments],",
    ),
    "override of an unknown resource": BLUEPRINT.replace(
        "service/payments: {replicas: 1}", "service/nope: {replicas: 1}"
    ),
    "a YAML date in a spec (not JSON)": BLUEPRINT.replace(
        "{size: 10}", "{size: 10, since: 2024-01-01}"
    ),
    "a YAML set in a spec": BLUEPRINT.replace("{size: 10}", "{size: 10, tags: !!set {a, b}}"),
    "NaN in a spec": BLUEPRINT.replace("{size: 10}", "{size: .nan}"),
    "bad max_parallel_releases": BLUEPRINT.replace(
        "  - name: prod\n", "  - name: prod\n    settings: {max_parallel_releases: 0}\n"
    ),
}


def test_invalid_second_blueprint_changes_no_table(client: Client) -> None:
    client.set_resource("shop", "prod", "payments", ["replicas=7"])
    client.submit("shop", "prod", comment="one")
    before = dump(client)
    for name, text_ in INVALID_SECOND_BLUEPRINTS.items():
        # a new environment and a new resource first, so the file has valid parts too
        text_ = text_.replace("environments:\n", "environments:\n  - name: qa\n", 1)
        text_ += "  - {type: queue, name: jobs, executor: simulated}\n"
        with pytest.raises(BlueprintError) as err:
            client.apply_blueprint_text(text_, source="second.yaml")
        message = str(err.value)
        assert message.startswith("second.yaml:") and "\n" not in message, (name, message)
        assert dump(client) == before, name
    # what YAML can say but JSON cannot is refused by its path, before any write
    for value, path in (
        ("{since: 2024-01-01}", r"resources\[0\]\.spec\.since"),
        ("{a: {b: [1, 2024-01-01T10:00:00Z]}}", r"resources\[0\]\.spec\.a\.b\[1\]"),
        ("{a: {1: x}}", r"resources\[0\]\.spec\.a"),
        ("{a: .inf}", r"resources\[0\]\.spec\.a"),
    ):
        with pytest.raises(BlueprintError, match=rf"^bp\.yaml: {path}"):
            client.apply_blueprint_text(
                "project: blog\nresources:\n"
                f"  - {{type: service, name: a, executor: simulated, spec: {value}}}\n",
                source="bp.yaml",
            )
        assert dump(client) == before


def test_blueprint_failing_mid_transaction_writes_nothing(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after every row was flushed (here: the audit event) rolls all of it back."""
    before = dump(client)
    second = BLUEPRINT.replace("environments:\n", "environments:\n  - name: qa\n", 1)
    second = second.replace('"payments:1.0"', '"payments:2.0"')
    second += "  - {type: queue, name: jobs, executor: simulated}\n"

    def boom(self: Repository, **_: Any) -> None:
        self.s.flush()
        raise RuntimeError("disk full")

    monkeypatch.setattr(Repository, "event", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        client.apply_blueprint_text(second)
    monkeypatch.undo()
    assert dump(client) == before
    client.apply_blueprint_text(second)  # and the same file applies once the fault is gone
    assert [e.name for e in client.environments("shop")] == ["prod", "qa", "staging"]


def _desired(client: Client, environment: str) -> dict[str, dict[str, Any]]:
    return {r.resource: r.desired_spec for r in client.resources("shop", environment)}


def test_reapply_keeps_resource_set_values_unless_the_blueprint_value_changed(
    client: Client,
) -> None:
    client.set_resource("shop", "prod", "payments", ["image=payments:1.0-hotfix", "cpu=2"])
    client.set_resource("shop", "prod", "catalog", ["image=catalog:9"])
    client.set_resource("shop", "staging", "catalog", ["image=catalog:8"])
    release = client.submit("shop", "prod")
    run_worker(client)
    applied = {r.resource: r.applied_spec for r in client.resources("shop", "prod")}
    assert client.get(release.id).status is ReleaseStatus.SUCCEEDED

    client.apply_blueprint_text(BLUEPRINT)  # unchanged: every set value survives
    assert _desired(client, "prod") == {
        "database/orders": {"size": 10},
        "service/payments": {"image": "payments:1.0-hotfix", "replicas": 3, "cpu": 2},
        "service/catalog": {"image": "catalog:9"},
    }
    assert _desired(client, "staging")["service/catalog"] == {"image": "catalog:8"}

    # payments' blueprint value changed: reset to it in every environment; catalog kept
    client.apply_blueprint_text(BLUEPRINT.replace('"payments:1.0"', '"payments:1.1"'))
    prod = _desired(client, "prod")
    assert prod["service/payments"] == {"image": "payments:1.1", "replicas": 3}
    assert prod["service/catalog"] == {"image": "catalog:9"}
    assert _desired(client, "staging")["service/payments"] == {
        "image": "payments:1.1",
        "replicas": 1,
    }

    # an override is part of the blueprint's value: only the overridden environment resets
    overridden = BLUEPRINT.replace('"payments:1.0"', '"payments:1.1"').replace(
        "  - name: prod\n", "  - name: prod\n    overrides:\n      service/catalog: {cpu: 1}\n"
    )
    client.apply_blueprint_text(overridden)
    assert _desired(client, "prod")["service/catalog"] == {"image": "catalog:1.0", "cpu": 1}
    assert _desired(client, "staging")["service/catalog"] == {"image": "catalog:8"}
    # applying never touches what was applied
    assert {r.resource: r.applied_spec for r in client.resources("shop", "prod")} == applied
