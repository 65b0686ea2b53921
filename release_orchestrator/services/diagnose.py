"""``relo diagnose`` (SPEC §8): why releases do not start or do not run in parallel.

The admission policy's reasons come from the snapshot builder and ``decide()`` the
dispatcher uses (``services/snapshot.py``, ``policy/admission.py``), rendered by
``policy/findings.py``, so diagnose cannot disagree with what the dispatcher does. Around
them it reports facts the policy does not decide on: whether a worker consumes the
environment's queue, stale locks when nothing waits, scheduled releases skipped because the
environment was busy, resources left ``Unknown``, apps already in sync.

Reading (:func:`observe`, I/O) and concluding (:func:`compose`, no I/O) are separate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..domain import (
    Finding,
    Health,
    Release,
    ReleaseStatus,
    ReleaseType,
    ResourceStatus,
    SkipReason,
    StepPhase,
    StepStatus,
    SyncStatus,
)
from ..domain.names import env_key, queue_name, resource_key
from ..errors import InvalidRequest, NotFound, Unavailable
from ..policy import findings as F
from ..policy.admission import Code, Decision, Snapshot, decide
from ..storage.repository import Repository
from ..storage.tables import ProjectRow
from .context import Context
from .snapshot import build_snapshot, lock_infos

#: How many skipped scheduled releases a finding names.
SKIPS_SHOWN = 5
#: Release statuses that mean "the release ended badly" (``release wait`` exits 1).
FAILED_STATUSES = frozenset(
    {ReleaseStatus.FAILED, ReleaseStatus.ROLLED_BACK, ReleaseStatus.ROLLBACK_FAILED}
)


# -- apps (shared with ``release sync`` / ``release wait``) ---------------------------------
def split_apps(apps: str | Iterable[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` → ``["a", "b", "c"]`` (order kept, duplicates dropped)."""
    items = [apps] if isinstance(apps, str) else list(apps)
    out: list[str] = []
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def resolve_apps(repo: Repository, project: ProjectRow, apps: Sequence[str]) -> list[str]:
    """``TYPE/NAME`` of each app (a bare ``NAME`` when unique); :class:`NotFound` names
    the resources that exist, :class:`InvalidRequest` an ambiguous name."""
    keys: list[str] = []
    for ref in apps:
        row = repo.resolve_resource(project, ref)
        key = resource_key(row.rtype, row.name)
        if key not in keys:
            keys.append(key)
    return keys


def targets(release: Release, key: str) -> bool:
    """Whether ``release`` acts on resource ``key`` (every type but selective acts on all)."""
    if release.type.needs_whole_environment:
        return True
    return any(t.resource == key for t in release.targets)


def uncertain(status: ResourceStatus, flagged: set[str]) -> bool:
    """``Unknown`` because a rollback failed or a worker was lost (``flagged``), not merely
    never applied; not while a running release acts on it (it settles the state)."""
    return (
        status.resource in flagged
        and status.sync is SyncStatus.UNKNOWN
        and status.health is not Health.PROGRESSING
    )


# -- reading ------------------------------------------------------------------------------
@dataclass
class Observation:
    """One environment as diagnose sees it, read at one moment."""

    project: str
    environment: str
    now: datetime
    snapshot: Snapshot
    decision: Decision
    #: Resource statuses by ``TYPE/NAME``, in project order.
    statuses: dict[str, ResourceStatus]
    #: Resources flagged Unknown by a failed rollback or a lost worker.
    flagged: set[str]
    #: Running (with steps), queued (FIFO, with position) and pending-approval releases.
    active: list[Release]
    #: Queued releases already sent to the workers, and when.
    dispatched: dict[int, datetime | None] = field(default_factory=dict)
    locks_error: str | None = None
    #: Skipped-because-busy scheduled releases since the last success, newest first.
    skipped_busy: list[Release] = field(default_factory=list)
    skipped_busy_total: int = 0
    #: Last releases of resources that are Unknown or Degraded, by id.
    last_releases: dict[int, Release] = field(default_factory=dict)
    #: The release asked about (with steps), and how many forward steps it ran.
    subject: Release | None = None
    subject_forward_steps: int = 0
    #: The apps asked about, as ``TYPE/NAME``.
    apps: list[str] = field(default_factory=list)
    #: Workers consuming ``release.P.E``; None when they could not be asked.
    consumers: list[str] | None = None
    asked_workers: bool = False


