"""Value types, errors and the ``LockStore`` port of the state locks (SPEC §5)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, Protocol, runtime_checkable

from release_orchestrator.locks.keys import RESOURCE_RE, validate_env_key, validate_resource

__all__ = [
    "SCOPE_ENVIRONMENT",
    "SCOPE_RESOURCE",
    "SCOPE_SLOT",
    "Lease",
    "LockConflictError",
    "LockError",
    "LockHolder",
    "LockRequest",
    "LockScope",
    "LockStore",
    "LockStoreUnavailable",
    "sort_holders",
    "utc_from_ms",
]

LockScope = Literal["environment", "slot", "resource"]
SCOPE_ENVIRONMENT: LockScope = "environment"
SCOPE_SLOT: LockScope = "slot"
SCOPE_RESOURCE: LockScope = "resource"
_SCOPE_ORDER = {SCOPE_ENVIRONMENT: 0, SCOPE_SLOT: 1, SCOPE_RESOURCE: 2}


_WHITESPACE = re.compile(r"\s")


def _validate_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner or len(owner) > 512:
        raise ValueError(f"invalid lock owner {owner!r}")
    if _WHITESPACE.search(owner):  # str.isspace's characters, found in C
        raise ValueError(f"lock owner must not contain whitespace: {owner!r}")


def _validate_resources(resources: Iterable[str]) -> tuple[str, ...]:
    out = tuple(resources)
    if all(type(r) is str for r in out) and _valid_names(out):
        return out
    for resource in out:  # the error for what is wrong
        validate_resource(resource)
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate resources in {out!r}")
    return out


@functools.lru_cache(maxsize=1024)
def _valid_names(names: tuple[str, ...]) -> bool:
    """Whether every name is ``type/name`` and none is repeated (a release asks for the same
    resources release after release: a hundred names are checked once)."""
    return all(RESOURCE_RE.match(n) for n in names) and len(set(names)) == len(names)


@dataclass(frozen=True)
class LockRequest:
    """What a release asks to lock.

    ``exclusive=True`` locks the whole environment; ``resources`` is then optional and only
    checked for (hand-written) resource locks and recorded in the metadata.  ``exclusive=False``
    (a selective release) takes a shared slot on the environment plus one lock per resource.
    ``owner`` must be unique per attempt, e.g. ``f"{release_id}:{uuid4().hex}"``.
    """

    env_key: str
    owner: str
    exclusive: bool
    resources: tuple[str, ...] = ()
    release_id: int | None = None
    ttl_ms: int = 60_000

    def __post_init__(self) -> None:
        validate_env_key(self.env_key)
        _validate_owner(self.owner)
        object.__setattr__(self, "resources", _validate_resources(self.resources))
        if not isinstance(self.ttl_ms, int) or self.ttl_ms <= 0:
            raise ValueError(f"ttl_ms must be a positive int, got {self.ttl_ms!r}")
        if self.release_id is not None and not isinstance(self.release_id, int):
            raise ValueError(f"release_id must be an int or None, got {self.release_id!r}")


@dataclass(frozen=True)
class Lease:
    """Locks held by one owner, returned by ``LockStore.acquire``.

    ``fencing_token`` is strictly greater than every token handed out before in the same
    environment; pass it to side-effecting systems so that a stale holder can be rejected.
    """

    env_key: str
    owner: str
    fencing_token: int
    exclusive: bool
    resources: tuple[str, ...]
    release_id: int | None
    ttl_ms: int


@dataclass(frozen=True)
class LockHolder:
    """One live lock of an environment.

    ``scope`` is ``"environment"`` (exclusive lock), ``"slot"`` (shared environment slot of a
    selective release) or ``"resource"`` (then ``resource`` is ``type/name``).  ``release_id``
    is ``None`` when the owner is not a relo release (a lock written by hand or unknown).
    ``since`` is the acquisition time (aware UTC); for holders without relo metadata it is the
    time the lock was observed.  ``ttl_left_ms`` is ``-1`` for a lock without expiry.
    """

    env_key: str
    scope: LockScope
    resource: str | None
    owner: str
    release_id: int | None
    since: datetime
    ttl_left_ms: int

    def describe(self) -> str:
        """Short human readable description, e.g. ``resource service/web held by 42:ab12``."""
        what = f"resource {self.resource}" if self.scope == SCOPE_RESOURCE else self.scope
        rel = f"release {self.release_id}" if self.release_id is not None else "unknown owner"
        return f"{what} of {self.env_key} held by {self.owner} ({rel}, {self.ttl_left_ms} ms left)"


def sort_holders(holders: Iterable[LockHolder]) -> list[LockHolder]:
    """Canonical order: environment lock, slots, then resources; by resource and owner."""
    return sorted(holders, key=lambda h: (_SCOPE_ORDER[h.scope], h.resource or "", h.owner))


def utc_from_ms(ms: int) -> datetime:
    """Aware UTC datetime from epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class LockError(Exception):
    """Base class of the lock errors."""


