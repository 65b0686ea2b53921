"""Fault injection against real processes (SPEC §10). The fast subset runs in `make test`;
`make reliability` runs the soak sizes (marker `slow`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import redis_available

from . import scenarios

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _redis() -> None:
    if not redis_available():
        pytest.fail("Redis is not answering on 127.0.0.1:6379")


def assert_ok(outcome: scenarios.Outcome) -> None:
    assert outcome.ok, outcome


def test_worker_sigkill_fast(tmp_path: Path) -> None:
    assert_ok(scenarios.worker_sigkill(tmp_path, trials=2))


def test_duplicate_delivery_fast(tmp_path: Path) -> None:
    assert_ok(scenarios.duplicate_delivery(tmp_path, releases=12))


def test_redis_flushed_and_restarted(tmp_path: Path) -> None:
    assert_ok(scenarios.redis_restart(tmp_path, releases=4))


def test_concurrent_submitters_fast(tmp_path: Path) -> None:
    assert_ok(scenarios.concurrent_submitters(tmp_path, processes=6, each=8))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_worker_sigkill_soak(tmp_path: Path) -> None:
    assert_ok(scenarios.worker_sigkill(tmp_path, trials=20))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_duplicate_delivery_soak(tmp_path: Path) -> None:
    assert_ok(scenarios.duplicate_delivery(tmp_path, releases=100))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_concurrent_submitters_soak(tmp_path: Path) -> None:
    assert_ok(scenarios.concurrent_submitters(tmp_path, processes=50, each=20))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_beats_soak(tmp_path: Path) -> None:
    assert_ok(scenarios.beats(tmp_path, due_times=3))