def observe(
    ctx: Context,
    project: str,
    environment: str,
    release_id: int | None = None,
    apps: Sequence[str] = (),
    *,
    ask_workers: bool = True,
) -> Observation:
    """Read everything diagnose needs. Raises :class:`NotFound` for unknown names/ids and
    :class:`InvalidRequest` for a release of another environment or an ambiguous app."""
    now = ctx.clock.now()
    locks_error = None
    try:
        locks = lock_infos(ctx, env_key(project, environment), strict=True)
    except Unavailable as exc:  # the dispatcher then sees no locks either
        locks, locks_error = (), exc.message
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment)
        subject = None
        forward_steps = 0
        if release_id is not None:
            subject = repo.release(release_id)
            if (subject.project, subject.environment) != (project, environment):
                raise InvalidRequest(
                    f"release {release_id} belongs to {subject.project}/{subject.environment}, "
                    f"not {project}/{environment}"
                )
            forward_steps = sum(1 for st in subject.steps if st.phase is StepPhase.FORWARD)
        keys = resolve_apps(repo, prow, apps)
        snapshot = build_snapshot(repo, prow, env, now, locks, full_queue=True)
        statuses = {r.resource: r for r in repo.resource_statuses(prow, env)}
        flagged = repo.uncertain_resources(prow, env)
        active = [
            repo.release(r.id) if r.status is ReleaseStatus.RUNNING else r
            for r in repo.active(prow, env)
        ]
        dispatched = {
            r.id: r.dispatched_at
            for r in repo.running_rows(env.id)
            if r.status == ReleaseStatus.QUEUED
        }
        rows, total = repo.skipped_rows(
            env.id, str(SkipReason.BUSY), after=repo.last_success_at(env.id), limit=SKIPS_SHOWN
        )
        skipped = [repo.release(r.id, with_steps=False) for r in rows]
        wanted = {
            st.last_release_id
            for st in statuses.values()
            if st.last_release_id is not None
            and (uncertain(st, flagged) or st.health is Health.DEGRADED)
        }
        last_releases = {i: repo.release(i, with_steps=False) for i in sorted(wanted)}
    obs = Observation(
        project=project,
        environment=environment,
        now=now,
        snapshot=snapshot,
        decision=decide(snapshot),
        statuses=statuses,
        flagged=flagged,
        active=active,
        dispatched=dispatched,
        locks_error=locks_error,
        skipped_busy=skipped,
        skipped_busy_total=total,
        last_releases=last_releases,
        subject=subject,
        subject_forward_steps=forward_steps,
        apps=keys,
    )
    only_finished = subject is not None and subject.status.is_final and not keys
    if ask_workers and not only_finished:
        obs.consumers = ctx.transport.consumers(queue_name(project, environment))
        obs.asked_workers = True
    return obs


def diagnose(
    ctx: Context,
    project: str,
    environment: str,
    release_id: int | None = None,
    apps: Sequence[str] = (),
) -> list[Finding]:
    """Why releases of ``project/environment`` wait, with the command that fixes each.

    With ``release_id``: about that release. With ``apps``: about those resources (the
    releases that target them, their sync and health; ``in_sync`` when a sync would do
    nothing). With neither: about every waiting release and the environment. An empty list
    means nothing is in the way.
    """
    return compose(observe(ctx, project, environment, release_id, split_apps(apps)))


def unknown_name(
    exc: NotFound, project: str | None = None, environment: str | None = None
) -> Finding:
    """The ``unknown_name`` finding for a :class:`NotFound` (``-o json`` prints it)."""
    listing = (
        f"relo release list -p {project} -e {environment}"
        if exc.kind == "release" and project and environment
        else ""
    )
    return F.unknown_name_finding(exc.kind, exc.name, exc.existing, exc.message, listing)


