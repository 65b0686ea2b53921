"""Client methods: Diagnose findings (SPEC §8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..services.context import Context


class DiagnoseAPI:
    """Diagnose findings (SPEC §8)."""

    ctx: Context
