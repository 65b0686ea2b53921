"""``relo env pause|resume|show`` and ``relo env window add|list|remove`` (SPEC §4)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import InvalidRequest
from . import render
from .common import EnvOpt, OutputOpt, ProjectOpt, client
from .config import env_app

if TYPE_CHECKING:
    from ..domain import Pause
    from ..domain.models import AvailabilityWindow, EnvironmentView

window_app = typer.Typer(
    help="Availability windows: allow or deny release starts on a cron timetable.",
    no_args_is_help=True,
)

OptionalEnvOpt = Annotated[
    str | None,
    typer.Option("-e", "--environment", help="Environment name; omit for the whole project."),
]


def _t(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pause_text(p: Pause) -> str:
    text = f"paused by {p.paused_by} since {_t(p.paused_at)}"
    if p.reason:
        text += f": {p.reason}"
    text += f" (until {_t(p.until)})" if p.until else " (until resumed)"
    return text


def _label(project: str, environment: str | None) -> str:
    return (
        f"project '{project}'" if environment is None else f"environment '{project}/{environment}'"
    )


@env_app.command("pause")
def pause(
    project: ProjectOpt,
    environment: OptionalEnvOpt = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (shown to everyone whose release waits).")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="ISO 8601 time with Z or an offset, in the future: the pause then ends by "
            "itself (e.g. 2026-03-01T18:00:00+01:00).",
        ),
    ] = None,
    output: OutputOpt = "table",
) -> None:
    """Pause a whole project (every environment, also ones created later) or one environment.

    While paused nothing starts, of any type: new releases wait in the queue, running ones
    finish, scheduled ones are skipped. Pausing a paused scope replaces its pause (reason and
    until become exactly what you give). Example: relo env pause -p shop -e prod --reason
    "audit" --until 2026-03-01T18:00:00Z
    """
    render.check_format(output)
    result = client().pause(project, environment, reason=reason, until=until)
    if output == "json":
        render.print_json(result.model_dump(mode="json"))
        return
    render.info(f"{_label(project, environment)} {_pause_text(result)}")


@env_app.command("resume")
def resume(
    project: ProjectOpt, environment: OptionalEnvOpt = None, output: OutputOpt = "table"
) -> None:
    """Resume a paused project or environment: held releases start at once, in FIFO order.

    Resuming a scope that is not paused changes nothing and exits 0 (so a maintenance script
    can always end with it). A project pause and an environment pause are separate: resuming
    one says if the other still holds releases. Example: relo env resume -p shop -e prod
    """
    render.check_format(output)
    result = client().resume(project, environment)
    if output == "json":
        render.print_json(result.model_dump(mode="json"))
        return
    label = _label(project, environment)
    if result.resumed is None:
        render.info(f"{label} is not paused; nothing to resume")
    else:
        render.info(f"resumed {label} ({_pause_text(result.resumed)})")
    for p in result.still_paused:
        flag = f" -e {p.environment}" if p.environment else ""
        render.info(
            f"note: {_label(p.project, p.environment)} is still {_pause_text(p)}; "
            f"resume it with: relo env resume -p {p.project}{flag}"
        )
    if result.started:
        render.info("releases starting now: " + ", ".join(str(i) for i in result.started))


def _window_rows(items: list[AvailabilityWindow]) -> list[tuple[object, ...]]:
    return [
        (
            w.id,
            w.kind,
            w.cron,
            w.duration,
            w.timezone,
            f"yes, until {_t(w.open_until)}" if w.open_now else "no",
            _t(w.next_start),
            w.created_by,
        )
        for w in items
    ]


_WINDOW_COLUMNS = ("ID", "KIND", "CRON", "DURATION", "TIMEZONE", "OPEN NOW", "NEXT START", "BY")


def ids(values: list[int]) -> str:
    return f" ({', '.join(map(str, values))})" if values else ""


def _show_text(view: EnvironmentView) -> None:
    s = view.settings
    lines = [
        f"environment {view.project}/{view.name}  (at {_t(view.at)})",
        "  releases can start: " + ("yes" if view.can_start else "no"),
        "  project pause:      "
        + (_pause_text(view.project_pause) if view.project_pause else "not paused"),
        "  environment pause:  "
        + (_pause_text(view.environment_pause) if view.environment_pause else "not paused"),
        f"  settings:           parallel {'on' if s.parallel_releases else 'off'}, "
        f"max parallel {s.max_parallel_releases}, approval {'on' if s.approval_required else 'off'}"
        + (
            "  (approval on disables parallel releases)"
            if s.parallel_releases and s.approval_required
            else ""
        ),
        f"  launched:           {'yes' if view.launched else 'no'}",
    ]
    if not view.windows:
        lines.append("  windows:            none (releases may start at any time)")
    elif view.windows_open:
        until = f" until {_t(view.open_until)}" if view.open_until else ""
        lines.append(f"  windows:            open now{until}")
    else:
        why = (
            f"deny window {view.blocking_window_id} is open"
            if view.window_hold == "deny_window"
            else "outside the allow windows"
        )
        nxt = _t(view.next_opening) if view.next_opening else "none within a year"
        lines.append(f"  windows:            closed now ({why}); next opening {nxt}")
    q = view.queue
    lines.append(
        f"  queue:              {len(q.running)} running{ids(q.running)}, "
        f"{len(q.queued)} queued{ids(q.queued)}, "
        f"{len(q.pending_approval)} pending approval{ids(q.pending_approval)}"
    )
    for h in q.next_holds:
        lines.append(f"  next release held:  {h.message}")
    typer.echo("\n".join(lines))
    if view.windows:
        render.table(_WINDOW_COLUMNS, _window_rows(view.windows), title="windows")


@env_app.command("show")
def show(project: ProjectOpt, environment: EnvOpt, output: OutputOpt = "table") -> None:
    """Pause state (project and environment: who, since, why, until), settings, availability
    windows (open now? next opening) and the queue of one environment.

    Example: relo env show -p shop -e prod -o json
    """
    render.check_format(output)
    view = client().show_environment(project, environment)
    if output == "json":
        render.print_json(view.model_dump(mode="json"))
        return
    _show_text(view)


@window_app.command("add")
def window_add(
    project: ProjectOpt,
    environment: EnvOpt,
    cron: Annotated[
        str,
        typer.Option("--cron", help="5-field cron expression: when each opening starts."),
    ],
    duration: Annotated[
        str, typer.Option("--duration", help="How long each opening lasts: 90m, 2h, 1h30m, 1d.")
    ],
    allow: Annotated[
        bool, typer.Option("--allow", help="Releases start only inside allow windows.")
    ] = False,
    deny: Annotated[bool, typer.Option("--deny", help="No release starts inside.")] = False,
    tz: Annotated[
        str, typer.Option("--timezone", help="IANA timezone of the cron expression.")
    ] = "UTC",
    output: OutputOpt = "table",
) -> None:
    """Add an allow or deny window; prints the new window's id on stdout.

    With allow windows present releases start only inside one; a deny window blocks starts
    (deny wins over allow; a pause wins over both). Queued releases wait for the window.
    Example: relo env window add -p shop -e prod --allow --cron "0 9 * * 1-5" --duration 8h
    --timezone Europe/Berlin
    """
    render.check_format(output)
    if allow == deny:
        raise InvalidRequest("give exactly one of --allow or --deny")
    window = client().add_window(
        project,
        environment,
        kind="allow" if allow else "deny",
        cron=cron,
        duration=duration,
        timezone=tz,
    )
    if output == "json":
        render.print_json(window.model_dump(mode="json"))
        return
    typer.echo(str(window.id))
    state = f"open now until {_t(window.open_until)}" if window.open_now else "not open now"
    render.info(
        f"{window.kind} window {window.id} added to {project}/{environment}: '{window.cron}' "
        f"for {window.duration} ({window.timezone}); {state}; next start {_t(window.next_start)}"
    )


@window_app.command("list")
def window_list(project: ProjectOpt, environment: EnvOpt, output: OutputOpt = "table") -> None:
    """Windows of an environment: id, kind, cron, duration, timezone, open now, next start.

    Example: relo env window list -p shop -e prod -o json
    """
    render.check_format(output)
    items = client().windows(project, environment)
    if output == "json":
        render.print_json([w.model_dump(mode="json") for w in items])
        return
    render.table(_WINDOW_COLUMNS, _window_rows(items), title=f"{project}/{environment}")


@window_app.command("remove")
def window_remove(
    project: ProjectOpt,
    environment: EnvOpt,
    window_id: Annotated[int, typer.Argument(metavar="ID", help="Window id (window list).")],
) -> None:
    """Remove a window; releases it held start at once.

    Example: relo env window remove -p shop -e prod 3
    """
    window = client().remove_window(project, environment, window_id)
    render.info(
        f"removed {window.kind} window {window.id} ('{window.cron}' for {window.duration}, "
        f"{window.timezone}) from {project}/{environment}"
    )


def register(app: typer.Typer) -> None:
    """Add the window group to ``relo env`` (the pause commands are on ``env_app`` already)."""
    env_app.add_typer(window_app, name="window")
