"""Contract suite of the ``LockStore`` port, run against every implementation.

Stores: ``MemoryLockStore`` with a fake clock, ``RedisLockStore`` on fakeredis (Lua via lupa)
and ``RedisLockStore`` on the real Redis at 127.0.0.1:6379 (DB 15, unique key prefix per
test, deleted afterwards; skipped when Redis does not answer).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import fakeredis
import pytest
import redis

from release_orchestrator.locks import (
    Lease,
    LockConflictError,
    LockHolder,
    LockRequest,
    LockStore,
    MemoryLockStore,
    RedisLockStore,
)
from tests.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT

ENV = "shop/prod"
OTHER_ENV = "shop/staging"


class FakeClock:
    """Settable clock in seconds."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """A store plus the means to let time pass and to write a lock by hand."""

    kind: str
    store: LockStore
    sleep: Callable[[float], None]
    plant: Callable[[str, str | None, str, int | None], None]

    @property
    def is_redis(self) -> bool:
        return self.kind != "memory"


def _redis_harness(kind: str, client: redis.Redis) -> Iterator[Harness]:
    prefix = f"relotest-{uuid.uuid4().hex[:12]}"
    store = RedisLockStore(client, prefix=prefix)

    def plant(env_key: str, resource: str | None, owner: str, ttl_ms: int | None) -> None:
        key = (
            store.keys.env_lock(env_key)
            if resource is None
            else store.keys.resource(env_key, resource)
        )
        client.set(key, owner, px=ttl_ms)

    try:
        yield Harness(kind, store, time.sleep, plant)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(params=["memory", "fakeredis", "redis", "redis-held"])
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """One harness per store implementation (``redis-held``: a client holding one connection,
    as relo's processes use, on which the store sends its scripts itself)."""
    if request.param == "memory":
        clock = FakeClock()
        mem = MemoryLockStore(clock=clock)
        yield Harness("memory", mem, clock.advance, mem.put_foreign_lock)
    elif request.param == "fakeredis":
        yield from _redis_harness("fakeredis", fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    else:
        client = redis.Redis(
            host=REDIS_HOST,
            port=REDIS_PORT,
            db=REDIS_DB,
            socket_timeout=2,
            socket_connect_timeout=1,
            single_connection_client=request.param == "redis-held",
        )
        try:
            client.ping()
        except redis.exceptions.RedisError as exc:
            client.close()
            pytest.skip(f"real Redis at {REDIS_HOST}:{REDIS_PORT} not answering: {exc!r}")
        yield from _redis_harness(request.param, client)


def req(
    owner: str,
    *resources: str,
    exclusive: bool = False,
    release_id: int | None = None,
    ttl_ms: int = 60_000,
    env: str = ENV,
) -> LockRequest:
    return LockRequest(
        env_key=env,
        owner=owner,
        exclusive=exclusive,
        resources=resources,
        release_id=release_id,
        ttl_ms=ttl_ms,
    )


def summary(holders: list[LockHolder]) -> list[tuple[str, str | None, str, int | None]]:
    return [(x.scope, x.resource, x.owner, x.release_id) for x in holders]


def conflict_of(store: LockStore, request: LockRequest) -> LockConflictError:
    with pytest.raises(LockConflictError) as info:
        store.acquire(request)
    return info.value


# -- all or nothing -----------------------------------------------------------------------


def test_partial_conflict_takes_nothing(h: Harness) -> None:
    s = h.store
    a = s.acquire(req("1:a", "service/web", release_id=1))
    fence_before = s.current_fence(ENV)

    err = conflict_of(s, req("2:b", "db/main", "service/web", "cache/redis", release_id=2))

    assert summary(list(err.conflicts)) == [("resource", "service/web", "1:a", 1)]
    assert err.env_key == ENV
    assert summary(s.holders(ENV)) == [
        ("slot", None, "1:a", 1),
        ("resource", "service/web", "1:a", 1),
    ]
    assert s.current_fence(ENV) == fence_before
    # the parts that were free are still free
    c = s.acquire(req("3:c", "db/main", "cache/redis", release_id=3))
    assert c.fencing_token == fence_before + 1
    assert s.extend(a)


def test_conflict_lists_every_holder(h: Harness) -> None:
    s = h.store
    s.acquire(req("1:a", "service/web", release_id=1))
    s.acquire(req("2:b", "db/main", release_id=2))
    err = conflict_of(s, req("3:c", "db/main", "service/web", "cache/redis"))
    assert summary(list(err.conflicts)) == [
        ("resource", "db/main", "2:b", 2),
        ("resource", "service/web", "1:a", 1),
    ]
    assert "release 1" in str(err) and "service/web" in str(err)


# -- exclusive vs shared ------------------------------------------------------------------


def test_exclusive_blocks_shared_and_exclusive(h: Harness) -> None:
    s = h.store
    ex = s.acquire(req("1:a", exclusive=True, release_id=1))
    assert ex.exclusive and ex.resources == ()

    err = conflict_of(s, req("2:b", "service/web", release_id=2))
    assert summary(list(err.conflicts)) == [("environment", None, "1:a", 1)]
    err = conflict_of(s, req("3:c", exclusive=True, release_id=3))
    assert summary(list(err.conflicts)) == [("environment", None, "1:a", 1)]
    err = conflict_of(s, req("4:d", release_id=4))  # a bare slot is blocked too
    assert summary(list(err.conflicts)) == [("environment", None, "1:a", 1)]

    s.release(ex)
    s.acquire(req("2:b", "service/web", release_id=2))


def test_shared_blocks_exclusive(h: Harness) -> None:
    s = h.store
    s.acquire(req("1:a", "service/web", "db/main", release_id=1))
    s.acquire(req("2:b", release_id=2))  # slot without resources
    err = conflict_of(s, req("3:c", exclusive=True, release_id=3))
    assert summary(list(err.conflicts)) == [
        ("slot", None, "1:a", 1),
        ("slot", None, "2:b", 2),
        ("resource", "db/main", "1:a", 1),
        ("resource", "service/web", "1:a", 1),
    ]
    assert s.current_fence(ENV) == 2


def test_disjoint_selective_leases_coexist(h: Harness) -> None:
    s = h.store
    a = s.acquire(req("1:a", "service/web", "service/api", release_id=1))
    b = s.acquire(req("2:b", "db/main", release_id=2))
    c = s.acquire(req("3:c", release_id=3))
    assert [x.fencing_token for x in (a, b, c)] == [1, 2, 3]
    assert summary(s.holders(ENV)) == [
        ("slot", None, "1:a", 1),
        ("slot", None, "2:b", 2),
        ("slot", None, "3:c", 3),
        ("resource", "db/main", "2:b", 2),
        ("resource", "service/api", "1:a", 1),
        ("resource", "service/web", "1:a", 1),
    ]
    assert all(s.extend(x) for x in (a, b, c))


def test_environments_are_independent(h: Harness) -> None:
    s = h.store
    s.acquire(req("1:a", exclusive=True, release_id=1))
    other = s.acquire(req("2:b", exclusive=True, release_id=2, env=OTHER_ENV))
    assert other.fencing_token == 1
    assert summary(s.holders(OTHER_ENV)) == [("environment", None, "2:b", 2)]


# -- fencing ------------------------------------------------------------------------------


def test_fencing_tokens_strictly_increase_per_env(h: Harness) -> None:
    s = h.store
    assert s.current_fence(ENV) == 0
    tokens = []
    for i in range(5):
        lease = s.acquire(req(f"{i}:x", "service/web", release_id=i))
        tokens.append(lease.fencing_token)
        assert s.current_fence(ENV) == lease.fencing_token
        s.release(lease)
    assert tokens == sorted(set(tokens)) and tokens[0] >= 1
    other = [s.acquire(req(f"o{i}", f"service/s{i}", env=OTHER_ENV)) for i in range(3)]
    assert [x.fencing_token for x in other] == [1, 2, 3]
    assert s.current_fence(ENV) == tokens[-1]
    # breaking never resets the counter
    s.break_locks(ENV)
    assert s.acquire(req("9:z", exclusive=True)).fencing_token == tokens[-1] + 1


# -- extend -------------------------------------------------------------------------------


def test_extend_keeps_lease_alive(h: Harness) -> None:
    s = h.store
    lease = s.acquire(req("1:a", "service/web", release_id=1, ttl_ms=300))
    ex = s.acquire(req("2:b", exclusive=True, release_id=2, ttl_ms=300, env=OTHER_ENV))
    h.sleep(0.2)
    assert s.extend(lease, ttl_ms=2_000)
    assert s.extend(ex, ttl_ms=2_000)
    h.sleep(0.25)  # past the original 300 ms
    assert summary(s.holders(ENV)) == [
        ("slot", None, "1:a", 1),
        ("resource", "service/web", "1:a", 1),
    ]
    assert all(x.ttl_left_ms > 1_000 for x in s.holders(ENV))
    assert summary(s.holders(OTHER_ENV)) == [("environment", None, "2:b", 2)]
    conflict_of(s, req("3:c", "service/web"))
    assert s.extend(lease)  # default: lease.ttl_ms


def test_extend_fails_after_expiry(h: Harness) -> None:
    s = h.store
    lease = s.acquire(req("1:a", "service/web", release_id=1, ttl_ms=200))
    ex = s.acquire(req("2:b", exclusive=True, ttl_ms=200, env=OTHER_ENV))
    h.sleep(0.35)
    assert not s.extend(lease)
    assert not s.extend(ex)
    assert s.holders(ENV) == []


def test_extend_fails_after_break_and_extends_nothing(h: Harness) -> None:
    s = h.store
    lease = s.acquire(req("1:a", "service/web", "db/main", release_id=1, ttl_ms=1_000))
    h.sleep(0.3)
    broken = s.break_locks(ENV, "db/main")
    assert summary(broken) == [("resource", "db/main", "1:a", 1)]
    assert not s.extend(lease, ttl_ms=60_000)
    # the remaining parts were not extended: they still die with the original TTL
    assert all(x.ttl_left_ms <= 800 for x in s.holders(ENV))
    h.sleep(0.85)
    assert s.holders(ENV) == []


def test_extend_fails_after_break_all_and_after_takeover(h: Harness) -> None:
    s = h.store
    ex = s.acquire(req("1:a", exclusive=True, release_id=1))
    s.break_locks(ENV)
    assert not s.extend(ex)
    s.acquire(req("2:b", exclusive=True, release_id=2))
    assert not s.extend(ex)
    s.release(ex)  # the stale lease cannot free the new holder
    assert summary(s.holders(ENV)) == [("environment", None, "2:b", 2)]


# -- release ------------------------------------------------------------------------------


def test_release_is_owner_only_and_idempotent(h: Harness) -> None:
    s = h.store
    a = s.acquire(req("1:a", "service/web", release_id=1))
    forged = replace(a, owner="2:b")
    s.release(forged)
    assert summary(s.holders(ENV)) == [
        ("slot", None, "1:a", 1),
        ("resource", "service/web", "1:a", 1),
    ]
    conflict_of(s, req("2:b", "service/web"))
    s.release(a)
    s.release(a)
    assert s.holders(ENV) == []
    b = s.acquire(req("2:b", "service/web", release_id=2))
    s.release(a)  # a late duplicate release of the old lease frees nothing
    assert s.extend(b)


def test_release_and_holders_returns_what_is_left(h: Harness) -> None:
    s = h.store
    a = s.acquire(req("1:a", "service/web", release_id=1))
    s.acquire(req("2:b", "db/main", release_id=2))
    s.acquire(req("3:c", exclusive=True, release_id=3, env=OTHER_ENV))
    left = s.release_and_holders(a)
    assert summary(left) == [("slot", None, "2:b", 2), ("resource", "db/main", "2:b", 2)]
    assert summary(left) == summary(s.holders(ENV))
    s.acquire(req("4:d", "service/web", release_id=4))  # a's lock is gone
    # a superseded or already released lease frees nothing and still lists the holders
    assert summary(s.release_and_holders(a)) == summary(s.holders(ENV))
    assert len(s.holders(ENV)) == 4
    ex = s.acquire(req("5:e", exclusive=True, release_id=5, env="shop/dev"))
    assert s.release_and_holders(ex) == []


def test_leases_over_many_resources_conflict_extend_and_release_whole(h: Harness) -> None:
    """The scripts read and delete resource locks in chunks of 500 keys: a lease on 1,201
    resources behaves like a lease on one, on both sides of each chunk boundary."""
    s = h.store
    names = [f"service/s{i:04d}" for i in range(1201)]
    big = s.acquire(req("1:big", *names, release_id=1))
    for i in (0, 499, 500, 999, 1000, 1200):  # each one conflicts, wherever its chunk is
        err = conflict_of(s, req(f"2:{i}", names[i], release_id=2))
        assert summary(list(err.conflicts)) == [("resource", names[i], "1:big", 1)]
    assert s.extend(big)
    s.break_locks(ENV, names[1000])  # one part lost (in the third chunk): no extension
    assert not s.extend(big)
    left = s.release_and_holders(big)  # the 1,200 parts it still holds go at once
    assert left == []
    other = s.acquire(req("3:c", *names[400:700], release_id=3))
    assert len(s.holders(ENV)) == 301  # the slot and 300 resources
    s.release(other)
    assert s.holders(ENV) == []


def test_release_exclusive(h: Harness) -> None:
    s = h.store
    ex = s.acquire(req("1:a", exclusive=True))
    s.release(ex)
    assert s.holders(ENV) == []
    s.acquire(req("2:b", "service/web"))


def test_reacquire_by_same_owner_replaces_previous_lease(h: Harness) -> None:
    s = h.store
    first = s.acquire(req("1:a", "service/web", "db/main", release_id=1))
    second = s.acquire(req("1:a", "service/web", "cache/redis", release_id=1))
    assert second.fencing_token > first.fencing_token
    assert summary(s.holders(ENV)) == [
        ("slot", None, "1:a", 1),
        ("resource", "cache/redis", "1:a", 1),
        ("resource", "service/web", "1:a", 1),
    ]
    assert not s.extend(first)
    s.release(first)  # superseded lease: no effect
    assert len(s.holders(ENV)) == 3
    third = s.acquire(req("1:a", exclusive=True, release_id=1))
    assert summary(s.holders(ENV)) == [("environment", None, "1:a", 1)]
    s.release(third)
    assert s.holders(ENV) == []


def test_an_ended_lease_holds_nothing_when_its_owner_comes_back(h: Harness) -> None:
    """An owner whose lease expired or was released, acquiring again, holds only what it asks
    for now: none of the old lease's resources come back to life."""
    s = h.store
    first = s.acquire(req("1:a", "service/web", "db/main", release_id=1, ttl_ms=200))
    h.sleep(0.35)
    second = s.acquire(req("1:a", "service/web", release_id=1))
    assert summary(s.holders(ENV)) == [
        ("slot", None, "1:a", 1),
        ("resource", "service/web", "1:a", 1),
    ]
    assert not s.extend(first)
    s.acquire(req("2:b", "db/main", release_id=2))
    s.release(second)
    s.acquire(req("1:a", "cache/redis", release_id=1))
    assert sorted(summary(s.holders(ENV)), key=str) == sorted(
        [
            ("slot", None, "1:a", 1),
            ("slot", None, "2:b", 2),
            ("resource", "cache/redis", "1:a", 1),
            ("resource", "db/main", "2:b", 2),
        ],
        key=str,
    )
    s.acquire(req("3:c", "service/web", release_id=3))


# -- expiry -------------------------------------------------------------------------------


def test_locks_expire_after_ttl(h: Harness) -> None:
    s = h.store
    s.acquire(req("1:a", "service/web", release_id=1, ttl_ms=200))
    s.acquire(req("2:b", release_id=2, ttl_ms=200))
    s.acquire(req("3:c", exclusive=True, ttl_ms=200, env=OTHER_ENV))
    conflict_of(s, req("4:d", exclusive=True))
    h.sleep(0.35)
    assert s.holders(ENV) == []
    assert s.holders(OTHER_ENV) == []
    # expired slots no longer block an exclusive lock
    s.acquire(req("4:d", exclusive=True, release_id=4))
    s.acquire(req("5:e", "service/web", env=OTHER_ENV))


# -- holders ------------------------------------------------------------------------------


def test_holders_describe_scope_resource_release_and_ttl(h: Harness) -> None:
    s = h.store
    before = datetime.now(timezone.utc) if h.is_redis else None
    s.acquire(req("42:abc", "service/web", "db/main", release_id=42, ttl_ms=30_000))
    s.acquire(req("43:def", exclusive=True, release_id=43, ttl_ms=20_000, env=OTHER_ENV))
    got = s.holders(ENV)
    assert [(x.scope, x.resource) for x in got] == [
        ("slot", None),
        ("resource", "db/main"),
        ("resource", "service/web"),
    ]
    for x in got:
        assert x.env_key == ENV and x.owner == "42:abc" and x.release_id == 42
        assert 25_000 < x.ttl_left_ms <= 30_000
        assert x.since.tzinfo is not None and x.since.utcoffset() == timedelta(0)
        if before is not None:
            assert abs(x.since - before) < timedelta(seconds=5)
        else:
            assert x.since == datetime.fromtimestamp(1_700_000_000, tz=timezone.utc)
    (ex,) = s.holders(OTHER_ENV)
    assert (ex.scope, ex.resource, ex.owner, ex.release_id) == ("environment", None, "43:def", 43)
    assert 15_000 < ex.ttl_left_ms <= 20_000
    assert s.holders("shop/nothing-here") == []


def test_resource_names_follow_domain_rules(h: Harness) -> None:
    s = h.store
    lease = s.acquire(req("1:celery@host-1.example:ab12", "Service/web.v2", "db/orders_db-1"))
    assert [x.resource for x in s.holders(ENV)] == [None, "Service/web.v2", "db/orders_db-1"]
    s.release(lease)
    assert s.holders(ENV) == []


def test_release_id_is_optional(h: Harness) -> None:
    s = h.store
    s.acquire(req("adhoc-1", "service/web"))
    assert summary(s.holders(ENV)) == [
        ("slot", None, "adhoc-1", None),
        ("resource", "service/web", "adhoc-1", None),
    ]


# -- hand-written locks -------------------------------------------------------------------


def test_manual_lock_on_known_resource_is_reported_and_blocks(h: Harness) -> None:
    s = h.store
    s.release(s.acquire(req("1:a", "service/web", release_id=1)))  # resource becomes known
    h.plant(ENV, "service/web", "manual", 60_000)

    (holder,) = s.holders(ENV)
    assert (holder.scope, holder.resource, holder.owner, holder.release_id) == (
        "resource",
        "service/web",
        "manual",
        None,
    )
    assert 50_000 < holder.ttl_left_ms <= 60_000
    err = conflict_of(s, req("2:b", "db/main", "service/web", release_id=2))
    assert summary(list(err.conflicts)) == [("resource", "service/web", "manual", None)]
    err = conflict_of(s, req("3:c", exclusive=True, release_id=3))
    assert summary(list(err.conflicts)) == [("resource", "service/web", "manual", None)]
    s.acquire(req("4:d", "db/main"))  # other resources stay available


def test_manual_lock_on_new_resource_blocks_requests_naming_it(h: Harness) -> None:
    s = h.store
    h.plant(ENV, "service/web", "alice", None)  # no TTL at all
    err = conflict_of(s, req("1:a", "service/web", release_id=1))
    assert summary(list(err.conflicts)) == [("resource", "service/web", "alice", None)]
    assert err.conflicts[0].ttl_left_ms == -1
    # once named, the resource is known: listed and blocking exclusive releases
    assert summary(s.holders(ENV)) == [("resource", "service/web", "alice", None)]
    conflict_of(s, req("2:b", exclusive=True))
    # breaking removes it
    assert summary(s.break_locks(ENV, "service/web")) == [
        ("resource", "service/web", "alice", None)
    ]
    s.acquire(req("2:b", exclusive=True))


def test_exclusive_request_listing_resources_sees_manual_locks(h: Harness) -> None:
    s = h.store
    h.plant(ENV, "db/main", "bob", 60_000)
    err = conflict_of(s, req("1:a", "db/main", exclusive=True))
    assert summary(list(err.conflicts)) == [("resource", "db/main", "bob", None)]


def test_manual_environment_lock_blocks(h: Harness) -> None:
    s = h.store
    h.plant(ENV, None, "ops", 60_000)
    assert summary(s.holders(ENV)) == [("environment", None, "ops", None)]
    err = conflict_of(s, req("1:a", "service/web"))
    assert summary(list(err.conflicts)) == [("environment", None, "ops", None)]
    assert summary(s.break_locks(ENV)) == [("environment", None, "ops", None)]
    s.acquire(req("1:a", "service/web"))


# -- break --------------------------------------------------------------------------------


def test_break_one_resource(h: Harness) -> None:
    s = h.store
    a = s.acquire(req("1:a", "service/web", "db/main", release_id=1))
    assert s.break_locks(ENV, "cache/none") == []
    broken = s.break_locks(ENV, "service/web")
    assert summary(broken) == [("resource", "service/web", "1:a", 1)]
    assert summary(s.holders(ENV)) == [("slot", None, "1:a", 1), ("resource", "db/main", "1:a", 1)]
    b = s.acquire(req("2:b", "service/web", release_id=2))
    assert not s.extend(a)
    s.release(a)  # frees a's remaining parts but not b's
    assert summary(s.holders(ENV)) == [
        ("slot", None, "2:b", 2),
        ("resource", "service/web", "2:b", 2),
    ]
    assert s.extend(b)


def test_break_all_locks_of_environment(h: Harness) -> None:
    s = h.store
    a = s.acquire(req("1:a", "service/web", "db/main", release_id=1))
    b = s.acquire(req("2:b", "cache/redis", release_id=2))
    keep = s.acquire(req("3:c", exclusive=True, release_id=3, env=OTHER_ENV))
    broken = s.break_locks(ENV)
    assert summary(broken) == [
        ("slot", None, "1:a", 1),
        ("slot", None, "2:b", 2),
        ("resource", "cache/redis", "2:b", 2),
        ("resource", "db/main", "1:a", 1),
        ("resource", "service/web", "1:a", 1),
    ]
    assert s.holders(ENV) == []
    assert not s.extend(a) and not s.extend(b)
    assert s.break_locks(ENV) == []
    assert s.extend(keep)
    s.acquire(req("4:d", exclusive=True))


def test_break_exclusive(h: Harness) -> None:
    s = h.store
    ex = s.acquire(req("1:a", exclusive=True, release_id=1))
    assert s.break_locks(ENV, "service/web") == []  # resource break does not touch env lock
    assert summary(s.break_locks(ENV)) == [("environment", None, "1:a", 1)]
    assert not s.extend(ex)


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"env_key": "shop"},
        {"env_key": "Shop/prod"},
        {"env_key": "shop/prod:x"},
        {"owner": ""},
        {"owner": "a b"},
        {"resources": ("web",)},
        {"resources": ("service/web", "service/web")},
        {"resources": ("service/web:x",)},
        {"ttl_ms": 0},
    ],
)
def test_invalid_requests_are_rejected(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"env_key": ENV, "owner": "1:a", "exclusive": False}
    with pytest.raises(ValueError):
        LockRequest(**{**base, **kwargs})  # type: ignore[arg-type]


def test_invalid_env_key_rejected_by_store(h: Harness) -> None:
    with pytest.raises(ValueError):
        h.store.holders("nope")
    with pytest.raises(ValueError):
        h.store.break_locks(ENV, "bad resource")


def test_store_satisfies_protocol(h: Harness) -> None:
    assert isinstance(h.store, LockStore)
    assert isinstance(h.store.acquire(req("1:a")), Lease)
