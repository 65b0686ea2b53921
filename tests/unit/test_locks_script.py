"""Property test of the Lua lock scripts (fakeredis) against ``MemoryLockStore`` as a model.

Random sequences of acquire / extend / release / break / hand-written locks are applied to
both stores; every outcome must match, and no two conflicting leases may ever be held at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import fakeredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from release_orchestrator.locks import (
    Lease,
    LockConflictError,
    LockHolder,
    LockRequest,
    MemoryLockStore,
    RedisLockStore,
)

ENVS = ("shop/prod", "shop/staging")
OWNERS = tuple(f"{i}:o{i}" for i in range(1, 7))
RESOURCES = ("service/web", "service/api", "db/main", "cache/redis", "queue/jobs")
MANUAL = "manual"

Summary = tuple[str, str | None, str, int | None]


def summary(holders: list[LockHolder]) -> list[Summary]:
    return [(h.scope, h.resource, h.owner, h.release_id) for h in holders]


@dataclass
class Pair:
    real: Lease
    model: Lease


def conflicting(a: Lease, b: Lease) -> bool:
    """Whether two leases may never be held at the same time."""
    if a.env_key != b.env_key or a.owner == b.owner:
        return False
    if a.exclusive or b.exclusive:
        return True
    return bool(set(a.resources) & set(b.resources))


def held(lease: Lease, holders: list[LockHolder]) -> bool:
    """Whether every part of ``lease`` shows up as held by its owner."""
    parts = {(h.scope, h.resource) for h in holders if h.owner == lease.owner}
    if lease.exclusive:
        return ("environment", None) in parts
    return ("slot", None) in parts and all(("resource", r) in parts for r in lease.resources)


class LockScriptMachine(RuleBasedStateMachine):
    """Applies the same operations to the Redis store (fakeredis) and the memory model."""

    def __init__(self) -> None:
        super().__init__()
        self.client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        self.real = RedisLockStore(self.client, prefix=f"prop-{uuid.uuid4().hex[:8]}")
        self.model = MemoryLockStore()
        self.leases: list[Pair] = []

    def teardown(self) -> None:
        self.client.close()

    @rule(
        env=st.sampled_from(ENVS),
        owner=st.sampled_from(OWNERS),
        exclusive=st.booleans(),
        resources=st.lists(st.sampled_from(RESOURCES), unique=True, max_size=4),
    )
    def acquire(self, env: str, owner: str, exclusive: bool, resources: list[str]) -> None:
        request = LockRequest(
            env_key=env,
            owner=owner,
            exclusive=exclusive,
            resources=tuple(resources),
            release_id=int(owner.split(":")[0]),
        )
        outcomes: list[Lease | list[Summary]] = []
        for store in (self.real, self.model):
            try:
                outcomes.append(store.acquire(request))
            except LockConflictError as err:
                assert err.conflicts, "a conflict must name its holders"
                outcomes.append(summary(list(err.conflicts)))
        real, model = outcomes
        if isinstance(real, Lease):
            assert real == model
            assert isinstance(model, Lease)
            self.leases.append(Pair(real, model))
        else:
            assert real == model

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if not self.leases:
            return
        pair = self.leases.pop(data.draw(st.integers(0, len(self.leases) - 1)))
        self.real.release(pair.real)
        self.model.release(pair.model)

    @rule(data=st.data(), ttl=st.sampled_from([None, 30_000, 120_000]))
    def extend(self, data: st.DataObject, ttl: int | None) -> None:
        if not self.leases:
            return
        pair = self.leases[data.draw(st.integers(0, len(self.leases) - 1))]
        assert self.real.extend(pair.real, ttl) == self.model.extend(pair.model, ttl)

    @rule(env=st.sampled_from(ENVS), resource=st.none() | st.sampled_from(RESOURCES))
    def break_locks(self, env: str, resource: str | None) -> None:
        assert summary(self.real.break_locks(env, resource)) == summary(
            self.model.break_locks(env, resource)
        )

    @rule(env=st.sampled_from(ENVS), resource=st.none() | st.sampled_from(RESOURCES))
    def lock_by_hand(self, env: str, resource: str | None) -> None:
        keys = self.real.keys
        key = keys.env_lock(env) if resource is None else keys.resource(env, resource)
        self.client.set(key, MANUAL, px=60_000)
        self.model.put_foreign_lock(env, resource, MANUAL, 60_000)

    @invariant()
    def same_state_and_no_conflicting_leases(self) -> None:
        for env in ENVS:
            real = self.real.holders(env)
            assert summary(real) == summary(self.model.holders(env))
            assert self.real.current_fence(env) == self.model.current_fence(env)
            # locks written by hand bypass the scripts; judge only what relo wrote
            ours = [h for h in real if h.owner != MANUAL]
            owners_env = [h.owner for h in ours if h.scope == "environment"]
            assert len(owners_env) <= 1
            if owners_env:
                assert all(h.owner == owners_env[0] for h in ours)
            live = [p.real for p in self.leases if p.real.env_key == env and held(p.real, real)]
            for i, a in enumerate(live):
                for b in live[i + 1 :]:
                    assert not conflicting(a, b), (a, b)


LockScriptMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLockScripts = LockScriptMachine.TestCase