class LockConflictError(LockError):
    """``acquire`` failed because other owners hold conflicting locks.

    ``conflicts`` names every holder that blocked the request (canonical order); nothing of the
    request was taken.
    """

    def __init__(self, env_key: str, conflicts: Iterable[LockHolder]) -> None:
        self.env_key = env_key
        self.conflicts: tuple[LockHolder, ...] = tuple(sort_holders(conflicts))
        listed = "; ".join(h.describe() for h in self.conflicts) or "unknown holder"
        super().__init__(f"cannot lock {env_key}: {listed}")


class LockStoreUnavailable(LockError):
    """The backing store (Redis) failed; the original exception is ``__cause__``.

    The message never contains connection URLs or credentials.
    """


@runtime_checkable
class LockStore(Protocol):
    """Port of the state lock store (SPEC §5).

    Conflict rules inside one environment (locks held by the requesting owner itself never
    conflict; a new acquisition by the same owner replaces its previous locks atomically):

    * exclusive conflicts with an exclusive lock, any live slot or any resource lock of
      another owner (hand-written resource locks count when the resource is known to the
      environment, i.e. was ever requested or broken there, or is named in the request);
    * shared conflicts with an exclusive lock or a lock on any requested resource.

    Expired parts (TTL elapsed) do not exist any more and never conflict.

    Every method is a single atomic operation (one round trip for the Redis store).  Every
    method may raise ``LockStoreUnavailable``; none raises for "nothing to do".
    """

    def acquire(self, request: LockRequest) -> Lease:
        """Take all locks of ``request`` atomically, all or nothing, in one round trip.

        Returns the ``Lease`` with a fresh fencing token (incremented only on success).
        Raises ``LockConflictError`` listing every conflicting holder; nothing is taken then.
        """
        ...

    def extend(self, lease: Lease, ttl_ms: int | None = None) -> bool:
        """Reset the TTL of every part of ``lease`` to ``ttl_ms`` (default ``lease.ttl_ms``).

        Returns True if ALL parts are still owned by the lease and were extended.  Returns
        False if any part was lost (expired, broken, or superseded); then NOTHING is extended,
        the remaining parts expire by their TTL and the caller must stop work and ``release``.
        """
        ...

    def release(self, lease: Lease) -> None:
        """Release the parts of ``lease`` still owned by ``lease.owner``; idempotent.

        Locks held by other owners are never touched.  A lease superseded by a newer
        acquisition of the same owner is not released.
        """
        ...

    def release_and_holders(self, lease: Lease) -> list[LockHolder]:
        """:meth:`release`, then the environment's live locks as :meth:`holders` lists them,
        atomically (one round trip): what a finishing release needs for the next decision."""
        ...

    def holders(self, env_key: str) -> list[LockHolder]:
        """Live locks of the environment in canonical order, read atomically (one round trip)."""
        ...

    def break_locks(self, env_key: str, resource: str | None = None) -> list[LockHolder]:
        """Force-remove locks regardless of owner and return what was removed.

        ``resource=None`` removes every lock of the environment (exclusive lock, slots,
        resource locks and holder metadata); otherwise only that resource's lock.  Fencing
        counters are never reset.  Atomic, one round trip.
        """
        ...

    def current_fence(self, env_key: str) -> int:
        """Last fencing token handed out in the environment (0 if none)."""
        ...
