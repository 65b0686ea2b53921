"""Resources of an environment: status, and ``relo resource set`` (SPEC §9, §11)."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from ..domain import ResourceStatus
from ..errors import InvalidRequest
from ..storage.repository import Repository
from .context import Context


def parse_assignments(items: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``KEY=VALUE`` items: VALUE is JSON when it parses, else a string; dotted keys nest."""
    if not items:
        raise InvalidRequest("give at least one KEY=VALUE")
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"'{item}' is not KEY=VALUE")
        path = key.split(".")
        if any(not part for part in path):
            raise InvalidRequest(f"'{key}': empty part in a dotted key")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out.append((path, value))
    return out


def set_path(spec: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """A copy of ``spec`` with ``value`` at the dotted ``path`` (creating mappings)."""
    out = copy.deepcopy(spec)
    node = out
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise InvalidRequest(
                f"'{'.'.join(path)}': '{'.'.join(path[: i + 1])}' is not an object"
            )
        node = child
    node[path[-1]] = value
    return out


def set_resource(
    ctx: Context, project: str, environment: str, resource: str, items: Sequence[str]
) -> ResourceStatus:
    """Change one resource's desired spec in one environment."""
    assignments = parse_assignments(items)
    now = ctx.clock.now()
    with ctx.db.session() as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment)
        res = repo.resolve_resource(prow, resource)
        state = repo.state(env, res)
        spec = dict(state.desired_spec)
        for path, value in assignments:
            spec = set_path(spec, path, value)
        before = state.desired_spec
        state.desired_spec = spec
        key = f"{res.rtype}/{res.name}"
        repo.event(
            at=now,
            actor=ctx.actor,
            kind="resource_set",
            project=project,
            environment=environment,
            message=f"{key} desired spec changed: " + ", ".join(items),
            data={"resource": key, "before": before, "after": spec},
        )
        s.flush()
        return next(r for r in repo.resource_statuses(prow, env) if r.resource == key)


def statuses(ctx: Context, project: str, environment: str) -> list[ResourceStatus]:
    with ctx.db.session(write=False) as s:
        repo = Repository(s)
        prow, env = repo.environment(project, environment)
        return repo.resource_statuses(prow, env)
