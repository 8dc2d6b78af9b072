"""The trio TCP listener and its per-connection byte mover: no HTTP knowledge here.

The connection's sender (edgecorn/sender.py) writes synchronously (`write`), so
writes go to a buffer that a sender task empties with `send_all`; the buffered
size drives `on_pause_writing` / `on_resume_writing` like an asyncio transport's
water marks. A reader task feeds `on_data` and stops while reading is paused.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

import trio

from ..asgi.extensions import with_tls
from ..connection import StreamConnection
from ..manager import ConnectionManager
from ..proxyproto import read_trio_stream
from ..redirect import PEEK_SIZE, PLAIN_HTTP_ANSWER, PLAIN_HTTP_LINGER, is_plain_http
from ..tcp import (
    ACCEPT_BACK_OFF,
    FLUSH_POLL,
    LINGER_TIMEOUT,
    Accept,
    AcceptErrors,
    Flush,
    FlushWait,
    addresses,
    unacked_bytes,
)
from .runtime import Runtime

log = logging.getLogger("edgecorn.error")

HIGH_WATER = 64 * 1024  # asyncio's default transport limits
LOW_WATER = 16 * 1024
READ_SIZE = 64 * 1024
CLOSE_TIMEOUT = 1.0  # for TLS close_notify on a peer that stopped reading


class TCPConnection(StreamConnection):
    def __init__(
        self, manager: ConnectionManager, runtime: Runtime, stream: trio.abc.Stream, secure: bool
    ) -> None:
        super().__init__(manager, secure, runtime)
        self.stream = stream
        self.secure = secure
        self.pending: list[bytes] = []
        self.buffered = 0  # queued plus in flight, for the water marks
        self.send_wakeup = trio.Event()
        self.read_gate: trio.Event | None = None  # set while reading is paused
        self.transport_closing = False
        self.aborted = False
        self.graceful = False  # end_transport: flush, wait for acks, half-close, linger
        self.io_scope = trio.CancelScope()
        self.linger_scope = trio.CancelScope()

    async def run(self, handshake_timeout: float) -> None:
        stream = self.stream
        try:
            alpn = None
            if self.config.proxy_protocol:  # the header comes first, before TLS too
                header = await read_trio_stream(stream, self.config)
                if header is None:
                    self.aborted = True
                    return
                self.client = header.source
            if isinstance(stream, trio.SSLStream):
                with trio.move_on_after(handshake_timeout):
                    if await _refused_plain_http(stream.transport_stream):
                        self.aborted = True
                        return
                    await stream.do_handshake()
                    alpn = stream.selected_alpn_protocol() or "http/1.1"
                    self.extensions = with_tls(self.extensions, stream, self.config)
                if alpn is None:
                    self.aborted = True
                    return  # handshake timed out
            self._addresses()
            self.use_protocol(alpn)
            with self.io_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._sender)
                    await self._reader()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            log.debug("connection from %s failed: %r", self.client, exc)
            self.aborted = True
        except Exception:
            log.exception("error in connection from %s", self.client)
            self.aborted = True
        finally:
            self.closed = True
            if self.graceful and not self.aborted:
                await self._close_stream()  # the drain waits for the linger too
                self.on_lost()
            else:
                self.on_lost()
                await self._close_stream()
            _release_stream(stream)

    async def _close_stream(self) -> None:
        if self.aborted:
            await trio.aclose_forcefully(self.stream)
            return
        if self.graceful:
            with self.linger_scope:
                await self._linger()
            await trio.aclose_forcefully(self.stream)
            return
        with trio.move_on_after(CLOSE_TIMEOUT) as scope:
            try:
                await self.stream.aclose()  # TLS: close_notify, then the socket
            except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
                pass
        if scope.cancelled_caught:
            await trio.aclose_forcefully(self.stream)

    async def _linger(self) -> None:
        """Close so the peer sees an end, not a reset: wait until it has acknowledged
        every byte, send close_notify (TLS) and FIN, then read and discard until it
        closes too. Closing with unread input would make the kernel send RST."""
        stream = self.stream
        raw = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        sock = getattr(raw, "socket", None)
        if sock is not None:
            wait = FlushWait(trio.current_time())
            while wait.decide(unacked_bytes(sock), trio.current_time()) is Flush.WAIT:
                await trio.sleep(FLUSH_POLL)
        with trio.move_on_after(LINGER_TIMEOUT):
            if isinstance(stream, trio.SSLStream):
                try:
                    # Sends close_notify, then waits for the peer's. Application data
                    # instead (a request racing the close) breaks it: fine, we go on.
                    await stream.unwrap()
                except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
                    pass
            if not isinstance(raw, trio.SocketStream):
                return
            try:
                await raw.send_eof()
                while await raw.receive_some(READ_SIZE):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    def _addresses(self) -> None:
        stream = self.stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        sock = getattr(stream, "socket", None)
        if sock is None:
            return
        try:
            client, server = addresses(sock.getpeername(), sock.getsockname())
        except OSError:
            return
        if self.client is None:  # None: no PROXY header named one
            self.client = client
        if server is not None:
            self.server = server

    async def _reader(self) -> None:
        stream = self.stream
        try:
            while True:
                gate = self.read_gate
                if gate is not None:
                    await gate.wait()
                    continue
                try:
                    data = await stream.receive_some(READ_SIZE)
                except trio.BrokenResourceError as exc:
                    if not _ragged_eof(exc.__cause__):
                        raise
                    data = b""  # TLS without close_notify: most HTTP clients end so
                if not data:
                    break
                # trio's stubs say bytes | bytearray; the adapters want bytes.
                self.on_data(data if isinstance(data, bytes) else bytes(data))
            # Like an asyncio protocol whose eof_received returns False: answer what
            # is complete, then close (after the sender has flushed).
            self.on_eof()
            self.end()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            log.debug("connection from %s lost: %r", self.client, exc)
            self.aborted = True
            self.io_scope.cancel()
        except Exception:
            log.exception("error handling data from %s", self.client)
            self.aborted = True
            self.io_scope.cancel()

    async def _sender(self) -> None:
        stream = self.stream
        try:
            while True:
                pending = self.pending
                if pending:
                    data = pending[0] if len(pending) == 1 else b"".join(pending)
                    self.pending = []
                    await stream.send_all(data)
                    self.buffered -= len(data)
                    if self.write_paused and self.buffered <= LOW_WATER:
                        self.on_resume_writing()
                elif self.transport_closing:
                    break
                else:
                    self.send_wakeup = trio.Event()
                    await self.send_wakeup.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError) as exc:
            log.debug("connection to %s lost: %r", self.client, exc)
            self.aborted = True
        except Exception:
            log.exception("error sending to %s", self.client)
            self.aborted = True
        self.io_scope.cancel()  # flushed (or broken): stop reading; run() closes

    # --- backend primitives ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport_closing or not data:
            return
        self.pending.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.write_paused:
            self.on_pause_writing()
        self.send_wakeup.set()

    def close_transport(self) -> None:
        if self.transport_closing:
            if self.graceful:  # a graceful close cut short
                self.aborted = True
                self.io_scope.cancel()
                self.linger_scope.cancel()
            return
        self.transport_closing = True
        if self.write_paused:
            self.aborted = True  # a peer that stopped reading gets no more time
            self.io_scope.cancel()
        else:
            self.send_wakeup.set()

    def end_transport(self) -> None:
        if self.transport_closing:
            return
        self.transport_closing = True
        self.graceful = True
        self.send_wakeup.set()  # the sender flushes, then run() lingers

    def pause_reading(self) -> None:
        if self.read_gate is None:
            self.read_gate = trio.Event()

    def resume_reading(self) -> None:
        gate = self.read_gate
        if gate is not None:
            self.read_gate = None
            gate.set()


def _release_stream(stream: trio.abc.Stream) -> None:
    """A closed stream: trio's SSLStream keeps its handshake as a bound method of itself
    (`_Once(self._do_handshake)`), a cycle holding the TLS objects and buffers until a
    full gc. Nothing uses a closed stream's handshake."""
    state = getattr(stream, "__dict__", None)
    if state is not None and "_handshook" in state:
        state["_handshook"] = None


