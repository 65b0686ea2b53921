"""The executor plug-in contract (SPEC §2).

An executor knows how to ``apply``, ``destroy`` and ``refresh`` one resource. The orchestrator
builds a :class:`StepContext` for every step, hands it to :meth:`Executor.run` and records the
:class:`StepResult`. ``run`` reports failures in the result; it does not raise for them.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..domain.enums import Action

__all__ = [
    "Action",
    "Executor",
    "ExecutorConfigError",
    "StepContext",
    "StepResult",
    "safe_emit",
]


class ExecutorConfigError(ValueError):
    """A resource definition is not valid for its executor; the message names the key."""


@dataclass(frozen=True)
class StepContext:
    """Everything an executor needs to run one step on one resource."""

    project: str
    environment: str
    release_id: int
    resource_type: str
    resource_name: str
    action: Action
    #: The spec to apply (a JSON object); ``None`` when there is none (e.g. destroy).
    desired_spec: dict[str, Any] | None
    #: The spec last applied; ``None`` if the resource was never applied.
    previous_spec: dict[str, Any] | None
    #: The resource definition: ``apply``/``destroy``/``refresh`` argv lists, ``options``, ...
    config: Mapping[str, Any]
    #: Seconds allowed for this step; ``None`` means no limit.
    timeout: float | None = None
    #: Appended to the argv (custom releases).
    extra_args: tuple[str, ...] = ()
    #: Exported to the step as ``RELO_VAR_<KEY>`` (custom releases).
    extra_vars: Mapping[str, str] = field(default_factory=dict)
    #: Bytes of output tail kept in :attr:`StepResult.output`.
    output_limit: int = 65536
    #: When set, the running step is stopped and fails with error ``"cancelled"``.
    cancel: threading.Event | None = None
    #: Called with each piece of output as it arrives (live logs); its errors are swallowed.
    on_output: Callable[[str], None] | None = None

    @property
    def resource_label(self) -> str:
        """``type/name`` of the resource, for messages."""
        return f"{self.resource_type}/{self.resource_name}"


@dataclass(frozen=True)
class StepResult:
    """The outcome of one step."""

    ok: bool
    exit_code: int | None
    #: Bounded tail of the output (stdout and stderr interleaved in arrival order).
    output: str
    #: Refresh only: the spec actually observed.
    observed_spec: dict[str, Any] | None = None
    #: One line saying why the step failed, e.g. ``"exit code 3"`` or ``"cancelled"``.
    error: str | None = None


def safe_emit(callback: Callable[[str], None] | None, text: str) -> None:
    """Call an ``on_output`` callback, never letting its exceptions reach the executor."""
    if callback is None or not text:
        return
    with contextlib.suppress(Exception):  # the live-log sink must never break a step
        callback(text)


class Executor(ABC):
    """A plug-in that applies, destroys and refreshes one resource.

    Subclasses set :attr:`name` and implement :meth:`run`; they register under the
    ``release_orchestrator.executors`` entry-point group. Instances are cached and shared
    between threads, so ``run`` must not keep per-step state on ``self``.
    """

    name: ClassVar[str]

    def validate_config(self, config: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Check a resource definition; raise :class:`ExecutorConfigError` naming the bad key.

        The default accepts any definition.
        """

    @abstractmethod
    def run(self, ctx: StepContext) -> StepResult:
        """Run one step and report its outcome; failures are results, not exceptions."""
