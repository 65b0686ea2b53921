"""Redis implementation of the ``LockStore`` port (SPEC §5).

Every operation is one ``EVALSHA`` of a Lua script from ``scripts/`` (``current_fence`` is one
``GET``), so it is atomic and costs one round trip however many resources a lease has.  Expiry
bookkeeping uses Redis server time (``TIME``), never client clocks.

The scripts read keys they are not passed in ``KEYS`` (resource locks listed in the known
resources set, holder metadata); this is fine on a standalone Redis (and fakeredis) but not
on Redis Cluster.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from importlib import resources as importlib_resources
from typing import Any, TypeVar

import redis
from redis.commands.core import Script

from release_orchestrator.locks.keys import (
    DEFAULT_PREFIX,
    LockKeys,
    validate_env_key,
    validate_resource,
)
from release_orchestrator.locks.types import (
    Lease,
    LockConflictError,
    LockHolder,
    LockRequest,
    LockStoreUnavailable,
    sort_holders,
    utc_from_ms,
)
from release_orchestrator.resp import pack

__all__ = ["SCRIPT_NAMES", "RedisLockStore", "load_script"]

SCRIPT_NAMES = ("acquire", "extend", "release", "holders", "break")
"""Lua scripts of the store (``scripts/<name>.lua``, each prefixed with ``_common.lua``)."""

_T = TypeVar("_T")
_FIELDS_PER_HOLDER = 6


def _read_script(name: str) -> str:
    return (
        importlib_resources.files("release_orchestrator.locks")
        .joinpath(f"scripts/{name}.lua")
        .read_text(encoding="utf-8")
    )


def load_script(name: str) -> str:
    """Source of lock script ``name`` as sent to Redis (``_common.lua`` + ``<name>.lua``)."""
    if name not in SCRIPT_NAMES:
        raise ValueError(f"unknown lock script {name!r}")
    return _read_script("_common") + "\n" + _read_script(name)


@functools.lru_cache(maxsize=1024)
def _names_json(names: tuple[str, ...]) -> str:
    """Resource names as the scripts' JSON argument (the same names release after release)."""
    return json.dumps(list(names))


def _direct_connection(client: Any) -> Any:
    """The held connection of a redis-py ``single_connection_client`` that commands can be
    sent on directly, or None (a pooled client, fakeredis)."""
    conn = getattr(client, "connection", None)
    if conn is None or not type(conn).__module__.startswith("redis."):
        return None
    if not hasattr(client, "single_connection_lock"):
        return None
    return conn


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _parse_holders(env_key: str, now_ms: Any, flat: Sequence[Any]) -> list[LockHolder]:
    fields = [_text(v) for v in flat]
    if len(fields) % _FIELDS_PER_HOLDER:
        raise LockStoreUnavailable("malformed reply from lock script")
    now = int(_text(now_ms))
    holders = []
    for i in range(0, len(fields), _FIELDS_PER_HOLDER):
        scope, resource, owner, release_id, since_ms, ttl = fields[i : i + _FIELDS_PER_HOLDER]
        holders.append(
            LockHolder(
                env_key=env_key,
                scope=scope,  # type: ignore[arg-type]
                resource=resource or None,
                owner=owner,
                release_id=int(release_id) if release_id else None,
                since=utc_from_ms(int(since_ms) if since_ms else now),
                ttl_left_ms=int(ttl),
            )
        )
    return sort_holders(holders)


