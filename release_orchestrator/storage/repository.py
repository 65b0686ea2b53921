"""The repository: every query relo makes, inside one session/transaction.

Services open a transaction with :meth:`Database.session` and wrap it in a
:class:`Repository`; nothing outside ``storage/`` sees a row class.
Contract: methods never commit; the caller's transaction is the unit of atomicity.
``lock_environment`` serializes admission decisions per environment (``FOR UPDATE`` on
PostgreSQL; SQLite write transactions are already serialized by ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Table,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from ..domain import (
    Environment,
    Event,
    Release,
    ReleaseStatus,
    ResourceStatus,
)
from ..domain.names import resource_key
from ..errors import InvalidRequest, NotFound, not_found
from . import convert
from .prepared import PREPARED
from .records import (
    EnvironmentRecord,
    EnvironmentView,
    InsertedRelease,
    Named,
    NamedRecord,
    ProjectView,
    ReleaseRecord,
    ResourceRecord,
    StateRecord,
    WaitingRecord,
)
from .tables import (
    DISPATCHED_SQL,
    WAITING_SQL,
    EnvironmentRow,
    EventRow,
    ProjectRow,
    ReleaseRow,
    ResourceRow,
    ResourceStateRow,
    StepRow,
    WindowRow,
    claim_key,
)

ACTIVE = (ReleaseStatus.PENDING_APPROVAL, ReleaseStatus.QUEUED, ReleaseStatus.RUNNING)


def _is(status: ReleaseStatus) -> Any:
    """A release status in a statement as a literal, not a bound parameter.

    The partial indexes on ``releases`` (ix_releases_waiting_claims, ix_releases_dispatched)
    are conditional on the status: when a bound value decides whether one applies, SQLite
    marks the statement to be compiled again whenever that parameter is bound, that is on
    every execution (a compound statement of the dispatcher cost more to compile than to
    run). A literal is part of the cached statement's text.
    """
    return literal_column(f"'{ReleaseStatus(status).value}'")

# Statements of the dispatch hot path, built once (building a select costs as much as running
# it on SQLite).
_HAS_WINDOWS = (
    select(WindowRow.id)
    .where(WindowRow.environment_id == EnvironmentRow.id)
    .correlate(EnvironmentRow)
    .exists()
)
_ENV_BY_NAMES = (
    select(ProjectRow, EnvironmentRow, _HAS_WINDOWS)
    .join(EnvironmentRow, EnvironmentRow.project_id == ProjectRow.id)
    .where(ProjectRow.name == bindparam("project"), EnvironmentRow.name == bindparam("name"))
)
_ENV_BY_ID = (
    select(ProjectRow, EnvironmentRow, _HAS_WINDOWS)
    .join(EnvironmentRow, EnvironmentRow.project_id == ProjectRow.id)
    .where(EnvironmentRow.id == bindparam("env_id"))
)
_EVENTS = cast(Table, EventRow.__table__)
_STEPS = cast(Table, StepRow.__table__)
_RELEASES = cast(Table, ReleaseRow.__table__)
_INSERT_EVENT = insert(_EVENTS)
_ENVIRONMENTS = cast(Table, EnvironmentRow.__table__)
_STATES = cast(Table, ResourceStateRow.__table__)
# plain UPDATEs of the hot path: the unit of work costs several times the statement
_NEXT_QUEUE_SEQ_PLAIN = (
    update(_ENVIRONMENTS)
    .where(_ENVIRONMENTS.c.id == bindparam("env_id"))
    .values(queue_counter=func.coalesce(_ENVIRONMENTS.c.queue_counter, 0) + 1)
)
_NEXT_QUEUE_SEQ = _NEXT_QUEUE_SEQ_PLAIN.returning(_ENVIRONMENTS.c.queue_counter)
_QUEUE_COUNTER = select(_ENVIRONMENTS.c.queue_counter).where(
    _ENVIRONMENTS.c.id == bindparam("env_id")
)
_MARK_DISPATCHED = (
    update(_RELEASES)
    .where(_RELEASES.c.id == bindparam("release_id"))
    .values(
        dispatched_at=bindparam("at", type_=_RELEASES.c.dispatched_at.type),
        dispatch_count=func.coalesce(_RELEASES.c.dispatch_count, 0) + 1,
    )
)
_INSERT_RELEASE = insert(_RELEASES)
_STATE_WRITTEN = (
    _STATES.c.desired_spec,
    _STATES.c.applied_spec,
    _STATES.c.ever_applied,
    _STATES.c.unknown,
    _STATES.c.degraded,
)
_WRITE_STATE_PLAIN = update(_STATES).where(
    _STATES.c.id == bindparam("w_id"), _STATES.c.fence <= bindparam("w_token")
)
_WRITE_STATE = _WRITE_STATE_PLAIN.returning(*_STATE_WRITTEN)
_STATE_AFTER_WRITE = select(*_STATE_WRITTEN).where(_STATES.c.id == bindparam("w_id"))
_INSERT_STEP = insert(_STEPS)
# the SET clause of these comes from the parameters' keys (each combination compiled once);
# the WHERE parameters are named w_* so that they never collide with a column
_UPDATE_STEP = update(_STEPS).where(_STEPS.c.id == bindparam("w_id"))
_SET_STATUS = update(_RELEASES).where(
    _RELEASES.c.id == bindparam("w_id"),
    _RELEASES.c.status.in_(bindparam("w_olds", expanding=True)),
)
# the same from one status (the claim): no expanding parameter, so a prepared statement
_SET_STATUS_FROM = update(_RELEASES).where(
    _RELEASES.c.id == bindparam("w_id"), _RELEASES.c.status == bindparam("w_old")
)
_FENCED_UPDATE = update(_RELEASES).where(
    _RELEASES.c.id == bindparam("w_id"),
    _RELEASES.c.status == _is(ReleaseStatus.RUNNING),
    _RELEASES.c.fencing_token == bindparam("w_token"),
)
_FENCE_CHECK = (
    select(_RELEASES.c.id)
    .where(
        _RELEASES.c.id == bindparam("w_id"),
        _RELEASES.c.status == _is(ReleaseStatus.RUNNING),
        _RELEASES.c.fencing_token == bindparam("w_token"),
    )
    .with_for_update(read=True)
)
#: At most this many distinct claims are walked; a queue with more is read page by page.
HEADS_LIMIT = 500
# A waiting release without a claim key sorts first in the claim index when there is one:
# NULL is the smallest value on SQLite and the first value of a descending scan on PostgreSQL.
_NULL_FIRST_CLAIM = {
    "sqlite": text(
        f"SELECT claim_key, queue_seq FROM releases WHERE environment_id = :env_id"
        f" AND {WAITING_SQL} ORDER BY claim_key LIMIT 1"
    ),
    "postgresql": text(
        f"SELECT claim_key, queue_seq FROM releases WHERE environment_id = :env_id"
        f" AND {WAITING_SQL} ORDER BY claim_key DESC LIMIT 1"
    ),
}
# A recursive walk over the distinct claim keys of the waiting releases (an index seek per
# step, on SQLite and PostgreSQL alike), then the first queue position of each.
_WAITING_R = "r." + WAITING_SQL.replace(" AND ", " AND r.")
_HEAD_IDS = text(
    f"""
    WITH RECURSIVE heads(claim_key, n) AS (
        SELECT (SELECT r.claim_key FROM releases r
                 WHERE r.environment_id = :env_id AND {_WAITING_R}
                   AND r.claim_key IS NOT NULL
                 ORDER BY r.claim_key LIMIT 1), 1
        UNION ALL
        SELECT (SELECT r.claim_key FROM releases r
                 WHERE r.environment_id = :env_id AND {_WAITING_R}
                   AND r.claim_key > h.claim_key
                 ORDER BY r.claim_key LIMIT 1), h.n + 1
          FROM heads h
         WHERE h.claim_key IS NOT NULL AND h.n < :limit
    )
    SELECT (SELECT r.id FROM releases r
             WHERE r.environment_id = :env_id AND {_WAITING_R} AND r.claim_key = h.claim_key
             ORDER BY r.queue_seq LIMIT 1)
      FROM heads h
     WHERE h.claim_key IS NOT NULL
    """
)
_HAS_WAITING = (
    select(ReleaseRow.id)
    .where(
        ReleaseRow.environment_id == bindparam("env_id"),
        ReleaseRow.status == _is(ReleaseStatus.QUEUED),
        ReleaseRow.dispatched_at.is_(None),
    )
    .limit(1)
)
_RUNNING = select(ReleaseRow).where(
    ReleaseRow.environment_id == bindparam("env_id"),
    ReleaseRow.status == _is(ReleaseStatus.RUNNING),
)
# the condition is literal so that the partial index ix_releases_dispatched applies
_DISPATCHED = select(ReleaseRow).where(
    ReleaseRow.environment_id == bindparam("env_id"), text(DISPATCHED_SQL)
)
# one statement, so one snapshot: under PostgreSQL's READ COMMITTED two separate queries could
# both miss a release that a worker claims (dispatched -> running) between them
# (no ORDER BY: it makes SQLite walk the queued releases of every environment in id order)
_RUNNING_OR_DISPATCHED = select(ReleaseRow).from_statement(union_all(_RUNNING, _DISPATCHED))
# the same, only what a claim needs (the dispatcher's hot path: no ORM rows to build)
_CLAIM_COLUMNS = (ReleaseRow.id, ReleaseRow.type, ReleaseRow.targets)
_RUNNING_OR_DISPATCHED_CLAIMS = union_all(
    select(*_CLAIM_COLUMNS).where(
        ReleaseRow.environment_id == bindparam("env_id"),
        ReleaseRow.status == _is(ReleaseStatus.RUNNING),
    ),
    select(*_CLAIM_COLUMNS).where(
        ReleaseRow.environment_id == bindparam("env_id"), text(DISPATCHED_SQL)
    ),
)
# an environment with its project as plain columns (records.ProjectView, EnvironmentView)
_PROJECTS = cast(Table, ProjectRow.__table__)
_WINDOWS = cast(Table, WindowRow.__table__)
_PAUSE = ("pause_by", "pause_at", "pause_reason", "pause_until")
_ENV_VIEW = select(
    _PROJECTS.c.id,
    _PROJECTS.c.name,
    *(_PROJECTS.c[c] for c in _PAUSE),
    _ENVIRONMENTS.c.id,
    _ENVIRONMENTS.c.project_id,
    _ENVIRONMENTS.c.name,
    _ENVIRONMENTS.c.parallel_releases,
    _ENVIRONMENTS.c.max_parallel_releases,
    _ENVIRONMENTS.c.approval_required,
    _ENVIRONMENTS.c.launched,
    *(_ENVIRONMENTS.c[c] for c in _PAUSE),
    select(_WINDOWS.c.id).where(_WINDOWS.c.environment_id == _ENVIRONMENTS.c.id).exists(),
).select_from(_ENVIRONMENTS.join(_PROJECTS, _PROJECTS.c.id == _ENVIRONMENTS.c.project_id))
_ENV_VIEW_BY_NAMES = _ENV_VIEW.where(
    _PROJECTS.c.name == bindparam("project"), _ENVIRONMENTS.c.name == bindparam("name")
)
_ENV_VIEW_BY_ID = _ENV_VIEW.where(_ENVIRONMENTS.c.id == bindparam("env_id"))
_ENV_VIEWS = {
    (by, lock): (stmt.with_for_update(of=_ENVIRONMENTS) if lock else stmt)
    for by, stmt in (("names", _ENV_VIEW_BY_NAMES), ("id", _ENV_VIEW_BY_ID))
    for lock in (False, True)
}
_RELEASE_FOR_CLAIM = (
    select(
        _RELEASES,
        _PROJECTS.c.id.label("w_project_id"),
        _PROJECTS.c.name.label("w_project"),
        _ENVIRONMENTS.c.name.label("w_environment"),
    )
    .select_from(
        _RELEASES.join(_ENVIRONMENTS, _ENVIRONMENTS.c.id == _RELEASES.c.environment_id).join(
            _PROJECTS, _PROJECTS.c.id == _ENVIRONMENTS.c.project_id
        )
    )
    .where(_RELEASES.c.id == bindparam("release_id"))
)
_SET_LAUNCHED = (
    update(_ENVIRONMENTS).where(_ENVIRONMENTS.c.id == bindparam("env_id")).values(launched=True)
)
# what the dispatcher reads of a waiting release (records.WaitingRecord), as plain rows
_WAITING_COLUMNS = (
    _RELEASES.c.id,
    _RELEASES.c.environment_id,
    _RELEASES.c.type,
    _RELEASES.c.targets,
    _RELEASES.c.queue_seq,
    _RELEASES.c.dispatched_at,
    _RELEASES.c.dispatch_count,
)
_WAITING = (
    select(*_WAITING_COLUMNS)
    .where(
        _RELEASES.c.environment_id == bindparam("env_id"),
        _RELEASES.c.status == _is(ReleaseStatus.QUEUED),
        _RELEASES.c.dispatched_at.is_(None),
    )
    .order_by(_RELEASES.c.queue_seq)
)
_WAITING_HEAD = _WAITING.limit(1)
# running and dispatched releases plus the head of the queue, in one statement (so one
# snapshot, like _RUNNING_OR_DISPATCHED_CLAIMS): ``head`` tells the two apart
_HEAD = _WAITING_HEAD.subquery()
_RUNNING_AND_HEAD = union_all(
    select(*_WAITING_COLUMNS, literal_column("0").label("head")).where(
        _RELEASES.c.environment_id == bindparam("env_id"),
        _RELEASES.c.status == _is(ReleaseStatus.RUNNING),
    ),
    select(*_WAITING_COLUMNS, literal_column("0").label("head")).where(
        _RELEASES.c.environment_id == bindparam("env_id"), text(DISPATCHED_SQL)
    ),
    select(*_HEAD.c, literal_column("1").label("head")),
)
_WAITING_BY_IDS = select(*_WAITING_COLUMNS).where(
    _RELEASES.c.id.in_(bindparam("ids", expanding=True))
)
_RESOURCES_T = cast(Table, ResourceRow.__table__)
# a project's resources (not removed), in declaration order
_PROJECT_RESOURCES = (
    _RESOURCES_T.c.project_id == bindparam("project_id"),
    _RESOURCES_T.c.removed.is_(False),
)
_RESOURCE_ORDER = (_RESOURCES_T.c.ordinal, _RESOURCES_T.c.id)
_RESOURCES = select(_RESOURCES_T).where(*_PROJECT_RESOURCES).order_by(*_RESOURCE_ORDER)
# a project's resources with their state in one environment (None columns: no state yet)
_RESOURCES_WITH_STATES = (
    select(
        _RESOURCES_T,
        _STATES.c.id.label("state_id"),
        _STATES.c.desired_spec.label("state_desired_spec"),
        _STATES.c.applied_spec.label("state_applied_spec"),
        _STATES.c.ever_applied.label("state_ever_applied"),
        _STATES.c.unknown.label("state_unknown"),
    )
    .select_from(
        _RESOURCES_T.outerjoin(
            _STATES,
            (_STATES.c.resource_id == _RESOURCES_T.c.id)
            & (_STATES.c.environment_id == bindparam("env_id")),
        )
    )
    .where(*_PROJECT_RESOURCES)
    .order_by(*_RESOURCE_ORDER)
)
_STATES_OF_ENV = select(_STATES).where(_STATES.c.environment_id == bindparam("env_id"))
_QUEUE_AHEAD = (
    select(func.count())
    .select_from(_RELEASES)
    .where(
        _RELEASES.c.environment_id == bindparam("env_id"),
        _RELEASES.c.status == _is(ReleaseStatus.QUEUED),
        _RELEASES.c.queue_seq < bindparam("seq"),
    )
)


class Repository:
    """Queries over one open session."""

    def __init__(self, session: Session) -> None:
        self.s = session
        #: Environments this transaction found without windows (see :meth:`may_have_windows`).
        self._windowless: set[int] = set()
        self._returning = bool(session.get_bind().dialect.update_returning)
        self._connection: Connection | None = None

    @property
    def _c(self) -> Connection:
        """The transaction's connection: plain (table-level) statements run on it directly,
        without the session's per-statement work (ORM plugin lookup, bind resolution)."""
        if self._connection is None:
            self._connection = self.s.connection()
        return self._connection

    def _x(self, statement: Any, params: dict[str, Any]) -> Any:
        """Run a prebuilt (module-level) table-level statement on the transaction's
        connection; on SQLite on the DBAPI cursor (:mod:`.prepared`)."""
        return PREPARED.execute(self._c, statement, params)

    def _seen(self, found: Any) -> tuple[ProjectRow, EnvironmentRow]:
        if not found[2]:
            self._windowless.add(found[1].id)
        return found[0], found[1]

    def may_have_windows(self, env_id: int) -> bool:
        """False when this transaction read the environment and it had no windows (one
        query less per admission decision for the common window-less environment)."""
        if env_id not in self._windowless:
            return True
        return any(isinstance(obj, WindowRow) for obj in self.s.new)

    # -- projects and environments -----------------------------------------------------
    def project(self, name: str) -> ProjectRow:
        row = self.s.scalar(select(ProjectRow).where(ProjectRow.name == name))
        if row is None:
            raise not_found("project", name, self.project_names())
        return row

    def project_names(self) -> list[str]:
        return list(self.s.scalars(select(ProjectRow.name).order_by(ProjectRow.name)))

    def environment(
        self, project: str, name: str, *, lock: bool = False
    ) -> tuple[ProjectRow, EnvironmentRow]:
        """The environment ``project/name``; ``lock`` takes its row lock for this transaction."""
        # one round trip on the hot path (submit); the slow path below names what exists
        joined = _ENV_BY_NAMES.with_for_update(of=EnvironmentRow) if lock else _ENV_BY_NAMES
        found = self.s.execute(joined, {"project": project, "name": name}).first()
        if found is not None:
            return self._seen(found)
        prow = self.project(project)
        query = select(EnvironmentRow).where(
            EnvironmentRow.project_id == prow.id, EnvironmentRow.name == name
        )
        if lock:
            query = query.with_for_update()
        env = self.s.scalar(query)
        if env is None:
            names = list(
                self.s.scalars(
                    select(EnvironmentRow.name).where(EnvironmentRow.project_id == prow.id)
                )
            )
            raise not_found("environment", name, names, where=f"project '{project}'")
        return prow, env

    def environment_by_id(
        self, env_id: int, *, lock: bool = False
    ) -> tuple[ProjectRow, EnvironmentRow]:
        query = _ENV_BY_ID.with_for_update(of=EnvironmentRow) if lock else _ENV_BY_ID
        found = self.s.execute(query, {"env_id": env_id}).first()
        if found is None:
            raise NotFound(f"unknown environment id {env_id}")
        return self._seen(found)

    def environment_view(
        self, project: str, name: str, *, lock: bool = False
    ) -> tuple[ProjectView, EnvironmentView]:
        """:meth:`environment` as read-only plain values (the hot path: no ORM objects)."""
        found = self._read(_ENV_VIEWS["names", lock], {"project": project, "name": name}).first()
        if found is None:
            self.environment(project, name)  # raises NotFound naming what exists
        return self._view(found)

    def environment_view_by_id(
        self, env_id: int, *, lock: bool = False
    ) -> tuple[ProjectView, EnvironmentView]:
        """:meth:`environment_by_id` as read-only plain values."""
        found = self._read(_ENV_VIEWS["id", lock], {"env_id": env_id}).first()
        if found is None:
            raise NotFound(f"unknown environment id {env_id}")
        return self._view(found)

    def _view(self, row: Any) -> tuple[ProjectView, EnvironmentView]:
        project, env = ProjectView(*row[0:6]), EnvironmentView(*row[6:17])
        if not row[17]:
            self._windowless.add(env.id)
        return project, env

    def clear_pause(self, scope: str, row_id: int, until: datetime) -> bool:
        """End a pause that expired at ``until`` (``scope``: project or environment); False
        when it was already ended or changed."""
        table = _PROJECTS if scope == "project" else _ENVIRONMENTS
        self.s.flush()
        result = self._c.execute(
            update(table)
            .where(table.c.id == row_id, table.c.pause_until == until)
            .values(pause_by=None, pause_at=None, pause_reason=None, pause_until=None)
        )
        if getattr(result, "rowcount", 0) != 1:
            return False
        orm = ProjectRow if scope == "project" else EnvironmentRow
        loaded = self.s.identity_map.get(identity_key(orm, row_id))
        if loaded is not None:
            for column in _PAUSE:
                set_committed_value(loaded, column, None)
        return True

    def set_launched(self, env_id: int) -> None:
        self._x(_SET_LAUNCHED, {"env_id": env_id})

    def environments(self, project: str | None = None) -> list[tuple[ProjectRow, EnvironmentRow]]:
        query = (
            select(ProjectRow, EnvironmentRow)
            .join(EnvironmentRow, EnvironmentRow.project_id == ProjectRow.id)
            .order_by(ProjectRow.name, EnvironmentRow.name)
        )
        if project is not None:
            query = query.where(ProjectRow.id == self.project(project).id)
        return [(p, e) for p, e in self.s.execute(query)]

    def environments_signature(self) -> tuple[Any, ...]:
        """(count, highest id, latest creation) of the environments: changes whenever one is
        created or deleted (a deleted id reused by SQLite comes with a newer creation time)."""
        row = self.s.execute(
            select(
                func.count(EnvironmentRow.id),
                func.max(EnvironmentRow.id),
                func.max(EnvironmentRow.created_at),
            )
        ).one()
        return tuple(row)

    def environment_model(self, project: str, name: str) -> Environment:
        prow, env = self.environment(project, name)
        return convert.environment_of(prow, env)

    # -- resources ---------------------------------------------------------------------
    def _read(self, statement: Any, params: dict[str, Any], *, prebuilt: bool = True) -> Any:
        """Run a plain (table-level) SELECT, flushing pending ORM changes first as an ORM
        query would (plain statements do not autoflush). ``prebuilt``: a module-level
        statement (:meth:`_x`); False for one built per call."""
        self.s.flush()
        if not prebuilt:
            return self._c.execute(statement, params)
        return self._x(statement, params)

    def resources(self, project: NamedRecord) -> list[ResourceRecord]:
        """The project's resource definitions in order (plain rows: read-only)."""
        return list(self._read(_RESOURCES, {"project_id": project.id}))

    def resolve_resource(
        self, project: NamedRecord, ref: str, rows: Sequence[ResourceRecord] | None = None
    ) -> ResourceRecord:
        """``TYPE/NAME``, or a bare ``NAME`` when unique in the project (SPEC §1).

        ``rows``: the project's :meth:`resources`, when the caller already has them.
        """
        rows = self.resources(project) if rows is None else rows
        if "/" in ref:
            rtype, _, name = ref.partition("/")
            found = [r for r in rows if r.rtype == rtype and r.name == name]
        else:
            found = [r for r in rows if r.name == ref]
            if len(found) > 1:
                keys = ", ".join(resource_key(r.rtype, r.name) for r in found)
                raise InvalidRequest(
                    f"'{ref}' is ambiguous in project '{project.name}': use one of {keys}"
                )
        if not found:
            raise not_found(
                "resource",
                ref,
                [resource_key(r.rtype, r.name) for r in rows],
                where=f"project '{project.name}'",
            )
        return found[0]

    def resources_with_states(self, project: NamedRecord, env: NamedRecord) -> list[Any]:
        """The project's resources in order, each with its state in ``env`` as ``state_*``
        columns (``state_id`` None: the resource has no state there yet), in one query."""
        return list(
            self._read(_RESOURCES_WITH_STATES, {"project_id": project.id, "env_id": env.id})
        )

    def states(self, env: NamedRecord) -> dict[int, StateRecord]:
        """The environment's resource states by resource id (plain rows: read-only)."""
        return {r.resource_id: r for r in self._read(_STATES_OF_ENV, {"env_id": env.id})}

    def state(self, env: NamedRecord, resource: ResourceRecord) -> ResourceStateRow:
        row = self.s.scalar(
            select(ResourceStateRow).where(
                ResourceStateRow.environment_id == env.id,
                ResourceStateRow.resource_id == resource.id,
            )
        )
        if row is None:  # resource added to the project after the environment: start empty
            row = ResourceStateRow(
                environment_id=env.id,
                resource_id=resource.id,
                base_spec=dict(resource.spec),
                desired_spec=dict(resource.spec),
                applied_spec=None,
                ever_applied=False,
                unknown=False,
                degraded=False,
                fence=0,
            )
            self.s.add(row)
            self.s.flush()
        return row

    def progressing(self, env: EnvironmentRow) -> set[str] | None:
        """Resources targeted by running releases; ``None`` means every resource."""
        out: set[str] = set()
        for rtype, targets in self.s.execute(
            select(ReleaseRow.type, ReleaseRow.targets).where(
                ReleaseRow.environment_id == env.id,
                ReleaseRow.status == ReleaseStatus.RUNNING,
            )
        ):
            if rtype != "selective":
                return None
            out.update(t["resource"] for t in targets)
        return out

    def resource_statuses(self, project: ProjectRow, env: EnvironmentRow) -> list[ResourceStatus]:
        states = self.states(env)
        busy = self.progressing(env)
        out = []
        for res in self.resources(project):
            state: StateRecord = states.get(res.id) or self.state(env, res)
            key = resource_key(res.rtype, res.name)
            out.append(convert.resource_status_of(res, state, busy is None or key in busy))
        return out

    # -- releases ----------------------------------------------------------------------
    def add_release(self, row: ReleaseRow) -> ReleaseRow:
        self.s.add(row)
        self.s.flush()
        return row

    def insert_release(self, **values: Any) -> int:
        """Insert one release row without the unit of work; returns its id."""
        if "claim_key" not in values:  # the column's default, computed here (one prepared
            # statement: no Python-side default left for an execution context to compute)
            values["claim_key"] = claim_key(values["type"], values.get("targets"))
        result = cast(CursorResult[Any], self._x(_INSERT_RELEASE, values))
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def next_queue_seq(self, env: EnvironmentRecord) -> int:
        """The next FIFO sequence number of ``env`` (call with the environment locked)."""
        if self._returning:
            seq = int(self._x(_NEXT_QUEUE_SEQ, {"env_id": env.id}).scalar_one())
        else:  # SQLite before 3.35
            self._x(_NEXT_QUEUE_SEQ_PLAIN, {"env_id": env.id})
            seq = int(self._x(_QUEUE_COUNTER, {"env_id": env.id}).scalar_one())
        loaded = self.s.identity_map.get(identity_key(EnvironmentRow, env.id))
        if loaded is not None:
            set_committed_value(loaded, "queue_counter", seq)
        return seq

    def mark_dispatched(self, row: WaitingRecord, at: datetime) -> None:
        """Record that ``row`` was handed to a worker at ``at`` (one UPDATE; the release's
        ORM row, when this session holds one, is updated to match)."""
        self._x(_MARK_DISPATCHED, {"release_id": row.id, "at": at})
        loaded = self.s.identity_map.get(identity_key(ReleaseRow, row.id))
        if loaded is not None:
            set_committed_value(loaded, "dispatched_at", at)
            set_committed_value(loaded, "dispatch_count", (row.dispatch_count or 0) + 1)

    def write_state(
        self, state_id: int, token: int, **values: Any
    ) -> dict[str, Any] | None:
        """Fenced write of a resource state: only when no newer release (higher fencing
        token) wrote it. Returns the new desired/applied spec and flags, or None when fenced
        out (or gone)."""
        params = {"w_id": state_id, "w_token": token, "fence": token, **values}
        if self._returning:
            row = self._x(_WRITE_STATE, params).first()
        else:  # SQLite before 3.35
            written = self._x(_WRITE_STATE_PLAIN, params)
            if getattr(written, "rowcount", 0) != 1:
                return None
            row = self._x(_STATE_AFTER_WRITE, {"w_id": state_id}).first()
        return None if row is None else dict(row._mapping)

    def release_row(self, release_id: int, *, lock: bool = False) -> ReleaseRow:
        query = select(ReleaseRow).where(ReleaseRow.id == release_id)
        if lock:
            query = query.with_for_update()
        row = self.s.scalar(query)
        if row is None:
            last = self.s.scalar(select(func.max(ReleaseRow.id)))
            hint = f" (release ids go up to {last})" if last else " (there are no releases yet)"
            raise NotFound(
                f"unknown release id {release_id}{hint}", kind="release", name=str(release_id)
            )
        return row

    def release_for_claim(self, release_id: int) -> tuple[ReleaseRecord, Named, Named]:
        """The release (a plain row: read-only) with its project and environment names, in
        one query."""
        found = self._read(_RELEASE_FOR_CLAIM, {"release_id": release_id}).first()
        if found is None:
            self.release_row(release_id)  # raises NotFound with a hint
        return (
            found,
            Named(found.w_project_id, found.w_project),
            Named(found.environment_id, found.w_environment),
        )

    def has_waiting(self, env_id: int) -> bool:
        """Whether any release of the environment is queued and not yet dispatched."""
        return self._read(_HAS_WAITING, {"env_id": env_id}).first() is not None

    def loaded_release_row(self, release_id: int) -> ReleaseRow:
        """The release row as already loaded in this session (no query when it is)."""
        row = self.s.get(ReleaseRow, release_id)
        if row is None:
            return self.release_row(release_id)
        return row

    def release_of_row(
        self,
        row: ReleaseRow | InsertedRelease,
        project: str,
        environment: str,
        position: int | None = None,
    ) -> Release:
        """The domain release of a loaded row; its queue position is counted unless given."""
        if position is None:
            position = self.queue_position(row)
        return convert.release_of(row, project, environment, position=position)

    def names_of(self, env_id: int) -> tuple[str, str]:
        row = self.s.execute(
            select(ProjectRow.name, EnvironmentRow.name)
            .join(EnvironmentRow, EnvironmentRow.project_id == ProjectRow.id)
            .where(EnvironmentRow.id == env_id)
        ).one()
        return row[0], row[1]

    def steps(self, release_id: int) -> list[StepRow]:
        return list(
            self.s.scalars(
                select(StepRow).where(StepRow.release_id == release_id).order_by(StepRow.seq)
            )
        )

    def queue_position(self, row: ReleaseRow | InsertedRelease) -> int | None:
        if row.status != ReleaseStatus.QUEUED or row.queue_seq is None:
            return None
        params = {"env_id": row.environment_id, "seq": row.queue_seq}
        return int(self._read(_QUEUE_AHEAD, params).scalar() or 0) + 1

    def release(self, release_id: int, *, with_steps: bool = True) -> Release:
        row = self.release_row(release_id)
        project, env = self.names_of(row.environment_id)
        return convert.release_of(
            row,
            project,
            env,
            position=self.queue_position(row),
            steps=self.steps(row.id) if with_steps else None,
        )

    def active_rows(self, env: EnvironmentRow) -> list[ReleaseRow]:
        """Running, then queued in FIFO order, then pending approval (by id)."""
        rows = list(
            self.s.scalars(
                select(ReleaseRow).where(
                    ReleaseRow.environment_id == env.id, ReleaseRow.status.in_(ACTIVE)
                )
            )
        )
        order = {
            ReleaseStatus.RUNNING: 0,
            ReleaseStatus.QUEUED: 1,
            ReleaseStatus.PENDING_APPROVAL: 2,
        }
        rows.sort(key=lambda r: (order[ReleaseStatus(r.status)], r.queue_seq or 0, r.id))
        return rows

    def active(self, project: ProjectRow, env: EnvironmentRow) -> list[Release]:
        out = []
        position = 0
        for row in self.active_rows(env):
            pos = None
            if row.status == ReleaseStatus.QUEUED:
                position += 1
                pos = position
            out.append(convert.release_of(row, project.name, env.name, position=pos))
        return out

    def history(self, project: ProjectRow, env: EnvironmentRow, limit: int = 20) -> list[Release]:
        rows = self.s.scalars(
            select(ReleaseRow)
            .where(ReleaseRow.environment_id == env.id)
            .order_by(ReleaseRow.id.desc())
            .limit(limit)
        )
        out = []
        for row in rows:
            pos = self.queue_position(row) if row.status == ReleaseStatus.QUEUED else None
            out.append(convert.release_of(row, project.name, env.name, position=pos))
        return out

    def running_rows(self, env_id: int) -> list[ReleaseRow]:
        """Running releases and queued ones already dispatched to a worker.

        Two index lookups in one ``UNION ALL`` statement (one ``OR`` made SQLite read every
        queued release of the environment: a cost growing with the queue on every admission
        decision).
        """
        rows = list(self.s.scalars(_RUNNING_OR_DISPATCHED, {"env_id": env_id}))
        rows.sort(key=lambda r: r.id)
        return rows

    def running_claims(self, env_id: int) -> list[tuple[int, str, list[dict[str, Any]]]]:
        """(id, type, targets) of :meth:`running_rows`, in id order (one statement)."""
        rows = [
            (int(r[0]), str(r[1]), r[2] or [])
            for r in self._read(_RUNNING_OR_DISPATCHED_CLAIMS, {"env_id": env_id})
        ]
        rows.sort(key=lambda r: r[0])
        return rows

    def running_claims_and_head(
        self, env_id: int
    ) -> tuple[list[tuple[int, str, list[dict[str, Any]]]], list[WaitingRecord]]:
        """:meth:`running_claims` and ``waiting_rows(env_id, limit=1)`` in one statement."""
        running: list[tuple[int, str, list[dict[str, Any]]]] = []
        head: list[WaitingRecord] = []
        for row in self._read(_RUNNING_AND_HEAD, {"env_id": env_id}):
            if row.head:
                head.append(row)
            else:
                running.append((int(row.id), str(row.type), row.targets or []))
        running.sort(key=lambda r: r[0])
        return running, head

    def waiting_rows(
        self, env_id: int, *, limit: int | None = None, after_seq: int | None = None
    ) -> list[WaitingRecord]:
        """Queued, not yet dispatched releases in FIFO order (plain rows: read-only)."""
        if limit == 1 and after_seq is None:  # the head of a serial queue: the hot path
            return list(self._read(_WAITING_HEAD, {"env_id": env_id}))
        query = _WAITING
        if after_seq is not None:
            query = query.where(_RELEASES.c.queue_seq > after_seq)
        if limit is not None:
            query = query.limit(limit)
        return list(self._read(query, {"env_id": env_id}, prebuilt=False))

    def waiting_heads(
        self, env_id: int, limit: int = HEADS_LIMIT
    ) -> list[WaitingRecord] | None:
        """The earliest waiting release of each distinct claim, in FIFO order.

        A waiting release that needs exactly what an earlier waiting release needs waits
        behind it whatever else happens, and blocks nothing that earlier one does not block:
        the dispatcher can ignore it. Found by walking the distinct ``claim_key`` values of
        the partial index ``ix_releases_waiting_claims`` (one index seek each), so the cost
        grows with the number of distinct claims, not with the length of the queue.

        Returns None when a waiting release has no claim key (written around the ORM) or the
        queue holds more than ``limit`` distinct claims: read the queue itself then.
        """
        probe = _NULL_FIRST_CLAIM.get(self.s.get_bind().dialect.name)
        if probe is None:
            return None
        first = self.s.execute(probe, {"env_id": env_id}).first()
        if first is None:
            return []
        if first[0] is None:
            return None
        ids = [
            release_id
            for (release_id,) in self.s.execute(_HEAD_IDS, {"env_id": env_id, "limit": limit + 1})
            if release_id is not None
        ]
        if len(ids) > limit:
            return None
        if not ids:
            return []
        rows: list[WaitingRecord] = list(self._read(_WAITING_BY_IDS, {"ids": ids}))
        return sorted(rows, key=lambda r: r.queue_seq or 0)

    def pending_ids(self, env_id: int) -> list[int]:
        return list(
            self.s.scalars(
                select(ReleaseRow.id)
                .where(
                    ReleaseRow.environment_id == env_id,
                    ReleaseRow.status == ReleaseStatus.PENDING_APPROVAL,
                )
                .order_by(ReleaseRow.id)
            )
        )

    def count_active(self, env_id: int) -> int:
        return int(
            self.s.scalar(
                select(func.count())
                .select_from(ReleaseRow)
                .where(
                    ReleaseRow.environment_id == env_id,
                    ReleaseRow.status.in_(ACTIVE),
                )
            )
            or 0
        )

    def set_status(
        self,
        release_id: int,
        old: ReleaseStatus | Sequence[ReleaseStatus],
        new: ReleaseStatus,
        **values: Any,
    ) -> bool:
        """Compare-and-set the status; True when this call made the change."""
        if isinstance(old, ReleaseStatus):
            params = {"w_id": release_id, "w_old": str(old), "status": str(new), **values}
            result = self._x(_SET_STATUS_FROM, params)
        else:
            params = {"w_id": release_id, "w_olds": [str(o) for o in old], "status": str(new)}
            result = self._x(_SET_STATUS, {**params, **values})
        return bool(getattr(result, "rowcount", 0) == 1)

    def fenced_update(self, release_id: int, token: int, **values: Any) -> bool:
        """Update a running release only if ``token`` is still its fencing token.

        With no values it only checks, taking a shared row lock (PostgreSQL) so the release
        cannot be ended by someone else before this transaction commits.
        """
        params = {"w_id": release_id, "w_token": token}
        if not values:
            return self._x(_FENCE_CHECK, params).first() is not None
        result = self._x(_FENCED_UPDATE, {**params, **values})
        return bool(getattr(result, "rowcount", 0) == 1)

    def environments_with_waiting(self) -> list[int]:
        return list(
            self.s.scalars(
                select(ReleaseRow.environment_id)
                .where(
                    ReleaseRow.status == ReleaseStatus.QUEUED,
                    ReleaseRow.dispatched_at.is_(None),
                )
                .distinct()
            )
        )

    def stale_dispatched(self, before: datetime) -> list[ReleaseRow]:
        return list(
            self.s.scalars(
                select(ReleaseRow).where(
                    ReleaseRow.status == ReleaseStatus.QUEUED,
                    ReleaseRow.dispatched_at.is_not(None),
                    ReleaseRow.dispatched_at < before,
                )
            )
        )

    def running_all(self) -> list[ReleaseRow]:
        return list(
            self.s.scalars(select(ReleaseRow).where(ReleaseRow.status == ReleaseStatus.RUNNING))
        )

    # -- windows -----------------------------------------------------------------------
    def windows(self, env_id: int) -> list[WindowRow]:
        return list(
            self.s.scalars(
                select(WindowRow).where(WindowRow.environment_id == env_id).order_by(WindowRow.id)
            )
        )

    # -- events ------------------------------------------------------------------------
    def event(
        self,
        *,
        at: datetime,
        actor: str,
        kind: str,
        message: str,
        project: str | None = None,
        environment: str | None = None,
        release_id: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Append one audit event (SPEC §1)."""
        # a plain INSERT: events are never read back as objects in the transaction that
        # writes them, and the unit of work costs several times the statement
        self._x(
            _INSERT_EVENT,
            {
                "at": at,
                "actor": actor,
                "kind": kind,
                "project": project,
                "environment": environment,
                "release_id": release_id,
                "message": message,
                "data": data or {},
            },
        )

    # -- steps ---------------------------------------------------------------------------
    def add_step(self, **values: Any) -> int:
        """Insert one step row; returns its id."""
        result = cast(CursorResult[Any], self._x(_INSERT_STEP, values))
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def update_step(self, step_id: int, **values: Any) -> None:
        """Update one step row by id."""
        self._x(_UPDATE_STEP, {"w_id": step_id, **values})

    def events(
        self,
        project: str | None = None,
        environment: str | None = None,
        limit: int = 50,
        release_id: int | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[Event]:
        query = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
        if project is not None:
            query = query.where(EventRow.project == project)
        if environment is not None:
            query = query.where(EventRow.environment == environment)
        if release_id is not None:
            query = query.where(EventRow.release_id == release_id)
        if kinds is not None:
            query = query.where(EventRow.kind.in_(list(kinds)))
        return [convert.event_of(r) for r in self.s.scalars(query)]

    # -- diagnose (SPEC §8) and sync/wait (SPEC §6) -----------------------------------------
    def last_success_at(self, env_id: int) -> datetime | None:
        """When the environment's most recent succeeded release finished (None: never)."""
        return self.s.scalar(
            select(func.max(ReleaseRow.finished_at)).where(
                ReleaseRow.environment_id == env_id,
                ReleaseRow.status == ReleaseStatus.SUCCEEDED,
            )
        )

    def skipped_rows(
        self,
        env_id: int,
        skip_reason: str,
        *,
        after: datetime | None = None,
        limit: int = 5,
    ) -> tuple[list[ReleaseRow], int]:
        """Skipped (scheduled) releases with ``skip_reason``, newest first, and how many.

        ``after``: only those recorded after that time. Returns at most ``limit`` rows and
        the total count of matches.
        """
        cond = [
            ReleaseRow.environment_id == env_id,
            ReleaseRow.status == ReleaseStatus.SKIPPED,
            ReleaseRow.skip_reason == skip_reason,
        ]
        if after is not None:
            cond.append(ReleaseRow.created_at > after)
        rows = list(
            self.s.scalars(
                select(ReleaseRow).where(*cond).order_by(ReleaseRow.id.desc()).limit(limit)
            )
        )
        total = int(self.s.scalar(select(func.count()).select_from(ReleaseRow).where(*cond)) or 0)
        return rows, total

    def forward_step_count(self, release_id: int) -> int:
        """How many forward (non-rollback) steps a release ran."""
        return int(
            self.s.scalar(
                select(func.count())
                .select_from(StepRow)
                .where(StepRow.release_id == release_id, StepRow.phase == "forward")
            )
            or 0
        )

    def uncertain_resources(self, project: ProjectRow, env: EnvironmentRow) -> set[str]:
        """``TYPE/NAME`` of resources whose state is Unknown because a rollback failed or a
        worker was lost (not merely never applied); a refresh or apply clears it."""
        rows = self.s.execute(
            select(ResourceRow.rtype, ResourceRow.name)
            .join(ResourceStateRow, ResourceStateRow.resource_id == ResourceRow.id)
            .where(
                ResourceStateRow.environment_id == env.id,
                ResourceStateRow.unknown.is_(True),
                ResourceRow.project_id == project.id,
                ResourceRow.removed.is_(False),
            )
        )
        return {resource_key(rtype, name) for rtype, name in rows}
