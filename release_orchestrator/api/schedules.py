"""Client methods: Scheduled releases (SPEC §7)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..domain import ReleaseType
from ..domain.models import Schedule, ScheduleView
from ..services import schedules

if TYPE_CHECKING:
    from ..services.context import Context


class SchedulesAPI:
    """Scheduled releases (SPEC §7): one schedule per environment, fired by Celery beat."""

    ctx: Context

    def set_schedule(
        self,
        project: str,
        environment: str,
        every: str,
        *,
        type: ReleaseType | str = ReleaseType.FULL,
        start_at: datetime | str | None = None,
        timezone: str = "UTC",
        paused: bool = False,
    ) -> ScheduleView:
        """Create or replace an environment's schedule (``relo schedule set``).

        ``every`` is ``<positive integer><m|h|d|w>``; fire times are ``start_at + k * every``
        (days and weeks on the wall clock of ``timezone``). ``start_at`` is an aware datetime
        or an ISO 8601 string (without an offset: a wall time in ``timezone``); omitted, an
        existing schedule keeps its anchor and a new one starts at the next whole minute.
        It takes effect at the next beat tick. Raises :class:`InvalidRequest` on bad input
        (nothing is changed) and :class:`NotFound` for an unknown project or environment.
        """
        return schedules.set_schedule(
            self.ctx,
            project,
            environment,
            every,
            type=type,
            start_at=start_at,
            timezone=timezone,
            paused=paused,
        )

    def schedule(self, project: str, environment: str, *, limit: int = 10) -> ScheduleView:
        """The schedule, its next three fire times and its last ``limit`` fires and skips."""
        return schedules.show(self.ctx, project, environment, limit=limit)

    def pause_schedule(self, project: str, environment: str) -> ScheduleView:
        """Pause the schedule: its due times are recorded as skipped (``schedule_paused``)."""
        return schedules.set_paused(self.ctx, project, environment, True)

    def resume_schedule(self, project: str, environment: str) -> ScheduleView:
        """Resume a paused schedule from its next due time."""
        return schedules.set_paused(self.ctx, project, environment, False)

    def delete_schedule(self, project: str, environment: str) -> Schedule:
        """Remove the schedule (returned as it was); its history stays."""
        return schedules.delete(self.ctx, project, environment)
