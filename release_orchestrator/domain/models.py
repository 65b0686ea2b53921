"""Immutable domain records (SPEC §1), as frozen pydantic models.

These are what the client returns and the CLI renders; storage converts rows to them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .enums import (
    Action,
    Health,
    PauseScope,
    ReleaseStatus,
    ReleaseType,
    SkipReason,
    StepPhase,
    StepStatus,
    SyncStatus,
    Trigger,
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, use_enum_values=False)


class EnvironmentSettings(_Frozen):
    """Per-environment release settings (SPEC §5)."""

    parallel_releases: bool = False
    max_parallel_releases: int = Field(default=10, ge=1)
    approval_required: bool = False

    @property
    def effective_parallel(self) -> bool:
        """Parallel execution really on: approval on disables it."""
        return self.parallel_releases and not self.approval_required


class Pause(_Frozen):
    """A pause at project or environment level (SPEC §4)."""

    scope: PauseScope
    project: str
    environment: str | None = None
    paused_by: str
    paused_at: datetime
    reason: str | None = None
    until: datetime | None = None


class Target(_Frozen):
    """One target of a selective release: ``TYPE/NAME`` and an action."""

    resource: str
    action: Action = Action.APPLY

    @property
    def type(self) -> str:
        return self.resource.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.resource.split("/", 1)[1]

    def __str__(self) -> str:
        return f"{self.resource}:{self.action}"


class Step(_Frozen):
    """One executor run of one resource inside a release."""

    seq: int
    resource: str
    action: Action
    phase: StepPhase = StepPhase.FORWARD
    status: StepStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    output: str = ""


class Hold(_Frozen):
    """Why a queued release is not running (one admission-policy reason)."""

    code: str
    message: str
    release_id: int | None = None
    resources: list[str] = Field(default_factory=list)


class Release(_Frozen):
    """One run against one environment (SPEC §1, §3, §11)."""

    id: int
    project: str
    environment: str
    type: ReleaseType
    status: ReleaseStatus
    position: int | None = None
    refresh: bool = False
    force: bool = False
    allow_destroy: bool = False
    no_rollback: bool = False
    comment: str | None = None
    triggered_by: str
    trigger: Trigger
    targets: list[Target] = Field(default_factory=list)
    extra_args: list[str] = Field(default_factory=list)
    extra_vars: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    skip_reason: SkipReason | None = None
    worker: str | None = None
    fencing_token: int | None = None
    steps: list[Step] = Field(default_factory=list)
    held: list[Hold] = Field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The keys of SPEC §3 (``release active -o json``)."""
        return {
            "id": self.id,
            "type": str(self.type),
            "status": str(self.status),
            "position": self.position,
            "refresh": self.refresh,
            "force": self.force,
            "allow_destroy": self.allow_destroy,
            "comment": self.comment,
            "triggered_by": self.triggered_by,
            "targets": [
                {"type": t.type, "name": t.name, "action": str(t.action)} for t in self.targets
            ],
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "project": self.project,
            "environment": self.environment,
            "held": [h.model_dump() for h in self.held],
        }

    def detail(self) -> dict[str, Any]:
        """``release show -o json``: the summary plus trigger, end, error and steps."""
        out = self.summary()
        out.update(
            trigger=str(self.trigger),
            finished_at=_iso(self.finished_at),
            error=self.error,
            skip_reason=str(self.skip_reason) if self.skip_reason else None,
            no_rollback=self.no_rollback,
            worker=self.worker,
            fencing_token=self.fencing_token,
            steps=[
                {
                    "seq": s.seq,
                    "resource": s.resource,
                    "action": str(s.action),
                    "phase": str(s.phase),
                    "status": str(s.status),
                    "started_at": _iso(s.started_at),
                    "finished_at": _iso(s.finished_at),
                    "exit_code": s.exit_code,
                    "error": s.error,
                    "output": s.output,
                }
                for s in self.steps
            ],
        )
        return out


class ResourceStatus(_Frozen):
    """A resource in one environment: desired vs applied, sync status and health."""

    resource: str
    executor: str
    depends_on: list[str] = Field(default_factory=list)
    desired_spec: dict[str, Any]
    applied_spec: dict[str, Any] | None = None
    sync: SyncStatus
    health: Health
    last_release_id: int | None = None


class Environment(_Frozen):
    """An environment of a project with its settings and pause state."""

    project: str
    name: str
    settings: EnvironmentSettings
    launched: bool = False
    project_pause: Pause | None = None
    environment_pause: Pause | None = None


class Event(_Frozen):
    """One entry of the append-only audit history (SPEC §1)."""

    id: int
    at: datetime
    actor: str
    kind: str
    project: str | None = None
    environment: str | None = None
    release_id: int | None = None
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class Finding(_Frozen):
    """One ``relo diagnose`` finding (SPEC §8)."""

    code: str
    message: str
    remedy: str | None = None
    release_id: int | None = None
    resources: list[str] = Field(default_factory=list)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class AvailabilityWindow(_Frozen):
    """An availability window of an environment (SPEC §4, §11), as of ``at``.

    ``kind`` is ``allow`` or ``deny``. An occurrence starts at each cron fire time, on the
    wall clock of ``timezone``, and lasts ``duration_s`` seconds. ``open_now`` says whether an
    occurrence covers ``at`` (``open_until`` is then its end); ``next_start`` is the start of
    the next occurrence after ``at``.
    """

    id: int
    project: str
    environment: str
    kind: str = Field(pattern="^(allow|deny)$")
    cron: str
    duration: str
    duration_s: float
    timezone: str
    created_by: str
    created_at: datetime
    at: datetime
    open_now: bool = False
    open_until: datetime | None = None
    next_start: datetime | None = None


