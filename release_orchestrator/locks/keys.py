"""Redis key layout of the state locks (SPEC §5).

This module is the ONE place where lock-related Redis key prefixes are defined.  Everything
else (the Lua scripts included) receives fully built keys or key prefixes from here.

Layout for ``prefix="relo"`` and ``env_key="shop/prod"``::

    relo:lock:shop/prod:env                 string  owner of the exclusive lock   (PX ttl)
    relo:lock:shop/prod:slots               zset    owner -> slot expiry (ms, server time)
    relo:lock:shop/prod:res:service/web     string  owner \x1f fencing token      (no TTL)
    relo:lockmeta:shop/prod:<owner>         hash    holder metadata               (PX ttl)
    relo:lockidx:shop/prod                  set     resource names ever locked or requested
    relo:fence:shop/prod                    string  fencing counter (INCR, never expires)

A resource lock written by relo is live exactly while its owner's metadata carries the same
fencing token: it ends with the lease (release, expiry, re-acquisition) without being touched,
so taking and extending a lease over 100 resources costs one ``MSET``, not 100 ``SET ... PX``.
Such dead keys are overwritten by the next acquisition and deleted by the next listing.

A lock key written by hand (``SET relo:lock:shop/prod:res:service/web manual PX 60000``) is a
valid lock: it blocks acquisition and is reported with ``release_id=None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_PREFIX",
    "ENV_KEY_RE",
    "NAME_PATTERN",
    "RESOURCE_PART_PATTERN",
    "RESOURCE_RE",
    "LockKeys",
    "validate_env_key",
    "validate_resource",
]

DEFAULT_PREFIX = "relo"
"""Default key prefix of every relo lock key."""

NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
"""A project or environment name (same rule as ``release_orchestrator.domain.names``)."""

RESOURCE_PART_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,126}"
"""A resource type or resource name (same rule as ``release_orchestrator.domain.names``)."""

ENV_KEY_RE = re.compile(rf"^{NAME_PATTERN}/{NAME_PATTERN}$")
"""``project/environment``."""

RESOURCE_RE = re.compile(rf"^{RESOURCE_PART_PATTERN}/{RESOURCE_PART_PATTERN}$")
"""``type/name``; never contains ``:``, ``/`` inside a part, or whitespace."""

_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


def validate_env_key(env_key: str) -> str:
    """Return ``env_key`` unchanged or raise ``ValueError`` if it is not ``project/env``."""
    if not isinstance(env_key, str) or not ENV_KEY_RE.match(env_key):
        raise ValueError(f"invalid env_key {env_key!r}: expected 'project/environment'")
    return env_key


def validate_resource(resource: str) -> str:
    """Return ``resource`` unchanged or raise ``ValueError`` if it is not ``type/name``."""
    if not isinstance(resource, str) or not RESOURCE_RE.match(resource):
        raise ValueError(f"invalid resource {resource!r}: expected 'type/name'")
    return resource


@dataclass(frozen=True)
class LockKeys:
    """Builds the Redis keys of the lock store for one key prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(f"invalid key prefix {self.prefix!r}")

    def env_lock(self, env_key: str) -> str:
        """String key holding the owner of the environment's exclusive lock."""
        return f"{self.prefix}:lock:{env_key}:env"

    def slots(self, env_key: str) -> str:
        """Sorted set of shared-slot owners scored by expiry (ms, Redis server time)."""
        return f"{self.prefix}:lock:{env_key}:slots"

    def resource_prefix(self, env_key: str) -> str:
        """Prefix of the resource lock keys; append ``type/name``."""
        return f"{self.prefix}:lock:{env_key}:res:"

    def resource(self, env_key: str, resource: str) -> str:
        """String key holding the owner of one resource lock."""
        return self.resource_prefix(env_key) + resource

    def meta_prefix(self, env_key: str) -> str:
        """Prefix of the holder metadata keys; append the owner."""
        return f"{self.prefix}:lockmeta:{env_key}:"

    def meta(self, env_key: str, owner: str) -> str:
        """Hash with the metadata of one holder (release_id, since_ms, exclusive, ...)."""
        return self.meta_prefix(env_key) + owner

    def index(self, env_key: str) -> str:
        """Set of the resource names ever locked or requested in the environment.

        Listing, exclusive acquisition and break read the resource keys named here, so that
        no SCAN is needed and hand-written resource locks on known resources are seen.
        """
        return f"{self.prefix}:lockidx:{env_key}"

    def fence(self, env_key: str) -> str:
        """Fencing counter of the environment (INCR, never expires)."""
        return f"{self.prefix}:fence:{env_key}"

    def all_pattern(self) -> str:
        """Glob matching every key of this prefix (for test/benchmark cleanup only)."""
        return f"{self.prefix}:*"
