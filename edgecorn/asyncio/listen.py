"""Accepting TCP connections on asyncio (and uvloop) without `loop.create_server`.

asyncio's Server drops a connection accepted in the loop turn in which the
server is closed (its task asserts the server is still open), so a worker that
retires or restarts would cut a client off now and then. Here closing the
listener stops reading and closes this process's descriptor of the socket:
whatever was accepted is served; while the supervisor or other workers hold
the same socket, what is still queued in the kernel goes to them, and when
this was the last holder (`--workers 0`, a full stop) new connects are refused
at once instead of waiting in a backlog nobody reads (as on trio).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from ..proxyproto import ProxyHeaderError, read_asyncio, trusted_peer
from ..redirect import PEEK_SIZE, PLAIN_HTTP_LINGER, answer_plain_http, is_plain_http
from ..tcp import ACCEPT_BACK_OFF, Accept, AcceptErrors

log = logging.getLogger("edgecorn.error")


class Listener:
    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
        backlog: int,
        tasks: set[Any],
        manager: Any = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.sock = sock
        self.factory = factory
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self.backlog = backlog
        self.tasks = tasks
        self.manager = manager  # its max_connections stops and resumes accepting
        self.closed = False
        self.errors = AcceptErrors()
        # Set with the error when accept() fails for good (the socket itself is broken):
        # serve() waits on it and ends, so the worker exits and is replaced (as on trio).
        self.failed: asyncio.Future[None] = self.loop.create_future()
        self.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        manager = self.manager
        for _ in range(self.backlog):
            if manager is not None and not manager.has_room():
                # max_connections: new connections wait in the kernel's backlog (or go to
                # another worker) until one of ours has gone.
                self.loop.remove_reader(self.sock.fileno())
                manager.when_room(self._resume)
                return
            try:
                conn, _ = self.sock.accept()
            except OSError as exc:
                action, line = self.errors.decide(exc, self.loop.time())
                if line is not None:
                    log.error(line)
                if action is Accept.RETRY:
                    continue
                if action is Accept.WAIT:
                    return
                self.loop.remove_reader(self.sock.fileno())  # never spin on a failing accept
                if action is Accept.BACK_OFF:
                    self.loop.call_later(ACCEPT_BACK_OFF, self._resume)
                    return
                self.close()  # as trio's accept loop ends
                if not self.failed.done():
                    self.failed.set_exception(exc)
                return
            conn.setblocking(False)
            task = self.loop.create_task(self._connect(conn))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        factory = self.factory
        protocol: Any = None
        try:
            protocol = factory()
            if self.manager is not None:
                self.manager.pending.add(protocol)  # counted from accept, not from the handshake
            config = getattr(protocol, "config", None)  # a Connection's
            if config is not None and config.proxy_protocol:
                await _read_proxy_header(conn, protocol, config)
            factory = lambda: protocol  # noqa: E731
            if self.ssl_context is None:
                await self.loop.connect_accepted_socket(factory, conn)
            elif await self._refused_plain_http(conn):
                conn.close()
            else:
                await self.loop.connect_accepted_socket(
                    factory,
                    conn,
                    ssl=self.ssl_context,
                    ssl_handshake_timeout=self.handshake_timeout,
                )
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ProxyHeaderError) as exc:
            log.debug("connection failed before it started: %s", exc)  # e.g. a bad handshake
            conn.close()
        finally:
            manager = self.manager
            if manager is not None and protocol not in manager.connections:
                manager.discard(protocol)  # it never started (or is already gone)

    async def _refused_plain_http(self, conn: socket.socket) -> bool:
        """A cleartext HTTP request on this TLS port: answer 400 and read what follows for
        a moment (closing with unread input would reset the answer away). See redirect.py."""
        first = await asyncio.wait_for(self._peek(conn), self.handshake_timeout)
        if not is_plain_http(first):
            return False
        if answer_plain_http(conn):
            try:
                await asyncio.wait_for(self._discard(conn), PLAIN_HTTP_LINGER)
            except (OSError, asyncio.TimeoutError):
                pass
        return True

    async def _peek(self, conn: socket.socket) -> bytes:
        while True:
            try:
                return conn.recv(PEEK_SIZE, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                pass
            readable = self.loop.create_future()
            self.loop.add_reader(conn.fileno(), _wake, readable)
            try:
                await readable
            finally:
                self.loop.remove_reader(conn.fileno())

    async def _discard(self, conn: socket.socket) -> None:
        while await self.loop.sock_recv(conn, 65536):
            pass

    def _resume(self) -> None:
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting and close our descriptor (the socket lives on in any other
        process that holds it: the supervisor, the other workers)."""
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()  # also after a failed accept() closed the listener (idempotent)


async def _read_proxy_header(conn: socket.socket, protocol: Any, config: Any) -> None:
    """proxy_protocol: the header comes before anything else (TLS included); the protocol
    takes its source as the client. Raises ProxyHeaderError to refuse the connection."""
    if not trusted_peer(conn, config.trusted_proxies):
        raise ProxyHeaderError("PROXY protocol from a peer not in trusted_proxies")
    header = await read_asyncio(conn, config.header_timeout)
    if header.source is not None:
        protocol.client = header.source


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
