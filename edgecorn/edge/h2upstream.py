"""HTTP/2 to upstreams (`upstream_protocol: h2c`, or h2 over TLS with ALPN): one multiplexed
connection carries many requests, on any event loop (anyio).

There is no reader task: a task that needs the upstream's bytes and finds nobody reading
becomes the reader for one read and hands the events to the streams they belong to (a
background task would need a task group that outlives requests, which trio does not give
us here). Flow control is the back-pressure: a stream's window is given back only when the
relay asks for more, i.e. after the client took the previous data, so a slow client slows
that stream alone. Streams expose the event tuples of the HTTP/1.1 `Connection` ("info",
"head", "data", "end"), so proxy.py relays both the same way.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from .errors import READ_SIZE, Link, UpstreamError

STREAM_WINDOW = 256 * 1024  # per stream: what one slow client can leave unread upstream
CONNECTION_WINDOW = 32 * 1024 * 1024
SEND_TIMEOUT = 30.0
# HTTP/2 fields a request must not carry (RFC 9113 8.2.2); `te` only as "trailers".
CONNECTION_SPECIFIC = frozenset(
    {b"host", b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
Headers = list[tuple[bytes, bytes]]


class Multiplex:
    """One HTTP/2 connection to an upstream and its open streams."""

    def __init__(self, link: Link, scheme: str, url: str) -> None:
        self.link = link  # the byte stream, its liveness check and its close
        self.scheme = scheme.encode()
        self.url = url
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=False
        )
        self.h2 = h2.connection.H2Connection(config)
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.streams: dict[int, H2Stream] = {}
        self.reading = False
        self.changed = anyio.Event()  # set (and replaced) after every read
        self.write_lock = anyio.Lock()
        self.error: str | None = None  # the connection is gone: why
        self.goaway = False  # no new streams on it
        self.failure_counted = False  # its loss counts once for passive health, not per stream
        self.idle_since = time.monotonic()

    def has_room(self) -> bool:
        if self.error is not None or self.goaway:
            return False
        if not self.streams:
            # Nobody has read it since the last stream: a GOAWAY or EOF may be waiting.
            self.link.idle_since = self.idle_since  # usable() checks IDLE_TIMEOUT from there
            if not self.link.usable():
                return False
        limit = self.h2.remote_settings.max_concurrent_streams
        return len(self.streams) < limit and self.h2.highest_outbound_stream_id < 2**31 - 64

    def open(self) -> H2Stream:
        stream = H2Stream(self, self.h2.get_next_available_stream_id())
        self.streams[stream.id] = stream
        return stream

    async def flush(self) -> None:
        async with self.write_lock:
            data = self.h2.data_to_send()
            if not data or self.error is not None:
                return
            # Frames taken from h2 must all go out: a send cut by one request's cancellation
            # would corrupt the connection the others share. An upstream that stops reading
            # for SEND_TIMEOUT fails the connection instead of blocking this task forever.
            with anyio.CancelScope(shield=True), anyio.move_on_after(SEND_TIMEOUT) as scope:
                try:
                    await self.link.stream.send(data)
                except (
                    OSError,
                    anyio.BrokenResourceError,
                    anyio.ClosedResourceError,
                    ssl.SSLError,
                ) as exc:
                    self._fail(f"connection lost while sending: {exc or type(exc).__name__}")
            if scope.cancelled_caught:
                self._fail(f"stopped reading for {SEND_TIMEOUT:g} s")

    async def wait(self, ready: Callable[[], bool]) -> None:
        """Until `ready()` (or the connection fails): read for everyone, or wait for who does.
        Each call waits for at least one read, so a caller's loop always yields."""
        first = True
        while first or not (ready() or self.error is not None):
            first = False
            if self.reading:
                await self.changed.wait()
                continue
            self.reading = True
            try:
                await self._read_once()
            finally:
                self.reading = False
                changed, self.changed = self.changed, anyio.Event()
                changed.set()

    async def _read_once(self) -> None:
        try:
            data = await self.link.stream.receive(READ_SIZE)
        except (
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
            ssl.SSLError,
        ):
            data = b""
        if not data:
            self._fail("closed the connection")
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail(f"HTTP/2 protocol error: {exc}")
            return
        for event in events:
            self._dispatch(event)
        await self.flush()  # SETTINGS and PING acknowledgements, RST_STREAMs

    def _dispatch(self, event: Any) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.DataReceived):
            if stream is None:  # a stream we gave up: its data still counts for the connection
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                return
            stream.unacked += event.flow_controlled_length
            stream.received = True
            stream.events.append(("data", event.data))
        elif isinstance(event, h2.events.ResponseReceived) and stream is not None:
            stream.received = True
            status, fields = _split(event.headers)
            stream.events.append(("head", status, fields))
        elif isinstance(event, h2.events.InformationalResponseReceived) and stream is not None:
            stream.received = True
            status, fields = _split(event.headers)
            stream.events.append(("info", status, fields))
        elif isinstance(event, h2.events.TrailersReceived) and stream is not None:
            stream.trailers = _split(event.headers)[1]
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.complete = True
            stream.events.append(("end", stream.trailers))
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            if not stream.complete:
                refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                stream.refused = refused and not stream.received
                stream.error = f"reset the stream ({_code(event.error_code)})"
        elif isinstance(event, h2.events.WindowUpdated):
            pass  # the writers look at the windows again after every read
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = True
            last = event.last_stream_id or 0
            for other in self.streams.values():
                if other.id > last:  # never processed (RFC 9113 6.8): safe to retry
                    other.refused = not other.received
                    other.error = f"sent GOAWAY ({_code(event.error_code)}) before the stream"
            if event.error_code:
                self._fail(f"ended the connection ({_code(event.error_code)})")

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
            changed, self.changed = self.changed, anyio.Event()
            changed.set()  # the streams waiting for a reader see the error now
        for stream in self.streams.values():
            if stream.error is None and not stream.complete:
                stream.error = (
                    f"{why} in the middle of the response"
                    if stream.received
                    else f"{why} without a response"
                )

    async def done(self, stream: H2Stream) -> None:
        """`stream` is finished with: reset it if unfinished, close a dead idle connection."""
        if self.streams.pop(stream.id, None) is None:
            return
        if stream.unacked and self.error is None:
            # Data the client never took still counts against the connection's window.
            self.h2.acknowledge_received_data(stream.unacked, stream.id)
            stream.unacked = 0
        if not (stream.complete and stream.sent_all) and self.error is None:
            try:
                self.h2.reset_stream(stream.id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.ProtocolError:
                pass  # already closed on the upstream's side
        if not self.streams:
            self.idle_since = time.monotonic()
        if self.error is not None or (self.goaway and not self.streams):
            if not self.streams:
                self._fail("closed")
                await self.link.aclose()
            return
        with anyio.CancelScope(shield=True):
            await self.flush()

    async def aclose(self) -> None:
        if self.error is None:
            self.h2.close_connection()
            with anyio.CancelScope(shield=True):
                await self.flush()
            self.error = "closed"
        await self.link.aclose()


class H2Stream:
    """One request on a `Multiplex`, with the interface proxy.py uses on a `Connection`."""

    def __init__(self, mux: Multiplex, stream_id: int) -> None:
        self.mux = mux
        self.id = stream_id
        self.events: list[tuple[Any, ...]] = []
        self.trailers: Headers = []
        self.error: str | None = None
        self.refused = False  # the upstream never processed it: a retry is safe
        self.received = False
        self.complete = False
        self.sent_all = False
        self.unacked = 0  # flow-controlled bytes handed out but not yet given back

    def has_events(self) -> bool:
        return bool(self.events) or self.error is not None

    def window_open(self) -> bool:
        if self.error is not None:
            return True
        try:
            return self.mux.h2.local_flow_control_window(self.id) > 0
        except h2.exceptions.ProtocolError:
            return True  # the stream is gone: the writer finds out itself

    def counts_as_failure(self) -> bool:
        """Whether this stream's error counts for passive health: a lost connection counts
        once, however many streams it carried."""
        if self.mux.error is None:
            return True
        counted, self.mux.failure_counted = self.mux.failure_counted, True
        return not counted

    def may_have_trailers(self, fields: Headers) -> bool:
        # Any HTTP/2 response may end with trailers; one with a Content-Length rarely does.
        return not any(name == b"content-length" for name, _ in fields)

    async def send_head(
        self, method: str, target: bytes, headers: Headers, end: bool = False
    ) -> None:
        authority = b""
        fields: Headers = []
        for name, value in headers:
            if name == b"host":
                authority = value
            elif name == b"te":
                if b"trailers" in value.lower():
                    fields.append((b"te", b"trailers"))
            elif name not in CONNECTION_SPECIFIC:
                fields.append((name, value))
        pseudo = [
            (b":method", method.encode()),
            (b":scheme", self.mux.scheme),
            (b":authority", authority),
            (b":path", target),
        ]
        self._check()
        self.mux.h2.send_headers(self.id, pseudo + fields, end_stream=end)
        self.sent_all = end
        await self._flush()

    async def send(self, data: bytes, end: bool = False) -> None:
        """Body bytes within the stream's send window (waiting for the upstream to open it);
        anyio.BrokenResourceError when the stream is gone (the relay reports why)."""
        try:
            await self._send(data, end)
        except (UpstreamError, h2.exceptions.ProtocolError):
            raise anyio.BrokenResourceError from None

    async def _send(self, data: bytes, end: bool) -> None:
        mux = self.mux
        view = memoryview(data)
        while view:
            self._check()
            window = min(mux.h2.local_flow_control_window(self.id), mux.h2.max_outbound_frame_size)
            if window <= 0:
                await mux.wait(self.window_open)
                continue
            mux.h2.send_data(self.id, bytes(view[:window]))
            view = view[window:]
            await self._flush()
        if end:
            self._check()
            mux.h2.end_stream(self.id)
            self.sent_all = True
            await self._flush()

    async def read(self, timeout: float) -> list[tuple[Any, ...]]:
        """The stream's next events; TimeoutError after `timeout` s without any."""
        if self.unacked and self.mux.error is None:
            # The relay took the last ones: let the upstream send as much again.
            unacked, self.unacked = self.unacked, 0
            try:
                self.mux.h2.acknowledge_received_data(unacked, self.id)
            except h2.exceptions.ProtocolError:
                pass  # the connection is closing: no more windows to give
            await self.mux.flush()
        with anyio.fail_after(timeout):
            if not self.has_events() and self.mux.error is None:
                await self.mux.wait(self.has_events)
        if self.events:  # what came before an error is relayed first
            events, self.events = self.events, []
            return events
        self._check()
        return []  # not reached: _check raised

    def _check(self) -> None:
        if self.error is None and self.mux.error is not None:
            self.error = self.mux.error
        if self.error is not None:
            raise UpstreamError(502, self.error)

    async def _flush(self) -> None:
        await self.mux.flush()
        self._check()

    async def aclose(self) -> None:
        await self.mux.done(self)


def _split(headers: Any) -> tuple[int, Headers]:
    status = 0
    fields: Headers = []
    for name, value in headers:
        if name == b":status":
            status = int(value)
        elif not name.startswith(b":"):
            fields.append((bytes(name), bytes(value)))
    return status, fields


def _code(code: Any) -> str:
    return getattr(code, "name", str(code))
