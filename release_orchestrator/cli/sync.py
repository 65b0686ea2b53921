"""``relo release sync`` and ``relo release wait``: deploy apps from CI and block until live.

Exit codes (SPEC §6): 0 ready / nothing to do; 1 a release failed or an app is Degraded;
2 bad input (unknown names list what exists); 3 ``wait`` timed out (after printing what
blocks); 4 a state lock conflict.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Annotated, Any

import typer

from ..domain.models import AppProgress, WaitResult
from ..errors import ReleaseFailed, WaitTimeout
from . import render
from .common import EnvOpt, OutputOpt, ProjectOpt, client
from .diagnose import finding_lines

AppsArg = Annotated[
    str, typer.Argument(help="Apps, comma-separated: TYPE/NAME, or NAME when unique.")
]


def sync(
    apps: AppsArg,
    project: ProjectOpt,
    environment: EnvOpt,
    force: Annotated[
        bool, typer.Option("--force", help="Release every app, in sync or not.")
    ] = False,
    comment: Annotated[str | None, typer.Option("--comment", help="Free text.")] = None,
    output: OutputOpt = "table",
) -> None:
    """Release the apps that are out of sync (or Unknown) in one selective release.

    Prints the release id alone on stdout (-o json: the release object, or null when every
    app is in sync). When every app is already in sync it says so and exits 0 without a
    release. Unknown names exit 2 naming what exists.

    Example: relo resource set -p shop -e prod service/payments image=payments:1.5.0 &&
    ID=$(relo release sync payments -p shop -e prod)
    """
    render.check_format(output)
    release = client().sync(project, environment, apps, force=force, comment=comment)
    if release is None:
        if output == "json":
            render.print_json(None)
        render.info(
            f"{apps}: already in sync in {project}/{environment}; nothing to release "
            "(--force releases anyway)"
        )
        return
    if output == "json":
        render.print_json(release.detail())
    else:
        typer.echo(release.id)
    render.info(
        f"release {release.id} {release.status}: applies "
        + ", ".join(t.resource for t in release.targets)
    )


# -- wait: progress display ----------------------------------------------------------------
def _release_text(p: AppProgress) -> str:
    if p.release_id is None:
        return "-"
    text = f"{p.release_id} {p.release_status}"
    if p.position is not None:
        text += f" #{p.position}"
    return text


def _line(p: AppProgress) -> str:
    """One plain progress line of an app."""
    text = f"{p.app}: {p.sync}/{p.health}"
    if p.ready:
        return text + ", ready"
    if p.release_id is None:
        return text + ", no release targets it"
    text += f", waiting for release {p.release_id} ({p.release_status}"
    if p.position is not None:
        text += f", position {p.position}"
    text += ")"
    if p.waiting_on:
        text += f": {p.waiting_on}"
    return text


class LiveView:
    """The live table of ``relo release wait`` on a terminal (a rich renderable)."""

    def __init__(self, project: str, environment: str, started: float) -> None:
        self.title = f"{project}/{environment}"
        self.started = started
        self.result: WaitResult | None = None

    def __rich__(self) -> Any:
        from rich.table import Table

        elapsed = time.monotonic() - self.started
        apps = self.result.apps if self.result else []
        ready = sum(1 for a in apps if a.ready)
        table = Table(
            title=f"relo release wait {self.title}: {ready}/{len(apps)} ready, {elapsed:.0f}s",
            header_style="bold",
        )
        for col in ("APP", "SYNC", "HEALTH", "RELEASE", "WAITING ON"):
            table.add_column(col, overflow="fold")
        for a in apps:
            status = "[green]ready[/]" if a.ready else (a.waiting_on or "-")
            table.add_row(a.app, str(a.sync), str(a.health), _release_text(a), status)
        return table


class Progress:
    """Shows ``wait`` progress: a live table on a terminal, else one line per change."""

    def __init__(self, stream: IO[str], project: str, environment: str) -> None:
        self.stream = stream
        self.live: Any = None
        self.view: LiveView | None = None
        self.lines: dict[str, str] = {}
        if stream.isatty():
            from rich.console import Console
            from rich.live import Live

            self.view = LiveView(project, environment, time.monotonic())
            self.live = Live(
                self.view,
                console=Console(file=stream),
                refresh_per_second=4,
                transient=False,
            )
            self.live.start()

    def __call__(self, result: WaitResult) -> None:
        if self.view is not None:
            self.view.result = result
            self.live.refresh()
            return
        for p in result.apps:
            line = _line(p)
            if self.lines.get(p.app) != line:
                self.lines[p.app] = line
                stamp = time.strftime("%H:%M:%S")
                self.stream.write(f"{stamp} {line}\n")
                self.stream.flush()

    def stop(self, result: WaitResult | None) -> None:
        if self.live is not None:
            if result is not None and self.view is not None:
                self.view.result = result
            self.live.stop()
        elif result is not None:
            self(result)


def wait(
    apps: AppsArg,
    project: ProjectOpt,
    environment: EnvOpt,
    sync_first: Annotated[
        bool, typer.Option("--sync", help="First release the apps that are out of sync.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="With --sync: release every app, in sync or not.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Give up after SECONDS: print what blocks, exit 3."),
    ] = None,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between checks.")] = 2.0,
    output: OutputOpt = "table",
) -> None:
    """Wait until every app is Synced and Healthy and no queued or running release targets it.

    Live progress on a terminal (per app: sync, health, the release it waits for and its queue
    position); one line per change otherwise; -o json prints a final JSON summary. Exit 0
    ready, 1 a release failed or an app is Degraded, 2 unknown names, 3 timed out (what
    blocks is printed first: the relo diagnose findings).

    Example: relo release wait payments,catalog -p shop -e prod --sync --timeout 900
    """
    render.check_format(output)
    stream = sys.stdout if output == "table" else sys.stderr
    progress = Progress(stream, project, environment)
    final: WaitResult | None = None
    try:
        final = client().wait(
            project,
            environment,
            apps,
            sync=sync_first,
            force=force,
            timeout=timeout,
            interval=interval,
            on_change=progress,
        )
    except (ReleaseFailed, WaitTimeout) as exc:
        final = exc.details.get("result")
        progress.stop(final)
        if output == "json" and final is not None:
            render.print_json(final.model_dump(mode="json"))
        if isinstance(exc, WaitTimeout):
            findings = exc.details.get("findings") or []
            lines = finding_lines(findings, "  ") or ["  (no finding: it may just need time)"]
            render.info("still blocking:\n" + "\n".join(lines))
        raise
    except BaseException:
        progress.stop(None)
        raise
    progress.stop(final)
    if output == "json":
        render.print_json(final.model_dump(mode="json"))
    synced = f" (release {final.synced_release_id})" if final.synced_release_id else ""
    render.info(
        f"{len(final.apps)} app(s) Synced and Healthy in {project}/{environment}{synced} "
        f"after {final.elapsed_s:.0f}s"
    )


def register(app: typer.Typer) -> None:
    """Add ``sync`` and ``wait`` to the ``relo release`` group."""
    from .releases import app as release_app

    release_app.command("sync")(sync)
    release_app.command("wait")(wait)
