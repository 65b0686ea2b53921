"""Blueprint files: parse, validate whole, apply in one transaction (SPEC §9).

An invalid file changes nothing, not even its valid parts; errors name the file and the
path of the offending key.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select

from ..domain.names import check_name, check_resource_part, resource_key, split_resource_key
from ..errors import BlueprintError
from ..executors import ExecutorConfigError, UnknownExecutor, get_executor
from ..policy.plan import DependencyCycle, ResourceView, dependency_order
from ..storage.tables import EnvironmentRow, ProjectRow, ResourceRow, ResourceStateRow
from .context import Context


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SettingsIn(_Strict):
    parallel_releases: bool | None = None
    max_parallel_releases: int | None = Field(default=None, ge=1)
    approval_required: bool | None = None


class EnvironmentIn(_Strict):
    name: str
    settings: SettingsIn | None = None
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name("environment", v)


class ResourceIn(_Strict):
    type: str
    name: str
    executor: str = "shell"
    apply: list[str] | None = None
    destroy: list[str] | None = None
    refresh: list[str] | None = None
    cwd: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0)
    spec: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        return check_resource_part("type", v)

    @field_validator("name")
    @classmethod
    def _rname(cls, v: str) -> str:
        return check_resource_part("name", v)

    @property
    def key(self) -> str:
        return resource_key(self.type, self.name)

    def config(self, base_dir: Path | None) -> dict[str, Any]:
        out: dict[str, Any] = {"options": dict(self.options)}
        for action in ("apply", "destroy", "refresh"):
            argv = getattr(self, action)
            if argv is not None:
                out[action] = list(argv)
        cwd = self.cwd
        if base_dir is not None:
            cwd = str((base_dir / cwd).resolve()) if cwd else str(base_dir.resolve())
        if cwd:
            out["cwd"] = cwd
        return out


class BlueprintIn(_Strict):
    project: str
    environments: list[EnvironmentIn] = Field(default_factory=list)
    resources: list[ResourceIn] = Field(default_factory=list)

    @field_validator("project")
    @classmethod
    def _project(cls, v: str) -> str:
        return check_name("project", v)


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_blueprint(text: str, source: str = "<blueprint>") -> BlueprintIn:
    """Parse and validate a blueprint; :class:`BlueprintError` names ``source`` and the key."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BlueprintError(f"{source}:{where}: invalid YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise BlueprintError(f"{source}: a blueprint must be a mapping with 'project' at the top")
    try:
        bp = BlueprintIn.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        raise BlueprintError(f"{source}: {_loc(tuple(err['loc']))}: {msg}") from None
    _check_semantics(bp, source)
    return bp


def _check_semantics(bp: BlueprintIn, source: str) -> None:
    seen: dict[str, int] = {}
    for i, res in enumerate(bp.resources):
        if res.key in seen:
            raise BlueprintError(
                f"{source}: resources[{i}]: duplicate resource '{res.key}' "
                f"(first at resources[{seen[res.key]}])"
            )
        seen[res.key] = i
    for i, res in enumerate(bp.resources):
        for part in ("spec", "options"):
            _check_json(getattr(res, part), f"{source}: resources[{i}].{part}")
    for i, env in enumerate(bp.environments):
        for key, override in env.overrides.items():
            _check_json(override, f"{source}: environments[{i}].overrides.{key}")
    for i, res in enumerate(bp.resources):
        try:
            executor = get_executor(res.executor)
        except UnknownExecutor as exc:
            raise BlueprintError(f"{source}: resources[{i}].executor: {exc}") from None
        try:
            executor.validate_config(res.config(None))
        except ExecutorConfigError as exc:
            raise BlueprintError(f"{source}: resources[{i}]: {exc}") from None
        for j, dep in enumerate(res.depends_on):
            if dep not in seen:
                raise BlueprintError(
                    f"{source}: resources[{i}].depends_on[{j}]: unknown resource '{dep}'"
                )
    try:
        dependency_order(
            [ResourceView(key=r.key, depends_on=tuple(r.depends_on)) for r in bp.resources]
        )
    except DependencyCycle as exc:
        raise BlueprintError(f"{source}: resources: {exc}") from None
    env_seen: set[str] = set()
    for i, env in enumerate(bp.environments):
        if env.name in env_seen:
            raise BlueprintError(f"{source}: environments[{i}].name: duplicate '{env.name}'")
        env_seen.add(env.name)
        for key in env.overrides:
            try:
                split_resource_key(key)
            except ValueError as exc:
                raise BlueprintError(
                    f"{source}: environments[{i}].overrides.{key}: {exc}"
                ) from None
            if key not in seen:
                raise BlueprintError(
                    f"{source}: environments[{i}].overrides.{key}: unknown resource '{key}'"
                )


