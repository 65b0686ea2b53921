"""Client methods: Pauses and availability windows (SPEC §4)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..domain import Pause
    from ..domain.models import AvailabilityWindow, EnvironmentView, ResumeResult
    from ..services.context import Context


class PausesAPI:
    """Pauses and availability windows (SPEC §4)."""

    ctx: Context

    def pause(
        self,
        project: str,
        environment: str | None = None,
        *,
        reason: str | None = None,
        until: datetime | str | None = None,
    ) -> Pause:
        """Pause a whole project (no ``environment``) or one environment.

        While paused nothing starts; submitted releases wait in the queue and running ones
        finish. ``until`` (an aware datetime, or ISO 8601 text with ``Z`` or an offset, in
        the future) ends the pause by itself. Pausing a paused scope replaces its pause.
        """
        from ..services import pauses

        return pauses.pause(self.ctx, project, environment, reason=reason, until=until)

    def resume(self, project: str, environment: str | None = None) -> ResumeResult:
        """Lift a pause; the held releases start at once (FIFO). A no-op when not paused."""
        from ..services import pauses

        return pauses.resume(self.ctx, project, environment)

    def show_environment(self, project: str, environment: str) -> EnvironmentView:
        """Pauses (both levels), settings, windows with the next opening, queue summary."""
        from ..services import pauses

        return pauses.show_environment(self.ctx, project, environment)

    def add_window(
        self,
        project: str,
        environment: str,
        *,
        kind: str,
        cron: str,
        duration: str | timedelta,
        timezone: str = "UTC",
    ) -> AvailabilityWindow:
        """Add an ``allow`` or ``deny`` window: a cron expression (evaluated in ``timezone``)
        and a duration such as ``2h`` or ``1h30m``. With allow windows present releases start
        only inside one; a deny window blocks starts."""
        from ..services import windows

        return windows.add_window(
            self.ctx,
            project,
            environment,
            kind=kind,
            cron=cron,
            duration=duration,
            timezone=timezone,
        )

    def windows(self, project: str, environment: str) -> list[AvailabilityWindow]:
        """The environment's windows, each with whether it is open now and its next start."""
        from ..services import windows

        return windows.windows(self.ctx, project, environment)

    def remove_window(self, project: str, environment: str, window_id: int) -> AvailabilityWindow:
        """Remove a window (returns it); releases it held start at once."""
        from ..services import windows

        return windows.remove_window(self.ctx, project, environment, window_id)
