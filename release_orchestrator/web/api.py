"""The JSON API under ``/api/``: the client's methods over HTTP, for CI runners.

Every route needs ``Authorization: Bearer <token>`` (``RELO_API_TOKENS``); releases submitted
here have ``trigger=api``. Responses use the CLI's ``-o json`` shapes (``release active``
gives the same list as ``relo release active -o json``); errors are
``{"error": message, "code": code}`` with the status of :mod:`.errors`.

Routes (``{p}``/``{e}``: project and environment names)::

    GET    /api/environments[?project=P]                    relo env list
    GET    /api/projects/{p}/environments/{e}               relo env show
    GET    /api/projects/{p}/environments/{e}/settings      relo env settings
    PATCH  /api/projects/{p}/environments/{e}/settings      relo env settings --parallel ...
    GET    /api/projects/{p}/environments/{e}/resources     relo resource list
    PATCH  /api/projects/{p}/environments/{e}/resources/{TYPE/NAME}   relo resource set
    GET    /api/projects/{p}/environments/{e}/releases[?limit=N]      relo release list
    POST   /api/projects/{p}/environments/{e}/releases      relo release trigger
    GET    /api/projects/{p}/environments/{e}/releases/active         relo release active
    DELETE /api/projects/{p}/environments/{e}/releases/queued  relo release delete --all-queued
    GET    /api/releases/{id}                               relo release show
    DELETE /api/releases/{id}                               relo release delete ID
    POST   /api/releases/{id}/approve | /reject             relo release approve|reject
    POST   /api/projects/{p}/pause | /resume                relo env pause|resume -p P
    POST   /api/projects/{p}/environments/{e}/pause | /resume          ... -p P -e E
    GET    /api/projects/{p}/environments/{e}/windows       relo env window list
    POST   /api/projects/{p}/environments/{e}/windows       relo env window add
    DELETE /api/projects/{p}/environments/{e}/windows/{id}  relo env window remove
    GET|PUT|DELETE /api/projects/{p}/environments/{e}/schedule   relo schedule show|set|delete
    POST   /api/projects/{p}/environments/{e}/schedule/pause | /resume
    GET    /api/projects/{p}/environments/{e}/diagnose[?release_id=N&apps=A,B]  relo diagnose
    POST   /api/projects/{p}/environments/{e}/sync          relo release sync
    POST   /api/projects/{p}/environments/{e}/wait          relo release wait (timeout <= 600)
    GET    /api/projects/{p}/environments/{e}/locks         relo lock list
    GET    /api/events[?project=P&environment=E&limit=N]    relo events
    POST   /api/blueprints   (body: the YAML text)          relo blueprint apply
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..errors import InvalidRequest
from .state import ApiClient

router = APIRouter(prefix="/api")

ENV = "/projects/{project}/environments/{environment}"
#: Longest wait one request may block for; a CI runner loops for longer waits.
MAX_WAIT_S = 600.0


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitBody(_Body):
    """``relo release trigger`` options."""

    type: str = "full"
    targets: list[str] = Field(default_factory=list, description="TYPE/NAME[:ACTION]")
    refresh: bool = False
    force: bool = False
    allow_destroy: bool = False
    no_rollback: bool = False
    comment: str | None = None
    fail_on_conflict: bool = False
    extra_args: list[str] = Field(default_factory=list)
    extra_vars: dict[str, str] = Field(default_factory=dict)


class SettingsBody(_Body):
    """Settings to change; omitted ones stay."""

    parallel_releases: bool | None = None
    max_parallel_releases: int | None = None
    approval_required: bool | None = None


class ResourceBody(_Body):
    """Desired-spec changes: ``{"image": "x:1"}`` or ``["image=x:1"]`` (dotted keys nest)."""

    values: dict[str, Any] | list[str]


class PauseBody(_Body):
    reason: str | None = None
    until: datetime | None = None


class WindowBody(_Body):
    kind: str = Field(pattern="^(allow|deny)$")
    cron: str
    duration: str
    timezone: str = "UTC"


class ScheduleBody(_Body):
    every: str
    type: str = "full"
    start_at: str | None = None
    timezone: str = "UTC"
    paused: bool = False


class SyncBody(_Body):
    apps: str | list[str]
    force: bool = False
    comment: str | None = None


class WaitBody(_Body):
    apps: str | list[str]
    sync: bool = False
    force: bool = False
    timeout: float = Field(default=60.0, ge=0, le=MAX_WAIT_S)
    interval: float = Field(default=2.0, gt=0)


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json")


# -- environments, settings, resources -------------------------------------------------------
@router.get("/environments")
def environments(c: ApiClient, project: str | None = None) -> Any:
    """Environments (of one project with ?project=), with settings and pauses."""
    return [_dump(e) for e in c.environments(project)]


@router.get(ENV)
def environment(c: ApiClient, project: str, environment: str) -> Any:
    """One environment: pauses, settings, windows, queue summary (relo env show)."""
    return _dump(c.show_environment(project, environment))


def _settings_json(s: Any) -> dict[str, Any]:
    out: dict[str, Any] = s.model_dump()
    out["effective_parallel"] = s.effective_parallel
    return out


@router.get(ENV + "/settings")
def get_settings(c: ApiClient, project: str, environment: str) -> Any:
    """The environment's release settings."""
    return _settings_json(c.settings(project, environment))


