"""The shell executor (SPEC §2), against real subprocesses."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from release_orchestrator.executors import (
    Action,
    ExecutorConfigError,
    StepContext,
    StepResult,
)
from release_orchestrator.executors.shell import ShellExecutor

PY = sys.executable


def make_ctx(config: dict[str, Any], action: Action = Action.APPLY, **kw: Any) -> StepContext:
    values: dict[str, Any] = {
        "project": "shop",
        "environment": "prod",
        "release_id": 42,
        "resource_type": "service",
        "resource_name": "web",
        "action": action,
        "desired_spec": {"image": "web:1"},
        "previous_spec": None,
        "config": config,
    }
    values.update(kw)
    return StepContext(**values)


def script(tmp_path: Path, body: str, name: str = "step.sh") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def shell_config(argv: list[str], **extra: Any) -> dict[str, Any]:
    return {"apply": argv, "destroy": argv, **extra}


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie nobody reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] in (b"Z", b"X")


PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


# -- environment -----------------------------------------------------------------------------


def test_env_vars_present_and_spec_round_trips() -> None:
    spec = {"image": "web:2", "nested": {"b": [1, 2.5, None], "a": "é ✓"}, "on": True}
    previous = {"image": "web:1"}
    ctx = make_ctx(
        shell_config(py(PRINT_ENV)),
        desired_spec=spec,
        previous_spec=previous,
        extra_vars={"region": "eu-west", "Max_Surge": "2"},
    )
    result = ShellExecutor().run(ctx)
    assert result.ok, result
    assert result.exit_code == 0 and result.error is None
    env = json.loads(result.output)
    assert env["RELO_PROJECT"] == "shop"
    assert env["RELO_ENVIRONMENT"] == "prod"
    assert env["RELO_RELEASE_ID"] == "42"
    assert env["RELO_RESOURCE_TYPE"] == "service"
    assert env["RELO_RESOURCE_NAME"] == "web"
    assert env["RELO_ACTION"] == "apply"
    assert json.loads(env["RELO_SPEC"]) == spec
    assert env["RELO_SPEC"] == json.dumps(spec, sort_keys=True)
    assert json.loads(env["RELO_PREVIOUS_SPEC"]) == previous
    assert env["RELO_VAR_REGION"] == "eu-west"
    assert env["RELO_VAR_MAX_SURGE"] == "2"


def test_previous_spec_null_when_never_applied() -> None:
    result = ShellExecutor().run(make_ctx(shell_config(py(PRINT_ENV))))
    assert json.loads(result.output)["RELO_PREVIOUS_SPEC"] == "null"


def test_secrets_in_relo_and_celery_variables_are_not_inherited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELO_DATABASE_URL", "postgresql://u:s3cr3t-pw@db/relo")
    monkeypatch.setenv("RELO_REDIS_URL", "redis://:s3cr3t-pw@redis/0")
    monkeypatch.setenv("relo_broker_url", "redis://:s3cr3t-pw@redis/1")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://:s3cr3t-pw@redis/2")
    monkeypatch.setenv("UNRELATED_SETTING", "kept")
    result = ShellExecutor().run(make_ctx(shell_config(py(PRINT_ENV))))
    env = json.loads(result.output)
    for name in ("RELO_DATABASE_URL", "RELO_REDIS_URL", "relo_broker_url", "CELERY_BROKER_URL"):
        assert name not in env
    assert "s3cr3t-pw" not in result.output
    assert env["PATH"] == os.environ["PATH"]
    assert env["UNRELATED_SETTING"] == "kept"


@pytest.mark.parametrize("key", ["1abc", "a-b", "", "a b", "x;rm"])
def test_invalid_extra_var_name_fails_without_running(tmp_path: Path, key: str) -> None:
    marker = tmp_path / "ran"
    ctx = make_ctx(shell_config(["touch", str(marker)]), extra_vars={key: "v"})
    result = ShellExecutor().run(ctx)
    assert not result.ok and result.exit_code is None
    assert result.error is not None and "invalid variable name" in result.error
    assert not marker.exists()


def test_shell_metacharacters_are_passed_literally(tmp_path: Path) -> None:
    evil = ["$(touch pwned)", "`touch pwned`", "; touch pwned; rm -rf pwned-dir", "| touch pwned"]
    (tmp_path / "pwned-dir").mkdir()
    path = script(tmp_path, 'printf "%s\\n" "$RELO_SPEC" "$RELO_RESOURCE_NAME" "$@"\n', "p.sh")
    ctx = make_ctx(
        {"apply": ["./p.sh", evil[0]], "destroy": ["./p.sh"], "cwd": str(tmp_path)},
        resource_name="web" + evil[2],
        desired_spec={"cmd": evil[0], "other": evil[1], "pipe": evil[3]},
        extra_args=tuple(evil),
        extra_vars={"X": evil[0]},
    )
    result = ShellExecutor().run(ctx)
    assert result.ok, result
    assert Path(path).exists()
    assert not (tmp_path / "pwned").exists()
    assert (tmp_path / "pwned-dir").is_dir()
    lines = result.output.splitlines()
    assert json.loads(lines[0]) == ctx.desired_spec
    assert lines[1] == "web" + evil[2]
    assert lines[2:] == [evil[0], *evil]


# -- exit codes, output ----------------------------------------------------------------------


def test_nonzero_exit_fails_with_output(tmp_path: Path) -> None:
    argv = [script(tmp_path, "echo working\necho 'boom' >&2\nexit 3\n")]
    result = ShellExecutor().run(make_ctx(shell_config(argv)))
    assert result == StepResult(
        ok=False, exit_code=3, output="working\nboom\n", error="exit code 3"
    )


def test_output_interleaves_stdout_and_stderr_and_streams_lines() -> None:
    code = (
        "import sys, time\n"
        "for i in range(3):\n"
        "    print(f'out{i}', flush=True); time.sleep(0.03)\n"
        "    print(f'err{i}', file=sys.stderr, flush=True); time.sleep(0.03)\n"
    )
    seen: list[str] = []
    result = ShellExecutor().run(make_ctx(shell_config(py(code)), on_output=seen.append))
    expected = ["out0", "err0", "out1", "err1", "out2", "err2"]
    assert result.output.splitlines() == expected
    assert seen == [line + "\n" for line in expected]


def test_output_tail_is_bounded() -> None:
    code = (
        "import sys\n"
        "line = 'x' * 99 + '\\n'\n"
        "sys.stdout.write(line * 10_000)\n"
        "sys.stdout.write('the last line\\n')\n"
    )
    chunks: list[str] = []
    result = ShellExecutor().run(
        make_ctx(shell_config(py(code)), output_limit=4096, on_output=chunks.append)
    )
    assert result.ok
    assert len(result.output.encode()) <= 4096
    assert result.output.endswith("x\nthe last line\n")
    assert len(chunks) == 10_001


def test_on_output_errors_do_not_break_the_step() -> None:
    def explode(_: str) -> None:
        raise RuntimeError("sink down")

    result = ShellExecutor().run(make_ctx(shell_config(["echo", "hi"]), on_output=explode))
    assert result.ok and result.output == "hi\n"


def test_extra_args_are_appended() -> None:
    result = ShellExecutor().run(make_ctx(shell_config(["echo", "a"]), extra_args=("b", "c")))
    assert result.output == "a b c\n"


# -- timeouts, cancellation ------------------------------------------------------------------

GRANDCHILD = 'sleep 100 &\necho "grandchild $!"\nwait\n'


def grandchild_pid(output: str) -> int:
    line = next(item for item in output.splitlines() if item.startswith("grandchild "))
    return int(line.split()[1])


@pytest.mark.parametrize("ignore_term", [False, True], ids=["term", "kill-after-grace"])
def test_timeout_kills_the_process_group(tmp_path: Path, ignore_term: bool) -> None:
    body = ("trap '' TERM\n" if ignore_term else "") + GRANDCHILD
    timeout, grace = 0.5, 0.5
    start = time.monotonic()
    result = ShellExecutor(grace=grace).run(
        make_ctx(shell_config([script(tmp_path, body)]), timeout=timeout)
    )
    elapsed = time.monotonic() - start
    assert not result.ok
    assert result.exit_code is None
    assert result.error == "timed out after 0.5s"
    assert elapsed < timeout + grace + 1
    pid = grandchild_pid(result.output)
    deadline = time.monotonic() + 1
    while not pid_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pid_gone(pid)


def test_timeout_with_sh_c_grandchild_and_default_grace() -> None:
    argv = ["sh", "-c", "sh -c 'sleep 100 & echo grandchild $!; wait' & wait"]
    start = time.monotonic()
    result = ShellExecutor().run(make_ctx(shell_config(argv), timeout=0.3))
    assert time.monotonic() - start < 0.3 + 5.0 + 1
    assert result.error == "timed out after 0.3s"
    assert pid_gone(grandchild_pid(result.output))


def test_cancel_stops_a_running_step(tmp_path: Path) -> None:
    cancel = threading.Event()
    started = threading.Event()

    def watch(line: str) -> None:
        if line.startswith("grandchild"):
            started.set()

    ctx = make_ctx(shell_config([script(tmp_path, GRANDCHILD)]), cancel=cancel, on_output=watch)
    results: list[StepResult] = []
    worker = threading.Thread(target=lambda: results.append(ShellExecutor(grace=1).run(ctx)))
    worker.start()
    assert started.wait(5)
    start = time.monotonic()
    cancel.set()
    worker.join(5)
    assert not worker.is_alive()
    assert time.monotonic() - start < 2.5
    [result] = results
    assert not result.ok and result.exit_code is None and result.error == "cancelled"
    assert pid_gone(grandchild_pid(result.output))


def test_already_cancelled_step_does_not_start(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cancel = threading.Event()
    cancel.set()
    result = ShellExecutor().run(make_ctx(shell_config(["touch", str(marker)]), cancel=cancel))
    assert result.error == "cancelled"
    assert not marker.exists()


def test_background_child_holding_the_pipes_does_not_hang_the_step(tmp_path: Path) -> None:
    argv = [script(tmp_path, 'sleep 3 &\necho "grandchild $!"\n')]
    start = time.monotonic()
    result = ShellExecutor().run(make_ctx(shell_config(argv)))
    assert result.ok
    assert time.monotonic() - start < 2.5
    os.kill(grandchild_pid(result.output), 9)  # not ours to keep; tidy up


# -- refresh ---------------------------------------------------------------------------------


def refresh_config(argv: list[str]) -> dict[str, Any]:
    return {"apply": ["true"], "destroy": ["true"], "refresh": argv}


def test_refresh_parses_stdout_as_json(tmp_path: Path) -> None:
    argv = [script(tmp_path, 'echo "reading..." >&2\necho \'{"replicas": 3, "image": "a"}\'\n')]
    result = ShellExecutor().run(make_ctx(refresh_config(argv), Action.REFRESH))
    assert result.ok, result
    assert result.observed_spec == {"replicas": 3, "image": "a"}
    assert "reading..." in result.output


@pytest.mark.parametrize("printed", ["not json", "[1, 2]", "", '"text"'])
def test_refresh_with_bad_json_fails(printed: str) -> None:
    result = ShellExecutor().run(make_ctx(refresh_config(["printf", printed]), Action.REFRESH))
    assert not result.ok
    assert result.error == "refresh output is not a JSON object (or null)"
    assert result.observed_spec is None


def test_refresh_printing_null_means_absent() -> None:
    result = ShellExecutor().run(make_ctx(refresh_config(["echo", "null"]), Action.REFRESH))
    assert result.ok, result
    assert result.observed_spec is None


def test_refresh_without_command_keeps_the_recorded_spec() -> None:
    previous = {"image": "web:1"}
    ctx = make_ctx(shell_config(["false"]), Action.REFRESH, previous_spec=previous)
    result = ShellExecutor().run(ctx)
    assert result.ok and result.observed_spec == previous
    assert result.output == "no refresh command; keeping the recorded spec"


def test_destroy_runs_the_destroy_command() -> None:
    config = {"apply": ["echo", "applying"], "destroy": ["echo", "destroying"]}
    result = ShellExecutor().run(make_ctx(config, Action.DESTROY))
    assert result.ok and result.output == "destroying\n"


# -- cannot execute, configuration -----------------------------------------------------------


def test_missing_executable(tmp_path: Path) -> None:
    config = shell_config(["./x.sh"], cwd=str(tmp_path))
    result = ShellExecutor().run(make_ctx(config))
    assert not result.ok and result.exit_code is None
    assert result.error == "cannot execute ./x.sh: No such file or directory"


def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "x.sh"
    path.write_text("#!/bin/sh\necho hi\n")
    path.chmod(0o644)
    result = ShellExecutor().run(make_ctx(shell_config(["./x.sh"], cwd=str(tmp_path))))
    assert result.error == "cannot execute ./x.sh: Permission denied"


def test_missing_working_directory(tmp_path: Path) -> None:
    config = shell_config(["true"], cwd=str(tmp_path / "nope"))
    result = ShellExecutor().run(make_ctx(config))
    assert result.error == f"working directory not found: {tmp_path / 'nope'}"


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"destroy": ["x"]}, "apply"),
        ({"apply": [], "destroy": ["x"]}, "apply"),
        ({"apply": "deploy.sh", "destroy": ["x"]}, "apply"),
        ({"apply": ["x"]}, "destroy"),
        ({"apply": ["x"], "destroy": ["x", 1]}, "destroy"),
        ({"apply": ["x"], "destroy": ["x"], "refresh": "r.sh"}, "refresh"),
        ({"apply": ["x"], "destroy": ["x"], "cwd": 3}, "cwd"),
    ],
)
def test_shell_validate_config_names_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ExecutorConfigError, match=f"'{key}'"):
        ShellExecutor().validate_config(config)


def test_shell_validate_config_accepts_a_good_definition() -> None:
    ShellExecutor().validate_config(
        {"apply": ["./a.sh"], "destroy": ["./d.sh", "--yes"], "refresh": ["./r.sh"], "cwd": "/"}
    )


def test_run_reports_a_bad_definition_instead_of_raising() -> None:
    result = ShellExecutor().run(make_ctx({"apply": "deploy.sh"}))
    assert result.error == "shell executor: 'apply' must be a non-empty list of strings"
