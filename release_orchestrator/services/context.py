"""The service context: settings and the adapters every use case needs, built once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..ports import Clock, SystemClock, Transport
from ..settings import Settings
from ..storage.db import Database

if TYPE_CHECKING:
    from ..locks import LockStore


@dataclass
class Context:
    """Settings plus database, lock store, transport and clock."""

    settings: Settings
    db: Database
    transport: Transport
    clock: Clock = field(default_factory=SystemClock)
    lock_store: LockStore | None = None
    redis: Any = None

    @property
    def locks(self) -> LockStore:
        """The Redis lock store (created on first use)."""
        if self.lock_store is None:
            from ..locks import RedisLockStore

            self.lock_store = RedisLockStore(self.redis_client(), prefix=self.settings.key_prefix)
        return self.lock_store

    def redis_client(self) -> Any:
        if self.redis is None:
            import redis

            # one connection, held: redis-py's pool checkout and return cost a fifth of a
            # lock script's client-side time; threads (a worker's heartbeat, the web
            # server's requests) take turns on the client's lock, and every lock command
            # is one short non-blocking script
            self.redis = redis.Redis.from_url(
                self.settings.redis_url,
                socket_timeout=10,
                socket_connect_timeout=5,
                health_check_interval=30,
                single_connection_client=True,
            )
        return self.redis

    @property
    def actor(self) -> str:
        return self.settings.actor()

    def reset_after_fork(self) -> None:
        """Drop connections inherited from a parent process."""
        self.db.dispose()
        self.redis = None
        self.lock_store = None
