"""The hot path's prebuilt statements, compiled once and run on the SQLite DBAPI cursor.

Profiles of the release hot path (submit, claim, finish: about 20 statements per release)
showed SQLAlchemy's per-execution work (cache-key lookup, execution context, parameter and
result bookkeeping, event dispatch) costing two to three times what sqlite3 spends running
the statement. For a statement that is built once at import time none of that work changes
between executions, so it is done once here: SQLAlchemy compiles the statement for the
dialect (per set of parameter names, as ``Connection.execute`` does for INSERT/UPDATE), and
its own type processors convert the parameters in and the column values out; only the
``cursor.execute`` is done per call, on the connection of the caller's transaction.

Only what needs nothing more from SQLAlchemy's execution context takes this path: SQLite's
positional parameter style, no Python-side column defaults to compute (``insert_prefetch``,
``update_prefetch``), no expanding (``IN``) or literal-execute parameters, no callable bound
values, and result columns known from the statement (a cursor that returns others raises).
Anything else, and every statement on
PostgreSQL (where the server round trip dwarfs the client's bookkeeping), runs through
``Connection.execute`` unchanged. DBAPI errors are raised as SQLAlchemy's exceptions
(``DBAPIError.instance``), as ``Connection.execute`` raises them.
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError, InvalidRequestError, NoResultFound

_Processor = Callable[[Any], Any] | None


class _RowBase(tuple):  # type: ignore[type-arg]
    """Rows as named tuples, with the ``_mapping`` view of SQLAlchemy's ``Row``."""

    __slots__ = ()
    _fields: tuple[str, ...]

    @property
    def _mapping(self) -> Mapping[str, Any]:
        return dict(zip(self._fields, self, strict=True))


class _Plan:
    """One statement compiled for one dialect and one set of parameter names."""

    __slots__ = (
        "binds",
        "defaults",
        "inserts",
        "names",
        "required",
        "results",
        "returns_rows",
        "row",
        "sql",
        "statement",
        "width",
    )

    def __init__(self, statement: Any, compiled: Any, dialect: Dialect) -> None:
        self.statement = statement  # keeps the id() of the cache key alive
        self.sql: str = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        binds = compiled.binds
        # values bound in the statement itself (a literal status, LIMIT 1); None for the
        # parameters every call gives
        self.defaults = {name: binds[name].value for name in set(self.names)}
        self.required = frozenset(n for n in self.names if binds[n].required)
        # (position, processor) of the parameters and result columns that have one
        self.binds = _processors(
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
        )
        self.returns_rows = _returns_rows(statement, compiled)
        self.inserts = bool(compiled.isinsert)  # the cursor's lastrowid is this row's
        columns = list(statement.exported_columns) if self.returns_rows else []
        self.width = len(columns)
        self.results = _processors(
            col.type.dialect_impl(dialect).result_processor(dialect, None) for col in columns
        )
        keys = [str(getattr(col, "key", None) or getattr(col, "name", "") or f"_{i}")
                for i, col in enumerate(columns)]
        self.row = type("Row", (_RowBase, namedtuple("_Row", keys, rename=True)), {
            "__slots__": ()})  # type: ignore[misc]

    def parameters(self, params: Mapping[str, Any]) -> list[Any]:
        """The DBAPI parameters: given values over the statement's own, each through its
        type's bind processor (``None`` too, as SQLAlchemy does: JSON turns it into ``null``)."""
        missing = self.required.difference(params)
        if missing:  # as Connection.execute says it
            raise InvalidRequestError(
                f"A value is required for bind parameter {sorted(missing)[0]!r}"
            )
        defaults = self.defaults
        values = [params[n] if n in params else defaults[n] for n in self.names]
        for i, proc in self.binds:
            values[i] = proc(values[i])
        return values

    def rows(self, fetched: list[Any]) -> list[Any]:
        """The fetched rows as named rows, each value through its type's result processor."""
        if fetched and len(fetched[0]) != self.width:
            raise RuntimeError(f"unexpected result columns for {self.sql!r}")
        cls, procs, new = self.row, self.results, tuple.__new__
        if not procs:
            return [new(cls, raw) for raw in fetched]
        out: list[Any] = []
        for raw in fetched:
            values = list(raw)
            for i, proc in procs:
                values[i] = proc(values[i])
            out.append(new(cls, values))
        return out


