"""Why queued releases wait: the admission policy's reasons, rendered as holds."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ..domain import Hold
from ..domain.names import env_key
from ..policy.admission import Decision, Reason, decide
from ..policy.findings import finding_of
from ..storage.repository import Repository
from .context import Context
from .snapshot import build_snapshot, lock_infos


def decision_for(ctx: Context, project: str, environment: str) -> Decision:
    """The policy's decision over the whole queue of an environment (read only)."""
    now = ctx.clock.now()
    locks = lock_infos(ctx, env_key(project, environment))
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment)
        snapshot = build_snapshot(repo, prow, env, now, locks, full_queue=True)
    return decide(snapshot)


def explain(
    ctx: Context, project: str, environment: str, only: Collection[int] | None = None
) -> dict[int, list[Hold]]:
    """For each waiting release (or each of ``only``), what holds it (SPEC §4).

    With parallel off the n-th queued release waits behind every earlier one, so rendering
    every release's holds is quadratic in the queue length: ``only`` renders just those asked
    for (``release show`` and ``submit`` need one).
    """
    decision = decision_for(ctx, project, environment)
    return {
        release_id: holds_of(reasons, project, environment, release_id)
        for release_id, reasons in decision.held.items()
        if only is None or release_id in only
    }


def holds_of(
    reasons: Iterable[Reason], project: str, environment: str, release_id: int
) -> list[Hold]:
    """The policy's reasons for one release, rendered as holds."""
    holds = []
    for reason in reasons:
        f = finding_of(reason, project, environment, release_id)
        holds.append(
            Hold(
                code=f.code,
                message=f.message,
                release_id=reason.release_id,
                resources=list(reason.resources),
            )
        )
    return holds
