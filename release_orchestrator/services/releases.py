"""Release use cases: submit, delete, approve, reject, read (SPEC §3, §5, §6)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..domain import Action, Release, ReleaseStatus, ReleaseType, Target, Trigger
from ..domain.names import env_key
from ..errors import InvalidRequest, ReleaseFailed, StateLockError
from ..policy.admission import Code, Reason, conflicts, decide
from ..storage import convert
from ..storage.records import InsertedRelease
from ..storage.repository import Repository
from .context import Context
from .dispatch import Dispatch, decide_and_mark, evaluate, send
from .explain import explain, holds_of
from .snapshot import build_snapshot, claim_from, lock_infos

_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ReleaseRequest:
    """What ``release trigger`` (and the client's ``submit``) asks for."""

    project: str
    environment: str
    type: ReleaseType = ReleaseType.FULL
    targets: Sequence[Target] = ()
    refresh: bool = False
    force: bool = False
    allow_destroy: bool = False
    no_rollback: bool = False
    comment: str | None = None
    fail_on_conflict: bool = False
    trigger: Trigger = Trigger.CLI
    triggered_by: str | None = None
    extra_args: Sequence[str] = ()
    extra_vars: dict[str, str] = field(default_factory=dict)


def parse_target(text: str) -> Target:
    """``TYPE/NAME[:ACTION]`` (action defaults to apply)."""
    ref, sep, action = text.rpartition(":") if ":" in text else (text, "", "apply")
    if not sep:
        ref = text
    try:
        act = Action(action)
    except ValueError:
        raise InvalidRequest(f"target '{text}': action must be apply, destroy or refresh") from None
    return Target(resource=ref, action=act)


def _validate(req: ReleaseRequest) -> None:
    if req.type is ReleaseType.SELECTIVE and not req.targets:
        raise InvalidRequest("a selective release needs at least one --target TYPE/NAME[:ACTION]")
    if req.type is not ReleaseType.SELECTIVE and req.targets:
        raise InvalidRequest(f"--target is only for selective releases, not {req.type}")
    if req.type is not ReleaseType.CUSTOM and (req.extra_args or req.extra_vars):
        raise InvalidRequest("--arg/--var are only for custom releases")
    for key in req.extra_vars:
        if not _VAR.match(key):
            raise InvalidRequest(f"--var '{key}': names are letters, digits and '_'")
    if req.comment is not None and len(req.comment) > 2000:
        raise InvalidRequest("--comment is longer than 2000 characters")


def submit(ctx: Context, req: ReleaseRequest) -> Release:
    """Record a release, then start it at once if the policy allows.

    The release is committed before this returns (SPEC §10). With ``fail_on_conflict`` a
    release that conflicts with running/queued releases or locks ends ``failed`` at once and
    :class:`StateLockError` names the conflicts. A release that would destroy without
    ``allow_destroy`` is recorded and ends ``failed`` before any step runs
    (:class:`ReleaseFailed`).
    """
    _validate(req)
    now = ctx.clock.now()
    actor = req.triggered_by or ctx.actor
    # The Redis round trip happens before the write transaction, not while holding it.
    locks = lock_infos(ctx, env_key(req.project, req.environment))
    recorded: tuple[str, str] | None = None
    release: Release | None = None
    started_row: InsertedRelease | None = None
    started = False
    with ctx.db.session() as s:
        repo = Repository(s)
        project, env = repo.environment_view(req.project, req.environment, lock=True)
        targets = []
        resources = repo.resources(project) if req.targets else []
        for t in req.targets:
            res = repo.resolve_resource(project, t.resource, resources)
            targets.append({"resource": f"{res.rtype}/{res.name}", "action": str(t.action)})
        if len({t["resource"] for t in targets}) != len(targets):
            raise InvalidRequest("a resource is listed twice in --target")
        if req.type is ReleaseType.LAUNCH and env.launched:
            raise InvalidRequest(
                f"environment '{req.project}/{req.environment}' is already launched; "
                "use a full release"
            )
        destroys = [t["resource"] for t in targets if t["action"] == "destroy"]
        plan_error = None
        if not req.allow_destroy and (req.type is ReleaseType.DESTROY or destroys):
            what = ", ".join(destroys) if destroys else "every resource"
            plan_error = f"release would destroy {what} without allow_destroy (--allow-destroy)"
        status = ReleaseStatus.QUEUED
        if plan_error is None and env.approval_required:
            status = ReleaseStatus.PENDING_APPROVAL
        values: dict[str, Any] = dict(
            environment_id=env.id,
            type=str(req.type),
            status=str(ReleaseStatus.FAILED if plan_error else status),
            queue_seq=repo.next_queue_seq(env) if status is ReleaseStatus.QUEUED else None,
            refresh=req.refresh,
            force=req.force,
            allow_destroy=req.allow_destroy,
            no_rollback=req.no_rollback,
            comment=req.comment,
            triggered_by=actor,
            trigger=str(req.trigger),
            targets=targets,
            extra_args=list(req.extra_args),
            extra_vars=dict(req.extra_vars),
            created_at=now,
            finished_at=now if plan_error else None,
            error=plan_error,
            dispatch_count=0,
        )
        release_id = repo.insert_release(**values)
        repo.event(
            at=now,
            actor=actor,
            kind="submitted",
            project=project.name,
            environment=env.name,
            release_id=release_id,
            message=f"{req.type} release {release_id} submitted ({status})",
            data={"type": str(req.type), "trigger": str(req.trigger), "targets": targets},
        )
        if plan_error:
            repo.event(
                at=now,
                actor="relo",
                kind="failed",
                project=project.name,
                environment=env.name,
                release_id=release_id,
                message=plan_error,
            )
            dispatches: list[Dispatch] = []
        else:
            serial = not (env.parallel_releases and not env.approval_required)
            queued_serial = serial and status is ReleaseStatus.QUEUED
            # with parallel off the dispatcher's snapshot holds only the head of the queue:
            # the new release is added to it, so that the decision gives its every reason
            also = claim_from(release_id, str(req.type), targets) if queued_serial else None
            decision, dispatches = decide_and_mark(ctx, repo, project, env, now, locks, also)
            started = release_id in decision.start
            reasons = decision.reasons(release_id)
            if req.fail_on_conflict and not started:
                # the dispatcher's snapshot holds only what can start now (the head of a
                # serial queue, one release per distinct claim): its reasons for a held
                # release may be partial, so ask the policy about the whole queue, with the
                # locks as they are now (the list read before may hold a finished release's)
                locks = lock_infos(ctx, env_key(req.project, req.environment))
                snapshot = build_snapshot(repo, project, env, now, locks, full_queue=True)
                reasons = decide(snapshot).reasons(release_id)
            blocking = conflicts(reasons)
            if req.fail_on_conflict and blocking and release_id not in decision.start:
                message = conflict_message(blocking)
                repo.set_status(
                    release_id,
                    ReleaseStatus.QUEUED,
                    ReleaseStatus.FAILED,
                    finished_at=now,
                    error=message,
                    queue_seq=None,
                )
                repo.event(
                    at=now,
                    actor="relo",
                    kind="failed",
                    project=project.name,
                    environment=env.name,
                    release_id=release_id,
                    message=message,
                )
                failed_conflict = message
            else:
                failed_conflict = None
                recorded = (project.name, env.name)
                if queued_serial:
                    # the row as inserted (not read back: the transaction wrote every column)
                    row = InsertedRelease(id=release_id, **values)
                    if started:
                        # one at a time: a release that starts is alone at the head of the
                        # queue; its domain object is built after publishing
                        started_row = row
                    else:
                        # what holds it: the running releases and the head of the queue (a
                        # cost that does not grow with the queue, unlike a full explain)
                        release = repo.release_of_row(row, *recorded).model_copy(
                            update={"held": holds_of(reasons, *recorded, release_id)}
                        )
    send(ctx, dispatches)
    if started_row is not None and recorded is not None:
        release = convert.release_of(started_row, *recorded, position=1)
    if recorded is None:  # failed at once: re-read what the transaction recorded
        release = get(ctx, release_id, with_steps=False)
    elif release is None:
        # read after publishing, off the dispatch path
        with ctx.db.session(write=False) as s:
            repo = Repository(s)
            release = repo.release_of_row(repo.release_row(release_id), *recorded)
        if not started:
            holds = explain(ctx, release.project, release.environment, only={release_id})
            release = release.model_copy(update={"held": holds.get(release_id, [])})
    if plan_error:
        raise ReleaseFailed(f"release {release_id} failed: {plan_error}", release=release)
    if failed_conflict:
        raise StateLockError(f"release {release_id} failed: {failed_conflict}", release=release)
    return release


def conflict_message(reasons: Sequence[Reason]) -> str:
    """ "state lock conflict: …" naming the conflicting releases and resources."""
    parts = []
    for r in reasons:
        what = ", ".join(r.resources) if r.resources else "environment"
        if r.code is Code.MAX_PARALLEL_REACHED:
            parts.append(
                f"max parallel releases reached ({r.facts.get('running')} of {r.facts.get('max')})"
            )
        elif r.release_id is not None:
            parts.append(f"release {r.release_id} on {what}")
        else:
            parts.append(f"a lock held by {r.facts.get('owner', 'an unknown holder')} on {what}")
    return "state lock conflict: " + "; ".join(dict.fromkeys(parts))


def get(ctx: Context, release_id: int, *, with_steps: bool = True) -> Release:
    """One release; a queued one carries the reasons it is held."""
    with ctx.db.session(write=False) as s:
        release = Repository(s).release(release_id, with_steps=with_steps)
    if release.status in (ReleaseStatus.QUEUED, ReleaseStatus.PENDING_APPROVAL):
        holds = explain(ctx, release.project, release.environment, only={release.id})
        release = release.model_copy(update={"held": holds.get(release.id, [])})
    return release


def active(ctx: Context, project: str, environment: str) -> list[Release]:
    """Running, queued (FIFO, with position) and pending-approval releases, with holds."""
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment)
        releases = repo.active(prow, env)
    if any(r.status is not ReleaseStatus.RUNNING for r in releases):
        holds = explain(ctx, project, environment)
        releases = [r.model_copy(update={"held": holds.get(r.id, [])}) for r in releases]
    return releases


