"""``relo blueprint …``, ``relo resource …``, ``relo env …``, ``relo lock …``, ``relo events``."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import InvalidRequest
from . import render
from .common import EnvOpt, OutputOpt, ProjectOpt, client

blueprint_app = typer.Typer(
    help="Create and update projects from blueprint files.", no_args_is_help=True
)
resource_app = typer.Typer(
    help="Resources of an environment: status and desired spec.", no_args_is_help=True
)
env_app = typer.Typer(help="Environments: list, show, settings.", no_args_is_help=True)
lock_app = typer.Typer(
    help="Redis state locks: list holders, break stale locks.", no_args_is_help=True
)


def _on_off(value: str | None, option: str) -> bool | None:
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise InvalidRequest(f"{option} must be on or off, got '{value}'")


@blueprint_app.command("apply")
def blueprint_apply(
    file: Annotated[str, typer.Option("-f", "--file", help="Blueprint YAML file.")],
    output: OutputOpt = "table",
) -> None:
    """Create or update a project, its environments, resources and desired specs.

    An invalid file changes nothing. Example: relo blueprint apply -f examples/shop/shop.yaml
    """
    render.check_format(output)
    summary = client().apply_blueprint(file)
    if output == "json":
        render.print_json(summary)
        return
    created = summary["created_environments"]
    render.info(
        f"project {summary['project']}: {len(summary['environments'])} environment(s), "
        f"{len(summary['resources'])} resource(s) applied"
        + (f"; created {', '.join(created)}" if created else "")
    )


@resource_app.command("set")
def resource_set(
    project: ProjectOpt,
    environment: EnvOpt,
    resource: Annotated[str, typer.Argument(help="TYPE/NAME (or NAME when unique).")],
    values: Annotated[
        list[str], typer.Argument(help="KEY=VALUE; VALUE is JSON when it parses; dotted keys nest.")
    ],
    output: OutputOpt = "table",
) -> None:
    """Change one resource's desired spec in one environment (the CI step before sync).

    Example: relo resource set -p shop -e prod service/payments image=payments:1.5.0 replicas=3
    """
    render.check_format(output)
    status = client().set_resource(project, environment, resource, values)
    if output == "json":
        render.print_json(status.model_dump(mode="json"))
    else:
        render.info(
            f"{status.resource} in {project}/{environment}: {status.sync}, "
            f"desired {status.desired_spec}"
        )


@resource_app.command("list")
def resource_list(project: ProjectOpt, environment: EnvOpt, output: OutputOpt = "table") -> None:
    """Resources with sync status, health, desired and applied spec.

    Example: relo resource list -p shop -e staging
    """
    render.check_format(output)
    items = client().resources(project, environment)
    if output == "json":
        render.print_json([r.model_dump(mode="json") for r in items])
        return
    render.table(
        ("RESOURCE", "EXECUTOR", "SYNC", "HEALTH", "DESIRED", "APPLIED", "LAST RELEASE"),
        [
            (
                r.resource,
                r.executor,
                r.sync,
                r.health,
                r.desired_spec,
                r.applied_spec,
                r.last_release_id,
            )
            for r in items
        ],
        title=f"{project}/{environment}",
    )


@env_app.command("list")
def env_list(
    project: Annotated[str | None, typer.Option("-p", "--project")] = None,
    output: OutputOpt = "table",
) -> None:
    """Every environment (of one project with -p).

    Example: relo env list -p shop
    """
    render.check_format(output)
    envs = client().environments(project)
    if output == "json":
        render.print_json([e.model_dump(mode="json") for e in envs])
        return
    render.table(
        ("PROJECT", "ENVIRONMENT", "PARALLEL", "MAX", "APPROVAL", "LAUNCHED", "PAUSED"),
        [
            (
                e.project,
                e.name,
                e.settings.parallel_releases,
                e.settings.max_parallel_releases,
                e.settings.approval_required,
                e.launched,
                "project" if e.project_pause else ("yes" if e.environment_pause else ""),
            )
            for e in envs
        ],
    )


@env_app.command("settings")
def env_settings(
    project: ProjectOpt,
    environment: EnvOpt,
    parallel: Annotated[str | None, typer.Option("--parallel", help="on|off")] = None,
    max_parallel: Annotated[
        int | None, typer.Option("--max-parallel", help="Integer >= 1.")
    ] = None,
    approval: Annotated[str | None, typer.Option("--approval", help="on|off")] = None,
    output: OutputOpt = "table",
) -> None:
    """Show or change release settings (parallel, max parallel, approval).

    Example: relo env settings -p shop -e prod --parallel on --max-parallel 3
    """
    render.check_format(output)
    settings = client().settings(
        project,
        environment,
        parallel=_on_off(parallel, "--parallel"),
        max_parallel=max_parallel,
        approval=_on_off(approval, "--approval"),
    )
    if output == "json":
        out = settings.model_dump()
        out["effective_parallel"] = settings.effective_parallel
        render.print_json(out)
        return
    typer.echo(f"parallel_releases      {'on' if settings.parallel_releases else 'off'}")
    typer.echo(f"max_parallel_releases  {settings.max_parallel_releases}")
    typer.echo(f"approval_required      {'on' if settings.approval_required else 'off'}")
    if settings.parallel_releases and settings.approval_required:
        render.info("note: the approval workflow is on, which disables parallel releases")


@lock_app.command("list")
def lock_list(project: ProjectOpt, environment: EnvOpt, output: OutputOpt = "table") -> None:
    """Live state locks of an environment and who holds them.

    Example: relo lock list -p shop -e prod
    """
    from ..services import locks

    render.check_format(output)
    items = locks.holders(client().ctx, project, environment)
    if output == "json":
        render.print_json(items)
        return
    render.table(
        ("SCOPE", "RESOURCE", "RELEASE", "RELEASE STATUS", "OWNER", "SINCE", "TTL LEFT"),
        [
            (
                i["scope"],
                i["resource"],
                i["release_id"] or "unknown",
                i["release_status"],
                i["owner"],
                render.when(i["since"]),
                f"{(i['ttl_left_ms'] or 0) / 1000:.0f}s",
            )
            for i in items
        ],
    )


@lock_app.command("break")
def lock_break(
    project: ProjectOpt,
    environment: EnvOpt,
    resource: Annotated[str | None, typer.Argument(help="TYPE/NAME, or 'environment'.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every lock of the environment.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")] = "",
) -> None:
    """Break state locks, like terraform force-unlock (an event records who and why).

    Example: relo lock break -p shop -e prod service/payments --reason "worker host died"
    """
    from ..services import locks

    if bool(resource) == all_:
        raise InvalidRequest("give one RESOURCE or --all")
    broken = locks.break_locks(
        client().ctx, project, environment, None if all_ else resource, reason
    )
    render.info(f"broke {len(broken)} lock(s)")


def events(
    project: Annotated[str | None, typer.Option("-p", "--project")] = None,
    environment: Annotated[str | None, typer.Option("-e", "--environment")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 50,
    output: OutputOpt = "table",
) -> None:
    """The audit history: who did what, when and why (newest first).

    Example: relo events -p shop -e prod --limit 20 -o json
    """
    render.check_format(output)
    if environment and not project:
        raise InvalidRequest("-e needs -p")
    items = client().events(project, environment, limit)
    if output == "json":
        render.print_json([e.model_dump(mode="json") for e in items])
        return
    render.table(
        ("ID", "AT", "ACTOR", "KIND", "ENV", "RELEASE", "MESSAGE"),
        [
            (
                e.id,
                render.when(e.at),
                e.actor,
                e.kind,
                f"{e.project}/{e.environment}" if e.environment else e.project,
                e.release_id,
                e.message,
            )
            for e in items
        ],
    )
