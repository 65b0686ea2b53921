"""State locks of environments and resources (SPEC §5).

A selective release holds a shared slot on its environment plus one lock per target resource;
every other release type holds the whole environment exclusively.  All locks of a release are
taken atomically in one round trip, carry a TTL the worker keeps extending, are released by
their owner only, and come with a fencing token that is monotonic per environment.

``RedisLockStore`` is the production store; ``MemoryLockStore`` has identical semantics for
fast tests.  Both satisfy the ``LockStore`` protocol.
"""

from __future__ import annotations

from release_orchestrator.locks.keys import DEFAULT_PREFIX, LockKeys
from release_orchestrator.locks.memory import MemoryLockStore
from release_orchestrator.locks.redis_store import RedisLockStore
from release_orchestrator.locks.types import (
    SCOPE_ENVIRONMENT,
    SCOPE_RESOURCE,
    SCOPE_SLOT,
    Lease,
    LockConflictError,
    LockError,
    LockHolder,
    LockRequest,
    LockScope,
    LockStore,
    LockStoreUnavailable,
)

__all__ = [
    "DEFAULT_PREFIX",
    "SCOPE_ENVIRONMENT",
    "SCOPE_RESOURCE",
    "SCOPE_SLOT",
    "Lease",
    "LockConflictError",
    "LockError",
    "LockHolder",
    "LockKeys",
    "LockRequest",
    "LockScope",
    "LockStore",
    "LockStoreUnavailable",
    "MemoryLockStore",
    "RedisLockStore",
]
