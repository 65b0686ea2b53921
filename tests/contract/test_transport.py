"""The Celery transport on the real Redis: what a release's publish puts there (the task for a
worker, the ``task-sent`` event for Flower), and the kept per-thread producer it publishes
with (one per thread and process, replaced after an error without losing the message)."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from release_orchestrator.celery_transport import EXECUTE_RELEASE, CeleryTransport, make_app
from release_orchestrator.settings import Settings
from tests.conftest import redis_available

pytestmark = pytest.mark.skipif(not redis_available(), reason="needs Redis on 127.0.0.1:6379")

QUEUE = "release.shop.prod"
HINT = {"env_id": 3, "project": "shop", "environment": "prod", "whole": False,
        "resources": ["service/app"]}


@pytest.fixture
def transport(own_redis_url: str, tmp_path: Any) -> Iterator[CeleryTransport]:
    settings = Settings(redis_url=own_redis_url, database_url=f"sqlite:///{tmp_path / 'x.db'}")
    t = CeleryTransport(make_app(settings), settings)
    yield t
    t.close()


@pytest.fixture
def r(own_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_redis_url)
    yield client
    client.close()


def messages(r: redis.Redis) -> list[dict[str, Any]]:
    """The queue's messages, oldest first, with their decoded body."""
    out = []
    for raw in reversed(r.lrange(QUEUE, 0, -1)):
        envelope = json.loads(raw)
        envelope["decoded"] = json.loads(base64.b64decode(envelope["body"]))
        out.append(envelope)
    return out


def test_a_release_is_published_as_a_celery_task_with_its_sent_event(transport, r) -> None:
    events = r.pubsub()
    events.psubscribe("*celeryev*")
    events.get_message(timeout=1)  # the subscription's confirmation
    transport.send_release("shop", "prod", 41, "release=41 env=shop/prod type=selective",
                           hint=HINT)
    [message] = messages(r)
    headers = message["headers"]
    assert headers["task"] == EXECUTE_RELEASE
    assert headers["argsrepr"] == "(41,)"
    assert headers["kwargsrepr"] == "release=41 env=shop/prod type=selective"
    args, kwargs, _embed = message["decoded"]
    assert args == [41]
    assert kwargs == {"project": "shop", "environment": "prod", "hint": HINT}
    envelope = sent_events(events, [headers["id"]]).get(headers["id"])
    events.close()
    assert envelope is not None, "no task-sent event (Flower would not see the release sent)"
    sent = json.loads(base64.b64decode(envelope["body"]))
    assert sent["name"] == EXECUTE_RELEASE
    assert sent["queue"] == QUEUE


def normalized(envelope: dict[str, Any]) -> dict[str, Any]:
    """A message as written to Redis, without what differs between two publishes of the same
    release (ids, delivery tags) and the properties only Celery's option merging adds."""
    out = json.loads(json.dumps(envelope))
    out["decoded"] = json.loads(base64.b64decode(out.pop("body")))
    headers, props = out["headers"], out["properties"]
    for key in ("id", "root_id", "origin"):
        headers.pop(key, None)
    for key in ("correlation_id", "delivery_tag", "reply_to", "argsrepr", "kwargsrepr"):
        props.pop(key, None)
    if isinstance(out["decoded"], dict):  # an event
        for key in ("uuid", "root_id", "hostname", "pid", "clock", "timestamp"):
            out["decoded"].pop(key, None)
        headers.pop("hostname", None)
    return out


