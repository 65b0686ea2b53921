"""Read-only views of rows that the hot path reads as plain result rows, not ORM objects.

ORM rows (``tables.ResourceRow`` …) and SQLAlchemy result rows of the same columns both
satisfy these protocols: building ORM objects costs several times the query on SQLite, and
the dispatcher, the submit path and the runner only read these columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class ResourceRecord(Protocol):
    """A resource definition of a project."""

    @property
    def id(self) -> int: ...
    @property
    def rtype(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def executor(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def spec(self) -> dict[str, Any]: ...
    @property
    def depends_on(self) -> list[Any]: ...


class StateRecord(Protocol):
    """A resource's state in one environment."""

    @property
    def id(self) -> int: ...
    @property
    def resource_id(self) -> int: ...
    @property
    def desired_spec(self) -> dict[str, Any]: ...
    @property
    def applied_spec(self) -> dict[str, Any] | None: ...
    @property
    def ever_applied(self) -> bool: ...
    @property
    def unknown(self) -> bool: ...
    @property
    def degraded(self) -> bool: ...
    @property
    def last_release_id(self) -> int | None: ...


class WaitingRecord(Protocol):
    """What the dispatcher reads of a waiting release."""

    @property
    def id(self) -> int: ...
    @property
    def environment_id(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def targets(self) -> list[Any]: ...
    @property
    def queue_seq(self) -> int | None: ...
    @property
    def dispatched_at(self) -> datetime | None: ...
    @property
    def dispatch_count(self) -> int: ...


class NamedRecord(Protocol):
    """A project or environment: its id and name."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...


class PausedRecord(NamedRecord, Protocol):
    """A project or environment with its pause columns."""

    @property
    def pause_by(self) -> str | None: ...
    @property
    def pause_at(self) -> datetime | None: ...
    @property
    def pause_reason(self) -> str | None: ...
    @property
    def pause_until(self) -> datetime | None: ...


class EnvironmentRecord(PausedRecord, Protocol):
    """An environment's settings, as admission reads them."""

    @property
    def project_id(self) -> int: ...
    @property
    def parallel_releases(self) -> bool: ...
    @property
    def max_parallel_releases(self) -> int: ...
    @property
    def approval_required(self) -> bool: ...
    @property
    def launched(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ProjectView:
    """A project as read by the hot path (no ORM object)."""

    id: int
    name: str
    pause_by: str | None
    pause_at: datetime | None
    pause_reason: str | None
    pause_until: datetime | None


@dataclass(frozen=True, slots=True)
class EnvironmentView:
    """An environment as read by the hot path (no ORM object)."""

    id: int
    project_id: int
    name: str
    parallel_releases: bool
    max_parallel_releases: int
    approval_required: bool
    launched: bool
    pause_by: str | None
    pause_at: datetime | None
    pause_reason: str | None
    pause_until: datetime | None


class ReleaseRecord(WaitingRecord, Protocol):
    """What the runner reads of a release to claim and run it (a whole release row)."""

    @property
    def status(self) -> str: ...
    @property
    def refresh(self) -> bool: ...
    @property
    def force(self) -> bool: ...
    @property
    def allow_destroy(self) -> bool: ...
    @property
    def no_rollback(self) -> bool: ...
    @property
    def extra_args(self) -> list[Any]: ...
    @property
    def extra_vars(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Named:
    """A project or environment by id and name."""

    id: int
    name: str


@dataclass(slots=True)
class InsertedRelease:
    """A release as its INSERT wrote it, for the domain object ``submit`` returns (no ORM
    object built for it); the columns the INSERT did not write are None."""

    id: int
    environment_id: int
    type: str
    status: str
    queue_seq: int | None
    refresh: bool
    force: bool
    allow_destroy: bool
    no_rollback: bool
    comment: str | None
    triggered_by: str
    trigger: str
    targets: list[Any]
    extra_args: list[Any]
    extra_vars: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    dispatch_count: int = 0
    claim_key: str | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    skip_reason: str | None = None
    worker: str | None = None
    fencing_token: int | None = None
