"""The domain and the policy are pure: no storage, broker, lock or service imports (STYLE §1-2).

Checked by parsing every module's source (not by importing it), following imports inside
``release_orchestrator`` transitively, so a pure module cannot reach infrastructure through a
helper module either. Imports under ``if TYPE_CHECKING:`` count too: the policy must not even
know the storage types.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import release_orchestrator

PACKAGE = "release_orchestrator"
ROOT = Path(release_orchestrator.__file__).resolve().parent
PURE_PACKAGES = ("domain", "policy")
FORBIDDEN_TOP = frozenset({"sqlalchemy", "redis", "celery", "kombu"})
FORBIDDEN_OWN = tuple(f"{PACKAGE}.{p}" for p in ("storage", "services", "locks"))


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    line: int


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` in ``current``."""
    if level == 0:
        return module or ""
    base = current.split(".")
    if not is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(source: str, current: str, is_package: bool = False) -> list[Import]:
    """Every module ``source`` imports, absolute; ``from X import y`` yields X and X.y."""
    out: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend(Import(alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(current, is_package, node.level, node.module)
            out.append(Import(base, node.lineno))
            # ``from .. import storage`` imports the submodule ``storage``.
            out.extend(
                Import(f"{base}.{alias.name}" if base else alias.name, node.lineno)
                for alias in node.names
                if alias.name != "*"
            )
        elif isinstance(node, ast.Call):
            # importlib.import_module("x") / __import__("x") with a literal name.
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (
                name in ("import_module", "__import__")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                out.append(Import(node.args[0].value, node.lineno))
    return out


def forbidden(module: str) -> bool:
    if module.split(".")[0] in FORBIDDEN_TOP:
        return True
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN_OWN)


def source_file(module: str) -> Path | None:
    """The file of one of our modules, or ``None`` (third-party, or a name inside a module)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    rel = Path(*module.split(".")[1:]) if module != PACKAGE else Path()
    for candidate in (ROOT / rel / "__init__.py", (ROOT / rel).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def pure_modules() -> list[Path]:
    return sorted(p for pkg in PURE_PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def violations(start: Path) -> list[str]:
    """Forbidden imports reachable from ``start`` through our own modules, with the chain."""
    found: list[str] = []
    seen: set[Path] = set()
    todo: list[tuple[Path, tuple[str, ...]]] = [(start, (module_name(start),))]
    while todo:
        path, chain = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        current = module_name(path)
        for imp in imports_of(path.read_text(encoding="utf-8"), current,
                              path.name == "__init__.py"):
            where = " -> ".join(chain) + f" (line {imp.line}): {imp.module}"
            if forbidden(imp.module):
                found.append(where)
                continue
            target = source_file(imp.module)
            if target == ROOT / "__init__.py":
                # Implied by living in the package (Python imports the root first).
                continue
            if target is None and imp.module.rpartition(".")[0] == PACKAGE:
                # ``from .. import Client``: a name the root re-exports from the client.
                found.append(where + "  (re-exported by the package root)")
            elif target is not None:
                todo.append((target, (*chain, imp.module)))
    return found


PURE = pure_modules()


def test_the_pure_packages_are_found() -> None:
    names = {module_name(p) for p in PURE}
    for expected in (
        "release_orchestrator.domain",
        "release_orchestrator.domain.enums",
        "release_orchestrator.domain.models",
        "release_orchestrator.policy",
        "release_orchestrator.policy.admission",
        "release_orchestrator.policy.findings",
        "release_orchestrator.policy.plan",
    ):
        assert expected in names


@pytest.mark.parametrize("path", PURE, ids=lambda p: module_name(p))
def test_pure_module_imports_no_infrastructure(path: Path) -> None:
    if not path.exists():  # a module being rewritten by someone else right now
        pytest.skip(f"{path} disappeared since collection")
    assert violations(path) == []


# --- the checker itself must catch what it is meant to catch -------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import sqlalchemy",
        "import sqlalchemy.orm as orm",
        "from redis import Redis",
        "from redis.exceptions import LockError",
        "import celery.app",
        "from kombu import Queue",
        "from ..storage import repository",
        "from ..storage.tables import ReleaseRow",
        "from .. import storage",
        "from .. import services",
        "from ..locks.redis_store import RedisLockStore",
        "from release_orchestrator.services.snapshot import build_snapshot",
        "import release_orchestrator.locks",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..storage import x",
        "def f():\n    import redis\n    return redis",
        "import importlib\nimportlib.import_module('celery')",
        "__import__('sqlalchemy')",
    ],
)
def test_checker_catches_forbidden_imports(source: str) -> None:
    imps = imports_of(source, "release_orchestrator.policy.admission")
    assert any(forbidden(i.module) for i in imps), imps


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "from ..domain.enums import StrEnum",
        "from .admission import Code",
        "from . import plan",
        "from datetime import datetime",
        "import re",
        "from pydantic import BaseModel",
        "from croniter import croniter",
        "import redistribute",  # a prefix is not the package
        "from ..storagelike import x",
    ],
)
def test_checker_allows_pure_imports(source: str) -> None:
    imps = imports_of(source, "release_orchestrator.policy.admission")
    assert not any(forbidden(i.module) for i in imps), imps


def test_relative_imports_resolve_from_modules_and_packages() -> None:
    mod = imports_of("from ..storage import x", "release_orchestrator.policy.admission")
    assert Import("release_orchestrator.storage", 1) in mod
    pkg = imports_of("from ..storage import x", "release_orchestrator.policy", is_package=True)
    assert pkg[0] == Import("release_orchestrator.storage", 1)
    sibling = imports_of("from .admission import Code", "release_orchestrator.policy.findings")
    assert sibling[0] == Import("release_orchestrator.policy.admission", 1)
    in_pkg = imports_of("from .admission import Code", "release_orchestrator.policy", True)
    assert in_pkg[0] == Import("release_orchestrator.policy.admission", 1)


def test_transitive_imports_are_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pure module importing a helper that imports Redis is impure."""
    root = tmp_path / PACKAGE
    (root / "policy").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "helpers.py").write_text("import redis\n")
    (root / "policy" / "__init__.py").write_text("")
    (root / "policy" / "clean.py").write_text("from ..helpers import thing\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", root)
    found = violations(root / "policy" / "clean.py")
    assert len(found) == 1
    assert "release_orchestrator.helpers" in found[0] and found[0].endswith("redis")


def test_names_re_exported_by_the_package_root_are_not_pure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / PACKAGE
    (root / "policy").mkdir(parents=True)
    (root / "domain").mkdir()
    (root / "__init__.py").write_text("from .client import Client\n")
    (root / "domain" / "__init__.py").write_text("")
    (root / "policy" / "__init__.py").write_text("")
    (root / "policy" / "ok.py").write_text("from .. import domain\n")
    (root / "policy" / "bad.py").write_text("from .. import Client\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", root)
    assert violations(root / "policy" / "ok.py") == []
    assert len(violations(root / "policy" / "bad.py")) == 1
