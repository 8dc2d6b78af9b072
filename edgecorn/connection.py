"""One client connection, independent of the I/O backend: the event router.

`Connection` routes a sans-IO adapter's stream events to protocol-blind streams
(HTTPStream, WebSocketStream), keeps the stream table, the per-connection limits
and timeouts, and answers the streams' commands; everything that leaves (writes,
coalescing, flow-control waits, the lingering close) is its `sender`'s
(sender.py). The manager picks the adapter (ALPN, or the HTTP/2 preface).

The event-loop primitives (`defer`, `call_later`, `create_future`, `spawn`) come from
the worker's `Runtime` (runtime.py), given at construction. `StreamConnection` is a TCP
connection: its backend subclass (asyncio/tcp.py, trio/tcp.py) supplies the byte-stream
primitives (`write`, `close_transport`, `end_transport`, `pause_reading`,
`resume_reading`) and calls `on_data`, `on_eof`, `on_lost`, `on_pause_writing` and
`on_resume_writing`. The QUIC connection (quic/connection.py) brings its own sender,
whose output is datagrams.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from .asgi.host import ConnectionContext
from .asgi.http import HTTPStream
from .asgi.status import status_app
from .asgi.websocket import WebSocketStream
from .headers import BAD_NAME, BAD_VALUE
from .headers import check_fields as _check_headers
from .manager import ticks
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
from .sender import Sender, StreamSender

if TYPE_CHECKING:
    from .manager import ConnectionManager
    from .protocol.base import Adapter
    from .runtime import Runtime

log = logging.getLogger("edgecorn.error")

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
    read_paused = False  # only a StreamConnection pauses reading
    # The sender's commands, bound straight to it (no extra call on the hot path).
    flush: Callable[[], None]
    close: Callable[[], None]
    end: Callable[[], None]
    # The runtime's primitives, bound likewise (streams call them through StreamHost).
    defer: Callable[[Callable[[], None]], object]
    call_later: Callable[[float, Callable[[], None]], Any]
    create_future: Callable[[], Any]
    spawn: Callable[[Coroutine[Any, Any, None]], None]

    def __init__(
        self, manager: ConnectionManager, secure: bool, sender: Sender, runtime: Runtime
    ) -> None:
        self.manager = manager
        self.config = manager.config
        self.app = manager.app
        self.extensions = manager.extensions  # a backend adds `tls` after its handshake
        self.server_names = frozenset(n.lower() for n in self.config.server_names)  # {}: any
        self.scheme = "https" if secure else "http"
        self.advertise = secure  # Alt-Svc goes on https responses over TCP
        self.proto: Adapter | None = None
        self.extra: Headers = []  # the manager's Server/Date/Alt-Svc fields last seen ...
        self.extra_names: frozenset[bytes] = frozenset()  # ... and their names
        self.streams: dict[int, HTTPStream | WebSocketStream] = {}
        self.sender = sender
        self.flush = sender.flush
        self.close = sender.close  # at once (errors, the end of the graceful timeout)
        self.end = sender.end  # gracefully: flushed, then a lingering close
        self.respond = sender.respond
        self.send_body = sender.send_body
        self.write_body = sender.write_body
        self.end_body = sender.end_body
        self.send_trailers = sender.send_trailers
        self.send_informational = sender.send_informational
        self.runtime = runtime
        self.defer = runtime.defer
        self.call_later = runtime.call_later
        self.create_future = runtime.create_future
        self.spawn = runtime.spawn
        self.reads = 0  # bumped per read; the manager's tick compares it for timeouts
        self.idle_ticks = 0
        self.last_reads = 0
        # Slow clients: ticks a request head has been incomplete, and per stream the
        # ticks without body bytes (`fed`: body bytes per stream since the last tick).
        self.head_ticks = 0
        self.head_block: object = None  # h2: the header block being timed
        self.header_ticks = ticks(self.config.header_timeout)
        self.body_ticks = ticks(self.config.body_timeout)
        self.min_rate = self.config.body_min_rate
        self.fed: dict[int, int] = {}
        self.stale: dict[int, int] = {}
        # body_min_rate: per stream, ticks spent waiting for the client and bytes it sent.
        self.paced: dict[int, tuple[int, int]] = {}

    # --- the sender's state, for backends and the manager ----------------------------

    @property
    def closed(self) -> bool:
        return self.sender.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self.sender.closed = value

    @property
    def write_paused(self) -> bool:
        return self.sender.write_paused

    def on_pause_writing(self) -> None:
        self.sender.on_pause_writing()

    def on_resume_writing(self) -> None:
        self.sender.on_resume_writing()

    def use(self, proto: Adapter) -> None:
        self.proto = proto
        self.sender.use(proto)

    def resume_reading(self) -> None:  # noqa: B027 (a hook: empty unless reading can pause)
        """Only a StreamConnection pauses reading (it sets `read_paused`, so `ack` and
        `stream_done` call this); QUIC's flow control bounds its input instead."""

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

    def on_lost(self) -> None:
        self.sender.lost()
        for stream in list(self.streams.values()):
            stream.on_reset()
        self.manager.discard(self)
        self.release()

    def release(self) -> None:
        """The transport is gone: no more bytes in. Break the adapter's reference cycles
        now, so that a closed connection is freed by refcounting, not by a full gc
        (hundreds of closed TLS connections' objects would wait for one: RSS grew).
        Streams still running may send; those commands stay harmless."""
        if self.proto is not None:
            self.proto.release()
        self.sender.release()  # it refers back to this connection (transport, loop)

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
        else:
            stream = HTTPStream(self, request)
            if request.method == "CONNECT" and not refuse:
                # Only extended CONNECT for WebSockets; edgecorn is not a forward proxy.
                # Answered like the other refusals below: a stream, an access-log line.
                refuse = 501
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
        """HTTP/1.1 `Upgrade: h2c`: the h1 adapter has queued its 101 answer; the sender
        writes that before anything of the HTTP/2 adapter's."""
        h2 = self.manager.new_h2(upgrade_settings=event.settings)
        h1 = self.proto
        self.use(h2)  # writes the 101 the h1 adapter holds
        if h1 is not None:
            h1.release()  # the HTTP/1 adapter takes no more bytes
        self.handle(h2.upgrade_request(event.request, event.body))
        if event.trailing:
            self.handle(h2.receive_data(event.trailing))

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
        self.sender.window_opened()
        self.flush()

    def stream_done(self, stream: HTTPStream | WebSocketStream) -> None:
        self.manager.active_requests -= 1
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
            self.stale.pop(stream.stream_id, None)
            self.paced.pop(stream.stream_id, None)
        proto = self.proto
        if proto is None or self.sender.closed:
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


