"""Engine, transactions and schema migrations.

SQLite (the default) runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so that two writers queue on the database lock instead of failing when
a read transaction upgrades, and each thread keeps its connections between transactions.
PostgreSQL serializes per environment with ``SELECT … FOR UPDATE`` on the environment row
(see :meth:`Repository.lock_environment`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from ..errors import Unavailable
from ..settings import redact_url

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD_REVISION = "0004"


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    # no cap on connections: every thread keeps its own between transactions (_Held), and a
    # web server's thread pool has more threads than the default pool size and overflow
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False},
                           pool_size=5, max_overflow=-1)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # on the DBAPI connection: three transactions per release, and exec_driver_sql costs
        # ten times the statement; errors are raised as Connection.execute raises them
        dbapi = conn.connection.driver_connection
        try:
            dbapi.execute(begin)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(begin, (), exc, sqlite3.Error,
                                      dialect=conn.dialect) from exc

    return engine


class Transaction:
    """One database transaction, used where a SQLAlchemy ``Session`` is expected.

    The hot path (submit, claim, finish: three transactions per release) runs only Core
    statements, and an ORM ``Session`` costs more than its transaction's BEGIN and COMMIT
    together (its own transaction state machine, a connection checkout of its own). So the
    transaction is the connection's, and a ``Session`` is made only when ORM work starts
    (``add``, ``scalars``, ``get``...: any attribute not defined here), joined to it with
    ``join_transaction_mode="rollback_only"``: it flushes into the transaction and never
    commits it; :meth:`Database.session` commits (or rolls back) the connection's.
    """

    __slots__ = ("_conn", "_orm")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._orm: Session | None = None

    @property
    def orm(self) -> Session:
        """The ORM session of this transaction (made on first use)."""
        if self._orm is None:
            self._orm = Session(bind=self._conn, join_transaction_mode="rollback_only",
                                expire_on_commit=False)
        return self._orm

    def connection(self) -> Connection:
        return self._conn

    def get_bind(self) -> Connection:
        return self._conn

    def flush(self) -> None:
        if self._orm is not None:
            self._orm.flush()

    @property
    def identity_map(self) -> Any:
        return self._orm.identity_map if self._orm is not None else _NO_OBJECTS

    @property
    def new(self) -> Any:
        return self._orm.new if self._orm is not None else ()

    def close(self) -> None:
        """Detach the ORM objects (they keep their loaded values, as after a commit with
        ``expire_on_commit=False``)."""
        if self._orm is not None:
            self._orm.close()
            self._orm = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.orm, name)


class _NoObjects:
    """The identity map of a transaction that made no ORM session."""

    def get(self, _key: Any, default: Any = None) -> Any:
        return default


_NO_OBJECTS = _NoObjects()


class _Held:
    """One thread's connection to one SQLite engine, kept open between its transactions.

    A pool checkout per transaction (a new ``Connection``, checkout and checkin events, the
    reset on return) costs more than the BEGIN and COMMIT it wraps, three times per release.
    The connection goes back to its pool when the thread ends (this object is then
    collected), when :meth:`Database.dispose` moves to a new generation, or after an error
    that left it unusable.
    """

    __slots__ = ("__weakref__", "busy", "conn", "generation", "pid")

    def __init__(self, conn: Connection, generation: int) -> None:
        self.conn = conn
        self.generation = generation
        self.pid = os.getpid()
        self.busy = False
        with _HELD_LOCK:
            _ALL_HELD.add(self)

    def close(self) -> None:
        if self.pid == os.getpid():  # never a parent process's connection (after a fork)
            with contextlib.suppress(Exception):  # a broken connection: nothing to return
                self.conn.close()

    def __del__(self) -> None:
        self.close()


#: Every held connection of this process (weakly): see :func:`_keep_across_fork`.
_ALL_HELD: weakref.WeakSet[_Held] = weakref.WeakSet()
_HELD_LOCK = threading.Lock()
#: A forked child's references to its parent's held connections: never used, closed or
#: collected there (collecting one would return the parent's SQLite connection to a pool).
_INHERITED: list[_Held] = []


def _keep_across_fork() -> None:
    with _HELD_LOCK:
        _INHERITED[:] = list(_ALL_HELD)


def _after_fork_in_parent() -> None:
    _INHERITED.clear()


os.register_at_fork(before=_keep_across_fork, after_in_parent=_after_fork_in_parent)


class Database:
    """One database: a write engine, a read engine (the same on PostgreSQL), sessions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "sqlite":
            self._write = _sqlite_engine(url, immediate=True)
            self._read = _sqlite_engine(url, immediate=False)
        else:
            self._write = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
            self._read = self._write
        self._schema_ok = False
        self._schema_lock = threading.Lock()
        #: This thread's held connections (SQLite; see :class:`_Held`), by engine.
        self._local = threading.local() if self.dialect == "sqlite" else None
        self._generation = 0
        path = sqlite_path(url)
        self._lock_path = f"{path}.write.lock" if path else None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def dispose(self) -> None:
        """Drop pooled connections (after a fork); held ones go back as their threads next
        use them (this thread's at once)."""
        self._generation += 1
        if self._local is not None:
            self._drop("write")
            self._drop("read")
        self._write.dispose()
        if self._read is not self._write:
            self._read.dispose()

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error.

        What it yields is used as a session (:class:`Transaction`): Core statements run on
        its connection, and an ORM session joins the transaction when first needed.
        """
        self.ensure_schema()
        try:
            with self._writer_turn(write), self._connection(write) as conn:
                tx = Transaction(conn)
                with conn.begin():
                    try:
                        yield cast(Session, tx)
                        tx.flush()
                    finally:
                        tx.close()
        except OperationalError as exc:
            raise Unavailable(
                f"database {redact_url(self.url)} is not answering: {exc.orig}"
            ) from exc

    @contextmanager
    def _connection(self, write: bool) -> Iterator[Connection]:
        """A connection for one transaction: on SQLite this thread's held one (a transaction
        nested in another of the same thread gets its own), elsewhere a pool checkout."""
        engine = self._write if write else self._read
        slot = "write" if write else "read"
        held: _Held | None = getattr(self._local, slot, None) if self._local else None
        if self._local is None or (held is not None and held.busy):
            with engine.connect() as conn:
                yield conn
            return
        if held is None or held.generation != self._generation or held.pid != os.getpid():
            self._drop(slot)
            held = _Held(engine.connect(), self._generation)
            setattr(self._local, slot, held)
        held.busy = True
        try:
            yield held.conn
        finally:
            held.busy = False
            conn = held.conn
            if conn.invalidated or conn.closed or conn.in_transaction():
                # not reusable (lost, or a rollback that failed): the next one is new
                self._drop(slot)

    def _drop(self, slot: str) -> None:
        """Return this thread's held connection of ``slot`` ("write", "read") to its pool."""
        held = getattr(self._local, slot, None)
        if held is not None:
            setattr(self._local, slot, None)
            held.close()

    @contextmanager
    def _writer_turn(self, write: bool) -> Iterator[None]:
        """On a SQLite file, writers across processes take turns on a file lock.

        SQLite's busy handler polls with back-off, so under heavy contention (dozens of
        processes submitting into one database) a writer can lose the race for longer than any
        busy timeout and fail with "database is locked". A blocking ``flock`` queues writers
        in the kernel instead; ``BEGIN IMMEDIATE`` then never has to wait on another writer.
        """
        if not write or self._lock_path is None:
            yield
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    # -- schema ------------------------------------------------------------------------
    def current_revision(self) -> str | None:
        try:
            with self._read.connect() as conn:
                if not inspect(conn).has_table("alembic_version"):
                    return None
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except OperationalError as exc:
            raise Unavailable(
                f"database {redact_url(self.url)} is not answering: {exc.orig}"
            ) from exc

    def ensure_schema(self) -> None:
        """Bring the schema to the head revision once per process (Alembic)."""
        if self._schema_ok:
            return
        with self._schema_lock:
            if self._schema_ok:
                return
            if self.current_revision() != HEAD_REVISION:
                with self._migration_lock():
                    if self.current_revision() != HEAD_REVISION:
                        self._upgrade("head")
            self._schema_ok = True

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.is_sqlite:
            db_path = make_url(self.url).database or ""
            if not db_path or db_path == ":memory:":
                yield
                return
            with open(f"{db_path}.migrate.lock", "w") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        with self._write.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(727001)"))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(727001)"))
                conn.commit()

    def upgrade(self, revision: str = "head") -> None:
        """Run Alembic migrations up to ``revision`` (``relo db upgrade``).

        Under the migration lock, like :meth:`ensure_schema`: two migrations of one database
        at once fail ("table already exists") or deadlock, and Alembic's command API is not
        thread-safe either.
        """
        with self._migration_lock():
            self._upgrade(revision)

    def _upgrade(self, revision: str) -> None:
        """Run Alembic migrations up to ``revision``; the caller holds the migration lock."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        engine = self._write if not self.is_sqlite else _plain_engine(self.url)
        cfg.attributes["engine"] = engine
        try:
            command.upgrade(cfg, revision)
        except SQLAlchemyError as exc:
            raise Unavailable(f"migrating {redact_url(self.url)} failed: {exc}") from exc
        finally:
            if engine is not self._write:  # a throwaway engine: close its pooled connection
                engine.dispose()


def _plain_engine(url: str) -> Engine:
    """A SQLite engine without our BEGIN handling, for Alembic's DDL."""
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    return engine


def sqlite_path(url: str) -> str | None:
    """The file behind a SQLite URL, or None."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return parsed.database if parsed.database and parsed.database != ":memory:" else None


def ensure_parent_dir(url: str) -> None:
    path = sqlite_path(url)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
