"""The public surface of ``release_orchestrator`` is explicit and pinned."""

from __future__ import annotations

import release_orchestrator

EXPECTED = [
    "Action", "AppProgress", "AvailabilityWindow", "BlueprintError", "Client", "Environment",
    "EnvironmentSettings", "EnvironmentView", "Event", "Finding", "Health", "Hold",
    "InvalidRequest", "NotFound", "Pause", "QueueSummary", "Release", "ReleaseFailed",
    "ReleaseStatus", "ReleaseType", "ReloError", "ResourceStatus", "ResumeResult", "Schedule",
    "ScheduleView", "ScheduledRun", "Settings", "StateLockError", "Step", "SyncStatus", "Target",
    "Trigger", "Unavailable", "WaitResult", "WaitTimeout",
]


def test_all_is_sorted_and_pinned() -> None:
    assert release_orchestrator.__all__ == sorted(release_orchestrator.__all__)
    assert sorted(release_orchestrator.__all__) == sorted(EXPECTED)
    for name in EXPECTED:
        assert getattr(release_orchestrator, name) is not None


def test_errors_share_one_root_with_exit_codes() -> None:
    from release_orchestrator import errors

    codes = {cls.__name__: cls.exit_code for cls in (
        errors.InvalidRequest, errors.NotFound, errors.BlueprintError, errors.StateLockError,
        errors.ReleaseFailed, errors.WaitTimeout, errors.Unavailable)}
    assert codes == {"InvalidRequest": 2, "NotFound": 2, "BlueprintError": 2,
                     "StateLockError": 4, "ReleaseFailed": 1, "WaitTimeout": 3,
                     "Unavailable": 1}
    for cls in (errors.InvalidRequest, errors.StateLockError, errors.ReleaseFailed,
                errors.WaitTimeout, errors.Unavailable):
        assert issubclass(cls, errors.ReloError)


def test_client_mirrors_the_cli() -> None:
    for method in ("submit", "active", "get", "delete", "approve", "pause", "resume",
                   "settings", "set_schedule", "sync", "wait", "diagnose", "apply_blueprint"):
        assert callable(getattr(release_orchestrator.Client, method, None)), method