# -- concluding ---------------------------------------------------------------------------
class _Findings:
    """An ordered list of findings without repeats."""

    def __init__(self) -> None:
        self.items: list[Finding] = []
        self._seen: set[tuple[object, ...]] = set()

    def add(self, finding: Finding | None) -> None:
        if finding is None:
            return
        key = (finding.code, finding.release_id, tuple(finding.resources), finding.message)
        if key not in self._seen:
            self._seen.add(key)
            self.items.append(finding)

    def extend(self, findings: Iterable[Finding | None]) -> None:
        for f in findings:
            self.add(f)


def compose(obs: Observation) -> list[Finding]:
    """The findings of an observation (pure)."""
    out = _Findings()
    if obs.subject is not None:
        out.extend(release_findings(obs, obs.subject))
    if obs.apps:
        out.extend(app_findings(obs))
    if obs.subject is None and not obs.apps:
        out.extend(environment_findings(obs))
    return out.items


def _pe(obs: Observation) -> str:
    return f"-p {obs.project} -e {obs.environment}"


def _hints(obs: Observation) -> list[tuple[int | None, Finding]]:
    """Parallel hints, each with the waiting release it is about (None: the environment)."""
    return F.parallel_hints(obs.snapshot, obs.decision, obs.project, obs.environment)


def _worker_findings(obs: Observation, waiting: Sequence[int]) -> list[Finding | None]:
    if not obs.asked_workers:
        return []
    return [F.worker_finding(obs.consumers, obs.project, obs.environment, waiting)]


def _waiting(obs: Observation, release: Release) -> list[Finding | None]:
    """Findings of a queued or pending release (policy reasons, hints, dispatch state)."""
    rid = release.id
    out: list[Finding | None] = list(
        F.findings_for(obs.decision, rid, obs.project, obs.environment)
    )
    out.extend(f for held, f in _hints(obs) if held == rid)
    if release.status is ReleaseStatus.QUEUED:
        if rid in obs.dispatched:
            if obs.consumers:
                out.append(
                    F.waiting_for_worker_finding(
                        rid, obs.dispatched[rid], obs.consumers, obs.project, obs.environment
                    )
                )
        elif rid in obs.decision.start:
            out.append(
                Finding(
                    code=str(F.Fact.WAITING_FOR_WORKER),
                    message=f"release {rid} may start now but has not been sent to the workers "
                    "yet; relo beat re-evaluates waiting releases every RELO_SCHEDULE_TICK "
                    "seconds",
                    remedy="make sure relo beat runs (relo up starts worker and beat)",
                    release_id=rid,
                )
            )
    out.extend(_worker_findings(obs, [rid]))
    out.append(_in_sync_release(obs, release))
    return out


def _in_sync_release(obs: Observation, release: Release) -> Finding | None:
    """A full/custom release without ``force`` when every resource is in sync runs no step."""
    if release.type not in (ReleaseType.FULL, ReleaseType.CUSTOM) or release.force:
        return None
    remedy = f"relo release trigger {_pe(obs)} --type {release.type} --force"
    if release.status.is_final:
        if release.status is not ReleaseStatus.SUCCEEDED or obs.subject_forward_steps:
            return None
        return Finding(
            code=str(F.Fact.IN_SYNC),
            message=f"release {release.id} ran no step: every resource was already in sync",
            remedy=remedy,
            release_id=release.id,
        )
    if release.status is ReleaseStatus.RUNNING or not obs.statuses:
        return None
    if all(st.sync is SyncStatus.SYNCED for st in obs.statuses.values()):
        return Finding(
            code=str(F.Fact.IN_SYNC),
            message=f"release {release.id} is a {release.type} release and every resource is "
            "in sync: it will run no step",
            remedy=remedy,
            release_id=release.id,
        )
    return None


def _running(obs: Observation, release: Release) -> Finding:
    step = next((s for s in reversed(release.steps) if s.status is StepStatus.RUNNING), None)
    where = f" on {release.worker}" if release.worker else ""
    message = f"release {release.id} is running{where} since {F.when_text(release.started_at)}"
    if step is not None:
        phase = " (rollback)" if step.phase is StepPhase.ROLLBACK else ""
        message += (
            f": step {step.seq}, {step.action} {step.resource}{phase}, running since "
            f"{F.when_text(step.started_at)}"
        )
    return Finding(
        code=str(F.Fact.RELEASE_RUNNING),
        message=message,
        remedy=f"follow it: relo release logs {release.id} --follow",
        release_id=release.id,
        resources=[step.resource] if step is not None else [],
    )


