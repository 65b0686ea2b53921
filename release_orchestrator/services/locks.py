"""``relo lock list|break`` (SPEC §5): who holds an environment's state locks."""

from __future__ import annotations

from typing import Any

from ..domain.names import env_key
from ..errors import InvalidRequest
from ..storage.repository import Repository
from .context import Context
from .dispatch import evaluate
from .snapshot import lock_infos


def holders(ctx: Context, project: str, environment: str) -> list[dict[str, Any]]:
    """Live locks with their holder: a running release, a finished one, or unknown."""
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        repo.environment(project, environment)
        locks = lock_infos(ctx, env_key(project, environment), strict=True)
        out = []
        for lock in locks:
            status = None
            if lock.release_id is not None:
                try:
                    status = str(repo.release_row(lock.release_id).status)
                except InvalidRequest:
                    status = None
            out.append(
                {
                    "scope": lock.scope,
                    "resource": lock.resource,
                    "owner": lock.owner,
                    "release_id": lock.release_id,
                    "release_status": status,
                    "since": lock.since,
                    "ttl_left_ms": lock.ttl_left_ms,
                }
            )
    return out


def break_locks(
    ctx: Context, project: str, environment: str, resource: str | None, reason: str
) -> list[dict[str, Any]]:
    """Break one resource's lock, or every lock of the environment (``None``/``environment``)."""
    if not reason or not reason.strip():
        raise InvalidRequest("--reason is required: say why the lock is broken")
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment)
        if resource is not None and resource != "environment":
            res = repo.resolve_resource(prow, resource)
            resource = f"{res.rtype}/{res.name}"
        env_id = env.id
    key = env_key(project, environment)
    if resource == "environment":
        resource = None
    broken_holders = ctx.locks.break_locks(key, resource)
    result = [
        {"scope": h.scope, "resource": h.resource, "owner": h.owner, "release_id": h.release_id}
        for h in broken_holders
    ]
    with ctx.db.session() as s:
        Repository(s).event(
            at=ctx.clock.now(),
            actor=ctx.actor,
            kind="lock_broken",
            project=project,
            environment=environment,
            message=f"{len(result)} lock(s) broken on {resource or 'every resource'}: {reason}",
            data={"reason": reason, "broken": result, "resource": resource},
        )
    evaluate(ctx, env_id)
    return result
