"""Accepting TCP connections on asyncio (and uvloop) without `loop.create_server`.

asyncio's Server drops a connection accepted in the loop turn in which the
server is closed (its task asserts the server is still open), so a worker that
retires or restarts would cut a client off now and then. Here the listener
only stops reading the socket: whatever was accepted is served, whatever is
still queued in the kernel goes to another worker.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

log = logging.getLogger("edgecorn.error")

# Out of file descriptors: stop accepting for a moment instead of spinning.
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Listener:
    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
        backlog: int,
        tasks: set[Any],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.sock = sock
        self.factory = factory
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self.backlog = backlog
        self.tasks = tasks
        self.closed = False
        self.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(self.backlog):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRORS:
                    log.error("cannot accept connections (%s): pausing for a second", exc)
                    self.loop.remove_reader(self.sock.fileno())
                    self.loop.call_later(1.0, self._resume)
                    return
                raise
            conn.setblocking(False)
            task = self.loop.create_task(self._connect(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            if self.ssl_context is None:
                await self.loop.connect_accepted_socket(self.factory, conn)
            else:
                await self.loop.connect_accepted_socket(
                    self.factory,
                    conn,
                    ssl=self.ssl_context,
                    ssl_handshake_timeout=self.handshake_timeout,
                )
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
            log.debug("connection failed before it started: %s", exc)  # e.g. a bad handshake
            conn.close()

    def _resume(self) -> None:
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting; the socket itself belongs to whoever made it."""
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