def _finished(obs: Observation, release: Release) -> list[Finding | None]:
    out: list[Finding | None] = []
    if release.status is ReleaseStatus.SKIPPED and release.skip_reason is SkipReason.BUSY:
        out.append(_skipped_busy(obs, [release], 1))
        return out
    message = f"release {release.id} ended {release.status}"
    if release.finished_at:
        message += f" at {F.when_text(release.finished_at)}"
    if release.skip_reason:
        message += f" (skipped: {release.skip_reason})"
    if release.error:
        message += f": {release.error}"
    remedy = None
    if release.status in FAILED_STATUSES:
        remedy = f"read its output: relo release logs {release.id}"
    out.append(
        Finding(
            code=str(F.Fact.RELEASE_FINISHED),
            message=message,
            remedy=remedy,
            release_id=release.id,
        )
    )
    if release.status is ReleaseStatus.ROLLBACK_FAILED:
        out.extend(
            _unknown(obs, st)
            for st in obs.statuses.values()
            if uncertain(st, obs.flagged) and st.last_release_id == release.id
        )
    out.append(_in_sync_release(obs, release))
    return out


def release_findings(obs: Observation, release: Release) -> list[Finding | None]:
    """Why ``release`` is not running yet, what it is doing, or how it ended."""
    if release.status is ReleaseStatus.RUNNING:
        return [_running(obs, release)]
    if release.status.is_final:
        return _finished(obs, release)
    return _waiting(obs, release)


def _unknown(obs: Observation, st: ResourceStatus) -> Finding:
    """``rollback_failed`` / ``resource_unknown``: state uncertain, a refresh settles it."""
    last = obs.last_releases.get(st.last_release_id or -1)
    remedy = f"relo release trigger {_pe(obs)} --type selective --target {st.resource}:refresh"
    if last is not None and last.status is ReleaseStatus.ROLLBACK_FAILED:
        return Finding(
            code=str(F.Fact.ROLLBACK_FAILED),
            message=f"{st.resource} is Unknown: the rollback of release {last.id} failed "
            "(rollback_failed), so what is deployed is uncertain",
            remedy=remedy,
            release_id=last.id,
            resources=[st.resource],
        )
    why = (
        f"release {last.id} ended {last.status}" + (f" ({last.error})" if last.error else "")
        if last is not None
        else "its last release did not finish cleanly"
    )
    return Finding(
        code=str(F.Fact.RESOURCE_UNKNOWN),
        message=f"{st.resource} is Unknown: {why} while acting on it, so what is deployed "
        "is uncertain",
        remedy=remedy,
        release_id=last.id if last is not None else None,
        resources=[st.resource],
    )


def _skipped_busy(obs: Observation, skipped: Sequence[Release], total: int) -> Finding:
    latest = skipped[0]

    def at(r: Release) -> str:
        return F.when_text(r.created_at)

    if total == 1:
        message = (
            f"the scheduled release {latest.id} due at {at(latest)} was skipped because "
            f"{obs.project}/{obs.environment} was busy (a release was running or queued)"
        )
    else:
        earlier = ", ".join(at(r) for r in skipped[1:])
        message = (
            f"the schedule skipped {total} releases because {obs.project}/{obs.environment} "
            f"was busy; the last one, release {latest.id}, at {at(latest)}"
            + (f" (before: {earlier})" if earlier else "")
        )
    if latest.error:
        message += f": {latest.error}"
    return Finding(
        code=str(F.Fact.SCHEDULE_SKIPPED_BUSY),
        message=message,
        remedy=f"let the queue drain (relo release active {_pe(obs)}), or release now: "
        f"relo release trigger {_pe(obs)} --type full",
        release_id=latest.id,
    )


