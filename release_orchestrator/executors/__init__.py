"""Executors: plug-ins that apply, destroy and refresh one resource (SPEC §2)."""

from __future__ import annotations

from release_orchestrator.executors.base import (
    Action,
    Executor,
    ExecutorConfigError,
    StepContext,
    StepResult,
)
from release_orchestrator.executors.registry import (
    UnknownExecutor,
    available_executors,
    get_executor,
)

__all__ = [
    "Action",
    "Executor",
    "ExecutorConfigError",
    "StepContext",
    "StepResult",
    "UnknownExecutor",
    "available_executors",
    "get_executor",
]
