"""Client methods: CLI releases: sync and wait (SPEC §6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..domain import Trigger

if TYPE_CHECKING:
    from ..domain import Release
    from ..domain.models import WaitResult
    from ..services.context import Context


class SyncAPI:
    """CLI releases: sync and wait (SPEC §6).

    Apps are resources: ``TYPE/NAME``, or a bare ``NAME`` when unique in the project; give a
    list or a comma-separated string.
    """

    ctx: Context
    trigger: Trigger = Trigger.API

    def sync(
        self,
        project: str,
        environment: str,
        apps: str | Sequence[str],
        *,
        force: bool = False,
        comment: str | None = None,
    ) -> Release | None:
        """Submit one selective release applying the apps that are out of sync (or Unknown).

        Returns the release, or None when every app is already in sync (nothing recorded);
        ``force`` releases every app. Raises :class:`~release_orchestrator.errors.NotFound`
        (unknown project, environment or app; the message names what exists).
        """
        from ..services import sync

        return sync.sync(
            self.ctx,
            project,
            environment,
            apps,
            force=force,
            comment=comment,
            trigger=self.trigger,
        )

    def wait(
        self,
        project: str,
        environment: str,
        apps: str | Sequence[str],
        *,
        sync: bool = False,
        force: bool = False,
        timeout: float | None = None,
        interval: float = 2.0,
        on_change: Callable[[WaitResult], None] | None = None,
    ) -> WaitResult:
        """Block until every app is Synced and Healthy and no release targets it.

        ``sync`` first syncs the out-of-sync apps (``force``: every app). ``on_change`` gets
        a ``waiting`` :class:`WaitResult` whenever an app's state changes. Raises
        :class:`~release_orchestrator.errors.ReleaseFailed` when a release targeting an app
        fails (failed, rolled_back, rollback_failed) or an app is Degraded,
        :class:`~release_orchestrator.errors.WaitTimeout` after ``timeout`` seconds (its
        ``details["findings"]`` say what blocks) and ``NotFound`` for unknown names; both
        carry the final result in ``details["result"]``.
        """
        from ..services import sync as service

        return service.wait(
            self.ctx,
            project,
            environment,
            apps,
            sync_first=sync,
            force=force,
            timeout=timeout,
            interval=interval,
            on_change=on_change,
            trigger=self.trigger,
        )
