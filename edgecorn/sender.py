"""The write side of one connection: what leaves, when, and how the connection ends.

A `Sender` turns the streams' response commands into adapter calls, coalesces the
adapter's output into as few writes as it can (one per loop turn when multiplexed),
makes senders wait for flow-control room (the peer's window, a full transport), and
owns the close: at once (`close`) or gracefully (`end`: flushed, then lingering).
`StreamSender` writes bytes to a TCP backend's transport; the QUIC connection has
its own (quic/connection.py), whose output is datagrams.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from .headers import check_fields
from .protocol.h1 import H1Adapter

if TYPE_CHECKING:
    from .protocol.base import Adapter
    from .protocol.events import Headers


class Loop(Protocol):
    """The event-loop primitives a sender uses (a part of runtime.Runtime)."""

    def defer(self, callback: Callable[[], None]) -> object: ...

    def create_future(self) -> Any: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...


class Transport(Protocol):
    """A TCP backend's byte stream."""

    def write(self, data: bytes) -> None: ...

    def close_transport(self) -> None:
        """Close now: a peer that stopped reading loses what is buffered."""

    def end_transport(self) -> None:
        """Close gracefully: flush, wait for the peer's acks, half-close, linger."""


class Gone:
    """A released sender's transport and loop: the connection is closed, so nothing is
    written and nothing scheduled (the sender no longer refers back to it)."""

    def write(self, data: bytes) -> None:
        pass

    def close_transport(self) -> None:
        pass

    def end_transport(self) -> None:
        pass

    def defer(self, callback: Callable[[], None]) -> None:
        pass

    def create_future(self) -> Any:
        raise RuntimeError("a released sender waits for nothing")

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        coro.close()


GONE = Gone()


