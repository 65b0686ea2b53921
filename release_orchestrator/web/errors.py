"""relo's exceptions as HTTP: one table from exception class to status and stable code.

The JSON body is ``{"error": message, "code": code}``; a release that was recorded and then
failed at once (``--fail-on-conflict``, destroy without ``allow_destroy``) adds ``release``,
and ``relo release wait`` outcomes add ``result``.
"""

from __future__ import annotations

from typing import Any

from ..errors import (
    BlueprintError,
    InvalidRequest,
    NotFound,
    ReleaseFailed,
    ReloError,
    StateLockError,
    Unavailable,
    WaitTimeout,
)

#: Most specific first: the first class the exception is an instance of wins.
STATUS: tuple[tuple[type[ReloError], int, str], ...] = (
    (NotFound, 404, "not_found"),
    (BlueprintError, 400, "invalid_blueprint"),
    (InvalidRequest, 400, "invalid_request"),
    (StateLockError, 409, "state_lock"),
    (ReleaseFailed, 409, "release_failed"),
    (WaitTimeout, 504, "timeout"),
    (Unavailable, 503, "unavailable"),
    (ReloError, 500, "error"),
)


def status_of(exc: ReloError) -> tuple[int, str]:
    """The HTTP status and stable code of a relo error."""
    for cls, status, code in STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, "error"  # pragma: no cover - ReloError is last in the table


def error_body(exc: ReloError) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for ``exc``."""
    status, code = status_of(exc)
    body: dict[str, Any] = {"error": " ".join(exc.message.split()), "code": code}
    if isinstance(exc, NotFound) and exc.existing:
        body["existing"] = exc.existing
    release = exc.details.get("release")
    if release is not None and hasattr(release, "detail"):
        body["release"] = release.detail()
    result = exc.details.get("result")
    if result is not None and hasattr(result, "model_dump"):
        body["result"] = result.model_dump(mode="json")
    findings = exc.details.get("findings")
    if findings:
        body["findings"] = [f.model_dump(mode="json") for f in findings]
    return status, body