class RedisLockStore:
    """``LockStore`` on Redis (>= 7.0) or fakeredis with Lua.

    ``client`` may use ``decode_responses`` or not.  Scripts are registered once with
    ``client.register_script`` and loaded lazily (``EVALSHA``, ``SCRIPT LOAD`` on NOSCRIPT).
    Every ``redis.exceptions.RedisError`` is re-raised as ``LockStoreUnavailable`` with the
    original as ``__cause__``; messages never include the connection URL or credentials.
    """

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self.keys = LockKeys(prefix)
        self._scripts: dict[str, Script] = {
            name: client.register_script(load_script(name)) for name in SCRIPT_NAMES
        }

    @property
    def prefix(self) -> str:
        """Key prefix of this store."""
        return self.keys.prefix

    def _call(self, operation: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except redis.exceptions.RedisError as exc:
            raise LockStoreUnavailable(
                f"lock store unavailable during {operation}: {type(exc).__name__}"
            ) from exc

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts[name]
        return self._call(name, lambda: self._evalsha(script, keys, args))

    def _evalsha(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """``script(keys=keys, args=args)`` without its wrappers (three lock scripts run per
        release): ``EVALSHA``, and on ``NOSCRIPT`` (a restarted or flushed Redis) the
        script is loaded again, as ``Script.__call__`` does."""
        try:
            return self._send("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            script.sha = self._client.script_load(script.script)
            return self._send("EVALSHA", script.sha, len(keys), *keys, *args)

    def _send(self, *command: Any) -> Any:
        """One command and its reply.

        On the held connection of a ``single_connection_client`` (relo's, see
        ``services/context.py``) the command is packed here and sent and read on that
        connection under the client's lock: ``execute_command`` costs about 20 µs more of
        CPU per call (its retry wrapper, observability hooks, per-argument encoding), for
        every lock script of every release. A connection error or timeout there falls back
        to ``execute_command``, which reconnects and retries as the client is configured:
        a lock script may then run twice, as with redis-py's own retries (an owner's
        re-acquisition replaces what it held; release, extend and the listings are
        idempotent; a repeated break finds nothing left to break). Other clients (a pooled
        one, fakeredis) go through ``execute_command``.
        """
        client: Any = self._client
        conn = _direct_connection(client)
        if conn is not None:
            with client.single_connection_lock:
                if client.connection is conn:
                    try:
                        conn.send_packed_command(pack(*command))
                        reply = conn.read_response()
                    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                        conn.disconnect()  # no half-read reply left for the next command
                    else:
                        # as execute_command does after a command (a server's maintenance
                        # notice): the next command connects anew
                        if conn.should_reconnect():
                            conn.disconnect()
                        return reply
        return client.execute_command(*command)

    def acquire(self, request: LockRequest) -> Lease:
        """See ``LockStore.acquire``: all or nothing, one ``EVALSHA``."""
        env = request.env_key
        k = self.keys
        keys = [
            k.env_lock(env),
            k.slots(env),
            k.fence(env),
            k.index(env),
            k.meta(env, request.owner),
        ]
        args: list[Any] = [
            request.owner,
            request.ttl_ms,
            "1" if request.exclusive else "0",
            "" if request.release_id is None else request.release_id,
            _names_json(request.resources),
            k.resource_prefix(env),
            k.meta_prefix(env),
        ]
        reply = self._run("acquire", keys, args)
        if int(reply[0]) != 1:
            raise LockConflictError(env, _parse_holders(env, reply[1], reply[2]))
        return Lease(
            env_key=env,
            owner=request.owner,
            fencing_token=int(reply[1]),
            exclusive=request.exclusive,
            resources=request.resources,
            release_id=request.release_id,
            ttl_ms=request.ttl_ms,
        )

    def _lease_keys(self, lease: Lease) -> list[str]:
        k = self.keys
        env = lease.env_key
        return [k.env_lock(env), k.slots(env), k.meta(env, lease.owner)]

    def _lease_resources(self, lease: Lease) -> list[str]:
        """The lease's resources (JSON) and the resource key prefix, as script arguments."""
        names = () if lease.exclusive else tuple(lease.resources)
        return [_names_json(names), self.keys.resource_prefix(lease.env_key)]

    def extend(self, lease: Lease, ttl_ms: int | None = None) -> bool:
        """See ``LockStore.extend``: all parts or nothing, one ``EVALSHA``."""
        ttl = lease.ttl_ms if ttl_ms is None else ttl_ms
        if not isinstance(ttl, int) or ttl <= 0:
            raise ValueError(f"ttl_ms must be a positive int, got {ttl!r}")
        args = [lease.owner, ttl, "1" if lease.exclusive else "0", lease.fencing_token,
                *self._lease_resources(lease)]
        return int(self._run("extend", self._lease_keys(lease), args)) == 1

    def release(self, lease: Lease) -> None:
        """See ``LockStore.release``: owner-only, idempotent, one ``EVALSHA``."""
        self._run("release", self._lease_keys(lease),
                  [lease.owner, lease.fencing_token, self.keys.resource_prefix(lease.env_key)])

    def release_and_holders(self, lease: Lease) -> list[LockHolder]:
        """See ``LockStore.release_and_holders``: one ``EVALSHA``."""
        k = self.keys
        env = lease.env_key
        reply = self._run(
            "release",
            [*self._lease_keys(lease), k.index(env)],
            [lease.owner, lease.fencing_token, k.resource_prefix(env), k.meta_prefix(env)],
        )
        return _parse_holders(env, reply[1], reply[2])

    def holders(self, env_key: str) -> list[LockHolder]:
        """See ``LockStore.holders``: one ``EVALSHA``, no SCAN."""
        env = validate_env_key(env_key)
        k = self.keys
        reply = self._run(
            "holders",
            [k.env_lock(env), k.slots(env), k.index(env)],
            [k.resource_prefix(env), k.meta_prefix(env)],
        )
        return _parse_holders(env, reply[0], reply[1])

    def break_locks(self, env_key: str, resource: str | None = None) -> list[LockHolder]:
        """See ``LockStore.break_locks``: one ``EVALSHA``."""
        env = validate_env_key(env_key)
        k = self.keys
        keys = [k.env_lock(env), k.slots(env), k.index(env)]
        if resource is not None:
            keys.append(k.resource(env, validate_resource(resource)))
        args = [k.resource_prefix(env), k.meta_prefix(env), resource or ""]
        reply = self._run("break", keys, args)
        return _parse_holders(env, reply[0], reply[1])

    def current_fence(self, env_key: str) -> int:
        """See ``LockStore.current_fence``: one ``GET``."""
        key = self.keys.fence(validate_env_key(env_key))
        value = self._call("current_fence", lambda: self._client.get(key))
        return int(_text(value)) if value is not None else 0