def wake(waiters: list[Any]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()


class Sender(ABC):
    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.proto: Adapter | None = None
        self.batch = False  # multiplexed: one write per loop turn for all streams
        self.flush_pending = False
        self.closed = False
        self.ending = False  # a graceful close is under way (flushing, then lingering)
        self.write_paused = False  # the transport's buffer is full
        self.drain_waiters: list[Any] = []  # ... and these wait until it is not
        self.window_waiters: list[Any] = []  # these wait for the peer's flow-control window
        self.body_queue: list[tuple[int, bytes]] = []

    def use(self, proto: Adapter) -> None:
        self.proto = proto

    # --- output: subclasses know where it goes ---------------------------------------

    def flush(self) -> None:
        if self.batch:
            # Multiplexed: many streams answer in one loop turn; one write (and one TLS
            # record, one syscall) for all of them instead of one each.
            if not self.flush_pending:
                self.flush_pending = True
                self.loop.defer(self.flush_now)
            return
        self.flush_now()

    def flush_stream(self) -> None:
        """After streamed body: out at once (not batched), so that the transport's buffer
        limit, not the peer's flow-control window, bounds what we hold."""
        self.flush_now()

    @abstractmethod
    def flush_now(self) -> None:
        """Hand what the adapter has queued to the transport."""

    @abstractmethod
    def close(self) -> None:
        """Close at once (errors, the end of the graceful timeout); also cuts a linger."""

    @abstractmethod
    def end(self) -> None:
        """The normal close: everything written reaches the peer, then a lingering close."""

    # --- flow control ------------------------------------------------------------------

    def on_pause_writing(self) -> None:
        self.write_paused = True

    def on_resume_writing(self) -> None:
        self.write_paused = False
        wake(self.drain_waiters)

    def window_opened(self) -> None:
        """Input arrived (a WINDOW_UPDATE, acks): a send waiting for room may go on."""
        if self.window_waiters:
            wake(self.window_waiters)

    def lost(self) -> None:
        self.closed = True
        wake(self.drain_waiters)
        wake(self.window_waiters)

    def release(self) -> None:
        """After `lost`: drop the references back to the connection (its transport is
        the connection object itself on the TCP backends), so that a closed connection
        is freed by refcounting. A stream still running may flush; a closed sender
        writes nothing, schedules nothing and waits for nothing."""
        self.loop = GONE

    async def drain(self) -> None:
        while self.write_paused and not self.closed:
            waiter = self.loop.create_future()
            self.drain_waiters.append(waiter)
            await waiter

    # --- commands from streams ------------------------------------------------------------

    async def respond(
        self, stream_id: int, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        proto = self.proto
        assert proto is not None
        if len(body) <= proto.sendable(stream_id):
            proto.send_response(stream_id, status, headers, body, end)
            self.flush()
            if self.write_paused:
                await self.drain()
        else:
            proto.send_response(stream_id, status, headers, b"", False)
            self.flush()
            await self.send_body(stream_id, body, end)

    async def send_body(self, stream_id: int, data: bytes, end: bool) -> None:
        proto = self.proto
        assert proto is not None
        view = memoryview(data)
        while not self.closed:
            room = proto.sendable(stream_id)
            if room < 0:
                return
            if room >= len(view):
                proto.send_data(stream_id, bytes(view) if len(view) != len(data) else data, end)
                self.flush_stream()
                break
            if room > 0:
                proto.send_data(stream_id, bytes(view[:room]), False)
                view = view[room:]
                self.flush_stream()
            waiter = self.loop.create_future()
            self.window_waiters.append(waiter)
            await waiter
        if self.write_paused:
            await self.drain()

    def write_body(self, stream_id: int, data: bytes) -> None:
        """Queue a small piece of body now if flow control has room, else in order later."""
        proto = self.proto
        assert proto is not None
        if not self.body_queue and proto.sendable(stream_id) >= len(data):
            proto.send_data(stream_id, data, False)
            self.flush()
        else:
            self.body_queue.append((stream_id, data))
            if len(self.body_queue) == 1:
                self.loop.spawn(self._send_queued())

    async def _send_queued(self) -> None:
        while self.body_queue:
            stream_id, data = self.body_queue[0]
            await self.send_body(stream_id, data, False)
            self.body_queue.pop(0)

    def end_body(self, stream_id: int) -> None:
        assert self.proto is not None
        self.proto.send_data(stream_id, b"", True)
        self.flush()

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        assert self.proto is not None
        check_fields(headers)
        self.proto.send_trailers(stream_id, [(name.lower(), value) for name, value in headers])
        self.flush()

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        assert self.proto is not None
        self.proto.send_informational(stream_id, status, headers)
        self.flush()


class StreamSender(Sender):
    """Bytes to a TCP backend's transport."""

    def __init__(self, loop: Loop, transport: Transport) -> None:
        super().__init__(loop)
        self.transport = transport
        self.write = transport.write
        self.h1: H1Adapter | None = None  # self.proto when it is HTTP/1 (the flush fast path)

    def use(self, proto: Adapter) -> None:
        """A new adapter (ALPN, the preface, an h2c upgrade). What the old one still
        holds (the h1 adapter's `101 Switching Protocols`) goes out first."""
        old = self.proto
        if old is not None:
            data = old.data_to_send()
            if data and not self.closed:
                self.write(data)
        self.proto = proto
        self.h1 = proto if isinstance(proto, H1Adapter) else None
        self.batch = self.h1 is None

    def flush(self) -> None:
        h1 = self.h1
        if h1 is not None:
            # HTTP/1: one flush per event and per command, and most find nothing to send
            # (a request in, the stream's end): read the adapter's queue directly.
            out = h1.out
            if out:
                data = b"".join(out) if len(out) > 1 else out[0]
                out.clear()
                if not self.closed:
                    self.write(data)
            if h1.closing:
                self.end()
            return
        # Sender.flush, inlined: this runs per event and per command
        if self.batch:
            if not self.flush_pending:
                self.flush_pending = True
                self.loop.defer(self.flush_now)
            return
        self.flush_now()

    def flush_now(self) -> None:
        self.flush_pending = False
        proto = self.proto
        if proto is None:
            return
        data = proto.data_to_send()
        if data and not self.closed:
            self.write(data)
        if proto.closing:
            self.end()

    def release(self) -> None:
        super().release()
        self.transport = GONE
        self.write = GONE.write

    def close(self) -> None:
        if not self.closed or self.ending:
            self.closed = True
            self.ending = False
            self.transport.close_transport()

    def end(self) -> None:
        if not self.closed:
            self.closed = True
            self.ending = True
            self.transport.end_transport()
