"""Row → domain conversions. The only place that knows both shapes."""

from __future__ import annotations

from typing import Any

from ..domain import (
    Action,
    Environment,
    EnvironmentSettings,
    Event,
    Health,
    Pause,
    PauseScope,
    Release,
    ReleaseStatus,
    ReleaseType,
    ResourceStatus,
    SkipReason,
    Step,
    StepPhase,
    StepStatus,
    SyncStatus,
    Target,
    Trigger,
)
from ..domain.names import resource_key
from .records import InsertedRelease, ResourceRecord, StateRecord
from .tables import (
    EnvironmentRow,
    EventRow,
    ProjectRow,
    ReleaseRow,
    StepRow,
)


def settings_of(env: EnvironmentRow) -> EnvironmentSettings:
    return EnvironmentSettings(
        parallel_releases=env.parallel_releases,
        max_parallel_releases=env.max_parallel_releases,
        approval_required=env.approval_required,
    )


def pause_of(row: ProjectRow | EnvironmentRow, project: str, env: str | None) -> Pause | None:
    if row.pause_at is None:
        return None
    return Pause(
        scope=PauseScope.ENVIRONMENT if env else PauseScope.PROJECT,
        project=project,
        environment=env,
        paused_by=row.pause_by or "unknown",
        paused_at=row.pause_at,
        reason=row.pause_reason,
        until=row.pause_until,
    )


def environment_of(project: ProjectRow, env: EnvironmentRow) -> Environment:
    return Environment(
        project=project.name,
        name=env.name,
        settings=settings_of(env),
        launched=env.launched,
        project_pause=pause_of(project, project.name, None),
        environment_pause=pause_of(env, project.name, env.name),
    )


def targets_of(raw: list[Any]) -> list[Target]:
    return [Target(resource=t["resource"], action=Action(t["action"])) for t in raw]


def step_of(row: StepRow) -> Step:
    return Step(
        seq=row.seq,
        resource=row.resource,
        action=Action(row.action),
        phase=StepPhase(row.phase),
        status=StepStatus(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        exit_code=row.exit_code,
        error=row.error,
        output=row.output or "",
    )


def release_of(
    row: ReleaseRow | InsertedRelease,
    project: str,
    environment: str,
    *,
    position: int | None = None,
    steps: list[StepRow] | None = None,
) -> Release:
    return Release(
        id=row.id,
        project=project,
        environment=environment,
        type=ReleaseType(row.type),
        status=ReleaseStatus(row.status),
        position=position,
        refresh=row.refresh,
        force=row.force,
        allow_destroy=row.allow_destroy,
        no_rollback=row.no_rollback,
        comment=row.comment,
        triggered_by=row.triggered_by,
        trigger=Trigger(row.trigger),
        targets=targets_of(row.targets or []),
        extra_args=list(row.extra_args or []),
        extra_vars=dict(row.extra_vars or {}),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        skip_reason=SkipReason(row.skip_reason) if row.skip_reason else None,
        worker=row.worker,
        fencing_token=row.fencing_token,
        steps=[step_of(s) for s in steps or []],
    )


def sync_of(state: StateRecord) -> SyncStatus:
    return sync_from(state.desired_spec, state.applied_spec, state.ever_applied, state.unknown)


def sync_from(
    desired: Any, applied: Any, ever_applied: bool | None, unknown: bool | None
) -> SyncStatus:
    """The sync status of a resource state given as values (see :func:`sync_of`)."""
    if unknown or (applied is None and not ever_applied):
        return SyncStatus.UNKNOWN
    if applied == desired:
        return SyncStatus.SYNCED
    return SyncStatus.OUT_OF_SYNC


def health_of(state: StateRecord, progressing: bool) -> Health:
    if progressing:
        return Health.PROGRESSING
    if state.degraded:
        return Health.DEGRADED
    if state.applied_spec is None and not state.unknown:
        return Health.MISSING
    return Health.HEALTHY


def resource_status_of(
    res: ResourceRecord, state: StateRecord, progressing: bool
) -> ResourceStatus:
    return ResourceStatus(
        resource=resource_key(res.rtype, res.name),
        executor=res.executor,
        depends_on=list(res.depends_on or []),
        desired_spec=state.desired_spec,
        applied_spec=state.applied_spec,
        sync=sync_of(state),
        health=health_of(state, progressing),
        last_release_id=state.last_release_id,
    )


def event_of(row: EventRow) -> Event:
    return Event(
        id=row.id,
        at=row.at,
        actor=row.actor,
        kind=row.kind,
        project=row.project,
        environment=row.environment,
        release_id=row.release_id,
        message=row.message,
        data=row.data or {},
    )
