"""The release engine: what a worker does with one ``execute_release`` message.

1. Skip unless the release is queued and dispatched (a second delivery is a no-op).
2. Take every state lock of the release in one atomic script (fencing token included).
3. Claim the release in the database with a compare-and-set ``queued → running``.
4. Run refresh steps, plan, run steps in dependency order; on failure roll back the steps
   already applied, in reverse order, by applying their previous applied spec.
5. Every state write is fenced: it succeeds only while the release is running under this
   worker's fencing token; a worker that lost its lease stops.
6. Release the locks and re-evaluate the environment so the next release starts.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..domain import Action, ReleaseStatus, ReleaseType, StepPhase, StepStatus, SyncStatus
from ..domain.names import env_key, resource_key
from ..executors import StepContext, StepResult, get_executor
from ..executors.registry import UnknownExecutor
from ..locks import Lease, LockConflictError, LockRequest, LockStoreUnavailable
from ..policy.admission import LockInfo
from ..policy.plan import PlanError, PlannedStep, ResourceView, dependency_order, plan_release
from ..storage.convert import sync_from
from ..storage.records import NamedRecord, ReleaseRecord, ResourceRecord, StateRecord
from ..storage.repository import Repository
from ..storage.tables import StepRow
from .context import Context
from .dispatch import Dispatch, decide_and_mark, evaluate, send
from .heartbeat import Heartbeat, LeaseLost
from .snapshot import lock_infos, lock_infos_of

log = logging.getLogger(__name__)


@dataclass
class ResourceDef:
    key: str
    resource_id: int
    state_id: int
    executor: str
    config: dict[str, Any]
    timeout: float | None
    depends_on: tuple[str, ...]
    desired: dict[str, Any]
    applied: dict[str, Any] | None
    sync: SyncStatus


@dataclass(frozen=True)
class _StepRecord:
    """A finished step whose outcome is not written yet."""

    job: Job
    res: ResourceDef
    seq: int
    action: Action
    phase: StepPhase
    result: StepResult
    desired: dict[str, Any] | None
    at: datetime


@dataclass
class Job:
    release_id: int
    env_id: int
    project: str
    environment: str
    type: ReleaseType
    targets: list[tuple[str, Action]]
    refresh: bool
    force: bool
    allow_destroy: bool
    no_rollback: bool
    extra_args: tuple[str, ...]
    extra_vars: dict[str, str]
    resources: dict[str, ResourceDef] = field(default_factory=dict)


class _JoinedState:
    """The ``state_*`` columns of a :meth:`Repository.resources_with_states` row as a state."""

    __slots__ = ("applied_spec", "desired_spec", "ever_applied", "id", "unknown")

    def __init__(self, row: Any) -> None:
        self.id: int = row.state_id
        self.desired_spec: dict[str, Any] = row.state_desired_spec
        self.applied_spec: dict[str, Any] | None = row.state_applied_spec
        self.ever_applied: bool = row.state_ever_applied
        self.unknown: bool = row.state_unknown


@dataclass(frozen=True)
class _LockPlan:
    """What a release locks: from its message's hint, or read from its row."""

    env_id: int
    project: str
    environment: str
    whole: bool
    resources: tuple[str, ...]

    @classmethod
    def of_row(cls, row: ReleaseRecord, project: str, environment: str) -> _LockPlan:
        whole = ReleaseType(row.type).needs_whole_environment
        return cls(
            env_id=row.environment_id,
            project=project,
            environment=environment,
            whole=whole,
            resources=() if whole else tuple(sorted(t["resource"] for t in row.targets)),
        )

    @classmethod
    def of_hint(cls, hint: dict[str, Any] | None) -> _LockPlan | None:
        """The hint's plan, or None when there is none or it is malformed (read the row)."""
        if not isinstance(hint, dict):
            return None
        try:
            plan = cls(
                env_id=int(hint["env_id"]),
                project=str(hint["project"]),
                environment=str(hint["environment"]),
                whole=bool(hint["whole"]),
                resources=tuple(sorted(str(r) for r in hint["resources"])),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if plan.whole == bool(plan.resources):
            return None
        return plan


def execute(
    ctx: Context, release_id: int, worker: str, hint: dict[str, Any] | None = None
) -> str:
    """Run one release if it is ours to run. Returns a short outcome for the task result.

    ``hint``: what the release locks, from its message (:func:`dispatch.lock_hint`). With one
    the state locks are taken at once and the release is read and checked in the claiming
    transaction (one read transaction less before the release starts); without one, or when
    the row does not match it, the release is read first.
    """
    pre = _LockPlan.of_hint(hint)
    row: ReleaseRecord | None = None
    resources: list[ResourceRecord] | None = None
    if pre is None:
        with ctx.db.session(write=False) as s:
            repo = Repository(s)
            row, prow, erow = repo.release_for_claim(release_id)
            if row.status != ReleaseStatus.QUEUED or row.dispatched_at is None:
                return f"skipped: release {release_id} is {row.status}"
            # definitions, not state: read here rather than while holding the write lock
            resources = repo.resources(prow)
            pre = _LockPlan.of_row(row, prow.name, erow.name)
    owner = f"{release_id}:{worker}:{uuid.uuid4().hex[:8]}"
    request = LockRequest(
        env_key=env_key(pre.project, pre.environment),
        owner=owner,
        exclusive=pre.whole,
        resources=() if pre.whole else pre.resources,
        release_id=release_id,
        ttl_ms=ctx.settings.lock_ttl_ms,
    )
    try:
        lease = ctx.locks.acquire(request)
    except (LockConflictError, LockStoreUnavailable) as exc:
        holders = getattr(exc, "conflicts", ())
        if any(h.release_id == release_id for h in holders):
            return f"skipped: release {release_id} is already being taken (duplicate delivery)"
        if _undispatch(ctx, release_id, f"could not take state locks: {exc}") and isinstance(
            exc, LockConflictError
        ):
            evaluate(ctx, pre.env_id)
        return f"requeued: {exc}"
    now = ctx.clock.now()
    runner = Runner(ctx, release_id, lease, worker, row=row)
    job: Job | None = None
    stale: str | None = None
    try:
        with ctx.db.session() as s:
            repo = Repository(s)
            if row is None:
                row, prow, erow = repo.release_for_claim(release_id)
                if row.status != ReleaseStatus.QUEUED or row.dispatched_at is None:
                    stale = f"skipped: release {release_id} is {row.status}"
                elif _LockPlan.of_row(row, prow.name, erow.name) != pre:
                    stale = "mismatch"
                runner.row = row
            if stale is None:
                claimed = _claim(repo, release_id, now, worker, lease, pre.project,
                                 pre.environment)
                if claimed:  # what the runner needs, read in the claiming transaction
                    job = runner.build_job(repo, row, prow, erow, resources)
                    runner.start_first_step(repo, job, now)
    except BaseException:
        ctx.locks.release(lease)
        raise
    if stale is not None:
        ctx.locks.release(lease)
        if stale == "mismatch":  # not what the message said: read the release first
            log.warning("release %s: its message's lock hint does not match the release",
                        release_id)
            return execute(ctx, release_id, worker)
        # a late duplicate held its locks for a moment: what it kept waiting may start now
        evaluate(ctx, pre.env_id)
        return stale
    if not claimed:
        ctx.locks.release(lease)
        return f"skipped: release {release_id} was claimed elsewhere or cancelled"
    heartbeat = Heartbeat(ctx, runner)
    runner.heartbeat_handle = heartbeat
    heartbeat.start()
    try:
        outcome = runner.run(job)
    except LeaseLost as exc:
        outcome = f"lease lost: {exc}"
        log.warning("release %s: %s", release_id, outcome)
        if fail_lost_release(ctx, release_id, ctx.clock.now(), token=lease.fencing_token,
                             why=f"state lock lease lost ({exc}); the release was stopped"):
            outcome += "; marked failed"
    finally:
        runner.unlock()
    if runner.dispatches is None:
        evaluate(ctx, pre.env_id)
    else:  # the finishing transaction already started what may start now
        send(ctx, runner.dispatches)
    return outcome


def _claim(
    repo: Repository,
    release_id: int,
    now: datetime,
    worker: str,
    lease: Lease,
    project: str,
    environment: str,
) -> bool:
    """Compare-and-set ``queued`` → ``running`` under this lease (a duplicate is a no-op)."""
    claimed = repo.set_status(
        release_id,
        ReleaseStatus.QUEUED,
        ReleaseStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=worker,
        fencing_token=lease.fencing_token,
        lock_owner=lease.owner,
        queue_seq=None,
    )
    if claimed:
        repo.event(
            at=now,
            actor=worker,
            kind="started",
            project=project,
            environment=environment,
            release_id=release_id,
            message=f"release {release_id} started on {worker} "
            f"(fencing token {lease.fencing_token})",
        )
    return claimed


def _undispatch(ctx: Context, release_id: int, why: str) -> bool:
    """Back to waiting when still dispatched; False when it was not (any more)."""
    with ctx.db.session() as s:
        repo = Repository(s)
        row = repo.release_row(release_id)
        if row.status != ReleaseStatus.QUEUED or row.dispatched_at is None:
            return False
        row.dispatched_at = None
        project, environment = repo.names_of(row.environment_id)
        repo.event(
            at=ctx.clock.now(),
            actor="relo",
            kind="requeued",
            project=project,
            environment=environment,
            release_id=release_id,
            message=f"release {release_id} back in the queue: {why}",
        )
    return True


class Runner:
    """Runs the steps of one claimed release, writing every change under its fencing token."""

    def __init__(
        self,
        ctx: Context,
        release_id: int,
        lease: Lease,
        worker: str,
        row: ReleaseRecord | None = None,
    ) -> None:
        self.ctx = ctx
        self.release_id = release_id
        self.lease = lease
        self.token = lease.fencing_token
        self.worker = worker
        #: The release row as read before the claim (type, targets and flags never change).
        self.row = row
        #: Stopped before the locks are released.
        self.heartbeat_handle: Heartbeat | None = None
        self.unlocked = False
        #: What the finishing transaction dispatched (None: it did not evaluate the queue).
        self.dispatches: list[Dispatch] | None = None
        self._step_ids: dict[int, int] = {}
        self._pending: _StepRecord | None = None
        #: The plan, when made in the claiming transaction with the first step's row.
        self._plan: list[PlannedStep] | None = None
        self._started: tuple[str, Action] | None = None
        self.cancel = threading.Event()
        self.lost = threading.Event()
        self.seq = 0
        self._output_lock = threading.Lock()
        self._live: deque[str] = deque()
        self._live_size = 0
        self._live_step: int | None = None
        self._live_dirty = False

    # -- fenced writes -------------------------------------------------------------------
    def _check(self, repo: Repository) -> None:
        if not repo.fenced_update(self.release_id, self.token):
            raise LeaseLost(
                f"release {self.release_id} is no longer running under token {self.token}"
            )

    def stop_heartbeat(self) -> None:
        if self.heartbeat_handle is not None:
            self.heartbeat_handle.stop()

    def unlock(self) -> None:
        """Stop the heartbeat and release the state locks (once; failures are logged: the
        locks then expire with their TTL)."""
        if self.unlocked:
            return
        self.unlocked = True
        self.stop_heartbeat()
        try:
            self.ctx.locks.release(self.lease)
        except Exception:
            log.exception(
                "release %s: could not release locks (they expire with the TTL)", self.release_id
            )

    def unlock_and_read(self) -> tuple[LockInfo, ...]:
        """:meth:`unlock`, and the environment's locks left afterwards (one round trip)."""
        if self.unlocked:
            return lock_infos(self.ctx, self.lease.env_key)
        self.unlocked = True
        self.stop_heartbeat()
        try:
            return lock_infos_of(self.ctx.locks.release_and_holders(self.lease))
        except Exception:
            log.exception(
                "release %s: could not release locks (they expire with the TTL)", self.release_id
            )
            return lock_infos(self.ctx, self.lease.env_key)

    def heartbeat(self) -> None:
        with self.ctx.db.session() as s:
            if not Repository(s).fenced_update(
                self.release_id, self.token, heartbeat_at=self.ctx.clock.now()
            ):
                raise LeaseLost("fenced out")

    def _load(self) -> Job:
        with self.ctx.db.session(write=False) as s:
            repo = Repository(s)
            row = self.row if self.row is not None else repo.release_row(self.release_id)
            project, env = repo.environment_by_id(row.environment_id)
            return self.build_job(repo, row, project, env)

    def build_job(
        self,
        repo: Repository,
        row: ReleaseRecord,
        project: NamedRecord,
        env: NamedRecord,
        resources: list[ResourceRecord] | None = None,
    ) -> Job:
        """The release with its environment's resources and their states (read in ``repo``;
        ``resources``: the project's resource definitions, when already read)."""
        job = Job(
            release_id=row.id,
            env_id=env.id,
            project=project.name,
            environment=env.name,
            type=ReleaseType(row.type),
            targets=[(t["resource"], Action(t["action"])) for t in row.targets],
            refresh=row.refresh,
            force=row.force,
            allow_destroy=row.allow_destroy,
            no_rollback=row.no_rollback,
            extra_args=tuple(row.extra_args or ()),
            extra_vars=dict(row.extra_vars or {}),
        )
        if resources is None:  # definitions and states in one query
            for res in repo.resources_with_states(project, env):
                if res.state_id is None:
                    self._add_resource(job, res, repo.state(env, res))
                else:
                    self._add_resource(job, res, _JoinedState(res))
            return job
        states = repo.states(env)
        for res in resources:
            self._add_resource(job, res, states.get(res.id) or repo.state(env, res))
        return job

    @staticmethod
    def _add_resource(job: Job, res: ResourceRecord, state: StateRecord | _JoinedState) -> None:
        key = resource_key(res.rtype, res.name)
        job.resources[key] = ResourceDef(
            key=key,
            resource_id=res.id,
            state_id=state.id,
            executor=res.executor,
            config=dict(res.config),
            timeout=res.timeout,
            depends_on=tuple(res.depends_on or ()),
            desired=dict(state.desired_spec),
            applied=dict(state.applied_spec) if state.applied_spec is not None else None,
            sync=sync_from(
                state.desired_spec, state.applied_spec, state.ever_applied, state.unknown
            ),
        )

    # -- the release ---------------------------------------------------------------------
    def run(self, job: Job | None = None) -> str:
        """Run the release (``job``: as loaded by :meth:`build_job` at the claim)."""
        if job is None:
            job = self._load()
        missing = [k for k, _ in job.targets if k not in job.resources]
        if missing:
            return self._finish(
                job, ReleaseStatus.FAILED, f"targets no longer in the project: {', '.join(missing)}"
            )
        if job.refresh:
            scope = (
                {k for k, _ in job.targets}
                if job.type is ReleaseType.SELECTIVE
                else set(job.resources)
            )
            views = [self._view(r) for r in job.resources.values()]
            for key in dependency_order(views):
                if key not in scope:
                    continue
                result = self._step(job, key, Action.REFRESH, StepPhase.FORWARD)
                if not result.ok:
                    return self._finish(
                        job, ReleaseStatus.FAILED, f"refresh of {key} failed: {result.error}"
                    )
        try:
            plan = self._plan if self._plan is not None else self.plan(job)
        except PlanError as exc:
            return self._finish(job, ReleaseStatus.FAILED, str(exc))
        done: list[tuple[str, Action, dict[str, Any] | None]] = []
        failure: str | None = None
        for planned in plan:
            if job.refresh and planned.action is Action.REFRESH:
                continue  # already refreshed before planning
            before = job.resources[planned.resource].applied
            result = self._step(job, planned.resource, planned.action, StepPhase.FORWARD)
            if not result.ok:
                failure = f"{planned.action} of {planned.resource} failed: {result.error}"
                break
            if planned.action is not Action.REFRESH:
                done.append((planned.resource, planned.action, before))
        if failure is None:
            return self._finish(job, ReleaseStatus.SUCCEEDED, None)
        if job.no_rollback or not done:
            return self._finish(job, ReleaseStatus.FAILED, failure)
        rollback_failed = []
        for key, _action, previous in reversed(done):
            if previous is None:
                result = self._step(job, key, Action.DESTROY, StepPhase.ROLLBACK)
            else:
                result = self._step(job, key, Action.APPLY, StepPhase.ROLLBACK, spec=previous)
            if not result.ok:
                rollback_failed.append(key)
        if rollback_failed:
            return self._finish(
                job,
                ReleaseStatus.ROLLBACK_FAILED,
                f"{failure}; rollback of {', '.join(rollback_failed)} failed "
                "(state Unknown: run a refresh release)",
            )
        return self._finish(
            job, ReleaseStatus.ROLLED_BACK, f"{failure}; rolled back {len(done)} step(s)"
        )

    def plan(self, job: Job) -> list[PlannedStep]:
        return plan_release(
            job.type,
            [self._view(r) for r in job.resources.values()],
            targets=job.targets,
            force=job.force,
            allow_destroy=job.allow_destroy,
        )

    def start_first_step(self, repo: Repository, job: Job, now: datetime) -> None:
        """In the claiming transaction: plan, and record the first step as started.

        The first step then needs no write transaction of its own (a release with nothing
        to refresh first; otherwise :meth:`run` plans after the refresh steps).
        """
        if job.refresh or any(key not in job.resources for key, _ in job.targets):
            return
        try:
            plan = self.plan(job)
        except PlanError:
            return  # run() fails the release with the error
        self._plan = plan
        if not plan:
            return
        first = plan[0]
        self.seq = 1
        self._step_ids[1] = repo.add_step(
            release_id=job.release_id,
            seq=1,
            resource=first.resource,
            action=str(first.action),
            phase=str(StepPhase.FORWARD),
            status=str(StepStatus.RUNNING),
            started_at=now,
            output="",
        )
        self._started = (first.resource, first.action)

    @staticmethod
    def _view(r: ResourceDef) -> ResourceView:
        return ResourceView(
            key=r.key, depends_on=r.depends_on, sync=r.sync, present=r.applied is not None
        )

    def _step(
        self,
        job: Job,
        key: str,
        action: Action,
        phase: StepPhase,
        spec: dict[str, Any] | None = None,
    ) -> StepResult:
        if self.cancel.is_set():
            raise LeaseLost("lease lost before the next step")
        res = job.resources[key]
        if self._started == (key, action) and phase is StepPhase.FORWARD:
            seq = 1  # its row was written by the claiming transaction
        else:
            self.seq += 1
            seq = self.seq
            now = self.ctx.clock.now()
            with self.ctx.db.session() as s:
                repo = Repository(s)
                self._check(repo)
                self._write_pending(repo)
                self._step_ids[seq] = repo.add_step(
                    release_id=job.release_id,
                    seq=seq,
                    resource=key,
                    action=str(action),
                    phase=str(phase),
                    status=str(StepStatus.RUNNING),
                    started_at=now,
                    output="",
                )
        self._started = None
        desired = (
            spec if spec is not None else (res.applied if action is Action.DESTROY else res.desired)
        )
        rtype, _, name = key.partition("/")
        with self._output_lock:
            self._live.clear()
            self._live_size = 0
            self._live_step = seq
        try:
            executor = get_executor(res.executor)
        except UnknownExecutor as exc:
            result = StepResult(ok=False, exit_code=None, output="", error=str(exc))
        else:
            result = executor.run(
                StepContext(
                    project=job.project,
                    environment=job.environment,
                    release_id=job.release_id,
                    resource_type=rtype,
                    resource_name=name,
                    action=action,
                    desired_spec=desired,
                    previous_spec=res.applied,
                    config=res.config,
                    timeout=res.timeout,
                    extra_args=job.extra_args if phase is StepPhase.FORWARD else (),
                    extra_vars=job.extra_vars if phase is StepPhase.FORWARD else {},
                    output_limit=self.ctx.settings.output_tail_bytes,
                    cancel=self.cancel,
                    on_output=self._on_output,
                )
            )
        with self._output_lock:
            self._live_step = None
        if self.lost.is_set():
            raise LeaseLost("lease lost during a step")
        self._record(job, res, seq, action, phase, result, desired)
        return result

    def _record(
        self,
        job: Job,
        res: ResourceDef,
        seq: int,
        action: Action,
        phase: StepPhase,
        result: StepResult,
        desired: dict[str, Any] | None,
    ) -> None:
        """Record a step's outcome and its resource's new state.

        A refresh is written at once (planning reads its result); any other step is written
        by the next transaction of this release (the next step's, or the finishing one):
        one write transaction less per step. The applied spec the next steps need (a
        rollback's destroy) is known now.
        """
        record = _StepRecord(job, res, seq, action, phase, result, desired, self.ctx.clock.now())
        if action is Action.REFRESH:
            with self.ctx.db.session() as s:
                repo = Repository(s)
                self._check(repo)
                self._write(repo, record)
            return
        if result.ok and action is Action.APPLY:
            res.applied = dict(desired) if desired is not None else None
        elif result.ok and action is Action.DESTROY:
            res.applied = None
        self._pending = record

    def _write_pending(self, repo: Repository) -> None:
        """Write the deferred outcome of the previous step (call after the fence check)."""
        record, self._pending = self._pending, None
        if record is not None:
            self._write(repo, record)

    def _write(self, repo: Repository, record: _StepRecord) -> None:
        job, res, action, phase = record.job, record.res, record.action, record.phase
        result, desired, now = record.result, record.desired, record.at
        repo.update_step(
            self._step_ids[record.seq],
            status=str(StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED),
            finished_at=now,
            exit_code=result.exit_code,
            error=result.error,
            output=result.output,
        )
        values: dict[str, Any] = {"last_release_id": job.release_id, "updated_at": now}
        if result.ok:
            if action is Action.APPLY:
                values.update(applied_spec=desired, ever_applied=True, unknown=False,
                              degraded=False)
            elif action is Action.DESTROY:
                values.update(applied_spec=None, unknown=False, degraded=False)
            else:
                values.update(applied_spec=result.observed_spec, unknown=False)
                if result.observed_spec is not None:
                    values["ever_applied"] = True
        elif phase is StepPhase.ROLLBACK:
            values.update(unknown=True, degraded=True)
        elif action is not Action.REFRESH:
            values["degraded"] = True
        state = repo.write_state(res.state_id, self.token, **values)
        if state is None:
            raise LeaseLost(f"{res.key} was written by a newer release")
        applied = state["applied_spec"]
        res.applied = dict(applied) if applied is not None else None
        res.sync = sync_from(
            state["desired_spec"], applied, state["ever_applied"], state["unknown"]
        )

    def _finish(self, job: Job, status: ReleaseStatus, error: str | None) -> str:
        """Record the end and, in the same transaction, start what may start next.

        Before the transaction, so that no Redis round trip happens while holding the
        database's write lock: the heartbeat stops (its own writes would wait for this
        transaction), the state locks are released (nothing conflicting can be dispatched
        while the database still says ``running``), and the environment's remaining locks
        are read for the admission decision. In the transaction the environment row is locked
        first (the order every dispatching transaction uses), and the end of this release is
        committed together with the next dispatches. If the commit fails the release stays
        ``running`` without locks and the reconciler ends it as a lost worker's.
        """
        now = self.ctx.clock.now()
        locks = self.unlock_and_read()
        with self.ctx.db.session() as s:
            repo = Repository(s)
            project, env = repo.environment_view_by_id(job.env_id, lock=True)
            if not repo.fenced_update(
                job.release_id, self.token, status=str(status), finished_at=now, error=error
            ):
                raise LeaseLost("fenced out at finish")
            self._write_pending(repo)
            if (
                status is ReleaseStatus.SUCCEEDED
                and job.type in (ReleaseType.LAUNCH, ReleaseType.FULL)
                and not env.launched
            ):
                repo.set_launched(env.id)
            repo.event(
                at=now,
                actor=self.worker,
                kind=str(status),
                project=job.project,
                environment=job.environment,
                release_id=job.release_id,
                message=f"release {job.release_id} {status}" + (f": {error}" if error else ""),
            )
            dispatches: list[Dispatch] = []
            # with parallel off the decision reads what runs and the head in one query; with
            # it on, the queue's walk costs more than asking first whether anything waits
            serial = not env.parallel_releases or env.approval_required
            if serial or repo.has_waiting(env.id):
                _, dispatches = decide_and_mark(self.ctx, repo, project, env, now, locks)
            self.dispatches = dispatches
        return str(status)

    # -- live output -----------------------------------------------------------------------
    def _on_output(self, text: str) -> None:
        limit = self.ctx.settings.output_tail_bytes
        with self._output_lock:
            self._live.append(text)
            self._live_size += len(text)
            while self._live_size > limit and len(self._live) > 1:
                self._live_size -= len(self._live.popleft())
            self._live_dirty = True

    def flush_output(self) -> None:
        """Write the running step's output so far (``release logs --follow``)."""
        with self._output_lock:
            if not self._live_dirty or self._live_step is None:
                return
            seq, text = self._live_step, "".join(self._live)[-self.ctx.settings.output_tail_bytes :]
            self._live_dirty = False
        with self.ctx.db.session() as s:
            repo = Repository(s)
            if repo.fenced_update(self.release_id, self.token):
                s.query(StepRow).filter_by(
                    release_id=self.release_id, seq=seq, status=str(StepStatus.RUNNING)
                ).update({"output": text}, synchronize_session=False)


def fail_lost_release(
    ctx: Context, release_id: int, now: datetime, *, token: int | None = None,
    why: str | None = None,
) -> bool:
    """End a running release whose worker vanished (or, with ``token``, whose worker lost its
    lease and stopped): ``failed``, the resources of its in-flight steps Unknown.

    Returns False when the release was not running (under ``token``) any more.
    """
    with ctx.db.session() as s:
        repo = Repository(s)
        row = repo.release_row(release_id)
        heartbeat = row.heartbeat_at
        error = why or (
            "worker lost: no heartbeat since "
            f"{heartbeat.isoformat() if heartbeat else 'start'} and its lease expired"
            f" (worker {row.worker})"
        )
        if token is not None and row.fencing_token != token:
            return False
        if not repo.set_status(
            release_id, ReleaseStatus.RUNNING, ReleaseStatus.FAILED, finished_at=now, error=error
        ):
            return False
        project, environment = repo.names_of(row.environment_id)
        prow, env = repo.environment_by_id(row.environment_id)
        keys = {resource_key(r.rtype, r.name): r for r in repo.resources(prow)}
        for step in repo.steps(release_id):
            if step.status == StepStatus.RUNNING:
                step.status = str(StepStatus.FAILED)
                step.finished_at = now
                step.error = "worker lost" if why is None else "lease lost"
                res = keys.get(step.resource)
                if res is not None:
                    state = repo.state(env, res)
                    state.unknown = True
                    state.last_release_id = release_id
        repo.event(
            at=now,
            actor="relo",
            kind="failed",
            project=project,
            environment=environment,
            release_id=release_id,
            message=error,
        )
    return True
