"""``relo schedule set|show|pause|resume|delete``: scheduled releases (SPEC §7)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from ..domain.models import Schedule, ScheduleView
from . import render
from .common import EnvOpt, OutputOpt, ProjectOpt, client

schedule_app = typer.Typer(
    help="Scheduled releases: every N minutes/hours/days/weeks, fired by Celery beat.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``schedule`` command group to ``relo``."""
    app.add_typer(schedule_app, name="schedule")


def _local(value: datetime, tz: str) -> str:
    """A time on the schedule's wall clock, with its zone abbreviation."""
    return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _summary(s: Schedule) -> str:
    state = "paused" if s.paused else "active"
    return (
        f"schedule {s.project}/{s.environment}: {s.type} release every {s.every} "
        f"from {_local(s.start_at, s.timezone)} ({s.timezone}), {state}"
    )


def _print_view(view: ScheduleView) -> None:
    s = view.schedule
    tz = s.timezone
    lines = [
        f"schedule    {s.project}/{s.environment}",
        f"every       {s.every} ({s.type} release)",
        f"start at    {_local(s.start_at, tz)}  (timezone {tz})",
        "state       "
        + ("paused: due times are recorded as skipped (schedule_paused)" if s.paused else "active"),
        f"set by      {s.created_by} at {render.when(s.created_at)} UTC, "
        f"changed {render.when(s.updated_at)} UTC",
        "next fires  " + ("; ".join(_local(t, tz) for t in view.next_fires) or "-"),
    ]
    typer.echo("\n".join(lines))
    if not view.recent:
        typer.echo("no fires or skips yet")
        return
    render.table(
        ("RELEASE", "DUE", "RECORDED", "LATE", "STATUS", "REASON", "DETAIL"),
        [
            (
                r.release_id,
                _local(r.due_at, tz),
                _local(r.recorded_at, tz),
                f"{r.lateness_s:.1f}s",
                r.status,
                r.skip_reason,
                r.detail,
            )
            for r in view.recent
        ],
        title="last fires and skips (newest first)",
    )


def _emit(view: ScheduleView, output: str) -> None:
    if output == "json":
        render.print_json(view.model_dump(mode="json"))
        return
    render.info(
        _summary(view.schedule)
        + "; next fires: "
        + (", ".join(_local(t, view.schedule.timezone) for t in view.next_fires) or "-")
    )


@schedule_app.command("set")
def schedule_set(
    project: ProjectOpt,
    environment: EnvOpt,
    every: Annotated[
        str, typer.Option("--every", help="<positive integer><m|h|d|w>, e.g. 15m, 6h, 1d, 2w.")
    ],
    release_type: Annotated[
        str, typer.Option("--type", help="Release type to run (full).")
    ] = "full",
    start_at: Annotated[
        str | None,
        typer.Option(
            "--start-at",
            help="ISO 8601 anchor; fire times are start_at + k x every. Without an offset it "
            "is a wall time in --timezone. Default: keep the anchor, or the next whole minute.",
        ),
    ] = None,
    timezone: Annotated[
        str,
        typer.Option("--timezone", help="IANA zone whose wall clock days/weeks follow (UTC)."),
    ] = "UTC",
    paused: Annotated[
        bool, typer.Option("--paused", help="Create it paused (due times are skipped).")
    ] = False,
    output: OutputOpt = "table",
) -> None:
    """Create or replace an environment's schedule; beat applies it at its next tick.

    Example: relo schedule set -p shop -e staging --every 1d --start-at 2026-01-05T02:00
    --timezone Europe/Berlin
    """
    render.check_format(output)
    view = client().set_schedule(
        project,
        environment,
        every,
        type=release_type,
        start_at=start_at,
        timezone=timezone,
        paused=paused,
    )
    _emit(view, output)


@schedule_app.command("show")
def schedule_show(
    project: ProjectOpt,
    environment: EnvOpt,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Last fires and skips shown (10).")
    ] = 10,
    output: OutputOpt = "table",
) -> None:
    """The schedule, its next three fire times and its last fires and skips with reasons.

    Example: relo schedule show -p shop -e staging -o json
    """
    render.check_format(output)
    view = client().schedule(project, environment, limit=limit)
    if output == "json":
        render.print_json(view.model_dump(mode="json"))
        return
    _print_view(view)


@schedule_app.command("pause")
def schedule_pause(project: ProjectOpt, environment: EnvOpt, output: OutputOpt = "table") -> None:
    """Pause a schedule: its due times are recorded as skipped (reason schedule_paused).

    Example: relo schedule pause -p shop -e prod
    """
    render.check_format(output)
    _emit(client().pause_schedule(project, environment), output)


@schedule_app.command("resume")
def schedule_resume(project: ProjectOpt, environment: EnvOpt, output: OutputOpt = "table") -> None:
    """Resume a paused schedule from its next due time.

    Example: relo schedule resume -p shop -e prod
    """
    render.check_format(output)
    _emit(client().resume_schedule(project, environment), output)


@schedule_app.command("delete")
def schedule_delete(project: ProjectOpt, environment: EnvOpt, output: OutputOpt = "table") -> None:
    """Remove an environment's schedule; its past fires and skips stay in the history.

    Example: relo schedule delete -p shop -e staging
    """
    render.check_format(output)
    gone = client().delete_schedule(project, environment)
    if output == "json":
        render.print_json(gone.model_dump(mode="json"))
        return
    render.info(f"deleted {_summary(gone)}")
