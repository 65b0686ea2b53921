"""Client methods: Scheduled releases (SPEC §7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..services.context import Context


class SchedulesAPI:
    """Scheduled releases (SPEC §7)."""

    ctx: Context
