"""Executor registry (SPEC §2): built-ins, entry-point plug-ins, unknown names."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from typing import Any

import pytest

from release_orchestrator.executors import (
    Executor,
    StepContext,
    StepResult,
    UnknownExecutor,
    available_executors,
    get_executor,
    registry,
)
from release_orchestrator.executors.shell import ShellExecutor
from release_orchestrator.executors.simulated import SimulatedExecutor


class DummyExecutor(Executor):
    """A third-party executor for the tests."""

    name = "dummy"

    def run(self, ctx: StepContext) -> StepResult:
        return StepResult(ok=True, exit_code=0, output="dummy")


class NotAnExecutor:
    """Registered by mistake."""


class ExplodingExecutor(DummyExecutor):
    """Cannot be constructed."""

    def __init__(self) -> None:
        raise RuntimeError("no licence")


def entry_point(name: str, target: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=target, group=registry.ENTRY_POINT_GROUP)


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "_instances", {})
    yield


def use_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: Any) -> None:
    monkeypatch.setattr(registry, "_entry_points", lambda: list(eps))


def test_builtins_are_available_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry_points(monkeypatch)
    assert available_executors() == ["shell", "simulated"]
    shell = get_executor("shell")
    assert isinstance(shell, ShellExecutor)
    assert get_executor("shell") is shell
    assert isinstance(get_executor("simulated"), SimulatedExecutor)


def test_unknown_name_lists_the_available_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry_points(monkeypatch, entry_point("dummy", f"{__name__}:DummyExecutor"))
    with pytest.raises(UnknownExecutor) as info:
        get_executor("terraform")
    assert isinstance(info.value, ValueError)
    assert str(info.value) == "unknown executor 'terraform'; available: dummy, shell, simulated"
    assert info.value.available == ["dummy", "shell", "simulated"]


def test_entry_point_plugin_is_discovered(monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry_points(monkeypatch, entry_point("dummy", f"{__name__}:DummyExecutor"))
    assert available_executors() == ["dummy", "shell", "simulated"]
    executor = get_executor("dummy")
    assert isinstance(executor, DummyExecutor)
    assert get_executor("dummy") is executor


def test_broken_plugins_do_not_break_the_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry_points(
        monkeypatch,
        entry_point("missing", "no_such_module_for_relo_tests:Thing"),
        entry_point("wrong", f"{__name__}:NotAnExecutor"),
        entry_point("exploding", f"{__name__}:ExplodingExecutor"),
        entry_point("dummy", f"{__name__}:DummyExecutor"),
    )
    assert available_executors() == ["dummy", "exploding", "shell", "simulated"]
    assert isinstance(get_executor("shell"), ShellExecutor)
    assert isinstance(get_executor("dummy"), DummyExecutor)
    with pytest.raises(UnknownExecutor, match="could not be loaded"):
        get_executor("missing")
    with pytest.raises(UnknownExecutor, match="not an Executor subclass"):
        get_executor("wrong")
    with pytest.raises(UnknownExecutor, match="no licence"):
        get_executor("exploding")


def test_failing_entry_point_lookup_keeps_the_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> list[Any]:
        raise RuntimeError("corrupt metadata")

    monkeypatch.setattr(registry, "_entry_points", broken)
    assert available_executors() == ["shell", "simulated"]
    assert isinstance(get_executor("simulated"), SimulatedExecutor)


def test_plugins_cannot_shadow_the_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry_points(monkeypatch, entry_point("shell", f"{__name__}:DummyExecutor"))
    assert isinstance(get_executor("shell"), ShellExecutor)
    assert available_executors() == ["shell", "simulated"]


def test_real_entry_point_lookup_runs() -> None:
    names = available_executors()
    assert {"shell", "simulated"} <= set(names)