def _processors(procs: Iterable[_Processor]) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    return tuple((i, p) for i, p in enumerate(procs) if p is not None)


def _returns_rows(statement: Any, compiled: Any) -> bool:
    return bool(getattr(statement, "is_select", False) or compiled.effective_returning)


def _eligible(statement: Any, compiled: Any) -> bool:
    if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
        return False  # Python-side defaults: computed by the execution context
    if getattr(compiled, "literal_execute_params", None) or getattr(
        compiled, "post_compile_params", None
    ):
        return False  # expanding / literal parameters: rendered per execution
    if compiled.positiontup is None:
        return False
    if any(b.callable is not None for b in compiled.binds.values()):
        return False
    if getattr(compiled, "implicit_returning", None):
        return False  # the inserted key comes back as a row, not as the cursor's lastrowid
    # rows need the statement's columns for their types and keys
    return not _returns_rows(statement, compiled) or hasattr(statement, "exported_columns")


class Result:
    """What the hot path reads of a result: rows, ``rowcount``, the inserted key."""

    __slots__ = ("_rows", "inserted_primary_key", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.inserted_primary_key = (lastrowid,) if lastrowid is not None else None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        if len(self._rows) != 1:
            raise NoResultFound(f"expected one row, got {len(self._rows)}")
        return self._rows[0][0]


class Prepared:
    """Runs prebuilt statements on SQLite's DBAPI cursor (see the module's docstring).

    Plans are kept per dialect (each engine has its own) and by the statement's identity:
    pass only statements built once (module constants). Past ``LIMIT`` plans per dialect
    nothing new is kept and such statements run through ``Connection.execute``, so a
    statement built per call by mistake costs speed, not memory.
    """

    LIMIT = 512

    def __init__(self) -> None:
        #: Per dialect (an engine's: it lives as long as the engine), by statement and keys.
        self._plans: weakref.WeakKeyDictionary[
            Dialect, dict[tuple[int, tuple[str, ...]], _Plan | None]
        ] = weakref.WeakKeyDictionary()

    def plans(self, dialect: Dialect) -> dict[tuple[int, tuple[str, ...]], _Plan | None]:
        """The plans made for ``dialect`` so far, by (statement id, parameter names)."""
        return dict(self._plans.get(dialect, {}))

    def plan(self, statement: Any, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
        plans = self._plans.get(dialect)
        if plans is None:
            plans = self._plans.setdefault(dialect, {})
        key = (id(statement), keys)
        try:
            return plans[key]
        except KeyError:
            pass
        plan: _Plan | None = None
        if len(plans) >= self.LIMIT:
            return None
        if dialect.name == "sqlite" and dialect.positional:
            compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))
            if _eligible(statement, compiled):
                plan = _Plan(statement, compiled, dialect)
        plans[key] = plan
        return plan

    def execute(self, conn: Connection, statement: Any, params: Mapping[str, Any]) -> Any:
        """``conn.execute(statement, params)``, on the DBAPI cursor when the statement allows."""
        dialect = conn.dialect
        plan = self.plan(statement, dialect, tuple(params))
        if plan is None:
            return conn.execute(statement, dict(params))
        values = plan.parameters(params)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(plan.sql, values)
            rows = plan.rows(cursor.fetchall()) if plan.returns_rows else []
            return Result(rows, cursor.rowcount, cursor.lastrowid if plan.inserts else None)
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                plan.sql, values, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        finally:
            cursor.close()


#: One cache per process: the statements are module-level constants.
PREPARED = Prepared()
