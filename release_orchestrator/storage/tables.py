"""SQLAlchemy mapping of relo's tables. Only the storage package imports this module."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..domain.enums import ReleaseType


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    # On SQLite a datetime is text, SQLAlchemy's "YYYY-MM-DD HH:MM:SS.ffffff", written with a
    # %-format of seven fields and read with a regular expression: about thirty times per
    # release. isoformat and fromisoformat (C) write and read the same text.
    def bind_processor(self, dialect: Any) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        to_utc = self.process_bind_param

        def process(value: datetime | None) -> str | None:
            naive = to_utc(value, dialect)
            return None if naive is None else naive.isoformat(" ", "microseconds")

        return process

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        parse, as_utc = datetime.fromisoformat, self.process_result_value
        general = super().result_processor(dialect, coltype)  # any other text SQLite holds

        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            try:
                parsed = parse(value)
            except (TypeError, ValueError):
                return general(value) if general is not None else value  # type: ignore[return-value]
            return as_utc(parsed, dialect)

        return process


#: Queued and not yet dispatched (the partial index's condition, literal so that SQLite and
#: PostgreSQL match it against queries).
WAITING_SQL = "status = 'queued' AND dispatched_at IS NULL"
#: Queued and handed to a worker, not yet claimed (few at any time).
DISPATCHED_SQL = "status = 'queued' AND dispatched_at IS NOT NULL"


def claim_key(release_type: str, targets: Sequence[Mapping[str, Any]] | None) -> str:
    """``*`` for a release that needs the whole environment, else a digest of its resources."""
    if ReleaseType(release_type).needs_whole_environment:
        return "*"
    names = sorted({str(t["resource"]) for t in targets or ()})
    return hashlib.sha1("\n".join(names).encode("utf-8"), usedforsecurity=False).hexdigest()


def _claim_key_default(context: Any) -> str | None:
    params = context.get_current_parameters()
    if params.get("type") is None:
        return None
    return claim_key(params["type"], params.get("targets"))


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class PauseColumns:
    pause_by: Mapped[str | None] = mapped_column(String(200))
    pause_at: Mapped[datetime | None]
    pause_reason: Mapped[str | None] = mapped_column(Text)
    pause_until: Mapped[datetime | None]


class ProjectRow(PauseColumns, Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime]


class EnvironmentRow(PauseColumns, Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    parallel_releases: Mapped[bool] = mapped_column(Boolean, default=False)
    max_parallel_releases: Mapped[int] = mapped_column(Integer, default=10)
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    launched: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Last queue sequence number handed out (FIFO order of the environment's queue).
    queue_counter: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime]


class ResourceRow(Base):
    __tablename__ = "resources"
    __table_args__ = (UniqueConstraint("project_id", "rtype", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    rtype: Mapped[str] = mapped_column(String(127))
    name: Mapped[str] = mapped_column(String(127))
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    executor: Mapped[str] = mapped_column(String(100))
    #: Executor configuration: apply/destroy/refresh argv, options, cwd.
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    timeout: Mapped[float | None] = mapped_column(Float)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    depends_on: Mapped[list[Any]] = mapped_column(JSON)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)


class ResourceStateRow(Base):
    __tablename__ = "resource_states"
    __table_args__ = (UniqueConstraint("environment_id", "resource_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), index=True
    )
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"))
    #: spec merged with the environment's blueprint overrides, as last applied from a blueprint.
    base_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    desired_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    applied_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ever_applied: Mapped[bool] = mapped_column(Boolean, default=False)
    unknown: Mapped[bool] = mapped_column(Boolean, default=False)
    degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Fencing token of the last release that wrote this state.
    fence: Mapped[int] = mapped_column(BigInteger, default=0)
    last_release_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime | None]


class ReleaseRow(Base):
    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("schedule_id", "due_at", name="uq_release_schedule_due"),
        Index("ix_releases_env_status", "environment_id", "status", "queue_seq"),
        Index("ix_releases_status", "status"),
        # the dispatcher's walk over the distinct claims of a queue (Repository.waiting_heads)
        Index(
            "ix_releases_waiting_claims",
            "environment_id",
            "claim_key",
            "queue_seq",
            sqlite_where=text(WAITING_SQL),
            postgresql_where=text(WAITING_SQL),
        ),
        # what admission counts as occupying a slot besides running releases
        # (Repository.running_rows), without scanning the queued ones (three columns, so
        # that SQLite prefers it to ix_releases_env_status without statistics)
        Index(
            "ix_releases_dispatched",
            "environment_id",
            "status",
            "dispatched_at",
            sqlite_where=text(DISPATCHED_SQL),
            postgresql_where=text(DISPATCHED_SQL),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    queue_seq: Mapped[int | None] = mapped_column(BigInteger)
    dispatched_at: Mapped[datetime | None]
    dispatch_count: Mapped[int] = mapped_column(Integer, default=0)
    refresh: Mapped[bool] = mapped_column(Boolean, default=False)
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    allow_destroy: Mapped[bool] = mapped_column(Boolean, default=False)
    no_rollback: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str | None] = mapped_column(Text)
    triggered_by: Mapped[str] = mapped_column(String(200))
    trigger: Mapped[str] = mapped_column(String(20))
    targets: Mapped[list[Any]] = mapped_column(JSON)
    extra_args: Mapped[list[Any]] = mapped_column(JSON)
    extra_vars: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(String(20))
    worker: Mapped[str | None] = mapped_column(String(255))
    fencing_token: Mapped[int | None] = mapped_column(BigInteger)
    lock_owner: Mapped[str | None] = mapped_column(String(100))
    schedule_id: Mapped[int | None] = mapped_column(Integer)
    due_at: Mapped[datetime | None]
    #: Equal for releases that need the same things (``*``: the whole environment), set on
    #: insert from ``type`` and ``targets``, which never change.
    claim_key: Mapped[str | None] = mapped_column(String(40), default=_claim_key_default)


class StepRow(Base):
    __tablename__ = "steps"
    # its index serves lookups by release too (no index on release_id alone: migration 0004)
    __table_args__ = (UniqueConstraint("release_id", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    resource: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(20))
    phase: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text, default="")


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_project_env", "project", "environment", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(50))
    project: Mapped[str | None] = mapped_column(String(63))
    environment: Mapped[str | None] = mapped_column(String(63))
    release_id: Mapped[int | None] = mapped_column(Integer, index=True)
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class WindowRow(Base):
    __tablename__ = "windows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))
    cron: Mapped[str] = mapped_column(String(200))
    duration_s: Mapped[float] = mapped_column(Float)
    timezone: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class ScheduleRow(Base):
    __tablename__ = "schedules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), unique=True
    )
    every: Mapped[str] = mapped_column(String(20))
    start_at: Mapped[datetime]
    timezone: Mapped[str] = mapped_column(String(64))
    release_type: Mapped[str] = mapped_column(String(20))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    next_run_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