def history(ctx: Context, project: str, environment: str, limit: int = 20) -> list[Release]:
    if limit < 1:
        raise InvalidRequest("--limit must be at least 1")
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment)
        return repo.history(prow, env, limit)


def delete(
    ctx: Context,
    release_ids: Sequence[int] = (),
    *,
    all_queued: tuple[str, str] | None = None,
) -> list[int]:
    """Cancel queued / pending releases: all or nothing; running or final ones are refused."""
    now = ctx.clock.now()
    actor = ctx.actor
    env_ids: set[int] = set()
    cancelled: list[int] = []
    with ctx.db.session() as s:
        repo = Repository(s)
        ids = list(dict.fromkeys(release_ids))
        if all_queued is not None:
            _, env = repo.environment(*all_queued, lock=True)
            ids += [
                r.id
                for r in repo.active_rows(env)
                if r.status != ReleaseStatus.RUNNING and r.id not in ids
            ]
        elif not ids:
            raise InvalidRequest("give release ids, or --all-queued with -p and -e")
        rows = [repo.release_row(i) for i in ids]
        for row in rows:
            if row.status not in (ReleaseStatus.QUEUED, ReleaseStatus.PENDING_APPROVAL):
                raise InvalidRequest(
                    f"release {row.id} is {row.status}: only queued or pending releases can be "
                    "deleted"
                )
        for row in rows:
            repo.environment_by_id(row.environment_id, lock=True)
            if not repo.set_status(
                row.id,
                (ReleaseStatus.QUEUED, ReleaseStatus.PENDING_APPROVAL),
                ReleaseStatus.CANCELLED,
                finished_at=now,
            ):
                raise InvalidRequest(f"release {row.id} changed state meanwhile; nothing deleted")
            project, environment = repo.names_of(row.environment_id)
            repo.event(
                at=now,
                actor=actor,
                kind="cancelled",
                project=project,
                environment=environment,
                release_id=row.id,
                message=f"release {row.id} deleted from the queue by {actor}",
            )
            env_ids.add(row.environment_id)
            cancelled.append(row.id)
    for env_id in env_ids:
        evaluate(ctx, env_id)
    return cancelled


