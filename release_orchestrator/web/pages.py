"""Server-rendered pages: environments, Active Releases, history, pauses, settings, schedule.

Forms POST and redirect back (303) with a one-line outcome in ``?msg=`` or ``?error=``.
Every POST must come from the app's own pages: a cross-site ``Origin`` or
``Sec-Fetch-Site: cross-site`` is refused (the browser would send Basic credentials along).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..client import Client
from ..errors import InvalidRequest, NotFound, ReloError
from . import api
from .auth import AuthError
from .queries import active_counts, environment_names
from .state import PageClient

log = logging.getLogger(__name__)

templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
router = APIRouter(include_in_schema=False)

#: Releases shown in an environment's history.
HISTORY_LIMIT = 20


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    seconds = int(((end or datetime.now(timezone.utc)) - start).total_seconds())
    minutes, s = divmod(max(seconds, 0), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m{s:02d}s" if hours else (f"{m}m{s:02d}s" if m else f"{s}s")


templates.env.filters["when"] = _when
templates.env.globals["duration"] = _duration
templates.env.globals["quote"] = lambda s: quote(str(s), safe="")


def env_url(project: str, environment: str) -> str:
    return f"/projects/{quote(project, safe='')}/environments/{quote(environment, safe='')}"


templates.env.globals["env_url"] = env_url


def render(
    request: Request, name: str, context: Mapping[str, Any], status_code: int = 200
) -> HTMLResponse:
    ctx = {
        "msg": request.query_params.get("msg"),
        "error": request.query_params.get("error"),
        **context,
    }
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


def error_page(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    """The HTML page of an error (the JSON API answers JSON instead)."""
    response = templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "msg": None, "error": None},
        status_code=status,
    )
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def same_origin(request: Request) -> None:
    """Refuse a form POST that another site made the browser send (CSRF)."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise AuthError(403, "forbidden", "cross-site form submission refused", None)
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser form, or an old browser: the credentials still apply
    if origin == "null" or urlsplit(origin).netloc.lower() != request.headers.get(
        "host", ""
    ).lower():
        raise AuthError(403, "forbidden", "cross-origin form submission refused", None)


SameOrigin = Depends(same_origin)


def back(url: str, *, msg: str | None = None, error: str | None = None) -> RedirectResponse:
    """303 to ``url`` (a path of this app) with the outcome of an action."""
    params = {k: v for k, v in (("msg", msg), ("error", error)) if v}
    return RedirectResponse(url + ("?" + urlencode(params) if params else ""), status_code=303)


def act(url: str, action: Callable[[], str]) -> RedirectResponse:
    """Run a form's action; back to ``url`` with its message, or with the error it raised."""
    try:
        return back(url, msg=action())
    except ReloError as exc:
        return back(url, error=" ".join(exc.message.split()))


def _optional(fetch: Callable[[], Any]) -> tuple[Any, str | None]:
    """A section's data, or the error that kept it from loading (the page still renders)."""
    try:
        return fetch(), None
    except NotFound as exc:
        return None, exc.message
    except ReloError as exc:
        return None, " ".join(exc.message.split())


def _on(value: str | None) -> bool:
    return value in ("on", "true", "1", "yes")


# -- pages -------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def index(request: Request, c: PageClient) -> HTMLResponse:
    envs = c.environments()
    with c.ctx.db.session(write=False) as s:
        ids = {names: env_id for env_id, names in environment_names(s).items()}
        counts = active_counts(s)
    projects: dict[str, list[dict[str, Any]]] = {}
    project_pause: dict[str, Any] = {}
    for e in envs:
        project_pause[e.project] = e.project_pause
        projects.setdefault(e.project, []).append(
            {"env": e, "counts": counts.get(ids.get((e.project, e.name), -1), Counter())}
        )
    return render(
        request,
        "index.html",
        {"projects": projects, "project_pause": project_pause, "title": "relo"},
    )


