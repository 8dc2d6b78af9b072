"""The asyncio TCP listener's per-connection protocol: moves bytes, nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

from ..asgi.extensions import with_tls
from ..connection import StreamConnection
from ..manager import ConnectionManager
from ..tcp import FLUSH_POLL, LINGER_TIMEOUT, Flush, FlushWait, addresses, unacked_bytes
from .runtime import AsyncioRuntime


class TCPProtocol(StreamConnection, asyncio.Protocol):
    transport: asyncio.Transport

    def __init__(self, manager: ConnectionManager, secure: bool, runtime: AsyncioRuntime) -> None:
        super().__init__(manager, secure, runtime)
        self.loop = runtime.loop
        self.secure = secure
        self.lost = False
        self.flush_wait: FlushWait | None = None  # a graceful close waiting for acks
        self.end_timer: asyncio.TimerHandle | None = None
        self.socket_transport: Any = None  # TLS: the transport under the SSL layer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
        self.socket_transport = inner or transport
        client, server = addresses(
            transport.get_extra_info("peername"), transport.get_extra_info("sockname")
        )
        if self.client is None:  # None: no PROXY header named one
            self.client = client
        if server is not None:
            self.server = server
        alpn = None
        if self.secure:
            ssl_object = transport.get_extra_info("ssl_object")
            alpn = (ssl_object.selected_alpn_protocol() if ssl_object else None) or "http/1.1"
            self.extensions = with_tls(self.extensions, ssl_object, self.config)
        self.use_protocol(alpn)

    # asyncio.Protocol callbacks are Connection's own handlers: no extra call per read.
    data_received = StreamConnection.on_data
    pause_writing = StreamConnection.on_pause_writing
    resume_writing = StreamConnection.on_resume_writing

    def eof_received(self) -> bool:
        self.on_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.end_timer is not None:
            self.end_timer.cancel()
        self.on_lost()
        # asyncio's selector transport keeps its read callback as a bound method of
        # itself (set_protocol): a cycle, with the socket in it, until a full gc. Nothing
        # reads from a lost transport. (uvloop's transports have no such attribute.)
        state = getattr(self.socket_transport, "__dict__", None)
        if state is not None and "_read_ready_cb" in state:
            state["_read_ready_cb"] = None

    # backend primitives
    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def close_transport(self) -> None:
        transport = self.transport
        if self.lost:
            return
        if self.end_timer is not None:  # a graceful close cut short
            self.end_timer.cancel()
            transport.abort()
        elif transport.is_closing():
            return
        elif self.write_paused:
            transport.abort()  # a peer that stopped reading gets no more time
        else:
            transport.close()

    def end_transport(self) -> None:
        self.flush_wait = FlushWait(self.loop.time())
        self._end_when_flushed()

    def _unflushed(self) -> int:
        transport = self.transport
        size = transport.get_write_buffer_size()
        # TLS: the socket transport under the SSL layer has its own buffer (no public
        # way to ask it); the kernel's send queue counts until the peer acks it.
        inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
        if inner is not None:
            size += inner.get_write_buffer_size()
        return size + unacked_bytes(transport.get_extra_info("socket"))

    def _end_when_flushed(self) -> None:
        self.end_timer = None
        transport = self.transport
        if self.lost or transport.is_closing():
            return
        wait = self.flush_wait
        assert wait is not None  # set by end_transport
        if wait.decide(self._unflushed(), self.loop.time()) is Flush.WAIT:
            self.end_timer = self.loop.call_later(FLUSH_POLL, self._end_when_flushed)
            return
        self.flush_wait = None
        # Linger: half-close (TLS: close_notify, whose answer the SSL layer awaits),
        # keep reading (`on_data` discards), and close when the peer does or time is up.
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()
        self.end_timer = self.loop.call_later(LINGER_TIMEOUT, self._linger_over)

    def _linger_over(self) -> None:
        self.end_timer = None
        if not self.lost:
            self.transport.abort()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closed:
            self.transport.resume_reading()
