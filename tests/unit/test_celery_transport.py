"""relo's kombu tuning (release_orchestrator.celery_transport): Redis channels reuse one
client, pack their ``BRPOP`` keys once and list their consumed queues once per change; relo's
app runs without kombu's ack emulation."""

from __future__ import annotations

import time
from typing import Any

import pytest

from release_orchestrator.celery_transport import pack_brpop_once, reuse_kombu_redis_clients


def test_a_channel_reuses_its_client_and_messages_still_flow(own_redis_url: str) -> None:
    from kombu import Connection

    assert reuse_kombu_redis_clients()
    assert reuse_kombu_redis_clients()  # idempotent: not wrapped twice
    with Connection(own_redis_url) as conn:
        queue = conn.SimpleQueue("relo.test.reuse")
        try:
            channel = queue.channel
            first = channel._create_client()
            assert channel._create_client() is first
            # the poller's asynchronous client is kombu's own, built each time as before
            assert channel._create_client(asynchronous=True) is not first
            for n in range(3):
                queue.put({"n": n})
            got = []
            for _ in range(3):
                message = queue.get(timeout=5)
                got.append(message.payload["n"])
                message.ack()
            assert got == [0, 1, 2]
            # a new connection pool (after a reconnect) gets a new client
            channel._pool = None
            fresh = channel._create_client()
            assert fresh is not first
            assert fresh.connection_pool is channel.pool
        finally:
            queue.close()


def _hold_connection(channel: Any) -> None:
    """What kombu's poller does before a channel's first ``BRPOP``."""
    client = channel.client
    if getattr(client, "connection", None) is None:
        client.connection = client.connection_pool.get_connection()
    client.connection.connect()


def _sent_brpop(channel: Any, method: Any) -> bytes:
    """The bytes ``method`` (a ``_brpop_start``) sends on the channel's connection."""
    connection = channel.client.connection
    sent: list[bytes] = []

    def record_packed(command: Any, check_health: bool = True) -> None:
        sent.append(b"".join(command))

    def record(*args: Any, **_kw: Any) -> None:
        record_packed(connection._command_packer.pack(*args))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(connection, "send_packed_command", record_packed)
        mp.setattr(connection, "send_command", record)
        method(channel, 1)
    channel._in_poll = None
    [command] = sent
    return command


def test_brpop_is_packed_once_per_queue_and_sends_what_kombu_sends(own_redis_url: str) -> None:
    """The patched ``BRPOP`` is byte for byte kombu's, in the channel's round-robin order."""
    from kombu import Connection
    from kombu.transport import redis as kombu_redis

    assert pack_brpop_once()
    assert pack_brpop_once()  # idempotent
    patched = kombu_redis.Channel._brpop_start
    original = patched.relo_original
    queues = [f"release.shop.e{i:03d}" for i in range(120)]
    options = {"priority_steps": [0]}
    with Connection(own_redis_url, transport_options=options) as conn:
        channel = conn.default_channel
        _hold_connection(channel)
        for queue in queues:
            channel._active_queues.append(queue)
        channel._queue_cycle.update(queues)
        for rotate in (None, queues[0], queues[57], queues[-1]):
            if rotate:
                channel._queue_cycle.rotate(rotate)
            ours = _sent_brpop(channel, patched)
            assert ours == _sent_brpop(channel, original)
            order = channel._queue_cycle.consume(len(queues))
            assert ours.index(order[0].encode()) < ours.index(order[-1].encode())
        assert len(channel.__dict__["_relo_brpop_keys"][0]) == len(queues)  # packed once each
    # with several priority steps every (queue, step) key is listed, as kombu lists them
    with Connection(own_redis_url, transport_options={"priority_steps": [0, 3, 6]}) as conn:
        channel = conn.default_channel
        _hold_connection(channel)
        channel._active_queues.extend(queues[:3])
        channel._queue_cycle.update(queues[:3])
        assert _sent_brpop(channel, patched) == _sent_brpop(channel, original)


