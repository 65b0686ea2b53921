"""Finding executors by name (SPEC §2).

``shell`` and ``simulated`` are built in and always available. Third-party executors register
an :class:`~release_orchestrator.executors.base.Executor` subclass under the entry-point group
``release_orchestrator.executors``; a plug-in that fails to load is logged and skipped.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Iterable

from release_orchestrator.executors.base import Executor
from release_orchestrator.executors.shell import ShellExecutor
from release_orchestrator.executors.simulated import SimulatedExecutor

__all__ = ["ENTRY_POINT_GROUP", "UnknownExecutor", "available_executors", "get_executor"]

ENTRY_POINT_GROUP = "release_orchestrator.executors"

log = logging.getLogger(__name__)

_BUILTINS: dict[str, type[Executor]] = {
    ShellExecutor.name: ShellExecutor,
    SimulatedExecutor.name: SimulatedExecutor,
}
_instances: dict[str, Executor] = {}
_lock = threading.Lock()


class UnknownExecutor(ValueError):
    """No executor of that name is available; the message lists the available ones."""

    def __init__(self, name: str, available: Iterable[str], reason: str = "") -> None:
        self.name = name
        self.available = sorted(available)
        listing = ", ".join(self.available) or "none"
        if reason:
            what = f"executor '{name}' could not be loaded ({reason})"
        else:
            what = f"unknown executor '{name}'"
        super().__init__(f"{what}; available: {listing}")


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    """The installed entry points of :data:`ENTRY_POINT_GROUP` (patched in tests)."""
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points by name, built-in names excluded; lookup failures are logged."""
    try:
        found = list(_entry_points())
    except Exception:
        log.warning("could not list %s entry points", ENTRY_POINT_GROUP, exc_info=True)
        return {}
    return {ep.name: ep for ep in found if ep.name not in _BUILTINS}


def _load(ep: importlib.metadata.EntryPoint) -> type[Executor]:
    """The executor class an entry point names; raises if it is not one."""
    obj = ep.load()
    if not (isinstance(obj, type) and issubclass(obj, Executor)):
        raise TypeError(f"{ep.value} is not an Executor subclass")
    return obj


def _plugin_classes() -> dict[str, type[Executor]]:
    """Every plug-in that loads; the others are logged and skipped."""
    classes: dict[str, type[Executor]] = {}
    for name, ep in _plugins().items():
        try:
            classes[name] = _load(ep)
        except Exception:
            log.warning("executor plug-in %r (%s) failed to load", name, ep.value, exc_info=True)
    return classes


def available_executors() -> list[str]:
    """Names of all usable executors, sorted."""
    return sorted({*_BUILTINS, *_plugin_classes()})


def get_executor(name: str) -> Executor:
    """The (cached, shared) executor called ``name``; raises :class:`UnknownExecutor`."""
    with _lock:
        executor = _instances.get(name)
        if executor is not None:
            return executor
        cls = _BUILTINS.get(name)
        if cls is None:
            ep = _plugins().get(name)
            if ep is None:
                raise UnknownExecutor(name, available_executors())
            try:
                cls = _load(ep)
                executor = cls()
            except Exception as exc:
                log.warning("executor plug-in %r failed to load", name, exc_info=True)
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())
                raise UnknownExecutor(name, available_executors(), reason) from exc
        else:
            executor = cls()
        _instances[name] = executor
        return executor
