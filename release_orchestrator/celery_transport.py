"""The Celery side of the transport port: app factory, publishing, remote control."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery

from .domain.names import queue_name
from .settings import Settings

log = logging.getLogger(__name__)

EXECUTE_RELEASE = "release_orchestrator.execute_release"
DISPATCH = "release_orchestrator.dispatch"
TICK = "release_orchestrator.scheduled_tick"
CONTROL_QUEUE = "relo.control"


def reuse_kombu_redis_clients() -> bool:
    """Make kombu's Redis channels reuse one ``redis.Redis`` client for their commands.

    kombu's Redis transport builds a new client object for every publish and every event
    (``Channel.conn_or_acquire`` → ``_create_client``); with redis-py 8 building one costs
    about as much CPU as the LPUSH it sends (its response-callback table is rebuilt each
    time), and a release publishes up to seven times (task, sent/received/started/succeeded
    events, the next release). The client is stateless apart from its connection pool, so
    one per channel and pool is equivalent. Idempotent; False when kombu no longer has the
    hook (the behaviour is then kombu's own).
    """
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:  # pragma: no cover - the redis extra is a dependency
        return False
    original = getattr(getattr(kombu_redis, "Channel", None), "_create_client", None)
    if original is None:
        return False
    if getattr(original, "relo_reuse", False):
        return True

    def _create_client(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:
            return original(self, asynchronous=True)
        pool = self.pool
        client = self.__dict__.get("_relo_client")
        if client is None or client.connection_pool is not pool:
            client = original(self)
            self.__dict__["_relo_client"] = client
        return client

    _create_client.relo_reuse = True  # type: ignore[attr-defined]
    _create_client.relo_original = original  # type: ignore[attr-defined]
    kombu_redis.Channel._create_client = _create_client  # type: ignore[method-assign]
    return True


def make_app(settings: Settings, main: str = "relo") -> Celery:
    """A Celery app configured from ``celeryconfig`` and the ``RELO_*`` settings."""
    reuse_kombu_redis_clients()
    app = Celery(main, broker=settings.effective_broker_url, set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.beat_schedule = {
        "relo-tick": {
            "task": TICK,
            "schedule": settings.schedule_tick,
            "options": {"queue": CONTROL_QUEUE, "expires": max(settings.schedule_tick * 2, 5)},
        }
    }
    return app


class CeleryTransport:
    """Publishes release tasks to ``release.<project>.<environment>`` queues."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._redis: Any = None

    def send_release(
        self,
        project: str,
        environment: str,
        release_id: int,
        description: str,
        hint: dict[str, Any] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"project": project, "environment": environment}
        if hint is not None:
            kwargs["hint"] = hint
        self.app.send_task(
            EXECUTE_RELEASE,
            args=(release_id,),
            kwargs=kwargs,
            queue=queue_name(project, environment),
            argsrepr=f"({release_id},)",
            kwargsrepr=description,
            ignore_result=True,
        )

    def follow(self, queues: Sequence[str]) -> None:
        try:
            self.app.control.broadcast("relo_follow", arguments={"queues": list(queues)})
        except Exception:  # workers also poll for new environments
            log.warning("could not broadcast new queues to workers", exc_info=True)

    def _redis_client(self) -> Any:
        if self._redis is None:
            import redis

            url = self.settings.effective_broker_url
            if not url.startswith(("redis://", "rediss://", "unix://")):
                return None
            self._redis = redis.Redis.from_url(url, socket_timeout=5)
        return self._redis

    def queue_length(self, queue: str) -> int | None:
        client = self._redis_client()
        if client is None:
            return None
        try:
            return int(client.llen(queue))
        except Exception:
            return None

    def consumers(self, queue: str, timeout: float = 1.0) -> list[str] | None:
        try:
            replies = self.app.control.inspect(timeout=timeout).active_queues() or {}
        except Exception:
            return None
        return sorted(
            worker
            for worker, queues in replies.items()
            if any(q.get("name") == queue for q in queues or [])
        )