def test_a_worker_consumes_many_queues_with_the_packed_brpop(own_redis_url: str) -> None:
    """Messages on many queues all arrive through the patched ``BRPOP`` (a real round trip)."""
    from kombu import Connection, Consumer, Queue

    assert pack_brpop_once()
    names = [f"relo.test.brpop.{i}" for i in range(40)]
    got: list[int] = []
    with Connection(own_redis_url, transport_options={"priority_steps": [0]}) as conn:
        queues = [Queue(name, routing_key=name) for name in names]
        producer = conn.Producer()
        for i, name in enumerate(names):
            producer.publish({"n": i}, routing_key=name, declare=[queues[i]])

        def on_message(body: Any, message: Any) -> None:
            got.append(body["n"])
            message.ack()

        with Consumer(conn, queues, callbacks=[on_message]):
            deadline = time.monotonic() + 10
            while len(got) < len(names) and time.monotonic() < deadline:
                conn.drain_events(timeout=1)
    assert sorted(got) == list(range(len(names)))


@pytest.mark.parametrize("emulation", [False, True])
def test_relo_app_takes_messages_without_kombu_ack_emulation_unless_asked(
    own_redis_url: str, emulation: bool
) -> None:
    """relo's app leaves no ``unacked`` record of a taken message (the reconciler re-sends a
    lost release); ``RELO_BROKER_ACK_EMULATION`` brings kombu's emulation back."""
    import redis
    from kombu.transport import virtual

    from release_orchestrator.celery_transport import make_app
    from release_orchestrator.settings import Settings

    app = make_app(Settings(redis_url=own_redis_url, broker_ack_emulation=emulation))
    assert app.conf.broker_transport_options["priority_steps"] == [0]  # celeryconfig kept
    client = redis.Redis.from_url(own_redis_url)
    try:
        with app.connection_for_write() as conn:
            queue = conn.SimpleQueue("relo.test.acks")
            try:
                assert queue.channel.ack_emulation is emulation
                assert (type(queue.channel.qos) is virtual.QoS) is not emulation
                queue.put({"n": 1})
                message = queue.get(timeout=5)
                assert client.hlen("unacked") == (1 if emulation else 0)
                message.ack()
                assert client.hlen("unacked") == 0
            finally:
                queue.close()
    finally:
        client.close()
        app.close()


def test_active_queues_are_computed_once_per_change_and_stay_kombu_s(own_redis_url: str) -> None:
    """``cache_active_queues``: the same list kombu computes, after every kind of change,
    and not computed again while nothing changed."""
    from kombu import Connection
    from kombu.transport import redis as kombu_redis

    from release_orchestrator.celery_transport import cache_active_queues

    assert cache_active_queues()
    assert cache_active_queues()  # idempotent: not wrapped twice
    cached = kombu_redis.Channel.active_queues.fget
    assert cached.relo_cached
    compute = cached.relo_original  # kombu's own property
    with Connection(own_redis_url) as conn:
        channel = conn.default_channel
        assert channel.active_queues == compute(channel) == []
        for name in ("relo.t.a", "relo.t.b", "relo.t.c"):
            channel.queue_declare(queue=name)
            channel.basic_consume(name, no_ack=True, callback=lambda m: None,
                                  consumer_tag=name)
        assert channel.active_queues == compute(channel) == ["relo.t.a", "relo.t.b", "relo.t.c"]
        first = channel.__dict__["_relo_active_queues"]
        got = channel.active_queues
        got.append("mutated by a caller")  # a copy: the cache is not touched
        assert channel.__dict__["_relo_active_queues"] is first  # not computed again
        assert channel.active_queues == ["relo.t.a", "relo.t.b", "relo.t.c"]
        channel.basic_cancel("relo.t.b")
        assert channel.active_queues == compute(channel) == ["relo.t.a", "relo.t.c"]
        channel.active_fanout_queues.add("relo.t.c")  # as a fanout binding would
        assert channel.active_queues == compute(channel) == ["relo.t.a"]
        channel.active_fanout_queues.discard("relo.t.c")
        assert channel.active_queues == compute(channel) == ["relo.t.a", "relo.t.c"]