def approve(ctx: Context, release_id: int, *, reject: bool = False) -> Release:
    """``pending_approval`` → ``queued`` (joins the queue now), or → ``rejected``."""
    now = ctx.clock.now()
    actor = ctx.actor
    with ctx.db.session() as s:
        repo = Repository(s)
        row = repo.release_row(release_id)
        _, env = repo.environment_by_id(row.environment_id, lock=True)
        if row.status != ReleaseStatus.PENDING_APPROVAL:
            raise InvalidRequest(f"release {release_id} is {row.status}, not pending_approval")
        project, environment = repo.names_of(row.environment_id)
        if reject:
            repo.set_status(
                release_id, ReleaseStatus.PENDING_APPROVAL, ReleaseStatus.REJECTED, finished_at=now
            )
        else:
            repo.set_status(
                release_id,
                ReleaseStatus.PENDING_APPROVAL,
                ReleaseStatus.QUEUED,
                queue_seq=repo.next_queue_seq(env),
            )
        kind = "rejected" if reject else "approved"
        repo.event(
            at=now,
            actor=actor,
            kind=kind,
            project=project,
            environment=environment,
            release_id=release_id,
            message=f"release {release_id} {kind} by {actor}",
        )
        env_id = env.id
    if not reject:
        evaluate(ctx, env_id)
    return get(ctx, release_id, with_steps=False)


def logs(ctx: Context, release_id: int) -> Release:
    return get(ctx, release_id, with_steps=True)
