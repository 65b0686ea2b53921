"""Client methods: Diagnose findings (SPEC §8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..domain import Finding
    from ..services.context import Context


class DiagnoseAPI:
    """Diagnose findings (SPEC §8)."""

    ctx: Context

    def diagnose(
        self,
        project: str,
        environment: str,
        release_id: int | None = None,
        *,
        apps: str | Sequence[str] = (),
    ) -> list[Finding]:
        """Why releases of ``project/environment`` wait, each finding with its remedy command.

        With ``release_id``: about that release (queued, running or ended). With ``apps``
        (``TYPE/NAME`` or a unique ``NAME``; a list or a comma-separated string): about the
        releases targeting them and their sync/health. An empty list: nothing in the way.
        Raises :class:`~release_orchestrator.errors.NotFound` for an unknown project,
        environment, app or release id (its message names what exists).
        """
        from ..services import diagnose

        return diagnose.diagnose(
            self.ctx, project, environment, release_id, diagnose.split_apps(apps)
        )
