"""kombu's Redis channels reuse one client (release_orchestrator.celery_transport)."""

from __future__ import annotations

from release_orchestrator.celery_transport import reuse_kombu_redis_clients


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
