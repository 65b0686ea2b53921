"""The Celery side of the transport port: app factory, publishing, remote control."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from celery import Celery, bootsteps, signals
from celery.events.event import Event
from celery.utils import uuid as celery_uuid
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset
from kombu.utils.json import dumps as json_dumps
from vine import promise

from .domain.names import queue_name
from .resp import bulk, pack
from .settings import Settings

log = logging.getLogger(__name__)

EXECUTE_RELEASE = "release_orchestrator.execute_release"
DISPATCH = "release_orchestrator.dispatch"
TICK = "release_orchestrator.scheduled_tick"
CONTROL_QUEUE = "relo.control"
#: Celery's publish signals: while any has a receiver, releases are published by send_task.
_PUBLISH_SIGNALS = (signals.before_task_publish, signals.after_task_publish, signals.task_sent)


def _kombu_redis_channel() -> Any:
    """kombu's Redis ``Channel`` class, which relo's kombu tuning patches (None without it)."""
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:  # pragma: no cover - the redis extra is a dependency
        return None
    return getattr(kombu_redis, "Channel", None)


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
    channel_cls = _kombu_redis_channel()
    original = getattr(channel_cls, "_create_client", None)
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
    channel_cls._create_client = _create_client
    return True


def pack_brpop_once() -> bool:
    """Make kombu's Redis channels pack each queue name of their ``BRPOP`` once, not per call.

    A worker waits for its next task with one ``BRPOP`` over every queue it consumes, sent
    again after each message (and, with prefetch disabled, each time a pool slot frees up).
    kombu builds the key list and redis-py encodes and packs every key for each call: about
    120 µs of the worker main process's CPU per release with 100 environment queues (a
    tenth of it), 1.2 ms with 1,000. Here each key's packed form is kept per channel and the
    command is joined from them in the channel's current round-robin order: the same bytes,
    the same fairness. Channels with a global key prefix keep kombu's own method.
    Idempotent; False when kombu no longer has the hook (the behaviour is then kombu's own).
    """
    channel_cls = _kombu_redis_channel()
    original = getattr(channel_cls, "_brpop_start", None)
    if original is None:
        return False
    if getattr(original, "relo_packed", False):
        return True

    def _brpop_start(self: Any, timeout: float | None = None) -> None:
        if self.global_keyprefix:
            return original(self, timeout)  # type: ignore[no-any-return]
        if timeout is None:
            timeout = self.brpop_timeout
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
        connection = self.client.connection
        # per priority step, each queue's key packed once: {queue: bytes}
        packed: dict[int, dict[str, bytes]] = self.__dict__.setdefault("_relo_brpop_keys", {})
        parts = []
        for pri in self.priority_steps:
            keys = packed.setdefault(pri, {})
            try:
                parts.append(b"".join(map(keys.__getitem__, queues)))  # no Python per queue
            except KeyError:  # a queue not packed yet
                encode = connection.encoder.encode
                for queue in queues:
                    if queue not in keys:
                        keys[queue] = bulk(encode(self._q_for_pri(queue, pri)))
                parts.append(b"".join(map(keys.__getitem__, queues)))
        timeout_part = bulk(connection.encoder.encode(timeout or 0))
        self._in_poll = connection
        self._brpop_sent_at = time.monotonic()
        connection.send_packed_command([b"*%d\r\n$5\r\nBRPOP\r\n%s%s" % (
            len(queues) * len(self.priority_steps) + 2, b"".join(parts), timeout_part)])
        return None

    _brpop_start.relo_packed = True  # type: ignore[attr-defined]
    _brpop_start.relo_original = original  # type: ignore[attr-defined]
    channel_cls._brpop_start = _brpop_start
    return True


def cache_active_queues() -> bool:
    """Make kombu's Redis channels compute their list of consumed queues once per change.

    ``Channel.active_queues`` filters and de-duplicates every consumed queue each time it is
    read, and a worker's event loop reads it about eight times per message (at each turn,
    and for each ``BRPOP``): 15 µs per read with 100 environment queues, about 150 µs with
    1,000. At 1,000 environments the worker's main process spent 1.8 ms of CPU per release
    with kombu's property and 1.2 ms with this (BENCHMARKS.md, ninth round). Here the result is
    kept per channel with the queue lists it was computed from, and computed again when they
    differ (a queue consumed or cancelled, a fanout queue added). Idempotent; False when
    kombu no longer has the property (the behaviour is then kombu's own).
    """
    channel_cls = _kombu_redis_channel()
    original = vars(channel_cls).get("active_queues") if channel_cls is not None else None
    if not isinstance(original, property) or original.fget is None:
        return False
    if getattr(original.fget, "relo_cached", False):
        return True
    compute = original.fget

    def active_queues(self: Any) -> list[str]:
        key = (tuple(self._active_queues), tuple(self.active_fanout_queues))
        cached = self.__dict__.get("_relo_active_queues")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_relo_active_queues"] = (key, compute(self))
        return list(cached[1])  # a new list, as kombu's property returns

    active_queues.relo_cached = True  # type: ignore[attr-defined]
    active_queues.relo_original = compute  # type: ignore[attr-defined]
    channel_cls.active_queues = property(active_queues, doc=original.__doc__)
    return True


def tune_kombu_redis() -> None:
    """All of relo's kombu tuning for Redis channels, in this process: one client per
    channel (:func:`reuse_kombu_redis_clients`), ``BRPOP`` keys packed once
    (:func:`pack_brpop_once`), consumed queues listed once per change
    (:func:`cache_active_queues`). Idempotent."""
    reuse_kombu_redis_clients()
    pack_brpop_once()
    cache_active_queues()


class BatchTaskEvents(bootsteps.StartStopStep):
    """Consumer bootstep: the worker publishes its task events (received, started,
    succeeded, ...) at most every :attr:`interval` seconds, in one message, instead of once
    per turn of its event loop.

    Celery already buffers a worker's task events and publishes them as one ``task.multi``
    message, but it flushes at the next turn of the loop, and a worker running tasks of a
    few milliseconds turns once or twice per event: each event cost a ``PUBLISH`` round trip,
    about a third of the worker main process's CPU per release. Now a flush waits up to
    ``interval`` (or until the buffer holds ``buffer_limit`` events, 24), so Flower sees a
    task's events at most that much later. Buffered events are published when the consumer
    stops (shutdown, connection loss); an event that cannot be published stays in Celery's
    outbound buffer as before.
    """

    requires = ("celery.worker.consumer.events:Events",)
    #: Seconds; the app's ``relo_task_events_interval`` (``RELO_TASK_EVENTS_INTERVAL``) wins.
    interval = 0.05

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.armed = False

    def start(self, c: Any) -> None:
        dispatcher = c.event_dispatcher
        hub = c.hub
        interval = float(c.app.conf.get("relo_task_events_interval", self.interval))
        if dispatcher is None or hub is None or interval <= 0:
            return  # no event loop (eventlet, gevent), or switched off: Celery's behaviour

        def flush() -> None:
            self.armed = False
            c._flush_events()

        def arm() -> None:  # in the loop's thread
            if not self.armed:
                self.armed = True
                hub.call_later(interval, flush)

        arm_soon = promise(arm)  # one object: call_soon keeps it once per loop turn
        dispatcher.on_send_buffered = lambda: hub.call_soon(arm_soon)

    def stop(self, c: Any) -> None:
        self.armed = False
        if c.event_dispatcher is not None:
            try:
                c._flush_events()
            except Exception:  # monitoring only: never let it stop the worker's shutdown
                log.warning("could not publish buffered task events", exc_info=True)

    shutdown = stop


def make_app(settings: Settings, main: str = "relo") -> Celery:
    """A Celery app configured from ``celeryconfig`` and the ``RELO_*`` settings, with relo's
    kombu tuning (:func:`tune_kombu_redis`); its workers batch their task events
    (:class:`BatchTaskEvents`).

    On Redis, kombu's ack emulation is off unless ``RELO_BROKER_ACK_EMULATION`` is set. The
    emulation records each delivered message in the ``unacked`` hash (one ``MULTI``/``EXEC``
    round trip) and removes it at the ack (another): a worker that dies between the two has
    its message put back on the queue after the visibility timeout. With early acks that
    window is the moment between the worker's ``BRPOP`` and the pool taking the task, and
    relo's reconciler already re-sends a release dispatched but not claimed within
    ``RELO_REDISPATCH_AFTER`` (30 s, against the 12 h timeout), so the round trips bought
    nothing. Without it, a worker that stops (warm or cold) still puts the messages it took
    but did not start back on their queues (kombu's in-memory QoS); only a SIGKILL in that
    window leaves the release to the reconciler.
    """
    tune_kombu_redis()
    app = Celery(main, broker=settings.effective_broker_url, set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "ack_emulation": settings.broker_ack_emulation,
    }
    app.conf.relo_task_events_interval = settings.task_events_interval
    app.steps["consumer"].add(BatchTaskEvents)
    app.conf.beat_schedule = {
        "relo-tick": {
            "task": TICK,
            "schedule": settings.schedule_tick,
            "options": {"queue": CONTROL_QUEUE, "expires": max(settings.schedule_tick * 2, 5)},
        }
    }
    return app


class _DirectPublish:
    """A release task and its ``task-sent`` event, written to kombu's Redis channel in one
    round trip without the layers above it.

    Celery's ``send_task`` and kombu's ``Producer.publish`` spent more than half of a
    release's publish (routing, option merging, two producer publishes, the batch: about
    0.25 ms of CPU, as much as ``submit``'s whole transaction), and every release is
    published once, by ``submit`` or by the release before it
    (``python -m benchmarks.bench_kombu``). Here Celery still builds the message
    (``app.amqp.as_task_v2``: protocol-2 headers, body and ``task-sent`` fields) and kombu's
    channel still names the keys; what is written is exactly what kombu's Redis transport
    writes for the same publish (the contract tests compare the two), with one ``LPUSH`` and
    one ``PUBLISH`` in one round trip.

    Used only with what it writes the same way as kombu: JSON, no compression, no global key
    prefix, task events as fanout on Redis. Returns False, so that the caller publishes the
    standard way, while anything listens to Celery's publish signals (they are not sent here).
    """

    __slots__ = ("app", "channel", "event_exchange", "hostname", "pid", "pool", "topic")

    def __init__(self, app: Celery, channel: Any, topic: str | None) -> None:
        self.app = app
        self.channel = channel
        #: The channel's redis-py connection pool (the producer is this thread's).
        self.pool = channel.client.connection_pool
        #: The ``task-sent`` event's fanout channel (None: Celery sends no sent events).
        self.topic = topic
        self.event_exchange = app.conf.event_exchange
        self.hostname = anon_nodename()
        self.pid = os.getpid()

    @classmethod
    def of(cls, app: Celery, channel: Any) -> _DirectPublish | None:
        """For ``channel`` (a kept producer's), or None where it would write differently."""
        from kombu.transport import redis as kombu_redis

        conf = app.conf
        if not (
            isinstance(channel, kombu_redis.Channel)
            and not channel.global_keyprefix
            and channel.body_encoding == "base64"
            and int(conf.task_protocol) == 2
            and conf.task_serializer == "json"
            and not conf.task_compression
        ):
            return None
        topic = None
        if conf.task_send_sent_event:
            if conf.event_serializer != "json" or not channel.supports_fanout:
                return None
            topic = channel._get_publish_topic(conf.event_exchange, "task.sent")
        return cls(app, channel, topic)

    def publish(
        self, queue: str, args: tuple[Any, ...], kwargs: dict[str, Any], argsrepr: str,
        kwargsrepr: str,
    ) -> bool:
        """Publish; False (nothing sent) while something listens to Celery's publish signals."""
        if any(signal.receivers for signal in _PUBLISH_SIGNALS):
            return False
        app = self.app
        task_id = celery_uuid()
        root_id = parent_id = None
        parent = app.current_worker_task  # as send_task links a task published by a task
        if parent:
            root_id = parent.request.root_id or parent.request.id
            parent_id = parent.request.id
        headers, properties, body, sent = app.amqp.as_task_v2(
            task_id, EXECUTE_RELEASE, args, kwargs, reply_to=app.thread_oid,
            create_sent_event=self.topic is not None, root_id=root_id, parent_id=parent_id,
            origin=self.hostname, ignore_result=True, argsrepr=argsrepr, kwargsrepr=kwargsrepr,
        )
        properties["delivery_mode"] = 2  # persistent, as Celery's task queues publish
        task = self._message(body, headers, properties, "", queue)
        event = None
        if sent is not None and self.topic is not None:
            sent.update(queue=queue, exchange="", routing_key=queue)
            event = self._message(
                Event("task-sent", hostname=self.hostname, utcoffset=utcoffset(), pid=self.pid,
                      clock=app.clock.forward(), **sent),
                {"hostname": self.hostname}, {"delivery_mode": 1}, self.event_exchange,
                "task.sent",
            )
        self._write(self.channel._q_for_pri(queue, 0), task, event)
        return True

    def _write(self, key: str, task: str, event: str | None) -> None:
        """``LPUSH`` of the task and ``PUBLISH`` of its event in one round trip, packed here
        (:mod:`release_orchestrator.resp`: what a redis-py pipeline writes, for about a third
        less CPU) on a connection of the channel's pool. On any error the connection is
        closed, so that no reply is left unread for its next user, and the error raised."""
        packed = pack("LPUSH", key, task)
        if event is not None:
            packed += pack("PUBLISH", self.topic, event)
        pool = self.pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command(packed)
            conn.read_response()
            if event is not None:
                conn.read_response()
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    def _message(self, body: Any, headers: dict[str, Any], properties: dict[str, Any],
                 exchange: str, routing_key: str) -> str:
        """kombu's Redis envelope (``Channel.prepare_message`` and ``basic_publish``)."""
        channel = self.channel
        properties["delivery_info"] = {"exchange": exchange, "routing_key": routing_key}
        message = channel.prepare_message(json_dumps(body), 0, "application/json", "utf-8",
                                          headers, properties)
        message["body"], properties["body_encoding"] = channel.encode_body(
            message["body"], channel.body_encoding)
        properties["delivery_tag"] = str(uuid.uuid4())
        return json_dumps(message)


class _KeptProducer:
    """A thread's own broker connection and producer (see :meth:`CeleryTransport.send_release`)."""

    __slots__ = ("connection", "direct", "pid", "producer")

    def __init__(self, app: Celery) -> None:
        self.pid = os.getpid()
        self.connection = app.connection_for_write()
        try:
            self.producer = app.amqp.Producer(self.connection)
            self.direct = _DirectPublish.of(app, self.producer.channel)
        except BaseException:
            self.connection.release()
            raise

    def close(self) -> None:
        """Close the connection (never a forked parent's: its socket is the parent's too)."""
        if self.pid == os.getpid():
            try:
                self.connection.release()
            except Exception:  # already broken: nothing to give back
                log.debug("closing a kept broker connection failed", exc_info=True)

    def __del__(self) -> None:  # the thread ended or the transport was dropped
        # not contextlib.suppress: at interpreter shutdown module globals may be gone already
        try:  # noqa: SIM105
            self.close()
        except BaseException:  # what close() needs may be gone too
            pass


class CeleryTransport:
    """Publishes release tasks to ``release.<project>.<environment>`` queues."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._redis: Any = None
        self._local = threading.local()

    def send_release(
        self,
        project: str,
        environment: str,
        release_id: int,
        description: str,
        hint: dict[str, Any] | None = None,
    ) -> None:
        """Publish the release's task (and its ``task-sent`` event, for Flower).

        A release's publish is on the hot path: a finishing release publishes the next one
        from its worker process. Celery's ``send_task`` takes a producer from the app's pool for
        each message (a pool checkout, the producer's revival and copies of its entities: about
        half of a publish's CPU) and declares the queue before each message. So each thread
        keeps its own producer on its own broker connection (one connection per publishing
        thread, closed when the thread ends), and the queue is not declared: the task goes to
        the default exchange, which routes by queue name without bindings, the LPUSH creates
        the list, and workers declare the queues they consume. On Redis the task and its event
        are written by :class:`_DirectPublish`, without Celery's and kombu's publishing layers
        (they cost half of what was left).

        That publish is not retried by kombu (redis-py still reconnects a dropped connection
        once): on any error the kept producer is dropped and the message is sent the standard
        way, with Celery's retries. A message sent twice that way is harmless: a worker claims
        a release with a compare-and-set, so the second delivery is a no-op.
        """
        kwargs: dict[str, Any] = {"project": project, "environment": environment}
        if hint is not None:
            kwargs["hint"] = hint
        queue, args, argsrepr = queue_name(project, environment), (release_id,), f"({release_id},)"
        options: dict[str, Any] = {
            "args": args,
            "kwargs": kwargs,
            "queue": queue,
            "argsrepr": argsrepr,
            "kwargsrepr": description,
            "ignore_result": True,
        }
        try:
            kept = self._kept()
            if kept.direct is None or not kept.direct.publish(
                queue, args, kwargs, argsrepr, description
            ):
                with kept.producer.batch():  # the task and its event in one round trip
                    self.app.send_task(EXECUTE_RELEASE, producer=kept.producer, declare=[],
                                       retry=False, **options)
            return
        except Exception:
            log.warning("publishing release %s on the kept broker connection failed; "
                        "sending it again on a new one", release_id, exc_info=True)
            self.close()
        self.app.send_task(EXECUTE_RELEASE, **options)

    def _kept(self) -> _KeptProducer:
        """This thread's producer (a new one in a forked child, or after an error)."""
        kept: _KeptProducer | None = getattr(self._local, "kept", None)
        if kept is None or kept.pid != os.getpid():
            kept = self._local.kept = _KeptProducer(self.app)
        return kept

    def close(self) -> None:
        """Close this thread's kept broker connection (others close as their threads end)."""
        kept: _KeptProducer | None = getattr(self._local, "kept", None)
        self._local.kept = None
        if kept is not None:
            kept.close()

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
