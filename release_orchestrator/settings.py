"""The one settings object: every ``RELO_*`` variable, built once and passed down."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_database_url() -> str:
    return f"sqlite:///{Path.cwd() / 'relo.db'}"


class Settings(BaseSettings):
    """relo configuration, read from ``RELO_*`` environment variables (and ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="RELO_", env_file=None, extra="ignore")

    database_url: str = Field(default_factory=_default_database_url)
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None
    #: Lease TTL of state locks, seconds; heartbeats extend it every third of it.
    lock_ttl: float = Field(default=60.0, gt=0)
    #: Seconds between beat ticks (schedules, reconciler).
    schedule_tick: float = Field(default=5.0, gt=0)
    #: A dispatched release not claimed by a worker after this many seconds is re-sent
    #: (only when its queue is empty, i.e. the message was lost).
    redispatch_after: float = Field(default=30.0, gt=0)
    #: Bytes of output kept per step.
    output_tail_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Seconds between a worker's checks for environments created after it started.
    follow_interval: float = Field(default=5.0, gt=0)
    #: Seconds a worker may hold its task events (for Flower) before publishing them as one
    #: message; 0: at every turn of its event loop, as stock Celery does.
    task_events_interval: float = Field(default=0.05, ge=0, le=60)
    #: kombu's Redis ack emulation (an unacked message returns to its queue after the
    #: visibility timeout). Off by default: relo's reconciler re-sends a release whose message
    #: was lost, so the emulation only cost two Redis round trips per message.
    broker_ack_emulation: bool = False
    user: str | None = None
    key_prefix: str = "relo"
    flower_basic_auth: str | None = None
    flower_port: int = 5555
    web_port: int = 8000
    #: Tokens of the web app's JSON API, comma-separated; ``NAME:TOKEN`` records NAME as who
    #: acted. None configured: the API answers 401 and the pages are open (local use only).
    api_tokens: str | None = None

    @field_validator("database_url")
    @classmethod
    def _sqlalchemy_url(cls, value: str) -> str:
        if value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://") :]
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value[len("postgresql://") :]
        return value

    @property
    def effective_broker_url(self) -> str:
        """The broker URL: ``RELO_BROKER_URL`` or, by default, the Redis URL."""
        return self.broker_url or self.redis_url

    @property
    def lock_ttl_ms(self) -> int:
        """The lease TTL in milliseconds."""
        return int(self.lock_ttl * 1000)

    @field_validator("api_tokens")
    @classmethod
    def _token_items(cls, value: str | None) -> str | None:
        parse_api_tokens(value)  # a malformed item fails at start-up, not at the first call
        return value

    @property
    def api_token_list(self) -> list[tuple[str | None, str]]:
        """``RELO_API_TOKENS`` parsed: ``(name, token)`` pairs (see :func:`parse_api_tokens`)."""
        return parse_api_tokens(self.api_tokens)

    def actor(self) -> str:
        """Who acts: ``RELO_USER``, else the OS user."""
        if self.user:
            return self.user
        try:
            import getpass

            return getpass.getuser()
        except Exception:  # no passwd entry in some containers
            return os.environ.get("USER", "unknown")


def parse_api_tokens(value: str | None) -> list[tuple[str | None, str]]:
    """Comma-separated API tokens as ``(name, token)`` pairs; name None for a bare token.

    Items are stripped and empty items ignored. ``NAME:TOKEN`` names a token (NAME is
    recorded as who acted through it); a bare token therefore cannot contain ``:``.
    Raises ValueError (without echoing any token) for an item with an empty name or token.
    """
    out: list[tuple[str | None, str]] = []
    for number, item in enumerate((value or "").split(","), start=1):
        item = item.strip()
        if not item:
            continue
        name, sep, token = item.partition(":")
        if not sep:
            out.append((None, item))
        elif name.strip() and token.strip():
            out.append((name.strip(), token.strip()))
        else:
            raise ValueError(f"item {number} must be TOKEN or NAME:TOKEN, both non-empty")
    return out


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, safe to print or log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))
