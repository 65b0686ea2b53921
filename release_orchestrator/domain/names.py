"""Names of projects, environments and resources, and their validation.

Project and environment names become parts of Celery queue names
(``release.<project>.<environment>``) and Redis keys, so they are restricted to lower-case
letters, digits, ``-`` and ``_``: no dots, no slashes, no spaces.
"""

from __future__ import annotations

import re

_ENV_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_RESOURCE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,126}$")


def check_name(kind: str, value: object) -> str:
    """``value`` if it is a valid project/environment name, else ``ValueError``."""
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise ValueError(
            f"invalid {kind} name {value!r}: use 1-63 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return value


def check_resource_part(kind: str, value: object) -> str:
    """``value`` if it is a valid resource type or name, else ``ValueError``."""
    if not isinstance(value, str) or not _RESOURCE_PART.match(value):
        raise ValueError(
            f"invalid resource {kind} {value!r}: use letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    return value


def resource_key(rtype: str, name: str) -> str:
    """``TYPE/NAME``."""
    return f"{rtype}/{name}"


def split_resource_key(key: str) -> tuple[str, str]:
    """``("TYPE", "NAME")`` from ``TYPE/NAME``; ``ValueError`` when malformed."""
    rtype, sep, name = key.partition("/")
    if not sep:
        raise ValueError(f"resource {key!r} must be TYPE/NAME")
    return check_resource_part("type", rtype), check_resource_part("name", name)


def env_key(project: str, environment: str) -> str:
    """``project/environment``: how locks and messages name an environment."""
    return f"{project}/{environment}"


def queue_name(project: str, environment: str) -> str:
    """The Celery queue of an environment's release tasks (SPEC §3)."""
    return f"release.{project}.{environment}"