@router.patch(ENV + "/settings")
def change_settings(c: ApiClient, project: str, environment: str, body: SettingsBody) -> Any:
    """Change release settings; omitted fields stay."""
    return _settings_json(
        c.settings(
            project,
            environment,
            parallel=body.parallel_releases,
            max_parallel=body.max_parallel_releases,
            approval=body.approval_required,
        )
    )


@router.get(ENV + "/resources")
def resources(c: ApiClient, project: str, environment: str) -> Any:
    """Resources with desired/applied spec, sync status and health."""
    return [_dump(r) for r in c.resources(project, environment)]


@router.patch(ENV + "/resources/{resource:path}")
def set_resource(
    c: ApiClient, project: str, environment: str, resource: str, body: ResourceBody
) -> Any:
    """Change one resource's desired spec in this environment."""
    if isinstance(body.values, dict):
        items = [f"{k}={json.dumps(v)}" for k, v in body.values.items()]
    else:
        items = list(body.values)
    if not items:
        raise InvalidRequest("values: give at least one KEY=VALUE")
    return _dump(c.set_resource(project, environment, resource, items))


# -- releases --------------------------------------------------------------------------------
@router.get(ENV + "/releases")
def history(
    c: ApiClient, project: str, environment: str, limit: Annotated[int, Query()] = 20
) -> Any:
    """Release history, newest first, every status (relo release list)."""
    return [r.detail() for r in c.list(project, environment, limit)]


@router.post(ENV + "/releases", status_code=201)
def submit(c: ApiClient, project: str, environment: str, body: SubmitBody) -> Any:
    """Submit a release (trigger=api); 201 with the release."""
    release = c.submit(
        project,
        environment,
        body.type,
        targets=body.targets,
        refresh=body.refresh,
        force=body.force,
        allow_destroy=body.allow_destroy,
        no_rollback=body.no_rollback,
        comment=body.comment,
        fail_on_conflict=body.fail_on_conflict,
        extra_args=body.extra_args,
        extra_vars=body.extra_vars,
    )
    return release.detail()


@router.get(ENV + "/releases/active")
def active(c: ApiClient, project: str, environment: str) -> Any:
    """Running, queued and pending releases with holds (relo release active -o json)."""
    return [r.summary() for r in c.active(project, environment)]


@router.delete(ENV + "/releases/queued")
def delete_queued(c: ApiClient, project: str, environment: str) -> Any:
    """Delete every queued release of the environment."""
    return {"deleted": c.delete(all_queued=(project, environment))}


@router.get("/releases/{release_id}")
def get_release(c: ApiClient, release_id: int) -> Any:
    """One release with its steps and output (relo release show -o json)."""
    return c.get(release_id).detail()


@router.delete("/releases/{release_id}")
def delete_release(c: ApiClient, release_id: int) -> Any:
    """Delete a queued or pending release (status cancelled)."""
    return {"deleted": c.delete([release_id])}


@router.post("/releases/{release_id}/approve")
def approve(c: ApiClient, release_id: int) -> Any:
    """Approve a release waiting for approval."""
    return c.approve(release_id).detail()


@router.post("/releases/{release_id}/reject")
def reject(c: ApiClient, release_id: int) -> Any:
    """Reject a release waiting for approval."""
    return c.reject(release_id).detail()


# -- pauses and windows ------------------------------------------------------------------------
@router.post("/projects/{project}/pause")
def pause_project(c: ApiClient, project: str, body: PauseBody | None = None) -> Any:
    """Pause a whole project (body: reason, until)."""
    body = body or PauseBody()
    return _dump(c.pause(project, None, reason=body.reason, until=body.until))


@router.post("/projects/{project}/resume")
def resume_project(c: ApiClient, project: str) -> Any:
    """Resume a paused project."""
    return _dump(c.resume(project, None))


@router.post(ENV + "/pause")
def pause_environment(
    c: ApiClient, project: str, environment: str, body: PauseBody | None = None
) -> Any:
    """Pause one environment (body: reason, until)."""
    body = body or PauseBody()
    return _dump(c.pause(project, environment, reason=body.reason, until=body.until))


@router.post(ENV + "/resume")
def resume_environment(c: ApiClient, project: str, environment: str) -> Any:
    """Resume a paused environment; held releases start (FIFO)."""
    return _dump(c.resume(project, environment))


