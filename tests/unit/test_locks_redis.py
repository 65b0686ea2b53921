"""Redis-specific properties of ``RedisLockStore``: round trips, errors, scripts, key layout."""

from __future__ import annotations

import importlib.resources
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from release_orchestrator.locks import (
    Lease,
    LockConflictError,
    LockKeys,
    LockRequest,
    LockStoreUnavailable,
    RedisLockStore,
)
from release_orchestrator.locks.redis_store import SCRIPT_NAMES, load_script
from tests.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT

ENV = "shop/prod"


@pytest.fixture(params=["fakeredis", "redis", "redis-held"])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A fakeredis client, or one on this pytest worker's real Redis DB (skipped if not
    answering): pooled, or holding one connection as relo's processes do (the store then
    sends its scripts on that connection itself)."""
    if request.param == "fakeredis":
        c: redis.Redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        c = _real_client(held=request.param == "redis-held")
    yield c
    c.close()


def _real_client(*, held: bool) -> redis.Redis:
    """A client of this pytest worker's real Redis DB (the test is skipped if it does not
    answer); ``held``: one connection held, as relo's processes use."""
    c = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=1,
                    single_connection_client=held)
    try:
        c.ping()
    except redis.exceptions.RedisError as exc:
        c.close()
        pytest.skip(f"real Redis at 127.0.0.1:6379 not answering: {exc!r}")
    return c


@pytest.fixture
def store(client: redis.Redis) -> Iterator[RedisLockStore]:
    """Store under a unique key prefix, cleaned afterwards."""
    prefix = f"relotest-{uuid.uuid4().hex[:12]}"
    yield RedisLockStore(client, prefix=prefix)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


