"""Environments: listing, settings (SPEC §5)."""

from __future__ import annotations

from ..domain import Environment, EnvironmentSettings, ReleaseStatus
from ..errors import InvalidRequest
from ..storage.repository import Repository
from .context import Context
from .dispatch import evaluate


def environments(ctx: Context, project: str | None = None) -> list[Environment]:
    from ..storage.convert import environment_of

    with ctx.db.session(write=False) as s:
        return [environment_of(p, e) for p, e in Repository(s).environments(project)]


def environment(ctx: Context, project: str, name: str) -> Environment:
    with ctx.db.session(write=False) as s:
        return Repository(s).environment_model(project, name)


def update_settings(
    ctx: Context,
    project: str,
    name: str,
    *,
    parallel: bool | None = None,
    max_parallel: int | None = None,
    approval: bool | None = None,
) -> EnvironmentSettings:
    """Change settings; re-evaluates the queue. Turning approval off queues pending releases."""
    if max_parallel is not None and max_parallel < 1:
        raise InvalidRequest(f"--max-parallel must be an integer >= 1, got {max_parallel}")
    now = ctx.clock.now()
    changes: dict[str, object] = {}
    with ctx.db.session() as s:
        repo = Repository(s)
        _, env = repo.environment(project, name, lock=True)
        for field, value in (
            ("parallel_releases", parallel),
            ("max_parallel_releases", max_parallel),
            ("approval_required", approval),
        ):
            if value is not None and getattr(env, field) != value:
                changes[field] = {"from": getattr(env, field), "to": value}
                setattr(env, field, value)
        if approval is False and "approval_required" in changes:
            for release_id in repo.pending_ids(env.id):
                repo.set_status(
                    release_id,
                    ReleaseStatus.PENDING_APPROVAL,
                    ReleaseStatus.QUEUED,
                    queue_seq=repo.next_queue_seq(env),
                )
        if changes:
            repo.event(
                at=now,
                actor=ctx.actor,
                kind="settings_changed",
                project=project,
                environment=name,
                message="settings changed: "
                + ", ".join(
                    f"{k} {v['from']} -> {v['to']}"  # type: ignore[index]
                    for k, v in changes.items()
                ),
                data=changes,
            )
        env_id = env.id
        result = EnvironmentSettings(
            parallel_releases=env.parallel_releases,
            max_parallel_releases=env.max_parallel_releases,
            approval_required=env.approval_required,
        )
    if changes:
        evaluate(ctx, env_id)
    return result
