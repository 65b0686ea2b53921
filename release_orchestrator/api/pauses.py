"""Client methods: Pauses and availability windows (SPEC §4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..services.context import Context


class PausesAPI:
    """Pauses and availability windows (SPEC §4)."""

    ctx: Context
