"""``relo release …``: trigger, show, list, logs, active, delete, approve, reject."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from ..domain import Release, ReleaseStatus
from ..errors import InvalidRequest, ReleaseFailed, StateLockError
from . import render
from .common import EnvOpt, OutputOpt, ProjectOpt, client

app = typer.Typer(help="Submit, inspect and manage releases.", no_args_is_help=True)


@app.command("trigger")
def trigger(
    project: ProjectOpt,
    environment: EnvOpt,
    type_: Annotated[
        str, typer.Option("--type", "-t", help="launch, full, selective, custom or destroy.")
    ] = "full",
    target: Annotated[
        list[str] | None,
        typer.Option("--target", help="TYPE/NAME[:apply|destroy|refresh] (selective; repeatable)."),
    ] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Re-read actual state first.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Apply even what is in sync.")] = False,
    allow_destroy: Annotated[
        bool, typer.Option("--allow-destroy", help="Allow steps that destroy.")
    ] = False,
    no_rollback: Annotated[
        bool, typer.Option("--no-rollback", help="Do not roll back on failure.")
    ] = False,
    comment: Annotated[str | None, typer.Option("--comment", help="Free text.")] = None,
    fail_on_conflict: Annotated[
        bool,
        typer.Option(
            "--fail-on-conflict",
            help="Fail at once (exit 4) instead of queueing behind a conflicting release or lock.",
        ),
    ] = False,
    arg: Annotated[
        list[str] | None,
        typer.Option("--arg", help="Extra executor argument (custom releases; repeatable)."),
    ] = None,
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var", help="KEY=VALUE exported as RELO_VAR_KEY (custom releases; repeatable)."
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Wait until the release ends; exit 1 unless it succeeded."),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="With --wait: give up after SECONDS (exit 3).")
    ] = None,
    output: OutputOpt = "table",
) -> None:
    """Submit a release of any type; prints its id alone on stdout.

    Example: ID=$(relo release trigger -p shop -e staging --type selective
    --target service/payments --comment "hotfix")
    """
    render.check_format(output)
    variables = {}
    for item in var or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidRequest(f"--var '{item}' is not KEY=VALUE")
        variables[key] = value
    try:
        release = client().submit(
            project,
            environment,
            type_,
            targets=target or [],
            refresh=refresh,
            force=force,
            allow_destroy=allow_destroy,
            no_rollback=no_rollback,
            comment=comment,
            fail_on_conflict=fail_on_conflict,
            extra_args=arg or [],
            extra_vars=variables,
        )
    except (ReleaseFailed, StateLockError) as exc:
        recorded = exc.details.get("release")
        if recorded is not None:  # recorded, then failed at once: still print its id
            _print_release(recorded, output)
        raise
    if not wait:
        _print_release(release, output)
        render.info(f"release {release.id} {release.status}")
        return
    if output != "json":
        typer.echo(release.id)
    render.info(f"release {release.id} {release.status}; waiting")
    try:
        release = client().wait_release(release.id, timeout=timeout)
    finally:
        if output == "json":
            render.print_json(client().get(release.id).detail())
    render.info(f"release {release.id} {release.status}")


def _print_release(release: Release, output: str) -> None:
    if output == "json":
        render.print_json(release.detail())
    else:
        typer.echo(release.id)


@app.command("show")
def show(
    release_id: Annotated[int, typer.Argument(help="Release id.")],
    output: OutputOpt = "table",
) -> None:
    """Show one release with its steps; a waiting one with what holds it and the fix.

    For a queued or pending-approval release the table ends with the findings of `relo
    diagnose -p P -e E ID` (what holds it, a missing worker, ... each with its fix), which
    asks the workers (about a second); -o json gives the release object (its "held" list
    holds the admission policy's reasons).

    Example: relo release show 42 -o json
    """
    from .diagnose import finding_lines

    render.check_format(output)
    c = client()
    release = c.get(release_id)
    if output == "json":
        render.print_json(release.detail())
        return
    findings = None
    if release.status in (ReleaseStatus.QUEUED, ReleaseStatus.PENDING_APPROVAL):
        findings = c.diagnose(release.project, release.environment, release.id)
    render.release_detail(release, holds=findings is None)
    if findings:
        sys.stdout.write("\n".join(["what holds it:", *finding_lines(findings, "  ")]) + "\n")


@app.command("list")
def list_(
    project: ProjectOpt,
    environment: EnvOpt,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many, newest first.")] = 20,
    output: OutputOpt = "table",
) -> None:
    """Release history of an environment, newest first (every status, skipped included).

    Example: relo release list -p shop -e prod --limit 5
    """
    render.check_format(output)
    releases = client().list(project, environment, limit)
    if output == "json":
        render.print_json([r.detail() for r in releases])
    else:
        render.releases_table(releases, title=f"{project}/{environment}", show_holds=False)


@app.command("active")
def active(project: ProjectOpt, environment: EnvOpt, output: OutputOpt = "table") -> None:
    """Running, queued (in order, with position) and pending-approval releases.

    Example: relo release active -p shop -e prod -o json
    """
    render.check_format(output)
    releases = client().active(project, environment)
    if output == "json":
        render.print_json([r.summary() for r in releases])
    elif not releases:
        render.info(f"no active releases in {project}/{environment}")
    else:
        render.releases_table(releases, title=f"active releases of {project}/{environment}")


@app.command("logs")
def logs(
    release_id: Annotated[int, typer.Argument(help="Release id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the release ends.")
    ] = False,
    interval: Annotated[float, typer.Option("--interval", help="Poll interval, seconds.")] = 0.5,
) -> None:
    """Print the output of every step of a release.

    Example: relo release logs 42 --follow
    """
    c = client()
    seen: dict[int, list[int]] = {}  # seq -> [characters printed, ended]
    while True:
        release = c.get(release_id)
        for step in release.steps:
            state = seen.get(step.seq)
            if state is None:
                rollback = " (rollback)" if str(step.phase) == "rollback" else ""
                typer.echo(f"==> step {step.seq}: {step.action} {step.resource}{rollback}")
                state = seen[step.seq] = [0, 0]
            if len(step.output) > state[0]:
                typer.echo(step.output[state[0] :], nl=False)
                state[0] = len(step.output)
            if str(step.status) != "running" and not state[1]:
                if step.output and not step.output.endswith("\n"):
                    typer.echo("")
                typer.echo(
                    f"<== step {step.seq} {step.status}" + (f": {step.error}" if step.error else "")
                )
                state[1] = 1
        if release.status.is_final:
            typer.echo(
                f"release {release.id} {release.status}"
                + (f": {release.error}" if release.error else "")
            )
            return
        if not follow:
            return
        time.sleep(interval)


@app.command("delete")
def delete(
    release_ids: Annotated[list[int] | None, typer.Argument(help="Release ids.")] = None,
    all_queued: Annotated[
        bool, typer.Option("--all-queued", help="Every queued release of -p/-e.")
    ] = False,
    project: Annotated[str | None, typer.Option("-p", "--project")] = None,
    environment: Annotated[str | None, typer.Option("-e", "--environment")] = None,
) -> None:
    """Remove queued (or pending-approval) releases; running or finished ones are refused.

    Example: relo release delete 41 42   |   relo release delete --all-queued -p shop -e prod
    """
    if all_queued:
        if not project or not environment:
            raise InvalidRequest("--all-queued needs -p/--project and -e/--environment")
        if release_ids:
            raise InvalidRequest("give release ids or --all-queued, not both")
        cancelled = client().delete(all_queued=(project, environment))
    else:
        if not release_ids:
            raise InvalidRequest("give release ids, or --all-queued with -p and -e")
        cancelled = client().delete(release_ids)
    render.info(
        f"deleted {len(cancelled)} release(s): " + (", ".join(map(str, cancelled)) or "none")
    )


@app.command("approve")
def approve(release_id: Annotated[int, typer.Argument(help="Release id.")]) -> None:
    """Approve a release waiting in pending_approval; it joins the queue.

    Example: relo release approve 42
    """
    release = client().approve(release_id)
    render.info(f"release {release.id} approved: {release.status}")


@app.command("reject")
def reject(release_id: Annotated[int, typer.Argument(help="Release id.")]) -> None:
    """Reject a release waiting in pending_approval.

    Example: relo release reject 42
    """
    release = client().reject(release_id)
    render.info(f"release {release.id} {release.status}")
