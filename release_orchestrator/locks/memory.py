"""In-memory ``LockStore`` with the same semantics as ``RedisLockStore`` (for fast tests).

Time comes from the injected ``clock`` (seconds, e.g. ``time.time`` or a fake clock), so TTL
expiry can be tested without sleeping.  Thread-safe; every method is atomic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from release_orchestrator.locks.keys import validate_env_key, validate_resource
from release_orchestrator.locks.types import (
    SCOPE_ENVIRONMENT,
    SCOPE_RESOURCE,
    SCOPE_SLOT,
    Lease,
    LockConflictError,
    LockHolder,
    LockRequest,
    LockScope,
    sort_holders,
    utc_from_ms,
)

__all__ = ["MemoryLockStore"]


@dataclass
class _Lock:
    owner: str
    expires_ms: int | None  # None: no expiry (only for hand-written / foreign locks)


@dataclass
class _Meta:
    release_id: int | None
    since_ms: int
    fence: int
    expires_ms: int


@dataclass
class _Env:
    env_lock: _Lock | None = None
    slots: dict[str, int] = field(default_factory=dict)  # owner -> expiry ms
    resources: dict[str, _Lock] = field(default_factory=dict)
    meta: dict[str, _Meta] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    fence: int = 0


class MemoryLockStore:
    """``LockStore`` kept in process memory; mirrors the Redis store rule for rule.

    ``clock`` returns the current time in seconds (default ``time.time``); it drives TTL
    expiry and ``LockHolder.since``.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._mutex = threading.Lock()
        self._envs: dict[str, _Env] = {}

    # -- internals -----------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _env(self, env_key: str) -> _Env:
        state = self._envs.get(env_key)
        if state is None:
            state = self._envs[env_key] = _Env()
        return state

    @staticmethod
    def _live(lock: _Lock | None, now: int) -> _Lock | None:
        if lock is None or (lock.expires_ms is not None and lock.expires_ms <= now):
            return None
        return lock

    def _purge(self, env: _Env, now: int) -> None:
        """Forget everything expired (what Redis does lazily)."""
        env.env_lock = self._live(env.env_lock, now)
        env.slots = {o: exp for o, exp in env.slots.items() if exp > now}
        env.resources = {r: lk for r, lk in env.resources.items() if self._live(lk, now)}
        env.meta = {o: m for o, m in env.meta.items() if m.expires_ms > now}

    @staticmethod
    def _ttl(expires_ms: int | None, now: int) -> int:
        return -1 if expires_ms is None else expires_ms - now

    def _holder(
        self,
        env_key: str,
        env: _Env,
        scope: LockScope,
        resource: str | None,
        owner: str,
        ttl: int,
        now: int,
    ) -> LockHolder:
        meta = env.meta.get(owner)
        return LockHolder(
            env_key=env_key,
            scope=scope,
            resource=resource,
            owner=owner,
            release_id=meta.release_id if meta else None,
            since=utc_from_ms(meta.since_ms if meta else now),
            ttl_left_ms=ttl,
        )

    def _collect_all(
        self, env_key: str, env: _Env, now: int, skip_owner: str | None
    ) -> list[LockHolder]:
        out = []
        env_lock = env.env_lock
        if env_lock is not None and env_lock.owner != skip_owner:
            ttl = self._ttl(env_lock.expires_ms, now)
            out.append(
                self._holder(env_key, env, SCOPE_ENVIRONMENT, None, env_lock.owner, ttl, now)
            )
        for owner, exp in env.slots.items():
            if owner != skip_owner:
                out.append(self._holder(env_key, env, SCOPE_SLOT, None, owner, exp - now, now))
        for resource in env.known:
            lock = env.resources.get(resource)
            if lock is not None and lock.owner != skip_owner:
                ttl = self._ttl(lock.expires_ms, now)
                out.append(
                    self._holder(env_key, env, SCOPE_RESOURCE, resource, lock.owner, ttl, now)
                )
        return sort_holders(out)

    # -- LockStore -----------------------------------------------------------------------

    def acquire(self, request: LockRequest) -> Lease:
        """See ``LockStore.acquire``: all or nothing, atomic."""
        with self._mutex:
            now = self._now()
            env_key, owner = request.env_key, request.owner
            env = self._env(env_key)
            self._purge(env, now)
            env.known.update(request.resources)
            if request.exclusive:
                conflicts = self._collect_all(env_key, env, now, owner)
            else:
                conflicts = []
                lock = env.env_lock
                if lock is not None and lock.owner != owner:
                    ttl = self._ttl(lock.expires_ms, now)
                    conflicts.append(
                        self._holder(env_key, env, SCOPE_ENVIRONMENT, None, lock.owner, ttl, now)
                    )
                for resource in request.resources:
                    lock = env.resources.get(resource)
                    if lock is not None and lock.owner != owner:
                        ttl = self._ttl(lock.expires_ms, now)
                        conflicts.append(
                            self._holder(
                                env_key, env, SCOPE_RESOURCE, resource, lock.owner, ttl, now
                            )
                        )
            if conflicts:
                raise LockConflictError(env_key, conflicts)

            if owner in env.meta:  # same owner again: replace what it held
                if env.env_lock is not None and env.env_lock.owner == owner:
                    env.env_lock = None
                env.slots.pop(owner, None)
                for resource in env.known:
                    lock = env.resources.get(resource)
                    if lock is not None and lock.owner == owner:
                        del env.resources[resource]
                del env.meta[owner]

            env.fence += 1
            expires = now + request.ttl_ms
            if request.exclusive:
                env.env_lock = _Lock(owner, expires)
            else:
                env.slots[owner] = expires
                for resource in request.resources:
                    env.resources[resource] = _Lock(owner, expires)
            env.meta[owner] = _Meta(request.release_id, now, env.fence, expires)
            return Lease(
                env_key=env_key,
                owner=owner,
                fencing_token=env.fence,
                exclusive=request.exclusive,
                resources=request.resources,
                release_id=request.release_id,
                ttl_ms=request.ttl_ms,
            )

    def extend(self, lease: Lease, ttl_ms: int | None = None) -> bool:
        """See ``LockStore.extend``: all parts or nothing."""
        ttl = lease.ttl_ms if ttl_ms is None else ttl_ms
        if not isinstance(ttl, int) or ttl <= 0:
            raise ValueError(f"ttl_ms must be a positive int, got {ttl!r}")
        with self._mutex:
            now = self._now()
            env = self._env(lease.env_key)
            self._purge(env, now)
            owner = lease.owner
            meta = env.meta.get(owner)
            if meta is None or meta.fence != lease.fencing_token:
                return False
            if lease.exclusive:
                if env.env_lock is None or env.env_lock.owner != owner:
                    return False
            else:
                if owner not in env.slots:
                    return False
                for resource in lease.resources:
                    lock = env.resources.get(resource)
                    if lock is None or lock.owner != owner:
                        return False
            expires = now + ttl
            if lease.exclusive:
                assert env.env_lock is not None
                env.env_lock.expires_ms = expires
            else:
                env.slots[owner] = expires
                for resource in lease.resources:
                    env.resources[resource].expires_ms = expires
            meta.expires_ms = expires
            return True

    def release(self, lease: Lease) -> None:
        """See ``LockStore.release``: owner-only, idempotent."""
        with self._mutex:
            self._release(lease)

    def release_and_holders(self, lease: Lease) -> list[LockHolder]:
        """See ``LockStore.release_and_holders``."""
        with self._mutex:
            self._release(lease)
            env = self._env(lease.env_key)
            return self._collect_all(lease.env_key, env, self._now(), None)

    def _release(self, lease: Lease) -> None:
        """Owner-only, idempotent (call holding the mutex)."""
        now = self._now()
        env = self._env(lease.env_key)
        self._purge(env, now)
        owner = lease.owner
        meta = env.meta.get(owner)
        if meta is not None and meta.fence != lease.fencing_token:
            return
        if env.env_lock is not None and env.env_lock.owner == owner:
            env.env_lock = None
        env.slots.pop(owner, None)
        if not lease.exclusive:
            for resource in lease.resources:
                lock = env.resources.get(resource)
                if lock is not None and lock.owner == owner:
                    del env.resources[resource]
        env.meta.pop(owner, None)

    def holders(self, env_key: str) -> list[LockHolder]:
        """See ``LockStore.holders``."""
        validate_env_key(env_key)
        with self._mutex:
            now = self._now()
            env = self._env(env_key)
            self._purge(env, now)
            return self._collect_all(env_key, env, now, None)

    def break_locks(self, env_key: str, resource: str | None = None) -> list[LockHolder]:
        """See ``LockStore.break_locks``."""
        validate_env_key(env_key)
        if resource is not None:
            validate_resource(resource)
        with self._mutex:
            now = self._now()
            env = self._env(env_key)
            self._purge(env, now)
            if resource is not None:
                env.known.add(resource)
                lock = env.resources.pop(resource, None)
                if lock is None:
                    return []
                ttl = self._ttl(lock.expires_ms, now)
                return [self._holder(env_key, env, SCOPE_RESOURCE, resource, lock.owner, ttl, now)]
            broken = self._collect_all(env_key, env, now, None)
            env.env_lock = None
            env.slots.clear()
            for holder in broken:
                if holder.resource is not None:
                    env.resources.pop(holder.resource, None)
            for holder in broken:
                env.meta.pop(holder.owner, None)
            return broken

    def current_fence(self, env_key: str) -> int:
        """See ``LockStore.current_fence``."""
        validate_env_key(env_key)
        with self._mutex:
            env = self._envs.get(env_key)
            return env.fence if env is not None else 0

    # -- test helpers --------------------------------------------------------------------

    def put_foreign_lock(
        self,
        env_key: str,
        resource: str | None,
        owner: str,
        ttl_ms: int | None = None,
    ) -> None:
        """Emulate a lock written by hand without relo metadata.

        Equivalent to ``SET {prefix}:lock:{env}:res:{resource} owner [PX ttl_ms]`` (or the
        ``:env`` key when ``resource`` is None) on the Redis store.  Like there, the resource
        is not added to the environment's known resources.
        """
        validate_env_key(env_key)
        with self._mutex:
            now = self._now()
            env = self._env(env_key)
            lock = _Lock(owner, None if ttl_ms is None else now + ttl_ms)
            if resource is None:
                env.env_lock = lock
            else:
                env.resources[validate_resource(resource)] = lock