class StreamConnection(Connection):
    """A TCP connection: bytes in from the backend, out through a `StreamSender`."""

    def __init__(self, manager: ConnectionManager, secure: bool, runtime: Runtime) -> None:
        super().__init__(manager, secure, StreamSender(runtime, self), runtime)
        self.sniffed = b""

    # --- byte-stream primitives (the backend's) ------------------------------------------

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close_transport(self) -> None:
        """Close now: a peer that stopped reading loses what is buffered."""

    @abstractmethod
    def end_transport(self) -> None:
        """Close gracefully: flush, wait for the peer's acks, half-close, linger."""

    @abstractmethod
    def pause_reading(self) -> None: ...

    @abstractmethod
    def resume_reading(self) -> None: ...

    # --- protocol choice ------------------------------------------------------------------

    def use_protocol(self, alpn: str | None) -> None:
        """After the handshake (addresses, TLS and ALPN known): the streams' context.
        TLS: ALPN decides the protocol. Cleartext (alpn None): the first bytes do."""
        self.context = self.make_context()
        if alpn is not None:
            self.use(self.manager.for_alpn(alpn))
        self.manager.add(self)
        if self.proto is not None:
            self.flush()

    # --- bytes in -----------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        self.reads += 1
        if self.sender.closed:
            return  # lingering: read and discarded, so the close is not a reset
        proto = self.proto
        if proto is None:
            data = self.sniffed + data
            proto = self.manager.for_preface(data)
            if proto is None:
                self.sniffed = data  # a prefix of the HTTP/2 preface: wait for more
                return
            self.sniffed = b""
            self.use(proto)
        events = proto.receive_data(data)
        if events:
            self.handle(events)
        sender = self.sender
        if sender.window_waiters:  # a WINDOW_UPDATE makes no event but may free senders
            sender.window_opened()
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
