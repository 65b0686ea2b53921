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
    "BlueprintError",
    "Client",
    "Environment",
    "EnvironmentSettings",
    "Event",
    "Finding",
    "Health",
    "InvalidRequest",
    "NotFound",
    "Release",
    "ReleaseFailed",
    "ReleaseStatus",
    "ReleaseType",
    "ReloError",
    "ResourceStatus",
    "Settings",
    "StateLockError",
    "Step",
    "SyncStatus",
    "Target",
    "Trigger",
    "Unavailable",
    "WaitTimeout",
]
__version__ = "0.1.0"