def sent_events(pubsub: Any, task_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The ``task-sent`` event envelope of each of ``task_ids``, by task id. Pub/sub channels
    are server-wide (not per database): other tests' events arrive too, and are skipped."""
    out: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 5
    while len(out) < len(task_ids) and time.monotonic() < deadline:
        got = pubsub.get_message(timeout=0.5)
        if got and got["type"] == "pmessage":
            envelope = json.loads(got["data"])
            event = json.loads(base64.b64decode(envelope["body"]))
            if event.get("type") == "task-sent" and event.get("uuid") in task_ids:
                out[event["uuid"]] = envelope
    return out


def test_the_direct_publish_writes_what_celery_and_kombu_write(transport, r) -> None:
    """The task and its ``task-sent`` event as ``send_task`` through kombu's producer writes
    them: field for field, apart from ids, tags and timestamps."""
    events = r.pubsub()
    events.psubscribe("*celeryev*")
    events.get_message(timeout=1)
    transport.send_release("shop", "prod", 41, "release=41", hint=HINT)
    assert transport._kept().direct is not None, "the direct publish was not used"
    kept = transport._kept()
    with kept.producer.batch():
        transport.app.send_task(EXECUTE_RELEASE, producer=kept.producer, declare=[],
                                retry=False, args=(41,),
                                kwargs={"project": "shop", "environment": "prod", "hint": HINT},
                                queue=QUEUE, argsrepr="(41,)", kwargsrepr="release=41",
                                ignore_result=True)
    direct, standard = (json.loads(raw) for raw in reversed(r.lrange(QUEUE, 0, -1)))
    assert normalized(direct) == normalized(standard)
    assert direct["headers"]["root_id"] == direct["headers"]["id"]
    assert direct["properties"]["correlation_id"] == direct["headers"]["id"]
    ids = [direct["headers"]["id"], standard["headers"]["id"]]
    sent = sent_events(events, ids)
    events.close()
    assert set(sent) == set(ids), "a task-sent event is missing"
    assert normalized(sent[ids[0]]) == normalized(sent[ids[1]])


def test_a_listener_on_celerys_publish_signals_gets_every_release(transport, r) -> None:
    from celery import signals

    seen: list[Any] = []

    def listener(sender: Any = None, headers: Any = None, **_kw: Any) -> None:
        seen.append(headers["argsrepr"])

    signals.before_task_publish.connect(listener, weak=False)
    try:
        transport.send_release("shop", "prod", 7, "watched")
    finally:
        signals.before_task_publish.disconnect(listener)
    assert seen == ["(7,)"]
    transport.send_release("shop", "prod", 8, "direct again")
    assert [m["decoded"][0] for m in messages(r)] == [[7], [8]]


@pytest.mark.parametrize("path", ["direct", "producer"])
def test_a_failed_publish_is_sent_again_on_a_new_connection(transport, r, monkeypatch,
                                                            path) -> None:
    transport.send_release("shop", "prod", 1, "first")
    broken = transport._kept()

    def refuse(*_a: Any, **_k: Any) -> None:
        raise redis.ConnectionError("connection reset by peer")

    if path == "direct":  # the connection fails before the commands are written
        monkeypatch.setattr(broken.direct.pool, "get_connection", refuse)
    else:
        monkeypatch.setattr(broken, "direct", None)
        monkeypatch.setattr(broken.producer, "publish", refuse)
    transport.send_release("shop", "prod", 2, "second")  # no error: sent the standard way
    assert [m["decoded"][0] for m in messages(r)] == [[1], [2]]  # once each
    kept = transport._kept()
    assert kept is not broken  # the broken producer was dropped...
    transport.send_release("shop", "prod", 3, "third")  # ...and the next one publishes
    assert [m["decoded"][0] for m in messages(r)] == [[1], [2], [3]]


def test_a_direct_publish_that_fails_midway_leaves_no_reply_unread(transport, r) -> None:
    """The task's ``LPUSH`` fails (the key is not a list) while the event's ``PUBLISH`` reply
    is still on its way: the connection is closed, so its next user does not read that
    reply as its own."""
    transport.send_release("shop", "prod", 1, "first")
    direct = transport._kept().direct
    assert direct is not None
    r.set("not-a-list", "x")
    conn = direct.pool.get_connection()  # the connection the next write takes (LIFO pool)
    direct.pool.release(conn)
    with pytest.raises(redis.ResponseError):
        direct._write("not-a-list", "task", "event")
    assert conn._sock is None, "the connection with the unread reply was not closed"
    direct._write(QUEUE, "task", "event")
    assert r.lindex(QUEUE, 0) == b"task"
    assert direct.channel.client.ping() is True  # the same pool: no stale reply in it
    r.delete("not-a-list")


def test_each_thread_publishes_with_its_own_producer(transport, r) -> None:
    kept: list[Any] = []

    def publish(release_id: int) -> None:
        transport.send_release("shop", "prod", release_id, "threaded")
        kept.append(transport._kept())

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(k.connection) for k in kept}) == 4
    assert sorted(m["decoded"][0][0] for m in messages(r)) == [0, 1, 2, 3]


def test_a_forked_child_never_publishes_on_its_parents_connection(transport, r) -> None:
    transport.send_release("shop", "prod", 1, "parent")
    parent = transport._kept()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: publish, report whether the producer was its own, exit
        code = 1
        try:
            transport.send_release("shop", "prod", 2, "child")
            mine = transport._kept()
            code = 0 if mine is not parent and mine.pid == os.getpid() else 3
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == bytes([0])
    os.close(read)
    os.waitpid(pid, 0)
    # the child's exit closed nothing of ours: the parent's connection still publishes
    transport.send_release("shop", "prod", 3, "parent again")
    assert transport._kept() is parent
    assert [m["decoded"][0] for m in messages(r)] == [[1], [2], [3]]