class QueueSummary(_Frozen):
    """An environment's releases in flight; ``next_holds``: why the head of the queue waits."""

    running: list[int] = Field(default_factory=list)
    queued: list[int] = Field(default_factory=list)
    pending_approval: list[int] = Field(default_factory=list)
    next_holds: list[Hold] = Field(default_factory=list)


class EnvironmentView(_Frozen):
    """``relo env show``: pauses in force, settings, windows and queue of one environment.

    ``windows_open`` is False while a deny window covers ``at`` or allow windows exist and
    none covers it (``window_hold`` then says which, ``next_opening`` when starts are allowed
    again, as far as windows are concerned). ``open_until`` is set when starts are allowed
    only thanks to an allow window. ``can_start`` is False while paused or windows are closed.
    """

    project: str
    name: str
    at: datetime
    settings: EnvironmentSettings
    launched: bool = False
    project_pause: Pause | None = None
    environment_pause: Pause | None = None
    windows: list[AvailabilityWindow] = Field(default_factory=list)
    windows_open: bool = True
    window_hold: str | None = None
    blocking_window_id: int | None = None
    next_opening: datetime | None = None
    open_until: datetime | None = None
    can_start: bool = True
    queue: QueueSummary = Field(default_factory=QueueSummary)


class ResumeResult(_Frozen):
    """What ``relo env resume`` did.

    ``resumed`` is the pause that was lifted (None when the scope was not paused: a no-op);
    ``still_paused`` lists pauses that still hold releases of the scope (the project's when
    an environment is resumed, its environments' when the project is); ``started`` are the
    releases dispatched at once.
    """

    scope: PauseScope
    project: str
    environment: str | None = None
    resumed: Pause | None = None
    still_paused: list[Pause] = Field(default_factory=list)
    started: list[int] = Field(default_factory=list)


class Schedule(_Frozen):
    """A recurring release of one environment: fire times ``start_at + k * every`` (SPEC §7)."""

    id: int
    project: str
    environment: str
    every: str
    type: ReleaseType = ReleaseType.FULL
    start_at: datetime
    timezone: str = "UTC"
    paused: bool = False
    next_run_at: datetime
    created_by: str
    created_at: datetime
    updated_at: datetime


class ScheduledRun(_Frozen):
    """One due time of a schedule: the release it submitted, or the skip and its reason."""

    release_id: int
    due_at: datetime
    recorded_at: datetime
    type: ReleaseType
    status: ReleaseStatus
    skip_reason: SkipReason | None = None
    detail: str | None = None

    @property
    def lateness_s(self) -> float:
        """Seconds from the due time to the release (or skip) being recorded."""
        return (self.recorded_at - self.due_at).total_seconds()


class ScheduleView(_Frozen):
    """``relo schedule show``: the settings, the next fire times, the last fires and skips."""

    schedule: Schedule
    next_fires: list[datetime] = Field(default_factory=list)
    recent: list[ScheduledRun] = Field(default_factory=list)


class AppProgress(_Frozen):
    """One app awaited by ``relo release wait`` (SPEC §6): its state and what it waits for.

    ``release_id`` is the release it waits for (a running one first, then the earliest in
    the queue; any release acting on the app counts, and every type but ``selective`` acts
    on every resource); ``waiting_on`` is why that release does not run yet. ``ready``: the
    app is ``Synced`` and ``Healthy`` and no queued, pending or running release targets it.
    """

    app: str
    sync: SyncStatus
    health: Health
    release_id: int | None = None
    release_status: ReleaseStatus | None = None
    position: int | None = None
    waiting_on: str | None = None
    ready: bool = False


class WaitResult(_Frozen):
    """What ``relo release wait`` saw; the final one is its ``-o json`` summary.

    ``status``: ``waiting`` (progress), ``ready`` (every app ready), ``failed`` (a release
    targeting an app failed, or an app is Degraded) or ``timeout`` (``findings`` then say what
    blocks). ``synced_release_id`` is the release ``--sync`` submitted (None: every app was
    in sync, or no ``--sync``); ``releases`` every release waited for.
    """

    project: str
    environment: str
    status: str = Field(pattern="^(waiting|ready|failed|timeout)$")
    apps: list[AppProgress]
    synced_release_id: int | None = None
    releases: list[int] = Field(default_factory=list)
    failed_release_id: int | None = None
    error: str | None = None
    elapsed_s: float = 0.0
    findings: list[Finding] = Field(default_factory=list)

    @property
    def ready_count(self) -> int:
        return sum(1 for a in self.apps if a.ready)