@router.get("/projects/{project}/environments/{environment}", response_class=HTMLResponse)
def environment_page(
    request: Request, c: PageClient, project: str, environment: str
) -> HTMLResponse:
    view = c.show_environment(project, environment)  # NotFound → 404 page
    active = c.active(project, environment)
    history = c.list(project, environment, HISTORY_LIMIT)
    schedule, schedule_error = _optional(lambda: c.schedule(project, environment, limit=5))
    findings, findings_error = _optional(lambda: c.diagnose(project, environment))
    resources, resources_error = _optional(lambda: c.resources(project, environment))
    events, _ = _optional(lambda: c.events(project, environment, 10))
    return render(
        request,
        "environment.html",
        {
            "title": f"{project}/{environment}",
            "project": project,
            "environment": environment,
            "view": view,
            "active": active,
            "history": history,
            "schedule": schedule,
            "schedule_error": schedule_error,
            "findings": findings or [],
            "findings_error": findings_error,
            "resources": resources or [],
            "resources_error": resources_error,
            "events": events or [],
            "refresh": request.query_params.get("refresh") == "1",
        },
    )


@router.get("/releases/{release_id}", response_class=HTMLResponse)
def release_page(request: Request, c: PageClient, release_id: int) -> HTMLResponse:
    release = c.get(release_id)
    return render(
        request,
        "release.html",
        {
            "title": f"release {release.id}",
            "release": release,
            "refresh": not release.status.is_final,
        },
    )


@router.get("/api-help", response_class=HTMLResponse)
def api_help(request: Request, c: PageClient) -> HTMLResponse:
    """The JSON API's routes, from the app itself, with how to authenticate."""
    del c  # the same access as the other pages
    routes = []
    for route in api.router.routes:
        path = getattr(route, "path", "")
        doc = (getattr(route, "endpoint", None).__doc__ or "").strip().split("\n")[0]
        for method in sorted(getattr(route, "methods", ()) or ()):
            routes.append((path, method, doc))
    return render(
        request,
        "api_help.html",
        {"title": "relo JSON API", "routes": sorted(routes), "base": str(request.base_url)},
    )


# -- actions -----------------------------------------------------------------------------------
def _release_env_url(c: Client, release_id: int) -> str:
    release = c.get(release_id)
    return env_url(release.project, release.environment)


@router.post("/releases/{release_id}/delete", dependencies=[SameOrigin])
def delete_release(c: PageClient, release_id: int) -> Response:
    url = _release_env_url(c, release_id)
    return act(url, lambda: f"deleted release {', '.join(map(str, c.delete([release_id])))}")


@router.post("/releases/{release_id}/approve", dependencies=[SameOrigin])
def approve_release(c: PageClient, release_id: int) -> Response:
    url = _release_env_url(c, release_id)
    return act(url, lambda: f"release {release_id} approved: {c.approve(release_id).status}")


@router.post("/releases/{release_id}/reject", dependencies=[SameOrigin])
def reject_release(c: PageClient, release_id: int) -> Response:
    url = _release_env_url(c, release_id)
    return act(url, lambda: f"release {release_id} {c.reject(release_id).status}")


def _pause_message(pause: Any) -> str:
    where = pause.project + (f"/{pause.environment}" if pause.environment else "")
    return f"paused {where}" + (f": {pause.reason}" if pause.reason else "")


def _resume_message(result: Any) -> str:
    where = result.project + (f"/{result.environment}" if result.environment else "")
    if result.resumed is None:
        return f"{where} was not paused"
    text = f"resumed {where}"
    if result.started:
        text += "; started " + ", ".join(map(str, result.started))
    if result.still_paused:
        text += "; still paused: " + ", ".join(
            p.project + (f"/{p.environment}" if p.environment else "") for p in result.still_paused
        )
    return text


def _from_env(project: str, environment: str | None) -> str:
    return env_url(project, environment) if environment else f"/#project-{quote(project)}"


