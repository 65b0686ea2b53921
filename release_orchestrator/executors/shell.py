"""The ``shell`` executor: runs the resource's own commands as subprocesses (SPEC §2).

The argv for a step is ``config[action]`` (a list of strings) plus ``ctx.extra_args``; it is
executed directly, never through a shell. Each step runs in its own process group so a timeout
or cancellation stops the whole tree (SIGTERM, a grace period, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from typing import Any, ClassVar, TypeGuard

from release_orchestrator.executors._capture import OutputCapture
from release_orchestrator.executors.base import (
    Action,
    Executor,
    ExecutorConfigError,
    StepContext,
    StepResult,
    safe_emit,
)

__all__ = ["ShellExecutor"]

#: Environment variables whose (upper-cased) name starts with one of these are not inherited:
#: they may carry database, Redis or broker credentials.
SCRUBBED_ENV_PREFIXES = ("RELO_", "CELERY")
#: Bytes of a refresh command's stdout kept for parsing.
REFRESH_STDOUT_LIMIT = 1 << 20
#: After the command exits, seconds to wait for end-of-file on its pipes; background children
#: that keep them open are left alone but no longer read.
DRAIN_AFTER_EXIT = 1.0
#: Seconds to wait for the reader after the process group was killed.
DRAIN_AFTER_KILL = 1.0
_POLL = 0.1
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NO_REFRESH = "no refresh command; keeping the recorded spec"


def _argv_error(key: str) -> str:
    return f"shell executor: '{key}' must be a non-empty list of strings"


def _is_argv(value: object) -> TypeGuard[list[str]]:
    return (
        isinstance(value, list) and len(value) > 0 and all(isinstance(item, str) for item in value)
    )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _failed(error: str, output: str = "", exit_code: int | None = None) -> StepResult:
    return StepResult(ok=False, exit_code=exit_code, output=output, error=_one_line(error))


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_has_live_member(pgid: int) -> bool:
    """Whether a non-zombie process is left in group ``pgid`` (Linux ``/proc``; else True)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 3 and fields[2] == str(pgid).encode() and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _group_has_live_member(pgid)


