"""The simulated executor (SPEC §2)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from release_orchestrator.executors import Action, ExecutorConfigError, StepContext
from release_orchestrator.executors.simulated import SimulatedExecutor


def make_ctx(config: dict[str, Any], action: Action = Action.APPLY, **kw: Any) -> StepContext:
    values: dict[str, Any] = {
        "project": "shop",
        "environment": "prod",
        "release_id": 7,
        "resource_type": "service",
        "resource_name": "web",
        "action": action,
        "desired_spec": {},
        "previous_spec": None,
        "config": config,
    }
    values.update(kw)
    return StepContext(**values)


def test_simulated_succeeds_after_duration_from_spec() -> None:
    seen: list[str] = []
    ctx = make_ctx({}, desired_spec={"duration": 0.2}, on_output=seen.append)
    start = time.monotonic()
    result = SimulatedExecutor().run(ctx)
    assert 0.2 <= time.monotonic() - start < 1.5
    assert result.ok and result.exit_code == 0
    assert result.output == "simulated apply service/web in 0.2s"
    assert seen == [result.output + "\n"]


def test_simulated_spec_wins_over_options_and_options_over_defaults() -> None:
    config = {"options": {"fail": True, "duration": 0}}
    assert not SimulatedExecutor().run(make_ctx(config, desired_spec={})).ok
    assert SimulatedExecutor().run(make_ctx(config, desired_spec={"fail": False})).ok
    assert SimulatedExecutor().run(make_ctx({}, desired_spec=None)).ok


def test_simulated_failure() -> None:
    result = SimulatedExecutor().run(make_ctx({}, desired_spec={"fail": True}))
    assert not result.ok and result.error == "simulated failure"


def test_simulated_destroy_reads_the_previous_spec() -> None:
    ctx = make_ctx({}, Action.DESTROY, desired_spec=None, previous_spec={"fail": True})
    assert SimulatedExecutor().run(ctx).error == "simulated failure"


def test_simulated_refresh_returns_the_previous_spec() -> None:
    ctx = make_ctx({}, Action.REFRESH, previous_spec={"image": "web:1"})
    result = SimulatedExecutor().run(ctx)
    assert result.ok and result.observed_spec == {"image": "web:1"}


def test_simulated_cancel_interrupts_the_sleep() -> None:
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    start = time.monotonic()
    result = SimulatedExecutor().run(make_ctx({}, desired_spec={"duration": 30}, cancel=cancel))
    assert time.monotonic() - start < 2
    assert not result.ok and result.error == "cancelled"


def test_simulated_timeout() -> None:
    start = time.monotonic()
    result = SimulatedExecutor().run(make_ctx({}, desired_spec={"duration": 30}, timeout=0.2))
    assert 0.2 <= time.monotonic() - start < 2
    assert not result.ok and result.error == "timed out after 0.2s"


def test_simulated_bad_spec_value_fails_the_step() -> None:
    result = SimulatedExecutor().run(make_ctx({}, desired_spec={"duration": "soon"}))
    assert not result.ok and result.error is not None and "'duration'" in result.error


@pytest.mark.parametrize(
    "options", [{"duration": -1}, {"duration": "1"}, {"duration": True}, {"fail": "yes"}]
)
def test_simulated_validate_config(options: dict[str, Any]) -> None:
    with pytest.raises(ExecutorConfigError, match="options"):
        SimulatedExecutor().validate_config({"options": options})


def test_simulated_validate_config_accepts_anything_else() -> None:
    SimulatedExecutor().validate_config({"whatever": 1, "options": {"duration": 1.5, "x": 2}})
    SimulatedExecutor().validate_config({})