async def _refused_plain_http(raw: trio.abc.Stream) -> bool:
    """A cleartext HTTP request on this TLS port: answer 400 and read what follows for a
    moment (closing with unread input would reset the answer away). See redirect.py."""
    sock = getattr(raw, "socket", None)
    if sock is None:
        return False
    if not is_plain_http(await sock.recv(PEEK_SIZE, socket.MSG_PEEK)):
        return False
    with trio.move_on_after(PLAIN_HTTP_LINGER):
        await sock.send(PLAIN_HTTP_ANSWER)
        sock.shutdown(socket.SHUT_WR)
        while await sock.recv(READ_SIZE):
            pass
    return True


def _ragged_eof(exc: BaseException | None) -> bool:
    return isinstance(exc, ssl.SSLEOFError) or "UNEXPECTED_EOF" in str(exc)


async def serve_tcp(
    sock: socket.socket,
    manager: ConnectionManager,
    runtime: Runtime,
    ssl_context: ssl.SSLContext | None,
    nursery: trio.Nursery,
    app: Any = None,
) -> None:
    """Accept on `sock` until cancelled; each connection runs in `nursery`. Closes `sock`.
    `app`: this listener's own app instead of the manager's (redirect_https)."""
    # The socket's own accept(), not trio.SocketListener's: that one has its own idea of
    # which errors to ignore; edgecorn.tcp decides for both backends.
    listening = trio.socket.from_stdlib_socket(sock)
    errors = AcceptErrors()
    timeout = manager.config.ssl_handshake_timeout
    try:
        while True:
            if not manager.has_room():
                # max_connections: new connections wait in the kernel's backlog (or go to
                # another worker) until one of ours has gone.
                room = trio.Event()
                manager.when_room(room.set)
                await room.wait()
            try:
                accepted, _ = await listening.accept()
            except OSError as exc:
                action, line = errors.decide(exc, trio.current_time())
                if line is not None:
                    log.error(line)
                if action is Accept.RAISE:
                    raise
                if action is Accept.BACK_OFF:
                    await trio.sleep(ACCEPT_BACK_OFF)
                continue  # RETRY; WAIT cannot happen here: trio's accept() waits itself
            stream: trio.abc.Stream = trio.SocketStream(accepted)
            if ssl_context is not None:
                # Not https_compatible: aclose() then sends close_notify, which strict
                # clients want before EOF on a response delimited by the close.
                stream = trio.SSLStream(stream, ssl_context, server_side=True)
            conn = TCPConnection(manager, runtime, stream, ssl_context is not None)
            manager.pending.add(conn)  # until run() ends: on_lost discards it
            if app is not None:
                conn.app = app
            nursery.start_soon(conn.run, timeout)
            del conn, stream, accepted  # or this frame keeps the last one alive until the next
    finally:
        listening.close()
