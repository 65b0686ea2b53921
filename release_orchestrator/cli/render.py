"""Output of the CLI: tables (rich) or JSON, to stdout; messages to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from ..domain import Release

FORMATS = ("table", "json")


def check_format(output: str) -> str:
    from ..errors import InvalidRequest

    if output not in FORMATS:
        raise InvalidRequest(f"-o/--output must be table or json, got '{output}'")
    return output


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_default) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """A human message on stderr (stdout stays machine-readable)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("-" if v is None or v == "" else str(v) for v in row))
    console = Console(soft_wrap=False)
    if not console.is_terminal:  # piped: do not wrap cells at an assumed 80 columns
        console = Console(soft_wrap=False, width=200)
    console.print(t)


def targets_text(release: Release) -> str:
    return ", ".join(f"{t.resource}:{t.action}" for t in release.targets)


def flags_text(release: Release) -> str:
    flags = [name for name in ("refresh", "force", "allow_destroy") if getattr(release, name)]
    return ",".join(flags)


def releases_table(
    releases: Sequence[Release], title: str | None = None, show_holds: bool = True
) -> None:
    rows = []
    for r in releases:
        held = "; ".join(h.message for h in r.held) if show_holds else ""
        rows.append(
            (
                r.id,
                r.type,
                r.status,
                r.position,
                flags_text(r),
                targets_text(r),
                r.triggered_by,
                when(r.created_at),
                when(r.started_at),
                r.comment,
                held or (r.error or ""),
            )
        )
    table(
        (
            "ID",
            "TYPE",
            "STATUS",
            "POS",
            "FLAGS",
            "TARGETS",
            "BY",
            "CREATED",
            "STARTED",
            "COMMENT",
            "HELD BY / ERROR",
        ),
        rows,
        title,
    )


def release_detail(release: Release, *, holds: bool = True) -> None:
    """A release's fields, its holds (unless ``holds`` is off: the caller shows findings)
    and its steps."""
    lines = [
        f"release {release.id}  {release.project}/{release.environment}  {release.type}  "
        f"{release.status}",
        f"  triggered by {release.triggered_by} ({release.trigger})  created "
        f"{when(release.created_at)}  started {when(release.started_at)}  finished "
        f"{when(release.finished_at)}",
    ]
    if release.position is not None:
        lines.append(f"  queue position {release.position}")
    if flags_text(release):
        lines.append(f"  flags: {flags_text(release)}")
    if release.targets:
        lines.append(f"  targets: {targets_text(release)}")
    if release.comment:
        lines.append(f"  comment: {release.comment}")
    if release.worker:
        lines.append(f"  worker: {release.worker}  fencing token {release.fencing_token}")
    if release.error:
        lines.append(f"  error: {release.error}")
    if release.skip_reason:
        lines.append(f"  skipped: {release.skip_reason}")
    for h in release.held if holds else ():
        lines.append(f"  held [{h.code}]: {h.message}")
    sys.stdout.write("\n".join(lines) + "\n")
    if release.steps:
        table(
            ("#", "RESOURCE", "ACTION", "PHASE", "STATUS", "EXIT", "STARTED", "FINISHED", "ERROR"),
            [
                (
                    s.seq,
                    s.resource,
                    s.action,
                    s.phase,
                    s.status,
                    s.exit_code,
                    when(s.started_at),
                    when(s.finished_at),
                    s.error,
                )
                for s in release.steps
            ],
        )
