"""The Python client: ``from release_orchestrator import Client`` (SPEC §9).

Every method mirrors a ``relo`` command, returns pydantic models and raises exceptions
derived from :class:`release_orchestrator.errors.ReloError`. The CLI is a thin layer on it.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .api.diagnose import DiagnoseAPI
from .api.pauses import PausesAPI
from .api.schedules import SchedulesAPI
from .api.sync import SyncAPI
from .domain import (
    Environment,
    EnvironmentSettings,
    Event,
    Release,
    ReleaseType,
    ResourceStatus,
    Target,
    Trigger,
)
from .errors import InvalidRequest, ReleaseFailed, WaitTimeout
from .ports import Clock, SystemClock, Transport
from .services import blueprints, environments, releases, resources
from .services.context import Context
from .settings import Settings
from .storage.db import Database


class Client(PausesAPI, SchedulesAPI, DiagnoseAPI, SyncAPI):
    """relo's use cases over the configured database, Redis and broker.

    ``Client()`` reads ``RELO_*`` settings. ``trigger`` is recorded on submitted releases
    (``api`` for the Python client, ``cli`` for the command line).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport: Transport | None = None,
        clock: Clock | None = None,
        lock_store: Any = None,
        trigger: Trigger = Trigger.API,
    ) -> None:
        self.config = settings or Settings()
        self.trigger = trigger
        if transport is None:
            from .celery_transport import CeleryTransport, make_app

            transport = CeleryTransport(make_app(self.config), self.config)
        self.ctx = Context(
            settings=self.config,
            db=Database(self.config.database_url),
            transport=transport,
            clock=clock or SystemClock(),
            lock_store=lock_store,
        )

    # -- blueprints and resources ----------------------------------------------------------
    def apply_blueprint(self, path: str | Path) -> dict[str, Any]:
        """Create or update a project from a blueprint file (all or nothing)."""
        bp, base = blueprints.load_blueprint_file(str(path))
        return blueprints.apply_blueprint(self.ctx, bp, base)

    def apply_blueprint_text(
        self, text: str, base_dir: str | Path | None = None, source: str = "<blueprint>"
    ) -> dict[str, Any]:
        bp = blueprints.parse_blueprint(text, source)
        return blueprints.apply_blueprint(self.ctx, bp, Path(base_dir) if base_dir else None)

    def set_resource(
        self, project: str, environment: str, resource: str, values: Sequence[str]
    ) -> ResourceStatus:
        """Change a resource's desired spec in one environment (``KEY=VALUE`` items)."""
        return resources.set_resource(self.ctx, project, environment, resource, values)

    def resources(self, project: str, environment: str) -> builtins.list[ResourceStatus]:
        return resources.statuses(self.ctx, project, environment)

    # -- releases ------------------------------------------------------------------------
    def submit(
        self,
        project: str,
        environment: str,
        type: ReleaseType | str = ReleaseType.FULL,
        *,
        targets: Sequence[Target | str] = (),
        refresh: bool = False,
        force: bool = False,
        allow_destroy: bool = False,
        no_rollback: bool = False,
        comment: str | None = None,
        fail_on_conflict: bool = False,
        extra_args: Sequence[str] = (),
        extra_vars: dict[str, str] | None = None,
        triggered_by: str | None = None,
    ) -> Release:
        """Submit a release; it is in the database when this returns."""
        try:
            rtype = ReleaseType(type)
        except ValueError:
            raise InvalidRequest(
                f"unknown release type '{type}'; use one of "
                + ", ".join(t.value for t in ReleaseType)
            ) from None
        parsed = [t if isinstance(t, Target) else releases.parse_target(t) for t in targets]
        return releases.submit(
            self.ctx,
            releases.ReleaseRequest(
                project=project,
                environment=environment,
                type=rtype,
                targets=parsed,
                refresh=refresh,
                force=force,
                allow_destroy=allow_destroy,
                no_rollback=no_rollback,
                comment=comment,
                fail_on_conflict=fail_on_conflict,
                trigger=self.trigger,
                triggered_by=triggered_by,
                extra_args=tuple(extra_args),
                extra_vars=dict(extra_vars or {}),
            ),
        )

    def get(self, release_id: int) -> Release:
        return releases.get(self.ctx, release_id)

    def list(self, project: str, environment: str, limit: int = 20) -> builtins.list[Release]:
        return releases.history(self.ctx, project, environment, limit)

    def active(self, project: str, environment: str) -> builtins.list[Release]:
        return releases.active(self.ctx, project, environment)

    def delete(
        self, release_ids: Sequence[int] = (), *, all_queued: tuple[str, str] | None = None
    ) -> builtins.list[int]:
        return releases.delete(self.ctx, release_ids, all_queued=all_queued)

    def approve(self, release_id: int) -> Release:
        return releases.approve(self.ctx, release_id)

    def reject(self, release_id: int) -> Release:
        return releases.approve(self.ctx, release_id, reject=True)

    def wait_release(
        self, release_id: int, timeout: float | None = None, interval: float = 0.5
    ) -> Release:
        """Block until the release is final; :class:`ReleaseFailed` unless it succeeded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            release = releases.get(self.ctx, release_id, with_steps=True)
            if release.status.is_final:
                if str(release.status) != "succeeded":
                    raise ReleaseFailed(
                        f"release {release_id} {release.status}"
                        + (f": {release.error}" if release.error else ""),
                        release=release,
                    )
                return release
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"release {release_id} is still {release.status}", release=release
                )
            time.sleep(interval)

    # -- environments ----------------------------------------------------------------------
    def environments(self, project: str | None = None) -> builtins.list[Environment]:
        return environments.environments(self.ctx, project)

    def environment(self, project: str, environment: str) -> Environment:
        return environments.environment(self.ctx, project, environment)

    def settings(
        self,
        project: str,
        environment: str,
        *,
        parallel: bool | None = None,
        max_parallel: int | None = None,
        approval: bool | None = None,
    ) -> EnvironmentSettings:
        """Change (or, with no arguments, show) an environment's release settings."""
        return environments.update_settings(
            self.ctx,
            project,
            environment,
            parallel=parallel,
            max_parallel=max_parallel,
            approval=approval,
        )

    # -- audit -------------------------------------------------------------------------------
    def events(
        self, project: str | None = None, environment: str | None = None, limit: int = 50
    ) -> builtins.list[Event]:
        from .storage.repository import Repository

        if limit < 1:
            raise InvalidRequest("--limit must be at least 1")
        with self.ctx.db.session(write=False) as s:
            repo = Repository(s)
            if project is not None:
                repo.project(project)
                if environment is not None:
                    repo.environment(project, environment)
            return repo.events(project, environment, limit)
