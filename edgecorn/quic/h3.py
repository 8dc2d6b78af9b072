"""HTTP/3 adapter: one QUIC connection (aioquic) with its H3Connection.

Datagrams and the clock go in; the same stream events as h1/h2 come out, and
the same commands go back in. QUIC specifics stay here: connection IDs to
route by, early data (RFC 8470), GOAWAY, and the send-buffer bound that turns
aioquic's unbounded stream buffers into back-pressure.
"""

from __future__ import annotations

from dataclasses import replace

from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, ErrorCode, FrameType, encode_frame
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic import events as quic_events
from aioquic.quic.connection import QuicConnection

from ..protocol import hq
from ..protocol.events import Body, EndBody, Event, Headers, Refused, Request, StreamReset
from ..protocol.fields import parse_request, response_fields
from . import engine
from .engine import EdgeH3Connection

# Bytes of response body aioquic may hold per stream (unsent or unacknowledged)
# before `sendable` reports 0 and the app's `send` waits.
SEND_BUFFER = 1024 * 1024
# aioquic raises receive windows as data arrives, not as the app reads it, so a
# peer could make us hold unbounded request bodies: past these, we give up.
MAX_UNREAD_STREAM = 8 * 1024 * 1024
MAX_UNREAD_CONNECTION = 32 * 1024 * 1024

# RFC 8470: methods that are safe to replay from 0-RTT (idempotent, RFC 9110 9.2.2).
IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))


