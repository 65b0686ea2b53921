"""Redis commands packed in the Redis protocol (RESP) by relo itself.

The hot path sends a few commands per release (three lock scripts, a release's publish).
redis-py's ``execute_command`` and ``Pipeline`` cost about 20-30 µs of CPU per call on top
of the socket I/O (retry wrappers, observability hooks, a per-argument encoder, command
stacks), so those commands are packed here and written and read on a redis-py connection
directly; its socket, timeouts and health checks stay redis-py's. A worker's ``BRPOP``
(``celery_transport.pack_brpop_once``) is built from :func:`bulk` strings too.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import DataError


def pack(*args: Any) -> list[bytes]:
    """One command as redis-py packs it with its default encoding (``Encoder``: ``str`` as
    UTF-8, ``int`` and ``float`` by ``repr``, bytes as they are; ``bool`` and anything else
    refused with ``DataError``), as the list ``Connection.send_packed_command`` takes."""
    parts = []
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode("utf-8")
        elif isinstance(arg, (bytes, bytearray, memoryview)):
            arg = bytes(arg)
        elif isinstance(arg, (int, float)) and not isinstance(arg, bool):
            arg = repr(arg).encode("ascii")
        else:
            raise DataError(f"Invalid input of type: '{type(arg).__name__}'. "
                            "Convert to a bytes, string, int or float first.")
        parts.append(bulk(arg))
    return [b"*%d\r\n%s" % (len(parts), b"".join(parts))]


def bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)
