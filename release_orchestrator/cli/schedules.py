"""`relo` commands of this feature area; registered by ``cli/main.py``."""

from __future__ import annotations