def _check_json(value: Any, where: str) -> None:
    """Refuse what YAML can express but a JSON column cannot hold the same on every backend.

    Dates and timestamps, sets, binary, non-string keys and NaN/infinity would otherwise
    reach the database and fail there (or be silently changed), not as a blueprint error.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BlueprintError(f"{where}: {value} is not a JSON number")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BlueprintError(f"{where}: key {key!r} is not a string (quote it)")
            _check_json(item, f"{where}.{key}")
        return
    raise BlueprintError(
        f"{where}: a YAML {type(value).__name__} is not a JSON value (quote it to get a string)"
    )


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``; nested mappings merge, the rest replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_blueprint(ctx: Context, bp: BlueprintIn, base_dir: Path | None = None) -> dict[str, Any]:
    """Create or update the project, its environments, resources and desired specs.

    One transaction. An environment's desired spec is reset from the blueprint only where the
    blueprint's value (spec merged with overrides) changed since the last apply, so values set
    with ``relo resource set`` survive re-applying an unchanged blueprint.
    Returns a summary with the queues of environments created.
    """
    now = ctx.clock.now()
    actor = ctx.actor
    created_envs: list[str] = []
    with ctx.db.session() as s:
        project = s.scalar(select(ProjectRow).where(ProjectRow.name == bp.project))
        if project is None:
            project = ProjectRow(name=bp.project, created_at=now)
            s.add(project)
            s.flush()
        existing = {
            resource_key(r.rtype, r.name): r
            for r in s.scalars(select(ResourceRow).where(ResourceRow.project_id == project.id))
        }
        rows: dict[str, ResourceRow] = {}
        for ordinal, res in enumerate(bp.resources):
            row = existing.get(res.key)
            if row is None:
                row = ResourceRow(project_id=project.id, rtype=res.type, name=res.name)
                s.add(row)
            row.ordinal = ordinal
            row.executor = res.executor
            row.config = res.config(base_dir)
            row.timeout = res.timeout
            row.spec = dict(res.spec)
            row.depends_on = list(res.depends_on)
            row.removed = False
            rows[res.key] = row
        for key, row in existing.items():
            if key not in rows:
                row.removed = True
        s.flush()
        envs = {
            e.name: e
            for e in s.scalars(
                select(EnvironmentRow).where(EnvironmentRow.project_id == project.id)
            )
        }
        for env_in in bp.environments:
            env = envs.get(env_in.name)
            if env is None:
                env = EnvironmentRow(
                    project_id=project.id,
                    name=env_in.name,
                    created_at=now,
                    parallel_releases=False,
                    max_parallel_releases=10,
                    approval_required=False,
                    launched=False,
                    queue_counter=0,
                )
                s.add(env)
                s.flush()
                envs[env_in.name] = env
                created_envs.append(env_in.name)
            if env_in.settings is not None:
                for field_name, value in env_in.settings.model_dump(exclude_none=True).items():
                    setattr(env, field_name, value)
            states = {
                st.resource_id: st
                for st in s.scalars(
                    select(ResourceStateRow).where(ResourceStateRow.environment_id == env.id)
                )
            }
            for key, row in rows.items():
                base = deep_merge(row.spec, env_in.overrides.get(key, {}))
                state = states.get(row.id)
                if state is None:
                    s.add(
                        ResourceStateRow(
                            environment_id=env.id,
                            resource_id=row.id,
                            base_spec=base,
                            desired_spec=base,
                            applied_spec=None,
                            ever_applied=False,
                            unknown=False,
                            degraded=False,
                            fence=0,
                        )
                    )
                elif state.base_spec != base:
                    state.base_spec = base
                    state.desired_spec = base
        s.flush()
        from ..storage.repository import Repository

        Repository(s).event(
            at=now,
            actor=actor,
            kind="blueprint_applied",
            project=bp.project,
            message=f"blueprint applied: {len(bp.environments)} environment(s), "
            f"{len(bp.resources)} resource(s)",
            data={
                "environments": [e.name for e in bp.environments],
                "resources": list(rows),
                "created_environments": created_envs,
            },
        )
    from ..domain.names import queue_name

    queues = [queue_name(bp.project, e) for e in created_envs]
    if queues:
        ctx.transport.follow(queues)
    return {
        "project": bp.project,
        "environments": [e.name for e in bp.environments],
        "resources": list(rows),
        "created_environments": created_envs,
    }


def load_blueprint_file(path: str) -> tuple[BlueprintIn, Path]:
    """Read and validate a blueprint file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise BlueprintError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BlueprintError(f"{path}: not UTF-8 text") from None
    return parse_blueprint(text, source=path), p.parent.resolve()