class ShellExecutor(Executor):
    """Runs ``config[action]`` as a subprocess with the step described in ``RELO_*`` variables.

    :param grace: seconds between SIGTERM and SIGKILL when a step times out or is cancelled.
    """

    name: ClassVar[str] = "shell"

    def __init__(self, grace: float = 5.0) -> None:
        self.grace = grace

    def validate_config(self, config: Mapping[str, Any]) -> None:
        """Require ``apply``/``destroy`` argv lists; ``refresh`` and ``cwd`` are optional."""
        for key in (Action.APPLY.value, Action.DESTROY.value):
            if not _is_argv(config.get(key)):
                raise ExecutorConfigError(_argv_error(key))
        refresh = config.get(Action.REFRESH.value)
        if refresh is not None and not _is_argv(refresh):
            raise ExecutorConfigError(_argv_error(Action.REFRESH.value))
        cwd = config.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not cwd):
            raise ExecutorConfigError("shell executor: 'cwd' must be a non-empty string")

    def run(self, ctx: StepContext) -> StepResult:
        """Run the step's command; every failure is reported in the result."""
        try:
            return self._run(ctx)
        except Exception as exc:  # an executor must never raise into the orchestrator
            return _failed(f"shell executor error: {type(exc).__name__}: {exc}")

    # -- internals ---------------------------------------------------------------------------

    def _run(self, ctx: StepContext) -> StepResult:
        action = Action(ctx.action)
        command = ctx.config.get(action.value)
        if action is Action.REFRESH and command is None:
            safe_emit(ctx.on_output, _NO_REFRESH + "\n")
            return StepResult(
                ok=True, exit_code=None, output=_NO_REFRESH, observed_spec=ctx.previous_spec
            )
        if not _is_argv(command):
            return _failed(_argv_error(action.value))
        if not all(isinstance(arg, str) for arg in ctx.extra_args):
            return _failed("shell executor: extra arguments must be strings")
        argv = [*command, *ctx.extra_args]
        cwd = ctx.config.get("cwd")
        if cwd is not None and not (isinstance(cwd, str) and os.path.isdir(cwd)):
            return _failed(f"working directory not found: {cwd}")
        env, env_error = self._environment(ctx)
        if env_error:
            return _failed(env_error)
        if ctx.cancel is not None and ctx.cancel.is_set():
            return _failed("cancelled")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return _failed(f"cannot execute {argv[0]}: {reason}")
        return self._supervise(proc, ctx, action)

    def _environment(self, ctx: StepContext) -> tuple[dict[str, str], str | None]:
        """The child's environment, or an error message."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.upper().startswith(SCRUBBED_ENV_PREFIXES)
        }
        try:
            spec = json.dumps(ctx.desired_spec, sort_keys=True)
            previous = json.dumps(ctx.previous_spec, sort_keys=True)
        except (TypeError, ValueError) as exc:
            return env, f"spec is not JSON-serializable: {exc}"
        env.update(
            RELO_PROJECT=ctx.project,
            RELO_ENVIRONMENT=ctx.environment,
            RELO_RELEASE_ID=str(ctx.release_id),
            RELO_RESOURCE_TYPE=ctx.resource_type,
            RELO_RESOURCE_NAME=ctx.resource_name,
            RELO_ACTION=Action(ctx.action).value,
            RELO_SPEC=spec,
            RELO_PREVIOUS_SPEC=previous,
        )
        for key, value in ctx.extra_vars.items():
            if not isinstance(key, str) or not _VAR_NAME.fullmatch(key):
                return env, f"invalid variable name {key!r}: must match {_VAR_NAME.pattern}"
            env[f"RELO_VAR_{key.upper()}"] = str(value)
        return env, None

    def _supervise(
        self, proc: subprocess.Popen[bytes], ctx: StepContext, action: Action
    ) -> StepResult:
        """Wait for ``proc`` under the step's timeout and cancel event; collect its output."""
        assert proc.stdout is not None and proc.stderr is not None
        capture = OutputCapture(
            proc.stdout,
            proc.stderr,
            limit=ctx.output_limit,
            stdout_limit=REFRESH_STDOUT_LIMIT if action is Action.REFRESH else None,
            on_output=ctx.on_output,
        )
        capture.start()
        stop_reason: str | None = None
        try:
            stop_reason = self._wait(proc, ctx)
        finally:
            if stop_reason is not None or proc.returncode is None:
                self._stop_group(proc)
            capture.finish(DRAIN_AFTER_KILL if stop_reason else DRAIN_AFTER_EXIT)
        output = capture.output()
        if stop_reason is not None:
            return _failed(stop_reason, output)
        code = proc.returncode
        if code < 0:
            try:
                signame = signal.Signals(-code).name
            except ValueError:
                signame = str(-code)
            return _failed(f"killed by signal {signame}", output, code)
        if code != 0:
            return _failed(f"exit code {code}", output, code)
        if action is not Action.REFRESH:
            return StepResult(ok=True, exit_code=0, output=output)
        observed: Any = False
        stdout, overflow = capture.stdout()
        if not overflow:
            try:
                observed = json.loads(stdout)
            except ValueError:
                observed = False
        # A JSON object is the actual spec; `null` says the resource does not exist.
        if observed is not None and not isinstance(observed, dict):
            return _failed("refresh output is not a JSON object (or null)", output, code)
        return StepResult(ok=True, exit_code=0, output=output, observed_spec=observed)

    @staticmethod
    def _wait(proc: subprocess.Popen[bytes], ctx: StepContext) -> str | None:
        """Wait for the process; the reason it must be stopped, or None once it exited."""
        deadline = None if ctx.timeout is None else time.monotonic() + max(ctx.timeout, 0.0)
        while True:
            if ctx.cancel is not None and ctx.cancel.is_set():
                return "cancelled"
            step = _POLL
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return f"timed out after {ctx.timeout:g}s"
                step = min(step, remaining)
            try:
                proc.wait(timeout=step)
            except subprocess.TimeoutExpired:
                continue
            return None

    def _stop_group(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the process group, give it ``grace`` seconds, then SIGKILL what is left."""
        pgid = proc.pid  # start_new_session: the child leads its own group
        _signal_group(pgid, signal.SIGTERM)
        end = time.monotonic() + max(self.grace, 0.0)
        while time.monotonic() < end:
            if proc.poll() is not None and not _group_alive(pgid):
                break
            time.sleep(0.05)
        else:
            _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # only if stuck in the kernel
            proc.wait(timeout=10)