class H3Adapter:
    http_version = "3"

    def __init__(
        self,
        quic: QuicConnection,
        *,
        max_requests: int,
        max_header_list_size: int,
        early_data_unsafe: bool = False,
    ) -> None:
        self.quic = quic
        self.h3: EdgeH3Connection | None = None
        self.hq: hq.HqStreams | None = None  # ALPN hq-interop: HTTP/0.9 (protocol/hq.py)
        self.max_requests = max_requests
        self.max_header_list_size = max_header_list_size
        self.early_data_unsafe = early_data_unsafe
        self.requests = 0
        self.open: set[int] = set()
        self.head: set[int] = set()  # HEAD requests: the response has no body
        self.reading: set[int] = set()  # open streams whose request body has not ended
        self.unread: dict[int, int] = {}
        self.unread_total = 0
        self.last_stream_id: int | None = None  # set once GOAWAY has been sent
        self.handshake_done = False
        self.terminated = False
        self.addr: tuple[str, int] | None = None
        self.now = 0.0
        self.cid_changes: list[tuple[bool, bytes]] = []  # (issued?, cid) for the router
        self.pending: list[Event] = []  # stream events seen while sending, for the next input
        self.heads: dict[int, int] = {}  # request streams without a whole HEADERS: ticks

    # --- state ---------------------------------------------------------------

    @property
    def backlog(self) -> int:
        return 0

    @property
    def closing(self) -> bool:
        return self.terminated

    @property
    def idle(self) -> bool:
        return not self.open

    def all_delivered(self) -> bool:
        """Every response on a request stream acknowledged (or reset): closing earlier
        would discard what aioquic still holds, since CONNECTION_CLOSE replaces it."""
        return engine.requests_delivered(self.quic)

    def data_to_send(self) -> bytes:
        return b""  # QUIC output is datagrams: see `datagrams`

    def datagrams(self, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        datagrams = self.quic.datagrams_to_send(now)
        # aioquic queues ConnectionIdIssued as it writes NEW_CONNECTION_ID: take it now, so
        # the router knows a CID before the peer can use it, not at our next input.
        self.pending = self._events()
        return datagrams

    # --- input ----------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> list[Event]:
        self.addr = addr
        self.now = now
        self.quic.receive_datagram(data, addr, now)
        return self._events()

    def receive_data(self, data: bytes) -> list[Event]:
        """A datagram from the connection's current path at the last known time."""
        assert self.addr is not None
        return self.receive_datagram(data, self.addr, self.now)

    def handle_timer(self, now: float) -> list[Event]:
        self.now = now
        self.quic.handle_timer(now)
        return self._events()

    def _events(self) -> list[Event]:
        events, self.pending = self.pending, []
        quic = self.quic
        while (event := quic.next_event()) is not None:
            kind = type(event)
            if kind is quic_events.ProtocolNegotiated:
                alpn = event.alpn_protocol  # type: ignore[attr-defined]
                if alpn in H3_ALPN:
                    self.h3 = engine.h3_connection(quic, self.max_header_list_size)  # type: ignore[assignment]
                elif alpn == hq.ALPN:
                    self.hq = hq.HqStreams()
            elif kind is quic_events.StreamDataReceived and self.hq is not None:
                self._hq_data(event, events)
            elif kind is quic_events.HandshakeCompleted:
                self.handshake_done = True
            elif kind is quic_events.ConnectionIdIssued:
                self.cid_changes.append((True, event.connection_id))  # type: ignore[attr-defined]
            elif kind is quic_events.ConnectionIdRetired:
                self.cid_changes.append((False, event.connection_id))  # type: ignore[attr-defined]
            elif kind is quic_events.ConnectionTerminated:
                self.terminated = True
                events.extend(StreamReset(sid) for sid in self.open)
                self.open.clear()
                continue
            elif kind is quic_events.StreamReset:
                sid = event.stream_id  # type: ignore[attr-defined]
                if sid in self.open:
                    self._drop(sid)
                    events.append(StreamReset(sid))
            h3 = self.h3
            if h3 is not None:
                for h3_event in h3.handle_event(event):
                    self._h3_event(h3_event, events)
                if h3.malformed:  # reset by the engine with H3_MESSAGE_ERROR
                    for sid in h3.malformed:
                        if sid in self.open:
                            self._drop(sid)
                            events.append(StreamReset(sid))
                    h3.malformed.clear()
                if h3.oversized:
                    self._oversized(h3, events)
        return events

    def _h3_event(self, event: object, events: list[Event]) -> None:
        if isinstance(event, DataReceived):
            sid = event.stream_id
            if sid in self.open:
                if event.data:
                    size = len(event.data)
                    self.unread[sid] = unread = self.unread.get(sid, 0) + size
                    self.unread_total += size
                    if unread > MAX_UNREAD_STREAM or self.unread_total > MAX_UNREAD_CONNECTION:
                        self.reset(sid, ErrorCode.H3_EXCESSIVE_LOAD)
                        events.append(StreamReset(sid))
                        return
                    events.append(Body(sid, event.data))
                if event.stream_ended:
                    self.reading.discard(sid)
                    events.append(EndBody(sid))
        elif isinstance(event, HeadersReceived):
            sid = event.stream_id
            if sid in self.open:  # a second HEADERS frame: trailers
                if event.stream_ended:
                    self.reading.discard(sid)
                    events.append(EndBody(sid, list(event.headers)))
                return
            self._request(sid, event.headers, event.stream_ended, events)

    def _oversized(self, h3: EdgeH3Connection, events: list[Event]) -> None:
        """HEADERS frames longer than the limit, given up unread: a request's gets 431
        from here (it was never decoded, so no app can see it), trailers a reset."""
        for sid in h3.oversized:
            if sid in self.open:
                self.reset(sid, ErrorCode.H3_EXCESSIVE_LOAD)
                events.append(StreamReset(sid))
                continue
            h3.send_headers(sid, [(b":status", b"431"), (b"content-length", b"0")], True)
            try:
                self.quic.stop_stream(sid, ErrorCode.H3_NO_ERROR)  # RFC 9114 4.1, as _done
            except ValueError:
                pass
        h3.oversized.clear()

    def _hq_data(self, event: quic_events.QuicEvent, events: list[Event]) -> None:
        assert isinstance(event, quic_events.StreamDataReceived) and self.hq is not None
        for item in self.hq.receive(event.stream_id, event.data, event.end_stream):
            if isinstance(item, Request):  # its EndBody comes from _admit
                self._admit(item, 0, True, events)
        for sid in self.hq.rejected:
            self.quic.reset_stream(sid, ErrorCode.H3_MESSAGE_ERROR)
        self.hq.rejected.clear()

    def _request(self, sid: int, raw: Headers, ended: bool, events: list[Event]) -> None:
        parsed = parse_request(sid, raw, "3")
        if isinstance(parsed, str):
            # RFC 9114 4.1.2: a stream error, failed by the engine as its own malformed
            # requests are. The field rules HTTP/2 and HTTP/3 share (pseudo-headers, tokens,
            # hop-by-hop fields, Host) are ours; the engine's own check may skip them.
            assert self.h3 is not None
            self.h3.refuse(sid)
            return
        self._admit(parsed[0], parsed[1], ended, events)

    def _admit(self, request: Request, size: int, ended: bool, events: list[Event]) -> None:
        sid = request.stream_id
        if self.last_stream_id is not None and sid > self.last_stream_id:
            self.quic.reset_stream(sid, ErrorCode.H3_REQUEST_REJECTED)
            return
        self.open.add(sid)
        self.requests += 1
        if request.method == "HEAD":
            self.head.add(sid)
        early = not self.handshake_done
        # The event leaves with its final values (a copy only in these rare cases).
        if size > self.max_header_list_size:
            # answered by the server itself, never by the app
            events.append(Refused(replace(request, early_data=early), 431))
        elif early:
            request = replace(
                request, early_data=True, headers=[*request.headers, (b"early-data", b"1")]
            )
            if request.method not in IDEMPOTENT and not self.early_data_unsafe:
                events.append(Refused(request, 425))  # RFC 8470 5.2: retried after the handshake
            else:
                events.append(request)
        else:
            events.append(request)
        if ended:
            events.append(EndBody(sid))
        else:
            self.reading.add(sid)
        if self.requests >= self.max_requests:
            self.goaway(sid)

    # --- commands -------------------------------------------------------------

    def resume(self) -> list[Event]:
        return []

    def want_body(self, stream_id: int) -> None:
        pass

    def ack_data(self, stream_id: int, size: int) -> None:
        unread = self.unread.get(stream_id)
        if unread is not None:
            size = min(size, unread)
            self.unread[stream_id] = unread - size
            self.unread_total -= size

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        if stream_id in self.open and self.h3 is not None:
            self.h3.send_headers(stream_id, response_fields(status, headers))

    def send_response(
        self, stream_id: int, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        if stream_id in self.open and self.hq is not None:
            if hq.sends_body(status):
                self._hq_send(stream_id, body, end)
            else:  # HTTP/0.9 has no status line to say so
                self.reset(stream_id, ErrorCode.H3_REQUEST_REJECTED)
            return
        if stream_id not in self.open or self.h3 is None:
            return
        if stream_id in self.head:
            body = b""
        self.h3.send_response(stream_id, response_fields(status, headers), body, end)
        if end:
            self._done(stream_id)

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        if stream_id in self.open and self.hq is not None:
            self._hq_send(stream_id, data, end)
            return
        if stream_id not in self.open or self.h3 is None:
            return
        if stream_id in self.head:
            data = b""
        self.h3.send_data(stream_id, data, end)
        if end:
            self._done(stream_id)

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        if stream_id in self.open and self.hq is not None:
            self._hq_send(stream_id, b"", True)  # HTTP/0.9 has no trailers: just the end
            return
        if stream_id not in self.open or self.h3 is None:
            return
        trailers = [(name.lower(), value) for name, value in headers]
        self.h3.send_headers(stream_id, trailers, end_stream=True)
        self._done(stream_id)

    def _hq_send(self, stream_id: int, data: bytes, end: bool) -> None:
        if stream_id not in self.head:
            self.quic.send_stream_data(stream_id, data, end)
        elif end:
            self.quic.send_stream_data(stream_id, b"", True)
        if end:
            self._drop(stream_id)

    def sendable(self, stream_id: int) -> int:
        if stream_id not in self.open:
            return -1
        held = engine.buffered(self.quic, stream_id)
        if held is None:
            return -1
        return max(0, SEND_BUFFER - held)

    def reset(self, stream_id: int, code: int = ErrorCode.H3_INTERNAL_ERROR) -> None:
        if stream_id in self.open:
            if stream_id in self.reading and self.h3 is not None:
                self.h3.ignore(stream_id)  # the rest of its body is dropped unparsed
            self._drop(stream_id)
            try:
                self.quic.reset_stream(stream_id, code)
                self.quic.stop_stream(stream_id, code)
            except ValueError:
                pass  # the stream is already finished in that direction

    def time_out_heads(self, limit: int) -> list[int]:
        """Once a tick (`header_timeout`): request streams whose HEADERS frame has not
        come whole within `limit` ticks are reset, and the client asked to stop, with
        H3_REQUEST_INCOMPLETE (RFC 9114 8.1): each holds one of the peer's concurrent
        streams and, for a partial frame, our buffer. No app has seen them. Returns them."""
        h3 = self.h3
        if h3 is None or self.terminated:
            return []  # hq-interop: a request is one line, bounded by the idle timeout
        heads = self.heads
        self.heads = {sid: heads.get(sid, 0) + 1 for sid in engine.waiting_requests(self.quic, h3)}
        expired = [sid for sid, ticks in self.heads.items() if ticks >= limit]
        for sid in expired:
            del self.heads[sid]
            engine.abandon_head(h3, sid)  # what still comes for it is dropped unparsed
            for stop in (self.quic.reset_stream, self.quic.stop_stream):
                try:
                    stop(sid, ErrorCode.H3_REQUEST_INCOMPLETE)
                except ValueError:
                    pass  # that direction is already finished
        return expired

    def goaway(self, last_stream_id: int | None = None) -> None:
        """RFC 9114 5.2: name the first request stream we will not process."""
        if self.hq is not None and self.last_stream_id is None and not self.terminated:
            # HTTP/0.9 has no GOAWAY: refuse later streams, close once all is delivered.
            last = max(self.open, default=-4)
            self.last_stream_id = last if last_stream_id is None else last_stream_id
            return
        if self.last_stream_id is not None or self.terminated or self.h3 is None:
            if self.h3 is None and not self.terminated:
                self.close()
            return
        if last_stream_id is None:
            last_stream_id = max(self.open, default=-4)
        self.last_stream_id = last_stream_id
        control = engine.control_stream_id(self.h3)
        if control is not None:
            frame = encode_frame(FrameType.GOAWAY, encode_uint_var(last_stream_id + 4))
            self.quic.send_stream_data(control, frame)

    def close(self) -> None:
        self.quic.close(error_code=ErrorCode.H3_NO_ERROR)

    def release(self) -> None:
        """The connection has terminated: see engine.release."""
        engine.release(self.quic)

    def _done(self, stream_id: int) -> None:
        """The response is complete. If the request body is not, we will not read the
        rest: RFC 9114 4.1 asks the client to stop sending it, with H3_NO_ERROR (an
        app answering 413 to a large upload), and what still arrives is dropped."""
        if stream_id in self.reading and self.h3 is not None:
            self.h3.ignore(stream_id)
            try:
                self.quic.stop_stream(stream_id, ErrorCode.H3_NO_ERROR)
            except ValueError:
                pass  # aioquic already forgot the stream
        self._drop(stream_id)

    def _drop(self, stream_id: int) -> None:
        self.open.discard(stream_id)
        self.reading.discard(stream_id)
        self.head.discard(stream_id)
        if self.hq is not None:
            self.hq.forget(stream_id)
        unread = self.unread.pop(stream_id, 0)
        self.unread_total -= unread