@router.post("/projects/{project}/pause", dependencies=[SameOrigin])
def pause_project(
    c: PageClient,
    project: str,
    reason: Annotated[str | None, Form()] = None,
    until: Annotated[str | None, Form()] = None,
    from_environment: Annotated[str | None, Form()] = None,
) -> Response:
    return act(
        _from_env(project, from_environment),
        lambda: _pause_message(c.pause(project, None, reason=reason or None, until=until or None)),
    )


@router.post("/projects/{project}/resume", dependencies=[SameOrigin])
def resume_project(
    c: PageClient, project: str, from_environment: Annotated[str | None, Form()] = None
) -> Response:
    return act(
        _from_env(project, from_environment), lambda: _resume_message(c.resume(project, None))
    )


@router.post("/projects/{project}/environments/{environment}/pause", dependencies=[SameOrigin])
def pause_environment(
    c: PageClient,
    project: str,
    environment: str,
    reason: Annotated[str | None, Form()] = None,
    until: Annotated[str | None, Form()] = None,
) -> Response:
    return act(
        env_url(project, environment),
        lambda: _pause_message(
            c.pause(project, environment, reason=reason or None, until=until or None)
        ),
    )


@router.post("/projects/{project}/environments/{environment}/resume", dependencies=[SameOrigin])
def resume_environment(c: PageClient, project: str, environment: str) -> Response:
    return act(
        env_url(project, environment), lambda: _resume_message(c.resume(project, environment))
    )


@router.post("/projects/{project}/environments/{environment}/settings", dependencies=[SameOrigin])
def change_settings(
    c: PageClient,
    project: str,
    environment: str,
    max_parallel_releases: Annotated[str, Form()],
    parallel_releases: Annotated[str | None, Form()] = None,
    approval_required: Annotated[str | None, Form()] = None,
) -> Response:
    def change() -> str:
        try:
            max_parallel = int(max_parallel_releases)
        except ValueError:
            raise InvalidRequest(
                f"max parallel releases must be an integer >= 1, got '{max_parallel_releases}'"
            ) from None
        s = c.settings(
            project,
            environment,
            parallel=_on(parallel_releases),
            max_parallel=max_parallel,
            approval=_on(approval_required),
        )
        note = (
            " (the approval workflow disables parallel releases)"
            if s.parallel_releases and s.approval_required
            else ""
        )
        return (
            f"settings saved: parallel {'on' if s.parallel_releases else 'off'}, "
            f"max parallel {s.max_parallel_releases}, "
            f"approval {'on' if s.approval_required else 'off'}{note}"
        )

    return act(env_url(project, environment), change)


@router.post("/projects/{project}/environments/{environment}/releases", dependencies=[SameOrigin])
def trigger_release(
    c: PageClient,
    project: str,
    environment: str,
    type: Annotated[str, Form()] = "full",
    targets: Annotated[str, Form()] = "",
    comment: Annotated[str | None, Form()] = None,
    refresh: Annotated[str | None, Form()] = None,
    force: Annotated[str | None, Form()] = None,
    allow_destroy: Annotated[str | None, Form()] = None,
) -> Response:
    def submit() -> str:
        release = c.submit(
            project,
            environment,
            type,
            targets=[t for t in targets.replace(",", " ").split() if t],
            refresh=_on(refresh),
            force=_on(force),
            allow_destroy=_on(allow_destroy),
            comment=comment or None,
        )
        return f"release {release.id} {release.status}"

    return act(env_url(project, environment), submit)


@router.post(
    "/projects/{project}/environments/{environment}/schedule/{action}", dependencies=[SameOrigin]
)
def schedule_action(c: PageClient, project: str, environment: str, action: str) -> Response:
    def change() -> str:
        if action == "pause":
            c.pause_schedule(project, environment)
            return "schedule paused"
        if action == "resume":
            c.resume_schedule(project, environment)
            return "schedule resumed"
        raise InvalidRequest(f"unknown schedule action '{action}'")

    return act(env_url(project, environment), change)


__all__ = ["error_page", "router"]
