"""Client methods: CLI releases: sync and wait (SPEC §6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..services.context import Context


class SyncAPI:
    """CLI releases: sync and wait (SPEC §6)."""

    ctx: Context
