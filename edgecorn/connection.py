"""One client connection, independent of the I/O backend.

It feeds bytes to a sans-IO adapter, routes the stream events to
protocol-blind streams, and turns the streams' commands into adapter calls
plus a flush. A backend subclass supplies the four I/O primitives: `write`,
`close_transport`, `pause_reading`, `resume_reading`, `create_future` and
`spawn`, and calls `on_data`, `on_eof`, `on_lost`, `on_pause_writing` and
`on_resume_writing`.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from .asgi.host import ConnectionContext
from .asgi.http import HTTPStream
from .asgi.websocket import WebSocketStream
from .headers import BAD_NAME, BAD_VALUE
from .headers import check_fields as _check_headers
from .protocol.events import (
    Body,
    EndBody,
    Event,
    H2CUpgrade,
    Headers,
    ProtocolError,
    Refused,
    Request,
    StreamReset,
)
from .protocol.h1 import H1Adapter
from .protocol.h2 import H2Adapter

if TYPE_CHECKING:
    from .manager import ConnectionManager
    from .protocol.base import Adapter

log = logging.getLogger("edgecorn.error")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Unconsumed request body beyond this pauses reading from an HTTP/1 peer.
READ_BACKLOG = 1024 * 1024
# Draining: an idle HTTP/1.1 connection stays open this long, so that a request the
# client sent before it could see our close is still answered (`connection: close`).
DRAIN_WINDOW = 0.75


class Connection(ABC):
    # What the backend learns before the first byte (addresses, PROXY header, TLS)...
    scheme = "http"
    client: tuple[str, int] | None = None
    server: tuple[str, int | None] | None = None
    # ... frozen into the streams' context once it is all known (`use_protocol`).
    context: ConnectionContext

    def __init__(self, manager: ConnectionManager, secure: bool) -> None:
        self.manager = manager
        self.config = manager.config
        self.app = manager.app
        self.extensions = manager.extensions  # a backend adds `tls` after its handshake
        self.server_names = frozenset(n.lower() for n in self.config.server_names)  # {}: any
        self.scheme = "https" if secure else "http"
        self.advertise = secure  # Alt-Svc goes on https responses over TCP
        self.proto: Adapter | None = None
        self.h1: H1Adapter | None = None  # self.proto when it is HTTP/1 (the flush fast path)
        self.extra: Headers = []  # the manager's Server/Date/Alt-Svc fields last seen ...
        self.extra_names: frozenset[bytes] = frozenset()  # ... and their names
        self.sniffed = b""
        self.streams: dict[int, HTTPStream | WebSocketStream] = {}
        self.closed = False
        self.ending = False  # a graceful close is under way (flushing, then lingering)
        self.write_paused = False
        self.read_paused = False
        self.drain_waiters: list[Any] = []
        self.body_queue: list[tuple[int, bytes]] = []
        self.window_waiters: list[Any] = []
        self.batch_writes = False
        self.flush_pending = False
        self.reads = 0  # bumped per read; the manager's tick compares it for timeouts
        self.idle_ticks = 0
        self.last_reads = 0
        # Slow clients: ticks a request head has been incomplete, and per stream the
        # ticks without body bytes (`fed`: body bytes per stream since the last tick).
        self.head_ticks = 0
        self.head_block: object = None  # h2: the header block being timed
        self.header_ticks = max(1, math.ceil(self.config.header_timeout))
        self.body_ticks = max(1, math.ceil(self.config.body_timeout))
        self.min_rate = self.config.body_min_rate
        self.fed: dict[int, int] = {}
        self.stale: dict[int, int] = {}
        # body_min_rate: per stream, ticks spent waiting for the client and bytes it sent.
        self.paced: dict[int, tuple[int, int]] = {}

    # --- backend primitives -------------------------------------------------------

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close_transport(self) -> None:
        """Close now: a peer that stopped reading loses what is buffered."""

    def end_transport(self) -> None:
        """Close gracefully: flush, wait for the peer's acks, half-close, linger.
        (TCP backends; a QUIC stream's transport closes as it always did.)"""
        self.close_transport()

    @abstractmethod
    def pause_reading(self) -> None: ...

    @abstractmethod
    def resume_reading(self) -> None: ...

    @abstractmethod
    def defer(self, callback: Callable[[], None]) -> None:
        """Run `callback` soon, after the current callbacks of the event loop."""

    @abstractmethod
    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        """Run `callback` after `delay` seconds; the result has `cancel()`."""

    @abstractmethod
    def create_future(self) -> Any: ...

    @abstractmethod
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...

    # --- protocol choice --------------------------------------------------------------

    def make_context(self) -> ConnectionContext:
        manager = self.manager
        return ConnectionContext(
            scheme=self.scheme,
            client=self.client,
            server=self.server,
            root_path=self.config.root_path,
            state=manager.state,
            extensions=self.extensions,
            access_log=manager.access_log,
            trusted_proxies=self.config.trusted_proxies,
            limits=manager.limits,
        )

    def use_protocol(self, alpn: str | None) -> None:
        """After the handshake (addresses, TLS and ALPN known): the streams' context.
        TLS: ALPN decides the protocol. Cleartext (alpn None): wait for the first bytes."""
        self.context = self.make_context()
        if alpn == "h2":
            self.proto = self.manager.new_h2()
            self.batch_writes = True
        elif alpn is not None:
            self.proto = self.h1 = self.manager.new_h1(allow_h2c=False)
        self.manager.add(self)
        if self.proto is not None:
            self.flush()

    def _sniff(self, data: bytes) -> bytes | None:
        """Cleartext: the HTTP/2 preface means h2c prior knowledge, anything else HTTP/1."""
        data = self.sniffed + data
        if len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
            self.sniffed = data
            return None
        self.sniffed = b""
        if data.startswith(H2_PREFACE):
            self.proto = self.manager.new_h2()
            self.batch_writes = True
        else:
            self.proto = self.h1 = self.manager.new_h1(allow_h2c=True)
        if self.manager.draining:
            self.proto.goaway()
        return data

    # --- bytes in -----------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        self.reads += 1
        if self.closed:
            return  # lingering: read and discarded, so the close is not a reset
        proto = self.proto
        if proto is None:
            sniffed = self._sniff(data)
            if sniffed is None:
                return
            data = sniffed
            proto = self.proto
            assert proto is not None
        events = proto.receive_data(data)
        if events:
            self.handle(events)
        if self.window_waiters:  # a WINDOW_UPDATE makes no event but may free senders
            self._wake(self.window_waiters)
        self.flush()
        if self.proto is proto and proto.backlog > READ_BACKLOG and not self.read_paused:
            self.read_paused = True
            self.pause_reading()

    def on_eof(self) -> None:
        if self.proto is not None and not self.closed:
            events = self.proto.receive_data(b"")
            if events:
                self.handle(events)
            self.flush()

    def on_lost(self) -> None:
        self.closed = True
        for stream in list(self.streams.values()):
            stream.on_reset()
        self._wake(self.drain_waiters)
        self._wake(self.window_waiters)
        self.manager.discard(self)
        self.release()

    def release(self) -> None:
        """The transport is gone: no more bytes in. Break the adapter's reference cycles
        now, so that a closed connection is freed by refcounting, not by a full gc
        (hundreds of closed TLS connections' objects would wait for one: RSS grew).
        Streams still running may send; those commands stay harmless."""
        if self.proto is not None:
            self.proto.release()

    def handle(self, events: list[Event]) -> None:
        streams = self.streams
        for event in events:
            kind = type(event)
            if kind is Request:
                self._request(event)  # type: ignore[arg-type]
            elif kind is Body:
                stream_or_none = streams.get(event.stream_id)  # type: ignore[union-attr]
                if stream_or_none is not None:
                    fed = self.fed
                    fed[event.stream_id] = fed.get(event.stream_id, 0) + len(event.data)  # type: ignore[union-attr]
                    stream_or_none.on_body(event.data)  # type: ignore[union-attr]
                else:
                    self.proto.ack_data(event.stream_id, len(event.data))  # type: ignore[union-attr]
            elif kind is EndBody:
                stream_or_none = streams.get(event.stream_id)  # type: ignore[union-attr]
                if stream_or_none is not None:
                    stream_or_none.on_end()
            elif kind is StreamReset:
                stream_or_none = streams.get(event.stream_id)  # type: ignore[union-attr]
                if stream_or_none is not None:
                    stream_or_none.on_reset()
            elif kind is H2CUpgrade:
                self._upgrade_h2c(event)  # type: ignore[arg-type]
            elif kind is ProtocolError:
                log.debug("protocol error from %s: %s", self.client, event.message)  # type: ignore[union-attr]
            elif kind is Refused:
                self._request(event.request, event.status)  # type: ignore[union-attr]

    def _request(self, request: Request, refuse: int = 0) -> None:
        stream: HTTPStream | WebSocketStream
        if request.protocol == "websocket":
            stream = WebSocketStream(self, request)
        elif request.method == "CONNECT":
            # Only extended CONNECT for WebSockets; edgecorn is not a forward proxy.
            assert self.proto is not None
            headers = self.response_headers([(b"content-length", b"0")])
            self.proto.send_response(request.stream_id, 501, headers, b"", True)
            return
        else:
            stream = HTTPStream(self, request)
        self.streams[request.stream_id] = stream
        manager = self.manager
        manager.active_requests += 1  # until stream_done
        if manager.request_limit is not None:
            manager.count_request()
        if not refuse and manager.active_requests > manager.max_active_requests:
            refuse = 503  # max_concurrent_requests: this worker is full, try again later
        if not refuse and self.server_names and not host_allowed(self.server_names, request):
            refuse = 404  # as Hypercorn: a Host not in server_names is not ours to serve
        self.spawn(stream.run(status_app(refuse) if refuse else self.app))

    def _upgrade_h2c(self, event: H2CUpgrade) -> None:
        self.write(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
        )
        h2 = self.manager.new_h2(upgrade_settings=event.settings)
        if self.proto is not None:
            self.proto.release()  # the HTTP/1 adapter takes no more bytes
        self.proto = h2
        self.h1 = None
        self.batch_writes = True
        self.handle(h2.upgrade_request(event.request, event.body))
        if event.trailing:
            self.handle(h2.receive_data(event.trailing))

    # --- bytes out ------------------------------------------------------------------------

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
        if self.batch_writes:
            # Multiplexed: many streams answer in one loop turn; one write (and one TLS
            # record, one syscall) for all of them instead of one each.
            if not self.flush_pending:
                self.flush_pending = True
                self.defer(self._flush_now)
            return
        self._flush_now()

    def flush_stream(self) -> None:
        """After streamed body: out at once (not batched), so that the transport's buffer
        limit, not the peer's flow-control window, bounds what we hold."""
        self._flush_now()

    def _flush_now(self) -> None:
        self.flush_pending = False
        proto = self.proto
        if proto is None:
            return
        data = proto.data_to_send()
        if data and not self.closed:
            self.write(data)
        if proto.closing:
            self.end()

    def close(self) -> None:
        """Close at once (errors, the end of the graceful timeout); also cuts a linger."""
        if not self.closed or self.ending:
            self.closed = True
            self.ending = False
            self.close_transport()

    def end(self) -> None:
        """The normal close: everything written reaches the peer, then a lingering close."""
        if not self.closed:
            self.closed = True
            self.ending = True
            self.end_transport()

    def on_pause_writing(self) -> None:
        self.write_paused = True

    def on_resume_writing(self) -> None:
        self.write_paused = False
        self._wake(self.drain_waiters)

    @staticmethod
    def _wake(waiters: list[Any]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        waiters.clear()

    async def _drain(self) -> None:
        while self.write_paused and not self.closed:
            waiter = self.create_future()
            self.drain_waiters.append(waiter)
            await waiter

    # --- commands from streams ------------------------------------------------------------

    def response_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Headers:
        """The app's headers, checked, plus Server/Date/Alt-Svc unless the app set them."""
        result = list(headers)
        extra = self.manager.extra_headers if self.advertise else self.manager.extra_headers_plain
        if not extra:
            _check_headers(result)
            return result
        if extra is not self.extra:  # the manager rebuilds its list once a second
            self.extra = extra
            self.extra_names = frozenset(name for name, _ in extra)
        names = self.extra_names
        # One pass: check each field and note whether the app set one of ours itself.
        own: set[bytes] | None = None
        for name, value in result:
            if not name or BAD_NAME.search(name) or BAD_VALUE.search(value):
                raise ValueError(f"invalid response header {name!r}: {value!r}")
            lname = name.lower()
            if lname in names:
                own = {lname} if own is None else own | {lname}
        if own is None:
            result += extra
        else:
            result += [item for item in extra if item[0] not in own]
        return result

    async def respond(
        self, stream_id: int, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        proto = self.proto
        assert proto is not None
        if len(body) <= proto.sendable(stream_id):
            proto.send_response(stream_id, status, headers, body, end)
            self.flush()
            if self.write_paused:
                await self._drain()
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
            waiter = self.create_future()
            self.window_waiters.append(waiter)
            await waiter
        if self.write_paused:
            await self._drain()

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
                self.spawn(self._send_queued())

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
        _check_headers(headers)
        self.proto.send_trailers(stream_id, [(name.lower(), value) for name, value in headers])
        self.flush()

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        assert self.proto is not None
        self.proto.send_informational(stream_id, status, headers)
        self.flush()

    def push(self, stream_id: int, fields: Headers) -> None:
        """http.response.push: a PUSH_PROMISE where the protocol and the peer allow one
        (h2 with SETTINGS_ENABLE_PUSH); the promised GET then runs like any request.
        Elsewhere (h1, h3, push disabled) ignored, as Hypercorn does."""
        promise = getattr(self.proto, "push", None)
        if promise is None or self.closed:
            return
        _check_headers([field for field in fields if field[0][:1] != b":"])
        events = promise(stream_id, fields)
        if events:
            self.handle(events)
            self.flush()

    def want_body(self, stream_id: int) -> None:
        assert self.proto is not None
        self.proto.want_body(stream_id)
        self.flush()

    def ack(self, stream_id: int, size: int) -> None:
        proto = self.proto
        assert proto is not None
        proto.ack_data(stream_id, size)
        if self.read_paused and proto.backlog <= READ_BACKLOG // 2:
            self.read_paused = False
            self.resume_reading()
        self.flush()

    def abort(self, stream_id: int) -> None:
        if self.proto is not None:
            self.proto.reset(stream_id)
            self.flush()

    def reset_streams(self, events: list[Event]) -> None:
        """Streams the adapter gave up on by itself (an h2 zero-window stall): their apps
        hear of it, and a send waiting for that window returns."""
        self.handle(events)
        self._wake(self.window_waiters)
        self.flush()

    def stream_done(self, stream: HTTPStream | WebSocketStream) -> None:
        self.manager.active_requests -= 1
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
            self.stale.pop(stream.stream_id, None)
            self.paced.pop(stream.stream_id, None)
        proto = self.proto
        if proto is None or self.closed:
            return
        events = proto.resume()
        if events:
            self.handle(events)
        self.flush()
        if self.read_paused and proto.backlog <= READ_BACKLOG // 2:
            self.read_paused = False
            self.resume_reading()

    # --- lifetime, driven by the manager ----------------------------------------------------

    def tick(self, keep_alive_ticks: int, read_timeout_ticks: int | None) -> None:
        """Called about once a second: close idle or stalled connections."""
        proto = self.proto
        active = self.reads != self.last_reads
        self.last_reads = self.reads
        if self.closed:
            return
        # `header_timeout`, active or not: a whole h1 request head, or h2's preface.
        if isinstance(proto, H1Adapter) and proto.idle and proto.head_pending:
            self.head_ticks += 1
            if self.head_ticks >= self.header_ticks:
                self.handle(proto.time_out("request head timed out"))
                self.flush()
                return
        elif isinstance(proto, H2Adapter) and proto.settings_pending:
            self.head_ticks += 1
            if self.head_ticks >= self.header_ticks:
                self.handle(proto.time_out())  # GOAWAY SETTINGS_TIMEOUT
                self.flush()
                return
        elif isinstance(proto, H2Adapter) and (block := proto.header_block) is not None:
            self._time_header_block(proto, block)
        else:
            self.head_ticks = 0
            self.head_block = None
        if self.streams:
            self._check_bodies()
        if active:
            self.idle_ticks = 0
            return
        self.idle_ticks += 1
        if proto is None or (proto.idle and not self.streams):
            if self.idle_ticks >= keep_alive_ticks:
                self.shutdown(window=False)
                self.end()
        elif read_timeout_ticks is not None and self.idle_ticks >= read_timeout_ticks:
            if any(isinstance(s, HTTPStream) and not s.complete for s in self.streams.values()):
                self.end()

    def _time_header_block(self, proto: H2Adapter, block: object) -> None:
        """h2: a HEADERS frame whose CONTINUATIONs stall. Until the block ends the peer
        may send nothing else on the connection (RFC 9113 6.10), so the connection is
        what times out: a graceful GOAWAY (NO_ERROR) whose last_stream_id leaves the
        stalled stream out, so a client may retry it elsewhere, while the streams
        already accepted are still answered; then the usual lingering close."""
        if block is not self.head_block:  # a new block: its own clock
            self.head_block = block
            self.head_ticks = 0
        self.head_ticks += 1
        if self.head_ticks >= self.header_ticks and proto.last_stream_id is None:
            log.debug("HTTP/2 header block from %s timed out", self.client)
            proto.goaway()
            self.flush()

    def _check_bodies(self) -> None:
        """`body_timeout`: a stream whose app waits for body bytes that do not come.
        `body_min_rate`: one whose body comes too slowly. As Apache's mod_reqtimeout
        MinRate: after a grace of `body_timeout`, every further second waited for the
        client must have been paid for with `body_min_rate` bytes on average since the
        body began (a trickle of one byte a second is cut; a burst then a pause is not,
        as long as the average holds). Seconds in which we are the slow side (the app
        has not read what came, reading is paused) do not count."""
        fed = self.fed
        paced = self.paced
        min_rate = self.min_rate
        for sid, stream in list(self.streams.items()):
            if not isinstance(stream, HTTPStream) or stream.complete or stream.disconnected:
                continue
            ours = bool(stream.body) or self.read_paused  # we are the slow side
            if min_rate:
                waited, got = paced.get(sid, (0, 0))
                waited, got = waited + (not ours), got + fed.get(sid, 0)
                paced[sid] = (waited, got)
                if waited > self.body_ticks and got < (waited - self.body_ticks) * min_rate:
                    self._body_timed_out(stream, "request body too slow")
                    continue
            if sid in fed or ours:
                self.stale[sid] = 0  # the client sends, or we are the slow side
                continue
            stale = self.stale.get(sid, 0) + 1
            self.stale[sid] = stale
            if stale >= self.body_ticks:
                self._body_timed_out(stream)
        fed.clear()

    def _body_timed_out(self, stream: HTTPStream, why: str = "request body timed out") -> None:
        proto = self.proto
        if isinstance(proto, H1Adapter):
            self.handle(proto.time_out(why))  # 408 unless started
        elif proto is not None:
            proto.reset(stream.stream_id)
            stream.on_reset()  # the app sees http.disconnect
        self.flush()

    def shutdown(self, window: bool = True) -> None:
        """Graceful: no new requests; h1 closes after the current response, h2 sends GOAWAY.

        An idle HTTP/1 connection is closed after DRAIN_WINDOW (unless `window` is
        False): its client may have sent a request before it could see the close.
        """
        proto = self.proto
        if proto is None or self.closed:
            return  # no bytes yet: the adapter made on the first ones hears of the drain
        for stream in list(self.streams.values()):
            if isinstance(stream, WebSocketStream):
                stream.going_away()
        if window and isinstance(proto, H1Adapter):
            proto.goaway(linger=True)
            if proto.idle and not self.streams:
                self.call_later(DRAIN_WINDOW, self._drain_window_over)
        else:
            proto.goaway()
        self.flush()

    def _drain_window_over(self) -> None:
        proto = self.proto
        if not self.closed and proto is not None and proto.idle and not self.streams:
            self.end()


def status_app(status: int) -> Any:
    """An answer from the server itself, through the usual stream (headers, access log)."""
    body = f"{status} {HTTPStatus(status).phrase}\n".encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        kind = "websocket.http" if scope["type"] == "websocket" else "http"  # a denial response
        await send({"type": f"{kind}.response.start", "status": status, "headers": headers})
        await send({"type": f"{kind}.response.body", "body": body})

    return app


def host_allowed(names: frozenset[str], request: Request) -> bool:
    """Is the request's Host (h2/h3: :authority) in server_names, with or without its port?"""
    host = next((value for name, value in request.headers if name == b"host"), None)
    if host is None:
        host = request.authority or b""
    text = host.decode("latin-1").lower()
    if text in names:
        return True
    bare = text.rpartition(":")[0] if text.rpartition(":")[2].isdigit() else text
    return bool(bare) and bare in names
