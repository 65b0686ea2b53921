"""The hot path's prepared statements (storage/prepared.py) against SQLAlchemy's own execution.

Every check runs the same statement both ways on one SQLite database and compares what comes
back (rows, their keys and Python types, row counts, inserted keys) and what was stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    func,
    insert,
    literal_column,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, InvalidRequestError

from release_orchestrator.storage.prepared import Prepared
from release_orchestrator.storage.tables import UTCDateTime

META = MetaData()
ITEMS = Table(
    "items",
    META,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), unique=True, nullable=False),
    Column("status", String(20), nullable=False),
    Column("spec", JSON),
    Column("flag", Boolean, nullable=False),
    Column("at", UTCDateTime),
    Column("counter", Integer),
    Column("note", String(40), default=lambda: "made by default"),  # a Python-side default
)
T0 = datetime(2026, 12, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)

SELECT_BY_STATUS = (
    select(ITEMS.c.id, ITEMS.c.name, ITEMS.c.spec, ITEMS.c.flag, ITEMS.c.at)
    .where(ITEMS.c.status == bindparam("status"))
    .order_by(ITEMS.c.id)
)
SELECT_FIRST_OPEN = (
    select(ITEMS).where(ITEMS.c.status == "open").order_by(ITEMS.c.id).limit(1)
)  # values bound in the statement itself: 'open', LIMIT 1
UNION = union_all(
    select(ITEMS.c.id, ITEMS.c.spec, literal_column("0").label("kind")).where(
        ITEMS.c.flag.is_(True), ITEMS.c.counter >= bindparam("n")
    ),
    select(ITEMS.c.id, ITEMS.c.spec, literal_column("1").label("kind")).where(
        ITEMS.c.at > bindparam("after", type_=UTCDateTime)
    ),
)
COUNT = select(func.count()).select_from(ITEMS).where(ITEMS.c.status == bindparam("status"))
INSERT = insert(ITEMS)  # the columns come from the parameters' keys
BUMP = (
    update(ITEMS)
    .where(ITEMS.c.id == bindparam("w_id"), ITEMS.c.counter <= bindparam("w_max"))
    .values(counter=func.coalesce(ITEMS.c.counter, 0) + 1)
)
BUMP_RETURNING = BUMP.returning(ITEMS.c.counter, ITEMS.c.spec, ITEMS.c.at)
SET = update(ITEMS).where(ITEMS.c.id == bindparam("w_id"))
IN_LIST = select(ITEMS.c.id).where(ITEMS.c.id.in_(bindparam("ids", expanding=True)))


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Connection]:
    engine = create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    META.create_all(engine)
    with engine.begin() as c:
        yield c
    engine.dispose()


def _row(name: str, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": name, "status": "open", "spec": {"image": "a:1", "n": [1, 2]}, "flag": True,
        "at": T0, "counter": 0, "note": "given",
    }
    values.update(over)
    return values


def _both(prepared: Prepared, conn: Connection, statement: Any,
          params: dict[str, Any]) -> tuple[Any, Any]:
    fast = prepared.execute(conn, statement, params)
    slow = conn.execute(statement, params)
    return fast, slow


def _rows(result: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in result]


def _typed(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple((type(v), v) for v in r) for r in rows]


def test_reads_return_what_connection_execute_returns(conn: Connection) -> None:
    prepared = Prepared()
    conn.execute(INSERT, [_row("a"), _row("b", spec=None, flag=False, at=None),
                          _row("c", status="closed", counter=5, at=T0 + timedelta(days=1))])
    for statement, params in [
        (SELECT_BY_STATUS, {"status": "open"}),
        (SELECT_BY_STATUS, {"status": "nothing"}),
        (SELECT_FIRST_OPEN, {}),
        (UNION, {"n": 1, "after": T0}),
        (COUNT, {"status": "open"}),
    ]:
        fast, slow = _both(prepared, conn, statement, params)
        slow_rows = [tuple(r) for r in slow]
        fast_rows = _rows(fast)
        assert _typed(fast_rows) == _typed(slow_rows), statement
        assert prepared.plan(statement, conn.dialect, tuple(params)) is not None
    first = prepared.execute(conn, SELECT_FIRST_OPEN, {}).first()
    assert first.name == "a" and first.at == T0 and first.at.tzinfo is not None
    assert first._mapping == dict(conn.execute(SELECT_FIRST_OPEN).first()._mapping)
    assert prepared.execute(conn, COUNT, {"status": "open"}).scalar_one() == 2
    union = prepared.execute(conn, UNION, {"n": 1, "after": T0}).all()
    assert [(r.id, r.kind) for r in union] == [(3, 0), (3, 1)]  # c: counter 5, the latest
    assert prepared.execute(conn, SELECT_BY_STATUS, {"status": "x"}).first() is None


def test_writes_store_what_connection_execute_stores(conn: Connection) -> None:
    prepared = Prepared()
    fast = prepared.execute(conn, INSERT, _row("fast", spec=None))
    slow = conn.execute(INSERT, _row("slow", spec=None))
    assert fast.inserted_primary_key == (1,) and tuple(slow.inserted_primary_key) == (2,)
    assert fast.rowcount == slow.rowcount == 1
    stored = conn.execute(text("SELECT name, status, spec, flag, at, counter, note FROM items"
                               " ORDER BY id")).all()
    assert stored[0][1:] == stored[1][1:]  # JSON None stored as JSON null, the time as text
    assert stored[0][2] == "null" and stored[0][4] == "2026-12-01 12:30:15.123456"
    fast, slow = (prepared.execute(conn, BUMP_RETURNING, {"w_id": 1, "w_max": 10}),
                  conn.execute(BUMP_RETURNING, {"w_id": 2, "w_max": 10}))
    assert _typed(_rows(fast)) == _typed([tuple(r) for r in slow])
    assert prepared.execute(conn, BUMP, {"w_id": 1, "w_max": 0}).rowcount == 0  # fenced out
    assert prepared.execute(conn, BUMP, {"w_id": 1, "w_max": 0}).inserted_primary_key is None
    assert prepared.execute(conn, BUMP, {"w_id": 1, "w_max": 1}).rowcount == 1
    assert conn.execute(BUMP, {"w_id": 2, "w_max": 1}).rowcount == 1
    # the SET clause follows the parameters' keys, one plan per set of keys
    prepared.execute(conn, SET, {"w_id": 1, "status": "done", "at": None})
    prepared.execute(conn, SET, {"w_id": 1, "spec": {"x": 1}})
    conn.execute(SET, {"w_id": 2, "status": "done", "at": None})
    conn.execute(SET, {"w_id": 2, "spec": {"x": 1}})
    stored = conn.execute(text("SELECT status, spec, flag, at, counter FROM items ORDER BY id"))
    first, second = stored.all()
    assert first == second == ("done", '{"x": 1}', 1, None, 2)


def test_what_needs_an_execution_context_runs_through_sqlalchemy(conn: Connection) -> None:
    prepared = Prepared()
    dialect = conn.dialect
    # a Python-side column default (note) left to compute: SQLAlchemy's execution context
    no_note = {k: v for k, v in _row("d").items() if k != "note"}
    assert prepared.plan(INSERT, dialect, tuple(no_note)) is None
    prepared.execute(conn, INSERT, no_note)
    assert conn.execute(select(ITEMS.c.note)).scalar() == "made by default"
    # expanding IN lists are rendered per execution
    assert prepared.plan(IN_LIST, dialect, ("ids",)) is None
    assert prepared.execute(conn, IN_LIST, {"ids": [1, 5]}).all() == [(1,)]
    # PostgreSQL: always SQLAlchemy's execution
    assert prepared.plan(SELECT_BY_STATUS, postgresql.dialect(), ("status",)) is None


def test_errors_are_sqlalchemys(conn: Connection) -> None:
    prepared = Prepared()
    prepared.execute(conn, INSERT, _row("a"))
    with pytest.raises(IntegrityError, match=r"UNIQUE constraint failed: items\.name"):
        prepared.execute(conn, INSERT, _row("a"))
    with pytest.raises(InvalidRequestError, match="A value is required for bind parameter"):
        prepared.execute(conn, SELECT_BY_STATUS, {})


def test_plans_are_bounded(conn: Connection) -> None:
    prepared = Prepared()
    prepared.LIMIT = 2
    prepared.execute(conn, COUNT, {"status": "open"})
    prepared.execute(conn, SELECT_BY_STATUS, {"status": "open"})
    built_per_call = select(ITEMS.c.id).where(ITEMS.c.status == bindparam("status"))
    assert prepared.plan(built_per_call, conn.dialect, ("status",)) is None  # not kept
    assert prepared.execute(conn, built_per_call, {"status": "open"}).all() == []
    assert len(prepared.plans(conn.dialect)) == 2


@given(moment=st.datetimes(timezones=st.timezones(),
                           min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
@settings(max_examples=300, deadline=None)
def test_utc_datetimes_on_sqlite_are_the_text_sqlalchemy_writes_and_reads(
    moment: datetime,
) -> None:
    """UTCDateTime's own SQLite processors (isoformat/fromisoformat) store the text
    SQLAlchemy's SQLite DATETIME stores, and read it (and SQLAlchemy's other forms) back to
    the same instant, aware in UTC."""
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.dialects.sqlite import DATETIME

    from release_orchestrator.storage.tables import UTCDateTime

    dialect = sqlite.dialect()
    write = UTCDateTime().bind_processor(dialect)
    read = UTCDateTime().result_processor(dialect, None)
    theirs = DATETIME().bind_processor(dialect)
    utc = moment.astimezone(timezone.utc)
    stored = write(moment)
    assert stored == theirs(utc.replace(tzinfo=None))
    assert read(stored) == utc and read(stored).tzinfo is timezone.utc
    assert read(stored[:19]) == utc.replace(microsecond=0)  # no fraction (CURRENT_TIMESTAMP)
    assert read(None) is None and write(None) is None
    with pytest.raises(ValueError, match="naive"):
        write(moment.replace(tzinfo=None))
