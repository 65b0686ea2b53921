"""Redis commands packed in the Redis protocol (RESP) by relo itself.

The hot path sends a few commands per release (three lock scripts, a release's publish).
redis-py's ``execute_command`` and ``Pipeline`` cost about 20-30 µs of CPU per call on top
of the socket I/O (retry wrappers, observability hooks, a per-argument encoder, command
stacks), so those commands are packed here and written and read on a redis-py connection
directly; its socket, timeouts and health checks stay redis-py's.
"""

from __future__ import annotations

from typing import Any


def pack(*args: Any) -> list[bytes]:
    """One command as redis-py packs it for ``str`` (UTF-8), ``bytes`` and ``int``
    arguments, as the list ``Connection.send_packed_command`` takes."""
    parts = []
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode("utf-8")
        elif not isinstance(arg, bytes):
            arg = str(int(arg)).encode("ascii")
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return [b"*%d\r\n%s" % (len(parts), b"".join(parts))]
