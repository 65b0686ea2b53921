"""relo — the release orchestrator.

Public API: the :class:`Client`, the domain models it returns and the exception tree.
"""

from .client import Client
from .domain import (
    Action,
    Environment,
    EnvironmentSettings,
    Event,
    Finding,
    Health,
    Release,
    ReleaseStatus,
    ReleaseType,
    ResourceStatus,
    Step,
    SyncStatus,
    Target,
    Trigger,
)
from .domain.models import (
    AppProgress,
    AvailabilityWindow,
    EnvironmentView,
    Hold,
    Pause,
    QueueSummary,
    ResumeResult,
    Schedule,
    ScheduledRun,
    ScheduleView,
    WaitResult,
)
from .errors import (
    BlueprintError,
    InvalidRequest,
    NotFound,
    ReleaseFailed,
    ReloError,
    StateLockError,
    Unavailable,
    WaitTimeout,
)
from .settings import Settings

__all__ = [
    "Action",
    "AppProgress",
    "AvailabilityWindow",
    "BlueprintError",
    "Client",
    "Environment",
    "EnvironmentSettings",
    "EnvironmentView",
    "Event",
    "Finding",
    "Health",
    "Hold",
    "InvalidRequest",
    "NotFound",
    "Pause",
    "QueueSummary",
    "Release",
    "ReleaseFailed",
    "ReleaseStatus",
    "ReleaseType",
    "ReloError",
    "ResourceStatus",
    "ResumeResult",
    "Schedule",
    "ScheduleView",
    "ScheduledRun",
    "Settings",
    "StateLockError",
    "Step",
    "SyncStatus",
    "Target",
    "Trigger",
    "Unavailable",
    "WaitResult",
    "WaitTimeout",
]
__version__ = "0.1.0"