def environment_findings(obs: Observation) -> list[Finding | None]:
    """Every waiting release's reasons (grouped), and the environment's facts."""
    out: list[Finding | None] = list(F.summarize(obs.decision, obs.project, obs.environment))
    hints = _hints(obs)
    out.extend(f for held, f in hints if held is not None)
    if not any(f is not None and f.code == Code.APPROVAL_DISABLES_PARALLEL for f in out):
        out.extend(f for held, f in hints if held is None)
    blamed = {
        (r.facts.get("owner"), r.resources)
        for reasons in obs.decision.held.values()
        for r in reasons
        if r.code is Code.STATE_LOCK_HELD and r.facts.get("holder") != "release"
    }
    for reason in F.stale_locks(obs.snapshot):
        if (reason.facts.get("owner"), reason.resources) not in blamed:
            out.append(F.reason_finding(reason, obs.project, obs.environment))
    if obs.locks_error:
        out.append(
            Finding(
                code=str(F.Fact.LOCKS_UNREADABLE),
                message=f"the state locks cannot be read ({obs.locks_error}); releases do "
                "not start while Redis does not answer",
                remedy="check Redis (RELO_REDIS_URL): redis-cli -u $RELO_REDIS_URL ping",
            )
        )
    queued = [r.id for r in obs.active if r.status is ReleaseStatus.QUEUED]
    out.extend(_worker_findings(obs, queued))
    for release in obs.active:
        if release.status is not ReleaseStatus.QUEUED:
            continue
        if release.id in obs.dispatched and obs.consumers:
            out.append(
                F.waiting_for_worker_finding(
                    release.id,
                    obs.dispatched[release.id],
                    obs.consumers,
                    obs.project,
                    obs.environment,
                )
            )
        out.append(_in_sync_release(obs, release))
    out.extend(_unknown(obs, st) for st in obs.statuses.values() if uncertain(st, obs.flagged))
    if obs.skipped_busy:
        out.append(_skipped_busy(obs, obs.skipped_busy, obs.skipped_busy_total))
    return out


def app_findings(obs: Observation) -> list[Finding | None]:
    """What keeps the apps from being Synced and Healthy with nothing in flight."""
    out: list[Finding | None] = []
    involved = [r for r in obs.active if any(targets(r, k) for k in obs.apps)]
    for release in involved:
        out.extend(f for f in release_findings(obs, release) if not _is_worker(f))
    waiting = [r.id for r in involved if r.status is not ReleaseStatus.RUNNING]
    out.extend(_worker_findings(obs, waiting))
    apps_text = ",".join(obs.apps)
    ready = []
    for key in obs.apps:
        st = obs.statuses[key]
        idle = not any(targets(r, key) for r in obs.active)
        if uncertain(st, obs.flagged):
            out.append(_unknown(obs, st))
        elif idle and st.health is Health.DEGRADED:
            last = obs.last_releases.get(st.last_release_id or -1)
            why = (
                f": its last release {last.id} ended {last.status}"
                + (f" ({last.error})" if last.error else "")
                if last is not None
                else ""
            )
            out.append(
                Finding(
                    code=str(F.Fact.APP_DEGRADED),
                    message=f"{key} is Degraded{why}",
                    remedy=f"fix its spec (relo resource set {_pe(obs)} {key} KEY=VALUE), then "
                    f"relo release sync {key} {_pe(obs)}",
                    release_id=last.id if last is not None else None,
                    resources=[key],
                )
            )
        elif idle and st.sync is not SyncStatus.SYNCED:
            out.append(
                Finding(
                    code=str(F.Fact.OUT_OF_SYNC),
                    message=f"{key} is {st.sync} and no release targets it",
                    remedy=f"relo release sync {key} {_pe(obs)}",
                    resources=[key],
                )
            )
        elif idle and st.sync is SyncStatus.SYNCED and st.health is Health.HEALTHY:
            ready.append(key)
    if len(ready) == len(obs.apps):
        verb = "is" if len(ready) == 1 else "are"
        out.append(
            Finding(
                code=str(F.Fact.IN_SYNC),
                message=f"{', '.join(ready)} {verb} already Synced and Healthy and no release "
                "targets them: relo release sync would do nothing",
                remedy=f"release them anyway: relo release sync {apps_text} {_pe(obs)} --force",
                resources=list(ready),
            )
        )
    return out


def _is_worker(f: Finding | None) -> bool:
    return f is not None and f.code in (F.Fact.NO_WORKER, F.Fact.WORKERS_UNREACHABLE)
