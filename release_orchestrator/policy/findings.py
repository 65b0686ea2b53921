"""Plain sentences and remedy commands for the admission policy's reasons. Pure code.

``release active``, ``release show``, ``release wait`` and ``relo diagnose`` all render
reasons through :func:`finding_of`, so they say the same thing.
"""

from __future__ import annotations

from datetime import datetime

from ..domain.models import Finding
from .admission import ENVIRONMENT, Code, Reason


def _when(value: object) -> str:
    if isinstance(value, datetime):
        return (
            value.strftime("%Y-%m-%d %H:%M:%S UTC")
            if value.utcoffset() is not None and value.utcoffset().total_seconds() == 0
            else value.isoformat()
        )  # type: ignore[union-attr]
    return str(value)


def _what(resources: tuple[str, ...]) -> str:
    if not resources or resources == (ENVIRONMENT,):
        return "the whole environment"
    return ", ".join(resources)


def finding_of(
    reason: Reason, project: str, environment: str, release_id: int | None = None
) -> Finding:
    """The finding (code, message, remedy) for one reason a release waits."""
    pe = f"-p {project} -e {environment}"
    f = reason.facts
    code = reason.code
    subject = f"release {release_id}" if release_id is not None else "the next release"
    if code in (Code.PROJECT_PAUSED, Code.ENVIRONMENT_PAUSED):
        level = "project" if code is Code.PROJECT_PAUSED else "environment"
        name = project if code is Code.PROJECT_PAUSED else f"{project}/{environment}"
        msg = f"{level} '{name}' is paused by {f.get('by')} since {_when(f.get('at'))}"
        if f.get("reason"):
            msg += f": {f.get('reason')}"
        if f.get("until"):
            msg += f" (until {_when(f.get('until'))})"
        remedy = f"relo env resume -p {project}" + (
            "" if code is Code.PROJECT_PAUSED else f" -e {environment}"
        )
        return Finding(code=str(code), message=msg, remedy=remedy, release_id=release_id)
    if code is Code.OUTSIDE_WINDOW:
        if f.get("reason") == "deny_window":
            msg = f"deny window {f.get('window_id')} is open"
        else:
            msg = "outside the availability windows"
        nxt = f.get("next_opening")
        msg += f"; next opening {_when(nxt)}" if nxt else "; no opening within a year"
        return Finding(
            code=str(code),
            message=msg,
            remedy=f"relo env window list {pe}  (remove one: relo env window remove {pe} ID)",
            release_id=release_id,
        )
    if code is Code.WAITING_BEHIND:
        msg = (
            f"{subject} is waiting behind release {reason.release_id} "
            f"(queue position {f.get('position')}) on {_what(reason.resources)}"
        )
        return Finding(
            code=str(code),
            message=msg,
            remedy=f"wait for it, or remove it: relo release delete {reason.release_id}",
            release_id=reason.release_id,
            resources=list(reason.resources),
        )
    if code is Code.STATE_LOCK_HELD:
        holder = f.get("holder")
        if holder == "release":
            msg = (
                f"state lock on {_what(reason.resources)} held by running release "
                f"{reason.release_id}"
            )
            remedy = f"wait for it: relo release logs {reason.release_id} --follow"
        else:
            who = (
                f"finished release {reason.release_id}"
                if reason.release_id is not None
                else f"an unknown holder ({f.get('owner')})"
            )
            since = f" since {_when(f.get('since'))}" if f.get("since") else ""
            ttl = f.get("ttl_left_ms")
            ttl_text = (
                f", TTL left {int(ttl) / 1000:.0f}s" if isinstance(ttl, int) and ttl >= 0 else ""
            )
            msg = f"state lock on {_what(reason.resources)} held by {who}{since}{ttl_text}"
            target = (
                "--all"
                if ENVIRONMENT in reason.resources or not reason.resources
                else reason.resources[0]
            )
            remedy = f"relo lock break {pe} {target} --reason 'stale lock'"
        return Finding(
            code=str(code),
            message=msg,
            remedy=remedy,
            release_id=reason.release_id,
            resources=list(reason.resources),
        )
    if code is Code.APPROVAL_PENDING:
        return Finding(
            code=str(code),
            message=f"release {reason.release_id} waits for approval",
            remedy=f"relo release approve {reason.release_id}",
            release_id=reason.release_id,
        )
    if code is Code.PARALLEL_DISABLED:
        return Finding(
            code=str(code),
            message=f"parallel releases are off in {project}/{environment}, and "
            f"release {reason.release_id} is running",
            remedy=f"relo env settings {pe} --parallel on",
            release_id=reason.release_id,
        )
    if code is Code.APPROVAL_DISABLES_PARALLEL:
        return Finding(
            code=str(code),
            message=f"the approval workflow is on in {project}/{environment}, which "
            f"disables parallel releases; release {reason.release_id} is "
            "running",
            remedy=f"relo env settings {pe} --approval off",
            release_id=reason.release_id,
        )
    if code is Code.MAX_PARALLEL_REACHED:
        running, cap = f.get("running"), f.get("max")
        return Finding(
            code=str(code),
            message=f"max parallel releases reached ({running} of {cap} running)",
            remedy=f"relo env settings {pe} --max-parallel "
            f"{int(cap) + 1 if isinstance(cap, int) else 'N'}",
        )
    return Finding(code=str(code), message=str(code))  # pragma: no cover - exhaustive above
