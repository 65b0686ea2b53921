"""Read-only aggregate queries of the web app (index counts, Prometheus metrics).

Each is one indexed query (``ix_releases_status``) or reads only rows newer than a
watermark, so a page view or a scrape stays cheap however long the history grows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..domain import FINAL_STATUSES, ReleaseStatus
from ..storage.tables import EnvironmentRow, ProjectRow, ReleaseRow

#: Statuses of releases in flight (``release active``).
ACTIVE = (ReleaseStatus.RUNNING, ReleaseStatus.QUEUED, ReleaseStatus.PENDING_APPROVAL)
_FINAL = tuple(str(s) for s in FINAL_STATUSES)


def environment_names(s: Session) -> dict[int, tuple[str, str]]:
    """Every environment's id → ``(project, environment)``."""
    rows = s.execute(
        select(EnvironmentRow.id, ProjectRow.name, EnvironmentRow.name).join(
            ProjectRow, ProjectRow.id == EnvironmentRow.project_id
        )
    )
    return {env_id: (project, env) for env_id, project, env in rows}


def active_counts(s: Session) -> dict[int, Counter[str]]:
    """Per environment id: how many releases are running, queued, pending approval."""
    out: dict[int, Counter[str]] = {}
    rows = s.execute(
        select(ReleaseRow.environment_id, ReleaseRow.status, func.count())
        .where(ReleaseRow.status.in_([str(x) for x in ACTIVE]))
        .group_by(ReleaseRow.environment_id, ReleaseRow.status)
    )
    for env_id, status, count in rows:
        out.setdefault(env_id, Counter())[str(status)] = int(count)
    return out


@dataclass(frozen=True)
class FinalRelease:
    """What the metrics need of one final release."""

    id: int
    environment_id: int
    type: str
    status: str
    skip_reason: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end; None when it never started."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


_COLUMNS = (
    ReleaseRow.id,
    ReleaseRow.environment_id,
    ReleaseRow.type,
    ReleaseRow.status,
    ReleaseRow.skip_reason,
    ReleaseRow.started_at,
    ReleaseRow.finished_at,
    ReleaseRow.created_at,
)


def releases_after(
    s: Session, watermark: int, limit: int = 5000
) -> list[tuple[FinalRelease, bool, datetime]]:
    """The first ``limit`` releases with id above ``watermark``, in id order.

    Each item is ``(release, is_final, created_at)``.
    """
    rows = s.execute(
        select(*_COLUMNS).where(ReleaseRow.id > watermark).order_by(ReleaseRow.id).limit(limit)
    )
    return [
        (
            FinalRelease(r.id, r.environment_id, r.type, r.status, r.skip_reason,
                         r.started_at, r.finished_at),
            str(r.status) in _FINAL,
            r.created_at,
        )
        for r in rows
    ]


def final_among(s: Session, ids: Iterable[int]) -> list[FinalRelease]:
    """Those of ``ids`` that are final now."""
    wanted = sorted(set(ids))
    out: list[FinalRelease] = []
    for start in range(0, len(wanted), 500):  # bounded IN lists
        chunk = wanted[start : start + 500]
        rows = s.execute(
            select(*_COLUMNS).where(ReleaseRow.id.in_(chunk), ReleaseRow.status.in_(_FINAL))
        )
        out.extend(
            FinalRelease(r.id, r.environment_id, r.type, r.status, r.skip_reason,
                         r.started_at, r.finished_at)
            for r in rows
        )
    return out
