"""``relo diagnose``: why a release does not start, in plain sentences with the fix (SPEC §8)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from ..domain import Finding
from ..errors import NotFound
from . import render
from .common import EnvOpt, OutputOpt, ProjectOpt, client


def finding_lines(findings: Sequence[Finding], indent: str = "") -> list[str]:
    """``[code] message`` then ``  fix: remedy`` for each finding."""
    lines = []
    for f in findings:
        lines.append(f"{indent}[{f.code}] {f.message}")
        if f.remedy:
            lines.append(f"{indent}    fix: {f.remedy}")
    return lines


def findings_json(findings: Sequence[Finding]) -> list[dict[str, object]]:
    """The JSON shape of findings: ``{code, message, remedy, release_id, resources}``."""
    return [f.model_dump(mode="json") for f in findings]


def diagnose(
    project: ProjectOpt,
    environment: EnvOpt,
    release_id: Annotated[
        int | None, typer.Argument(help="A release to explain (default: every waiting one).")
    ] = None,
    apps: Annotated[
        str | None,
        typer.Option(
            "--app",
            "-a",
            help="Apps to explain (comma-separated TYPE/NAME or unique NAME): what keeps them "
            "from being Synced and Healthy, or whether a sync would do nothing.",
        ),
    ] = None,
    output: OutputOpt = "table",
) -> None:
    """Explain why releases do not start or do not run in parallel, with the command that fixes it.

    Findings carry a stable code (project_paused, waiting_behind, state_lock_held, no_worker,
    in_sync, ...); -o json prints a list of {code, message, remedy, release_id, resources}.
    Unknown names exit 2 (with -o json the unknown_name finding is printed first).

    Example: relo diagnose -p shop -e prod 42   |   relo diagnose -p shop -e prod -o json
    """
    from ..services.diagnose import split_apps, unknown_name

    render.check_format(output)
    try:
        findings = client().diagnose(
            project, environment, release_id, apps=split_apps(apps) if apps else ()
        )
    except NotFound as exc:
        if output == "json":
            render.print_json(findings_json([unknown_name(exc, project, environment)]))
        raise
    if output == "json":
        render.print_json(findings_json(findings))
        return
    if not findings:
        what = f"release {release_id}" if release_id is not None else f"{project}/{environment}"
        sys.stdout.write(f"nothing in the way of {what}: no finding\n")
        return
    sys.stdout.write("\n".join(finding_lines(findings)) + "\n")


def register(app: typer.Typer) -> None:
    """Add ``relo diagnose`` to the ``relo`` app."""
    app.command("diagnose")(diagnose)
