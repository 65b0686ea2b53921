"""Bounded capture of a subprocess's stdout and stderr on one reader thread."""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
from collections.abc import Callable
from typing import IO

from release_orchestrator.executors.base import safe_emit

__all__ = ["OutputCapture"]

_CHUNK = 65536
#: A line longer than this is passed on in pieces.
_MAX_PENDING = 65536
_POLL = 0.1


class OutputCapture:
    """Reads both pipes in arrival order into a bounded tail, line by line.

    ``on_output`` gets each line (with its newline; a trailing piece without one at the end).
    When ``stdout_limit`` is given, stdout is also kept separately up to that many bytes.
    The reader thread owns the pipes and closes them when it ends.
    """

    def __init__(
        self,
        stdout: IO[bytes],
        stderr: IO[bytes],
        *,
        limit: int,
        stdout_limit: int | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> None:
        self._streams = (stdout, stderr)
        self._stdout_fd = stdout.fileno()
        self._limit = max(int(limit), 0)
        self._stdout_limit = stdout_limit
        self._stdout = bytearray()
        self._stdout_overflow = False
        self._on_output = on_output
        self._tail = bytearray()
        self._truncated = False
        self._pending: dict[int, bytearray] = {s.fileno(): bytearray() for s in self._streams}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="relo-step-output", daemon=True)

    def start(self) -> None:
        """Start the reader thread."""
        self._thread.start()

    def finish(self, drain: float) -> None:
        """Wait up to ``drain`` seconds for end-of-file, then stop reading."""
        self._thread.join(drain)
        self._stop.set()
        self._thread.join(1.0)

    def output(self) -> str:
        """The last ``limit`` bytes of interleaved output, decoded as UTF-8."""
        with self._lock:
            data = bytes(self._tail[-self._limit :]) if self._limit else b""
            cut = self._truncated or len(self._tail) > self._limit
        if cut:  # do not start in the middle of a multi-byte character
            start = 0
            while start < min(3, len(data)) and 0x80 <= data[start] <= 0xBF:
                start += 1
            data = data[start:]
        return data.decode("utf-8", errors="replace")

    def stdout(self) -> tuple[bytes, bool]:
        """The separately kept stdout and whether it exceeded ``stdout_limit``."""
        with self._lock:
            return bytes(self._stdout), self._stdout_overflow

    # -- reader thread -----------------------------------------------------------------------

    def _read(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            for stream in self._streams:
                selector.register(stream, selectors.EVENT_READ)
            while selector.get_map() and not self._stop.is_set():
                for key, _ in selector.select(timeout=_POLL):
                    try:
                        data = os.read(key.fd, _CHUNK)
                    except OSError:
                        data = b""
                    if data:
                        self._feed(key.fd, data)
                    else:
                        selector.unregister(key.fileobj)
                        self._flush(key.fd)
        finally:
            for fd in self._pending:
                self._flush(fd)
            selector.close()
            for stream in self._streams:
                with contextlib.suppress(OSError):
                    stream.close()

    def _feed(self, fd: int, data: bytes) -> None:
        if fd == self._stdout_fd and self._stdout_limit is not None:
            with self._lock:
                if len(self._stdout) + len(data) > self._stdout_limit:
                    self._stdout_overflow = True
                else:
                    self._stdout.extend(data)
        pending = self._pending[fd]
        pending.extend(data)
        end = pending.rfind(b"\n") + 1
        if end == 0 and len(pending) < _MAX_PENDING:
            return
        if end == 0:
            end = len(pending)
        block = bytes(pending[:end])
        del pending[:end]
        self._emit(block)

    def _flush(self, fd: int) -> None:
        pending = self._pending[fd]
        if pending:
            block = bytes(pending)
            pending.clear()
            self._emit(block)

    def _emit(self, block: bytes) -> None:
        with self._lock:
            self._tail.extend(block)
            if len(self._tail) > 2 * self._limit + _CHUNK:
                del self._tail[: len(self._tail) - self._limit]
                self._truncated = True
        if self._on_output is not None:
            for line in block.splitlines(keepends=True):
                safe_emit(self._on_output, line.decode("utf-8", errors="replace"))
