"""The ``simulated`` executor: sleeps and succeeds or fails on request (SPEC §2).

Settings are read from the step's spec first (the desired spec; the previous spec for
destroy), then from ``config["options"]``, then defaults:

``duration``
    seconds to sleep (non-negative number, default 0);
``fail``
    when true the step fails (bool, default false).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from release_orchestrator.executors.base import (
    Action,
    Executor,
    ExecutorConfigError,
    StepContext,
    StepResult,
    safe_emit,
)

__all__ = ["SimulatedExecutor"]

_DEFAULTS: dict[str, Any] = {"duration": 0.0, "fail": False}


def _check(key: str, value: Any) -> str | None:
    """Why ``value`` is not valid for setting ``key``, or None."""
    if key == "duration":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        return None if ok else "simulated executor: 'duration' must be a non-negative number"
    if key == "fail" and not isinstance(value, bool):
        return "simulated executor: 'fail' must be a boolean"
    return None


class SimulatedExecutor(Executor):
    """Pretends to run a step: waits ``duration`` seconds, fails when ``fail`` is true."""

    name: ClassVar[str] = "simulated"

    def validate_config(self, config: Mapping[str, Any]) -> None:
        """Accept any definition; ``options.duration``/``options.fail`` must be well typed."""
        options = config.get("options")
        if options is None:
            return
        if not isinstance(options, Mapping):
            raise ExecutorConfigError("simulated executor: 'options' must be a mapping")
        for key in _DEFAULTS:
            if key in options:
                problem = _check(key, options[key])
                if problem:
                    raise ExecutorConfigError(problem.replace(f"'{key}'", f"'options.{key}'"))

    def run(self, ctx: StepContext) -> StepResult:
        """Sleep (interruptibly), then succeed or fail as configured."""
        action = Action(ctx.action)
        try:
            duration = float(self._setting(ctx, action, "duration"))
            fail = bool(self._setting(ctx, action, "fail"))
        except ExecutorConfigError as exc:
            return StepResult(ok=False, exit_code=None, output="", error=str(exc))
        label = f"simulated {action.value} {ctx.resource_type}/{ctx.resource_name}"
        timeout = ctx.timeout
        timed_out = timeout is not None and duration > timeout
        wait = duration if timeout is None else min(duration, max(timeout, 0.0))
        cancel = ctx.cancel if ctx.cancel is not None else threading.Event()
        if cancel.wait(wait):
            return self._finish(ctx, f"{label} cancelled", None, error="cancelled")
        if timed_out:
            error = f"timed out after {timeout:g}s"
            return self._finish(ctx, f"{label} {error}", None, error=error)
        if fail:
            line = f"{label} failed after {duration:g}s"
            return self._finish(ctx, line, 1, error="simulated failure")
        observed = ctx.previous_spec if action is Action.REFRESH else None
        return self._finish(ctx, f"{label} in {duration:g}s", 0, observed=observed)

    @staticmethod
    def _setting(ctx: StepContext, action: Action, key: str) -> Any:
        """``key`` from the spec, then ``config["options"]``, then the default."""
        spec = ctx.previous_spec if action is Action.DESTROY else ctx.desired_spec
        options = ctx.config.get("options")
        for source in (spec, options):
            if isinstance(source, Mapping) and key in source:
                problem = _check(key, source[key])
                if problem:
                    raise ExecutorConfigError(problem)
                return source[key]
        return _DEFAULTS[key]

    @staticmethod
    def _finish(
        ctx: StepContext,
        line: str,
        exit_code: int | None,
        *,
        error: str | None = None,
        observed: dict[str, Any] | None = None,
    ) -> StepResult:
        safe_emit(ctx.on_output, line + "\n")
        return StepResult(
            ok=error is None,
            exit_code=exit_code,
            output=line,
            observed_spec=observed,
            error=error,
        )
