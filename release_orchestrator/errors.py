"""The exception tree of relo.

Every error relo raises on purpose derives from :class:`ReloError`; the CLI maps each class
to an exit code in one place (``cli/main.py``), the HTTP API to a status code.

::

    ReloError                      exit 1
    ├── InvalidRequest             exit 2   bad input, wrong state
    │   ├── NotFound               exit 2   unknown project/environment/resource/release
    │   └── BlueprintError         exit 2   a blueprint file that does not validate
    ├── StateLockError             exit 4   --fail-on-conflict met a conflict
    ├── ReleaseFailed              exit 1   a release (or an awaited app) ended badly
    ├── WaitTimeout                exit 3   `release wait` ran out of time
    └── Unavailable                exit 1   Redis/database/broker not answering

A class's docstring is its default message. Adapters translate driver errors at the
boundary and keep the original as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ReloError(Exception):
    """relo failed."""

    exit_code = 1

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details
        super().__init__(self.message)


class InvalidRequest(ReloError):
    """The request is not valid."""

    exit_code = 2


class NotFound(InvalidRequest):
    """Not found."""

    def __init__(
        self,
        message: str | None = None,
        *,
        kind: str = "",
        name: str = "",
        existing: Sequence[str] = (),
        **details: Any,
    ) -> None:
        self.kind = kind
        self.name = name
        self.existing = list(existing)
        super().__init__(message, kind=kind, name=name, existing=list(existing), **details)


class BlueprintError(InvalidRequest):
    """The blueprint is not valid."""


class StateLockError(ReloError):
    """State lock conflict."""

    exit_code = 4


class ReleaseFailed(ReloError):
    """The release failed."""


class WaitTimeout(ReloError):
    """Timed out waiting."""

    exit_code = 3


class Unavailable(ReloError):
    """A backing service is not answering."""


def closest_names(name: str, existing: Sequence[str], limit: int = 20) -> list[str]:
    """At most ``limit`` of ``existing``, the ones closest to ``name`` first (SPEC §11)."""
    import difflib

    def score(candidate: str) -> float:
        return difflib.SequenceMatcher(None, name, candidate).ratio()

    return sorted(existing, key=lambda c: (-score(c), c))[:limit]


def not_found(kind: str, name: str, existing: Sequence[str], where: str = "") -> NotFound:
    """A :class:`NotFound` whose message names what exists, closest first."""
    names = closest_names(name, existing)
    place = f" in {where}" if where else ""
    listing = ", ".join(names) if names else "none"
    more = f" (and {len(existing) - len(names)} more)" if len(existing) > len(names) else ""
    return NotFound(
        f"unknown {kind} '{name}'{place}; existing: {listing}{more}",
        kind=kind,
        name=name,
        existing=names,
    )