@router.get(ENV + "/windows")
def windows(c: ApiClient, project: str, environment: str) -> Any:
    """Availability windows, each with whether it is open and its next start."""
    return [_dump(w) for w in c.windows(project, environment)]


@router.post(ENV + "/windows", status_code=201)
def add_window(c: ApiClient, project: str, environment: str, body: WindowBody) -> Any:
    """Add an allow or deny window (cron, duration, timezone)."""
    return _dump(
        c.add_window(
            project,
            environment,
            kind=body.kind,
            cron=body.cron,
            duration=body.duration,
            timezone=body.timezone,
        )
    )


@router.delete(ENV + "/windows/{window_id}")
def remove_window(c: ApiClient, project: str, environment: str, window_id: int) -> Any:
    """Remove a window."""
    return _dump(c.remove_window(project, environment, window_id))


# -- schedules ---------------------------------------------------------------------------------
@router.get(ENV + "/schedule")
def schedule(
    c: ApiClient, project: str, environment: str, limit: Annotated[int, Query()] = 10
) -> Any:
    """The schedule, its next fire times and recent fires and skips."""
    return _dump(c.schedule(project, environment, limit=limit))


@router.put(ENV + "/schedule")
def set_schedule(c: ApiClient, project: str, environment: str, body: ScheduleBody) -> Any:
    """Create or replace the schedule (every, type, start_at, timezone, paused)."""
    return _dump(
        c.set_schedule(
            project,
            environment,
            body.every,
            type=body.type,
            start_at=body.start_at,
            timezone=body.timezone,
            paused=body.paused,
        )
    )


@router.delete(ENV + "/schedule")
def delete_schedule(c: ApiClient, project: str, environment: str) -> Any:
    """Remove the schedule."""
    return _dump(c.delete_schedule(project, environment))


@router.post(ENV + "/schedule/pause")
def pause_schedule(c: ApiClient, project: str, environment: str) -> Any:
    """Pause the schedule (due times are recorded as skipped)."""
    return _dump(c.pause_schedule(project, environment))


@router.post(ENV + "/schedule/resume")
def resume_schedule(c: ApiClient, project: str, environment: str) -> Any:
    """Resume the schedule."""
    return _dump(c.resume_schedule(project, environment))


# -- diagnose, sync, wait, locks -----------------------------------------------------------------
@router.get(ENV + "/diagnose")
def diagnose(
    c: ApiClient,
    project: str,
    environment: str,
    release_id: int | None = None,
    apps: str | None = None,
) -> Any:
    """Why releases wait, each finding with its remedy (relo diagnose -o json)."""
    return [_dump(f) for f in c.diagnose(project, environment, release_id, apps=apps or ())]


@router.post(ENV + "/sync")
def sync(c: ApiClient, project: str, environment: str, body: SyncBody) -> Any:
    """Submit one selective release for the apps out of sync (relo release sync)."""
    release = c.sync(project, environment, body.apps, force=body.force, comment=body.comment)
    if release is None:
        return {"release": None, "message": "every app is in sync; nothing to release"}
    return {"release": release.detail(), "message": f"release {release.id} {release.status}"}


@router.post(ENV + "/wait")
def wait(c: ApiClient, project: str, environment: str, body: WaitBody) -> Any:
    """Block until the apps are Synced and Healthy: 200 ready, 409 failed, 504 timeout."""
    result = c.wait(
        project,
        environment,
        body.apps,
        sync=body.sync,
        force=body.force,
        timeout=body.timeout,
        interval=body.interval,
    )
    return _dump(result)


@router.get(ENV + "/locks")
def locks(c: ApiClient, project: str, environment: str) -> Any:
    """Live state locks and their holders (relo lock list -o json)."""
    from ..services import locks as service

    return service.holders(c.ctx, project, environment)  # datetimes become ISO 8601


# -- audit, blueprints ---------------------------------------------------------------------------
@router.get("/events")
def events(
    c: ApiClient,
    project: str | None = None,
    environment: str | None = None,
    limit: Annotated[int, Query()] = 50,
) -> Any:
    """Audit history, newest first (relo events -o json)."""
    if environment is not None and project is None:
        raise InvalidRequest("environment needs project")
    return [_dump(e) for e in c.events(project, environment, limit)]


#: Largest blueprint accepted over HTTP.
MAX_BLUEPRINT_BYTES = 1024 * 1024


@router.post("/blueprints")
async def apply_blueprint(c: ApiClient, request: Request, base_dir: str | None = None) -> Any:
    """Apply a blueprint sent as the YAML request body (all or nothing).

    Relative executor commands resolve against ``base_dir`` on the workers' file system.
    """
    data = await request.body()
    if len(data) > MAX_BLUEPRINT_BYTES:
        raise InvalidRequest(f"blueprint larger than {MAX_BLUEPRINT_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("blueprint: the body is not UTF-8 text") from None
    return await run_in_threadpool(
        c.apply_blueprint_text, text, base_dir=base_dir, source="<request body>"
    )
