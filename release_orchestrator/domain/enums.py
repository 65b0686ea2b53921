"""Status and kind enumerations, and the table of allowed release status transitions."""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        """``enum.StrEnum`` for Python 3.10."""

        def __str__(self) -> str:
            return str(self.value)


class ReleaseType(StrEnum):
    LAUNCH = "launch"
    FULL = "full"
    SELECTIVE = "selective"
    CUSTOM = "custom"
    DESTROY = "destroy"

    @property
    def needs_whole_environment(self) -> bool:
        """Every type but ``selective`` locks the whole environment (SPEC §5)."""
        return self is not ReleaseType.SELECTIVE


class ReleaseStatus(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    SKIPPED = "skipped"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def is_active(self) -> bool:
        """Listed by ``release active``: waiting for approval, queued or running."""
        return self in (
            ReleaseStatus.PENDING_APPROVAL,
            ReleaseStatus.QUEUED,
            ReleaseStatus.RUNNING,
        )


FINAL_STATUSES = frozenset(
    {
        ReleaseStatus.SUCCEEDED,
        ReleaseStatus.FAILED,
        ReleaseStatus.ROLLED_BACK,
        ReleaseStatus.ROLLBACK_FAILED,
        ReleaseStatus.CANCELLED,
        ReleaseStatus.REJECTED,
        ReleaseStatus.SKIPPED,
    }
)

#: Allowed status transitions; storage refuses any other (compare-and-set on the old status).
TRANSITIONS: dict[ReleaseStatus, frozenset[ReleaseStatus]] = {
    ReleaseStatus.PENDING_APPROVAL: frozenset(
        {ReleaseStatus.QUEUED, ReleaseStatus.REJECTED, ReleaseStatus.CANCELLED}
    ),
    ReleaseStatus.QUEUED: frozenset(
        {ReleaseStatus.RUNNING, ReleaseStatus.CANCELLED, ReleaseStatus.FAILED}
    ),
    ReleaseStatus.RUNNING: frozenset(
        {
            ReleaseStatus.SUCCEEDED,
            ReleaseStatus.FAILED,
            ReleaseStatus.ROLLED_BACK,
            ReleaseStatus.ROLLBACK_FAILED,
        }
    ),
    **{s: frozenset() for s in FINAL_STATUSES},
}


def can_transition(old: ReleaseStatus, new: ReleaseStatus) -> bool:
    """Whether ``old`` → ``new`` is allowed."""
    return new in TRANSITIONS[old]


class Trigger(StrEnum):
    MANUAL = "manual"
    CLI = "cli"
    SCHEDULE = "schedule"
    API = "api"


class Action(StrEnum):
    APPLY = "apply"
    DESTROY = "destroy"
    REFRESH = "refresh"


class StepPhase(StrEnum):
    FORWARD = "forward"
    ROLLBACK = "rollback"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class SyncStatus(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"


class Health(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    MISSING = "Missing"


class SkipReason(StrEnum):
    BUSY = "busy"
    PAUSED = "paused"
    SCHEDULE_PAUSED = "schedule_paused"
    OUTSIDE_WINDOW = "outside_window"


class PauseScope(StrEnum):
    PROJECT = "project"
    ENVIRONMENT = "environment"
