"""A client byte stream on asyncio's protocol API, for the edge's upstream connections.

anyio's streams serve both event loops, but on asyncio each send and receive costs an extra
loop turn (a checkpoint) and several context managers; per proxied request that was a third
of the edge's CPU. This stream has anyio's shape (`send`, `receive`, `aclose`, raw socket) so
the upstream code is the same on both loops; cancellation still comes from anyio's scopes,
which cancel the waiting task.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import anyio

MAX_BUFFER = 256 * 1024  # unread bytes beyond this pause reading from the upstream


class AsyncioStream(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.eof = False
        self.reading_paused = False
        self.writing_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.raw_socket: socket.socket | None = None

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.raw_socket = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered > MAX_BUFFER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the stream ------------------------------------------------------------------------

    @property
    def stale(self) -> bool:
        """An idle connection that the peer closed or wrote to: not for another request."""
        return self.eof or bool(self.buffer)

    async def receive(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        """Bytes as they came (all that is buffered); raises anyio.EndOfStream at the end and
        TimeoutError after `timeout` seconds without any."""
        if not self.buffer and not self.eof:
            loop = asyncio.get_running_loop()
            waiter = self.waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                self.waiter = None
                if timer is not None:
                    timer.cancel()
        if not self.buffer:
            raise anyio.EndOfStream
        data = self.buffer[0] if len(self.buffer) == 1 else b"".join(self.buffer)
        self.buffer.clear()
        self.buffered = 0
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    async def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise anyio.BrokenResourceError
        transport.write(data)
        while self.writing_paused and not transport.is_closing():
            self.drain_waiter = asyncio.get_running_loop().create_future()
            await self.drain_waiter
        if transport.is_closing() and self.eof:
            raise anyio.BrokenResourceError

    def extra(self, attribute: Any, default: Any = None) -> Any:
        if attribute is anyio.abc.SocketAttribute.raw_socket:
            return self.raw_socket
        return default

    async def aclose(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def open_stream(
    host: str, port: int, context: ssl.SSLContext | None, server_hostname: str | None
) -> AsyncioStream:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        AsyncioStream, host, port, ssl=context, server_hostname=server_hostname
    )
    return protocol
