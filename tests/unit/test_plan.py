"""Release planning (SPEC §2): dependency order, and which steps each release type runs."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release_orchestrator.domain.enums import Action, ReleaseType, SyncStatus
from release_orchestrator.policy.plan import (
    DependencyCycle,
    PlanError,
    PlannedStep,
    ResourceView,
    dependency_order,
    plan_release,
)

A, D, R = Action.APPLY, Action.DESTROY, Action.REFRESH
#: No time limits: CI machines are shared, and a slow run is not a wrong one.
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rv(key: str, *deps: str, sync: SyncStatus = SyncStatus.UNKNOWN,
       present: bool = False) -> ResourceView:
    return ResourceView(key=key, depends_on=deps, sync=sync, present=present)


def steps(plan: list[PlannedStep]) -> list[tuple[str, Action]]:
    return [(s.resource, s.action) for s in plan]


# A small project: db <- api <- web, cache independent, queue <- api.
#   declared:  web, api, cache, db, queue
PROJECT = [
    rv("web", "api", sync=SyncStatus.SYNCED, present=True),
    rv("api", "db", "queue", sync=SyncStatus.OUT_OF_SYNC, present=True),
    rv("cache", sync=SyncStatus.SYNCED, present=False),
    rv("db", sync=SyncStatus.UNKNOWN, present=True),
    rv("queue", sync=SyncStatus.OUT_OF_SYNC, present=False),
]
ORDER = ["db", "queue", "api", "web", "cache"]


# --- dependency order ---------------------------------------------------------------------


def test_dependency_order_puts_dependencies_first() -> None:
    assert dependency_order(PROJECT) == ORDER


def test_dependency_order_is_stable_for_independent_resources() -> None:
    keys = ["c", "a", "e", "b", "d"]
    assert dependency_order([rv(k) for k in keys]) == keys


def test_dependency_order_keeps_declaration_order_around_dependencies() -> None:
    # Only "b" must move (before "a"); everything else keeps its declared position.
    assert dependency_order([rv("x"), rv("a", "b"), rv("y"), rv("b"), rv("z")]) == [
        "x", "b", "a", "y", "z"
    ]


def test_dependency_order_ignores_unknown_dependencies() -> None:
    assert dependency_order([rv("a", "ghost"), rv("b", "a", "other-project/x")]) == ["a", "b"]


def test_dependency_order_of_nothing() -> None:
    assert dependency_order([]) == []


def test_dependency_order_handles_shared_dependencies_once() -> None:
    # Diamond: d <- b, d <- c, b/c <- a.
    order = dependency_order([rv("a", "b", "c"), rv("b", "d"), rv("c", "d"), rv("d")])
    assert order == ["d", "b", "c", "a"]


@pytest.mark.parametrize(
    ("resources", "cycle"),
    [
        ([rv("a", "a")], ["a", "a"]),
        ([rv("a", "b"), rv("b", "a")], ["a", "b", "a"]),
        # The path leading into the cycle ("x") is not part of the cycle.
        ([rv("x", "a"), rv("a", "b"), rv("b", "c"), rv("c", "a")], ["a", "b", "c", "a"]),
        # Cycle found after an acyclic part was already ordered.
        ([rv("ok"), rv("p", "ok", "q"), rv("q", "p")], ["p", "q", "p"]),
    ],
)
def test_dependency_cycle_raises_with_the_cycle_path(
    resources: list[ResourceView], cycle: list[str]
) -> None:
    with pytest.raises(DependencyCycle) as info:
        dependency_order(resources)
    assert info.value.cycle == cycle
    assert str(info.value) == "dependency cycle: " + " -> ".join(cycle)
    assert isinstance(info.value, ValueError)


def test_plan_release_propagates_a_cycle() -> None:
    with pytest.raises(DependencyCycle):
        plan_release(ReleaseType.LAUNCH, [rv("a", "b"), rv("b", "a")])


KEYS = [f"k{i}" for i in range(8)]


@st.composite
def dags(draw: st.DrawFn) -> list[ResourceView]:
    """A random acyclic project, declared in a random order, with some unknown deps."""
    n = draw(st.integers(0, len(KEYS)))
    keys = KEYS[:n]
    views = []
    for i, key in enumerate(keys):
        deps = draw(st.lists(st.sampled_from(keys[:i]), unique=True)) if i else []
        if draw(st.booleans()):
            deps.append("unknown")
        views.append(rv(key, *deps))
    return draw(st.permutations(views))


@PROPS
@given(dags())
def test_dependency_order_property(resources: list[ResourceView]) -> None:
    order = dependency_order(resources)
    assert sorted(order) == sorted(r.key for r in resources)
    position = {k: i for i, k in enumerate(order)}
    for r in resources:
        for dep in r.depends_on:
            if dep in position:
                assert position[dep] < position[r.key], (dep, r.key, order)
    # Deterministic.
    assert dependency_order(list(resources)) == order


@PROPS
@given(dags(), st.data())
def test_dependency_cycle_property(resources: list[ResourceView], data: st.DataObject) -> None:
    """Adding a back edge makes a cycle; the reported cycle is made of real edges."""
    edges = [(r.key, d) for r in resources for d in r.depends_on if d != "unknown"]
    if not edges:
        return
    src, dst = data.draw(st.sampled_from(edges))
    # dst -> src closes src -> dst into a cycle.
    resources = [
        rv(r.key, *r.depends_on, src) if r.key == dst else r for r in resources
    ]
    with pytest.raises(DependencyCycle) as info:
        dependency_order(resources)
    cycle = info.value.cycle
    assert len(cycle) >= 2 and cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    deps = {r.key: set(r.depends_on) for r in resources}
    for a, b in pairwise(cycle):
        assert b in deps[a], (a, b, cycle)


# --- destroy --------------------------------------------------------------------------------


def test_destroy_needs_allow_destroy() -> None:
    with pytest.raises(PlanError, match="allow_destroy"):
        plan_release(ReleaseType.DESTROY, PROJECT)
    assert issubclass(PlanError, ValueError)


def test_destroy_runs_in_reverse_dependency_order_over_present_resources_only() -> None:
    plan = plan_release(ReleaseType.DESTROY, PROJECT, allow_destroy=True)
    # Reverse of ORDER (cache, web, api, queue, db) without the absent cache and queue.
    assert steps(plan) == [("web", D), ("api", D), ("db", D)]


def test_destroy_of_nothing_present_is_empty() -> None:
    assert plan_release(ReleaseType.DESTROY, [rv("a"), rv("b", "a")], allow_destroy=True) == []


def test_destroy_ignores_force_and_sync() -> None:
    plan = plan_release(ReleaseType.DESTROY, PROJECT, allow_destroy=True, force=True)
    assert steps(plan) == [("web", D), ("api", D), ("db", D)]


# --- launch, full, custom -------------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_launch_applies_everything_in_dependency_order(force: bool) -> None:
    plan = plan_release(ReleaseType.LAUNCH, PROJECT, force=force)
    assert steps(plan) == [(k, A) for k in ORDER]


@pytest.mark.parametrize("kind", [ReleaseType.FULL, ReleaseType.CUSTOM])
def test_full_applies_only_what_is_not_synced(kind: ReleaseType) -> None:
    plan = plan_release(kind, PROJECT)
    # web and cache are Synced; Unknown counts as not synced.
    assert steps(plan) == [("db", A), ("queue", A), ("api", A)]


@pytest.mark.parametrize("kind", [ReleaseType.FULL, ReleaseType.CUSTOM])
def test_full_with_force_applies_everything(kind: ReleaseType) -> None:
    plan = plan_release(kind, PROJECT, force=True)
    assert steps(plan) == [(k, A) for k in ORDER]


def test_full_of_a_synced_project_is_empty() -> None:
    synced = [rv("a", sync=SyncStatus.SYNCED), rv("b", "a", sync=SyncStatus.SYNCED)]
    assert plan_release(ReleaseType.FULL, synced) == []


@pytest.mark.parametrize("kind", [ReleaseType.LAUNCH, ReleaseType.FULL, ReleaseType.CUSTOM])
def test_non_selective_types_ignore_targets_and_never_destroy(kind: ReleaseType) -> None:
    plan = plan_release(kind, PROJECT, targets=[("db", D)], force=True)
    assert all(s.action is A for s in plan)


# --- selective ------------------------------------------------------------------------------


def test_selective_refreshes_then_applies_then_destroys() -> None:
    targets = [("web", D), ("cache", R), ("api", A), ("db", D), ("queue", A), ("web", D)]
    plan = plan_release(ReleaseType.SELECTIVE, PROJECT, targets=targets, allow_destroy=True)
    assert steps(plan) == [
        ("cache", R),  # refreshes first (dependency order)
        ("queue", A),  # applies in dependency order: queue before api
        ("api", A),
        ("web", D),  # destroys in reverse dependency order: web before db
        ("db", D),
    ]


@PROPS
@given(
    st.dictionaries(st.sampled_from([r.key for r in PROJECT]), st.sampled_from([A, D, R])),
    st.randoms(use_true_random=False),
)
def test_selective_order_does_not_depend_on_target_order(
    wanted: dict[str, Action], rnd: random.Random
) -> None:
    items = list(wanted.items())
    shuffled = list(items)
    rnd.shuffle(shuffled)
    a = plan_release(ReleaseType.SELECTIVE, PROJECT, targets=items, allow_destroy=True)
    b = plan_release(ReleaseType.SELECTIVE, PROJECT, targets=shuffled, allow_destroy=True)
    assert a == b
    assert sorted(steps(a)) == sorted(items)
    phases = [{R: 0, A: 1, D: 2}[s.action] for s in a]
    assert phases == sorted(phases)
    pos = {k: i for i, k in enumerate(ORDER)}
    for action, sign in ((R, 1), (A, 1), (D, -1)):
        keys = [pos[s.resource] * sign for s in a if s.action is action]
        assert keys == sorted(keys)


def test_selective_destroy_needs_allow_destroy() -> None:
    with pytest.raises(PlanError, match=r"db.*allow_destroy") as info:
        plan_release(ReleaseType.SELECTIVE, PROJECT, targets=[("api", A), ("db", D)])
    assert "web" not in str(info.value)


def test_selective_destroy_error_names_every_destroy_in_order() -> None:
    with pytest.raises(PlanError, match="release would destroy web, db without allow_destroy"):
        plan_release(ReleaseType.SELECTIVE, PROJECT, targets=[("db", D), ("web", D)])


def test_selective_without_destroys_needs_no_allow_destroy() -> None:
    plan = plan_release(ReleaseType.SELECTIVE, PROJECT, targets=[("web", A), ("db", R)])
    assert steps(plan) == [("db", R), ("web", A)]


def test_selective_applies_regardless_of_sync() -> None:
    # "web" is Synced; a selective release applies what it names.
    plan = plan_release(ReleaseType.SELECTIVE, PROJECT, targets=[("web", A)])
    assert steps(plan) == [("web", A)]
