"""Release planning: which steps a release runs, in which order. Pure code.

Resources run in dependency order; destroys in reverse dependency order (SPEC §2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..domain.enums import Action, ReleaseType, SyncStatus


class PlanError(ValueError):
    """The release cannot run as asked (e.g. it would destroy without ``allow_destroy``)."""


class DependencyCycle(ValueError):
    """The resources' ``depends_on`` form a cycle."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__("dependency cycle: " + " -> ".join(self.cycle))


@dataclass(frozen=True)
class ResourceView:
    """What planning needs to know of a resource in one environment."""

    key: str
    depends_on: tuple[str, ...] = ()
    sync: SyncStatus = SyncStatus.UNKNOWN
    present: bool = False  # an applied spec is recorded


@dataclass(frozen=True)
class PlannedStep:
    resource: str
    action: Action


def dependency_order(resources: Sequence[ResourceView]) -> list[str]:
    """Keys in an order where every resource comes after what it depends on.

    Stable: among independent resources the declaration order is kept. Dependencies on
    resources not in ``resources`` are ignored. Raises :class:`DependencyCycle`.
    """
    known = {r.key: r for r in resources}
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    path: list[str] = []

    def visit(key: str) -> None:
        mark = state.get(key)
        if mark == 2:
            return
        if mark == 1:
            raise DependencyCycle([*path[path.index(key) :], key])
        state[key] = 1
        path.append(key)
        for dep in known[key].depends_on:
            if dep in known:
                visit(dep)
        path.pop()
        state[key] = 2
        order.append(key)

    for r in resources:
        visit(r.key)
    return order


def plan_release(
    release_type: ReleaseType,
    resources: Sequence[ResourceView],
    *,
    targets: Sequence[tuple[str, Action]] = (),
    force: bool = False,
    allow_destroy: bool = False,
) -> list[PlannedStep]:
    """The forward steps of a release, in execution order.

    ``resources`` is the project's resources as seen in the environment (after any refresh).
    Raises :class:`PlanError` when a step would destroy without ``allow_destroy``.
    """
    order = dependency_order(resources)
    views: Mapping[str, ResourceView] = {r.key: r for r in resources}
    if release_type is ReleaseType.DESTROY:
        if not allow_destroy:
            raise PlanError("a destroy release needs allow_destroy (--allow-destroy)")
        return [PlannedStep(k, Action.DESTROY) for k in reversed(order) if views[k].present]
    if release_type is ReleaseType.LAUNCH:
        return [PlannedStep(k, Action.APPLY) for k in order]
    if release_type in (ReleaseType.FULL, ReleaseType.CUSTOM):
        return [
            PlannedStep(k, Action.APPLY)
            for k in order
            if force or views[k].sync is not SyncStatus.SYNCED
        ]
    wanted = dict(targets)
    destroys = [k for k in reversed(order) if wanted.get(k) is Action.DESTROY]
    if destroys and not allow_destroy:
        raise PlanError(
            "release would destroy " + ", ".join(destroys) + " without allow_destroy "
            "(--allow-destroy)"
        )
    refreshes = [PlannedStep(k, Action.REFRESH) for k in order if wanted.get(k) is Action.REFRESH]
    applies = [PlannedStep(k, Action.APPLY) for k in order if wanted.get(k) is Action.APPLY]
    return [*refreshes, *applies, *(PlannedStep(k, Action.DESTROY) for k in destroys)]