class CommandCounter:
    """Wraps ``client.execute_command`` (and the held connection's ``send_packed_command``,
    which the store uses directly on such a client) and records the command names sent."""

    def __init__(self, client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.commands: list[str] = []
        original = client.execute_command
        held = client.connection

        def counting(*args: Any, **kwargs: Any) -> Any:
            if held is None:  # a held connection's commands are counted as they are sent
                self.commands.append(str(args[0]).upper())
            return original(*args, **kwargs)

        monkeypatch.setattr(client, "execute_command", counting)
        if held is not None:
            send = held.send_packed_command

            def sending(command: Any, *args: Any, **kwargs: Any) -> Any:
                for packed in [command] if isinstance(command, (bytes, str)) else command:
                    # the first bulk string of a RESP array is the command's name
                    self.commands.append(bytes(packed).split(b"\r\n")[2].decode().upper())
                return send(command, *args, **kwargs)

            monkeypatch.setattr(held, "send_packed_command", sending)

    def reset(self) -> None:
        self.commands.clear()


def test_every_operation_is_one_round_trip(
    client: redis.Redis, store: RedisLockStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = tuple(f"service/s{i:03d}" for i in range(100))
    # warm-up: loads every script into the server's cache (script loading is excluded)
    warm = store.acquire(LockRequest(ENV, "warm", False, ("db/warm",)))
    store.extend(warm)
    store.release(warm)
    store.holders(ENV)
    store.break_locks(ENV, "db/warm")
    store.break_locks(ENV)

    counter = CommandCounter(client, monkeypatch)
    lease = store.acquire(LockRequest(ENV, "1:a", False, resources, release_id=1))
    assert counter.commands == ["EVALSHA"]
    assert len(lease.resources) == 100

    counter.reset()
    with pytest.raises(LockConflictError) as info:
        store.acquire(LockRequest(ENV, "2:b", False, resources, release_id=2))
    assert counter.commands == ["EVALSHA"]
    assert len(info.value.conflicts) == 100

    counter.reset()
    with pytest.raises(LockConflictError) as info:
        store.acquire(LockRequest(ENV, "3:c", True, release_id=3))
    assert counter.commands == ["EVALSHA"]
    assert len(info.value.conflicts) == 101  # slot + 100 resources

    for op in (
        lambda: store.extend(lease),
        lambda: store.holders(ENV),
        lambda: store.break_locks(ENV, "service/s000"),
        lambda: store.release(lease),
        lambda: store.break_locks(ENV),
    ):
        counter.reset()
        op()
        assert counter.commands == ["EVALSHA"]
    counter.reset()
    store.current_fence(ENV)
    assert counter.commands == ["GET"]


def test_scripts_reload_after_script_flush(client: redis.Redis, store: RedisLockStore) -> None:
    store.release(store.acquire(LockRequest(ENV, "1:a", False, ("service/web",))))
    client.script_flush()
    lease = store.acquire(LockRequest(ENV, "2:b", False, ("service/web",)))
    assert lease.fencing_token == 2


def test_decode_responses_client(client: redis.Redis) -> None:
    kwargs = client.connection_pool.connection_kwargs
    text: redis.Redis
    if isinstance(client, fakeredis.FakeRedis):
        text = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    else:
        text = redis.Redis(
            host=kwargs["host"], port=kwargs["port"], db=REDIS_DB, decode_responses=True
        )
    prefix = f"relotest-{uuid.uuid4().hex[:12]}"
    try:
        s = RedisLockStore(text, prefix=prefix)
        lease = s.acquire(LockRequest(ENV, "1:a", False, ("service/web",), release_id=7))
        assert [(h.scope, h.release_id) for h in s.holders(ENV)] == [("slot", 7), ("resource", 7)]
        assert s.current_fence(ENV) == lease.fencing_token == 1
        s.release(lease)
    finally:
        keys = list(text.scan_iter(match=f"{prefix}:*"))
        if keys:
            text.delete(*keys)
        text.close()


def test_hand_written_key_with_default_prefix() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    try:
        store = RedisLockStore(client)
        store.release(store.acquire(LockRequest(ENV, "1:a", False, ("service/web",))))
        client.execute_command("SET", "relo:lock:shop/prod:res:service/web", "manual", "PX", 60000)
        (holder,) = store.holders(ENV)
        assert (holder.owner, holder.release_id, holder.resource) == ("manual", None, "service/web")
        with pytest.raises(LockConflictError):
            store.acquire(LockRequest(ENV, "2:b", True))
    finally:
        client.close()


def test_redis_errors_become_lock_store_unavailable() -> None:
    client = redis.Redis(
        host="127.0.0.1",
        port=1,
        password="s3cret-pw",
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )
    store = RedisLockStore(client)
    request = LockRequest(ENV, "1:a", False, ("service/web",))
    try:
        for op in (
            lambda: store.acquire(request),
            lambda: store.holders(ENV),
            lambda: store.current_fence(ENV),
        ):
            with pytest.raises(LockStoreUnavailable) as info:
                op()
            assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
            message = str(info.value)
            assert "s3cret-pw" not in message and "127.0.0.1" not in message
            assert ":1" not in message
    finally:
        client.close()


def test_a_held_connection_carries_the_scripts_without_execute_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """relo's clients hold one connection (services/context.py): the store packs, sends and
    reads each script there itself, not through ``execute_command``."""
    c = _real_client(held=True)
    store = RedisLockStore(c, prefix=f"relotest-{uuid.uuid4().hex[:12]}")
    try:
        warm = store.acquire(LockRequest(ENV, "0:warm", False, ("service/web",)))
        store.extend(warm)  # every script the test uses is in the server's cache
        store.holders(ENV)
        store.release_and_holders(warm)

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"execute_command{args[:1]} on the held connection")

        monkeypatch.setattr(c, "execute_command", refuse)
        lease = store.acquire(LockRequest(ENV, "1:a", False, ("service/web",), release_id=1))
        assert {h.owner for h in store.holders(ENV)} == {"1:a"}
        assert store.extend(lease)
        with pytest.raises(LockConflictError):
            store.acquire(LockRequest(ENV, "2:b", True, release_id=2))
        assert store.release_and_holders(lease) == []
    finally:
        monkeypatch.undo()
        for key in c.scan_iter(match=f"{store.prefix}:*"):
            c.delete(key)
        c.close()


def test_a_held_connection_that_dropped_is_replaced_and_the_script_runs() -> None:
    """A connection killed between two scripts: the next one falls back to
    ``execute_command``, which reconnects; nothing is read from the dead connection."""
    c = _real_client(held=True)
    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    store = RedisLockStore(c, prefix=f"relotest-{uuid.uuid4().hex[:12]}")
    try:
        first = store.acquire(LockRequest(ENV, "1:a", False, ("service/web",), release_id=1))
        admin.client_kill_filter(_id=c.client_id())
        store.release(first)
        second = store.acquire(LockRequest(ENV, "2:b", False, ("service/web",), release_id=2))
        assert second.fencing_token == first.fencing_token + 1
        assert {h.owner for h in store.holders(ENV)} == {"2:b"}
        admin.client_kill_filter(_id=c.client_id())
        store.release(second)
        assert store.holders(ENV) == []
    finally:
        for key in c.scan_iter(match=f"{store.prefix}:*"):
            c.delete(key)
        c.close()
        admin.close()


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    from redis._parsers.encoders import Encoder
    from redis.connection import PythonRespSerializer

    from release_orchestrator.resp import pack

    args = ("EVALSHA", "0" * 40, 3, "relo:lock:shop/prod:env", b"raw\r\nbytes", "", 60000,
            "n\u00e4me/\u00fcnicode", -1, 2.5, bytearray(b"ba"), memoryview(b"mv"))
    reference = PythonRespSerializer(10**9, Encoder("utf-8", "strict", False).encode).pack(*args)
    assert b"".join(pack(*args)) == b"".join(bytes(part) for part in reference)
    for bad in (True, None, ["list"]):
        with pytest.raises(redis.exceptions.DataError):
            pack("SET", "key", bad)


def test_wrong_type_is_reported_as_unavailable() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    try:
        store = RedisLockStore(client)
        client.hset("relo:lock:shop/prod:env", "x", "y")
        with pytest.raises(LockStoreUnavailable) as info:
            store.acquire(LockRequest(ENV, "1:a", True))
        assert isinstance(info.value.__cause__, redis.exceptions.ResponseError)
    finally:
        client.close()


@pytest.mark.parametrize("name", [*SCRIPT_NAMES])
def test_scripts_document_keys_argv_and_return(name: str) -> None:
    path = importlib.resources.files("release_orchestrator.locks").joinpath(f"scripts/{name}.lua")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith(f"-- {name}.lua: ")
    header = "\n".join(line for line in lines if line.startswith("--"))
    assert load_script(name).endswith("\n".join(lines) + "\n")
    assert re.search(r"^-- KEYS\[1\]", header, re.M)
    assert re.search(r"^-- ARGV\[1\]", header, re.M)
    assert re.search(r"^-- Returns ", header, re.M)


def test_resource_keys_live_with_the_lease_metadata(
    client: redis.Redis, store: RedisLockStore
) -> None:
    """Resource keys carry owner and fencing token and no TTL of their own; the metadata's TTL
    is the lease's.  A released lease leaves dead keys that block nothing, and the next
    listing deletes them."""
    k = store.keys
    names = ("service/web", "db/main")
    lease = store.acquire(LockRequest(ENV, "1:a", False, names, release_id=1, ttl_ms=30_000))
    for name in names:
        assert client.get(k.resource(ENV, name)) == f"1:a\x1f{lease.fencing_token}".encode()
        assert client.pttl(k.resource(ENV, name)) == -1
    assert 0 < client.pttl(k.meta(ENV, "1:a")) <= 30_000
    assert store.extend(lease, ttl_ms=90_000)
    assert 30_000 < client.pttl(k.meta(ENV, "1:a")) <= 90_000

    store.release(lease)
    assert client.exists(*(k.resource(ENV, n) for n in names)) == 2  # dead, not deleted yet
    assert store.holders(ENV) == []
    assert client.exists(*(k.resource(ENV, n) for n in names)) == 0

    again = store.acquire(LockRequest(ENV, "2:b", False, names, release_id=2))
    assert store.release_and_holders(again) == []
    assert client.exists(*(k.resource(ENV, n) for n in names)) == 0


def test_hand_written_values_follow_their_own_ttl(
    client: redis.Redis, store: RedisLockStore
) -> None:
    """Any value without the separator is a lock written by hand (or by a relo before resource
    keys carried a fencing token): live while its key exists.  A value with the separator
    whose metadata does not carry that token is no lock at all."""
    k = store.keys
    client.set(k.resource(ENV, "service/web"), "7:old", px=300)
    client.set(k.resource(ENV, "db/main"), "8:gone\x1f12")
    with pytest.raises(LockConflictError) as info:
        store.acquire(LockRequest(ENV, "1:a", False, ("service/web", "db/main")))
    assert [(c.resource, c.owner) for c in info.value.conflicts] == [("service/web", "7:old")]
    assert 0 < info.value.conflicts[0].ttl_left_ms <= 300
    time.sleep(0.4)
    lease = store.acquire(LockRequest(ENV, "1:a", False, ("service/web", "db/main")))
    assert {h.resource for h in store.holders(ENV) if h.scope == "resource"} == {
        "service/web",
        "db/main",
    }
    store.release(lease)


def test_key_layout() -> None:
    keys = LockKeys()
    assert keys.env_lock(ENV) == "relo:lock:shop/prod:env"
    assert keys.slots(ENV) == "relo:lock:shop/prod:slots"
    assert keys.resource(ENV, "service/web") == "relo:lock:shop/prod:res:service/web"
    assert keys.meta(ENV, "42:ab") == "relo:lockmeta:shop/prod:42:ab"
    assert keys.index(ENV) == "relo:lockidx:shop/prod"
    assert keys.fence(ENV) == "relo:fence:shop/prod"
    assert LockKeys("x").fence(ENV) == "x:fence:shop/prod"
    with pytest.raises(ValueError):
        LockKeys("bad prefix")


def test_concurrent_workers_never_hold_conflicting_leases(store: RedisLockStore) -> None:
    """Threads race for overlapping resource sets; held leases must never conflict."""
    resources = ("service/a", "service/b", "service/c", "db/main")
    held: dict[str, Lease] = {}
    guard = threading.Lock()
    violations: list[tuple[Lease, Lease]] = []
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(40):
                exclusive = rng.random() < 0.2
                chosen = tuple(rng.sample(resources, rng.randint(0, 2)))
                request = LockRequest(ENV, f"{seed}:{i}", exclusive, () if exclusive else chosen)
                try:
                    lease = store.acquire(request)
                except LockConflictError:
                    continue
                with guard:
                    for other in held.values():
                        if (
                            lease.exclusive
                            or other.exclusive
                            or set(lease.resources) & set(other.resources)
                        ):
                            violations.append((lease, other))
                    held[lease.owner] = lease
                time.sleep(rng.random() / 1000)
                with guard:
                    del held[lease.owner]
                store.release(lease)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert not violations
    assert store.holders(ENV) == []
    assert store.current_fence(ENV) > 0
