"""HTTP/1.1 adapter: one interface, two parsers (h11, the reference; httptools, the fast path).

The parsers only differ in how bytes become requests (and, for h11, in who
frames the response). Everything else — pipelining order, keep-alive, the
smuggling checks, 100-continue, error answers — lives in `H1Adapter` once.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import replace
from enum import Enum
from http import HTTPStatus

from ..headers import first
from .events import Body, EndBody, Event, H2CUpgrade, Headers, ProtocolError, Request, StreamReset

# A pipelined request held while another is served counts as this many bytes of
# backlog, so a flood of tiny requests pauses reading like a big body does.
PENDING_REQUEST_COST = 4096

# The answer to `Upgrade: h2c`; the HTTP/2 adapter's first bytes follow it.
SWITCHING_TO_H2C = (
    b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
)

# A duplicate Content-Length in a raw head (h11 folds equal duplicates into one).
_CONTENT_LENGTH_LINE = re.compile(rb"\ncontent-length[ \t]*:", re.IGNORECASE)


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode())


_STATUS_LINES = {status.value: _status_line(status.value) for status in HTTPStatus}


class State(Enum):
    """Where one side of the HTTP/1.1 cycle is (h11's model: the request side, `their`,
    and the response side, `our`, each have one of these).

    their: IDLE -> BODY (a request taken; its body arriving) -> DONE (read whole) -> IDLE
           (its response done); BODY -> IDLE directly when the response ended first and
           the rest of the body was skipped; DONE -> TUNNEL after a WebSocket upgrade
           request (the connection's bytes are that stream's body from then on).
    our:   IDLE -> SEND_RESPONSE (a request taken) -> BODY (head sent) -> IDLE, or CLOSED
           when the connection must end. CLOSED is final: the connection closes once
           `out` is written, and nothing is added to `out` after it.
    """

    IDLE = "idle"
    SEND_RESPONSE = "send-response"
    BODY = "body"
    DONE = "done"
    TUNNEL = "tunnel"
    CLOSED = "closed"


# Module names for the states, as h11 exports its own: the hot path compares against them.
IDLE, SEND_RESPONSE, BODY, DONE, TUNNEL, CLOSED = State


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_framing(request: Request, max_head: int) -> tuple[bool, bytes]:
    """Reject what would let two parsers disagree on where a request ends.

    Returns whether the request asked for `Expect: 100-continue`, and its Upgrade value
    (b"" if none): one pass over the fields, whose names both parsers lower-case.
    """
    headers = request.headers
    size = len(request.raw_path)
    lengths = 0
    chunked = False
    expect = False
    host = False
    upgrade = b""
    for name, value in headers:
        size += len(name) + len(value) + 4
        if name == b"host":
            if host:
                raise BadRequest("duplicate Host header")  # RFC 9112 3.2: routing depends on it
            host = True
        elif name == b"content-length":
            lengths += 1
            if not value.isdigit():
                raise BadRequest("invalid Content-Length")
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"expect":
            expect = value.lower() == b"100-continue"
        elif name == b"upgrade" and not upgrade:
            upgrade = value
    if size > max_head:
        raise BadRequest("request head too large", 431)
    if lengths > 1:
        raise BadRequest("duplicate Content-Length")
    if lengths and chunked:
        raise BadRequest("both Content-Length and Transfer-Encoding")
    if request.http_version == "1.1" and not host:
        raise BadRequest("missing Host header")
    return expect, upgrade


class H1Adapter(ABC):
    """Shared HTTP/1.1 logic; subclasses feed a parser and (h11) frame responses.

    The cycle is two `State`s, `their` and `our`. Beside them, a few flags that are not
    phases of the cycle: `keep_alive` (a decision gathered during a cycle — from the
    request, max_requests, a drain, the response's own fields — that picks IDLE or
    CLOSED at its end, as h11's keep_alive does), `draining` (the server's, outlives
    cycles), `expect_continue` (a 100 still owed while SEND_RESPONSE, h11's
    client_is_waiting_for_100_continue), and the current response's framing facts
    `chunked`, `head_only` and `http11`.
    """

    @abstractmethod
    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes (b"" = the peer closed its side) and return the stream events."""

    http_version = "1.1"

    def __init__(self, max_head: int, max_requests: int, allow_h2c: bool) -> None:
        self.max_head = max_head
        self.max_requests = max_requests
        self.allow_h2c = allow_h2c
        self.out: list[bytes] = []  # bytes waiting for the connection, in order
        self.events: list[Event] = []
        self.pending: deque[Event] = deque()
        self.pending_bytes = 0
        self.last_id = 0
        self.active = 0  # stream whose request is being served; 0 = none
        self.requests = 0
        self.their = IDLE
        self.our = IDLE
        self.closing = False  # our is CLOSED (see _close)
        self.chunked = False
        self.head_only = False
        self.keep_alive = True
        self.expect_continue = False
        self.draining = False
        self.unacked = 0
        self._pending_keep_alive: deque[bool] = deque()
        self.request_protocol: str | None = None
        self.discarding = 0  # a stream whose unread body is being skipped

    # --- state the connection reads ---------------------------------------

    def _close(self) -> None:
        """To CLOSED, which is final: the connection closes once `out` is written."""
        self.our = CLOSED
        # `closing` mirrors it as a plain attribute, like `out`: the connection reads both
        # after every event and command (a flush), and a property call there costs more
        # than the rest of the check. Only this method sets either.
        self.closing = True

    @property
    def backlog(self) -> int:
        # Held pipelined requests count too, so a flood of them pauses reading.
        held = len(self._pending_keep_alive) * PENDING_REQUEST_COST
        return self.unacked + self.pending_bytes + held

    @property
    def idle(self) -> bool:
        return self.active == 0 and not self.pending

    @property
    def head_pending(self) -> bool:
        """Part of a request head has arrived, not all of it (for `header_timeout`)."""
        return False

    def time_out(self, message: str) -> list[Event]:
        """A slow client: 408 unless a response has started, then close; the active
        stream (if any) is reset."""
        self._fail(BadRequest(message, 408))
        events, self.events = self.events, []
        return events

    def data_to_send(self) -> bytes:
        if not self.out:
            return b""
        data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
        self.out.clear()
        return data

    # --- parser side --------------------------------------------------------

    def _emit(self, event: Event) -> None:
        """Deliver now if it belongs to the active request, else hold it (pipelining)."""
        if event.stream_id == self.discarding:  # type: ignore[union-attr]
            return
        if self.active == event.stream_id:  # type: ignore[union-attr]
            if isinstance(event, Body):
                self.unacked += len(event.data)
            self.events.append(event)
        else:
            if isinstance(event, Body):
                self.pending_bytes += len(event.data)
            self.pending.append(event)

    def _new_request(
        self, method: str, target: bytes, headers: Headers, version: str, keep_alive: bool
    ) -> None:
        self.last_id += 1
        request = Request(self.last_id, method, target, headers, version)
        if self.active == 0 and not self.pending:
            self._start(request, keep_alive)
        else:
            self.pending.append(request)
            self._pending_keep_alive.append(keep_alive)

    def _start(self, request: Request, keep_alive: bool) -> None:
        self.requests += 1
        self.active = request.stream_id
        self.their = BODY
        if self.our is not CLOSED:
            self.our = SEND_RESPONSE
        self.head_only = request.method == "HEAD"
        self.keep_alive = keep_alive and not self.draining
        if self.requests >= self.max_requests:
            self.keep_alive = False
        try:
            self.expect_continue, upgrade = check_framing(request, self.max_head)
        except BadRequest as exc:
            self._fail(exc)
            return
        if upgrade and request.method == "GET" and b"websocket" in upgrade.lower():
            request = replace(request, protocol="websocket")  # the event leaves complete
            self.keep_alive = False  # accepted or denied, this connection ends with the stream
        self.request_protocol = request.protocol
        self.events.append(request)

    def _end_of_request(self, stream_id: int, trailers: Headers | None = None) -> None:
        if stream_id == self.discarding:
            self.discarding = 0
            self.their = IDLE
            return
        if stream_id == self.active:
            self.their = DONE
            if self.request_protocol == "websocket":
                return  # the upgrade request has no body; the stream goes on in the tunnel
        self._emit(EndBody(stream_id, trailers))

    def _fail(self, exc: BadRequest) -> None:
        """Answer a broken request and close: framing can no longer be trusted."""
        self.events.append(ProtocolError(str(exc)))
        if self.active and self.our is BODY:
            self.events.append(StreamReset(self.active))
        elif self.our is not CLOSED:
            body = f"{exc.status} {HTTPStatus(exc.status).phrase}: {exc}\n".encode()
            self.out.append(
                _STATUS_LINES[exc.status]
                + b"content-type: text/plain; charset=utf-8\r\n"
                + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                + body
            )
            if self.active:
                self.events.append(StreamReset(self.active))
        self.active = 0
        self.pending.clear()
        self._close()

    def resume(self) -> list[Event]:
        """After a response: start the next pipelined request, if one is held."""
        events = self.events
        self.events = []
        if self.active or self.our is CLOSED:
            return events
        while self.pending:
            event = self.pending[0]
            if isinstance(event, Request):
                if self.active:
                    break
                self.pending.popleft()
                self._start(event, self._pending_keep_alive.popleft())
                continue
            self.pending.popleft()
            if isinstance(event, Body):
                self.pending_bytes -= len(event.data)
                self.unacked += len(event.data)
            elif isinstance(event, EndBody):
                self.their = DONE
            self.events.append(event)
        events, self.events = self.events, []
        return events

    def _tunnel_receive(self, data: bytes) -> list[Event]:
        if data:
            self._emit(Body(self.active, data))
        else:
            if self.active:
                self.events.append(StreamReset(self.active))
            self._close()
        events, self.events = self.events, []
        return events

    def _open_tunnel(self, trailing: bytes) -> None:
        self.their = TUNNEL
        if trailing:
            self._emit(Body(self.active, trailing))

    def ack_data(self, stream_id: int, size: int) -> None:
        self.unacked = max(0, self.unacked - size)

    def want_body(self, stream_id: int) -> None:
        if (
            self.expect_continue
            and self.http11  # RFC 9110 10.1.1: HTTP/1.0 clients get no 100
            and stream_id == self.active
            and self.our is SEND_RESPONSE
        ):
            self.expect_continue = False
            self._send_continue()

    def _send_continue(self) -> None:
        self.out.append(b"HTTP/1.1 100 Continue\r\n\r\n")

    # --- response side --------------------------------------------------------

    def sendable(self, stream_id: int) -> int:
        return 1 << 30 if stream_id == self.active else -1

    def goaway(self, linger: bool = False) -> None:
        """No more keep-alive. An idle connection closes at once unless `linger`: then
        the caller closes it after a short window in which a request already on the
        wire is still answered (with `connection: close`)."""
        self.draining = True
        self.keep_alive = False
        # A connection that has not sent its first request yet was accepted for it:
        # answer that one (with `connection: close`), or a client racing our
        # shutdown or a worker's recycling sees its request dropped.
        if self.active == 0 and self.requests and not self.pending and not linger:
            self._close()

    @abstractmethod
    def release(self) -> None:
        """The peer is gone: break reference cycles (see base.Adapter.release)."""

    def reset(self, stream_id: int) -> None:
        # HTTP/1.1 has no stream reset: a response cut short can only end the connection.
        if stream_id == self.active:
            self.active = 0
            self._close()

    def _response_done(self) -> None:
        their = self.their
        if their is BODY and self.keep_alive:
            # The app answered without reading the whole body: skip the rest of it
            # (parsed, not stored), then carry on with the next request.
            self.discarding = self.active
        elif their is DONE:
            self.their = IDLE
        self.active = 0
        if not self.keep_alive:
            self._close()
            self.pending.clear()
        elif self.our is not CLOSED:
            self.our = IDLE

    def _frame_headers(self, status: int, headers: Headers, body: bytes, end: bool) -> Headers:
        """Decide body framing and connection persistence; returns the headers to send.

        Like the h2 and h3 adapters, this one does not re-check the fields: the connection
        checks what an app sends once, for every protocol (`headers.check_fields`),
        and adds the cached Server/Date/Alt-Svc fields after that check."""
        has_length = False
        said_close = False
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                has_length = True
            elif lname == b"connection" and b"close" in value.lower():
                self.keep_alive = False
                said_close = True
        if self.expect_continue:
            # A final answer without 100 Continue: the client may never send the body.
            self.keep_alive = False
        headers = list(headers)
        self.chunked = False
        if status < 200 or status in (204, 304):
            pass
        elif not has_length:
            if end:
                headers.append((b"content-length", b"%d" % len(body)))
            elif self.head_only:
                pass
            elif self.http11:
                headers.append((b"transfer-encoding", b"chunked"))
                self.chunked = True
            else:
                self.keep_alive = False  # HTTP/1.0: the body ends when the connection does
        if not self.keep_alive:
            if not said_close:
                headers.append((b"connection", b"close"))
        elif not self.http11:
            headers.append((b"connection", b"keep-alive"))
        return headers

    http11 = True

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        if stream_id != self.active or self.our is not SEND_RESPONSE or not self.http11:
            return
        self.out.append(self._head(status, headers))

    def _head(self, status: int, headers: Headers, body: bytes = b"") -> bytes:
        """Status line, fields and (a small) body in one join: one buffer, one write."""
        parts = [_STATUS_LINES.get(status) or _status_line(status)]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", body)
        return b"".join(parts)

    def send_response(
        self, stream_id: int, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        if stream_id != self.active or self.our is not SEND_RESPONSE:
            return
        headers = self._frame_headers(status, headers, body, end)
        self.our = BODY
        self.expect_continue = False
        if self.head_only or not body:
            self.out.append(self._head(status, headers))
        elif self.chunked:
            self.out.append(self._head(status, headers, b"%x\r\n%b\r\n" % (len(body), body)))
        else:
            self.out.append(self._head(status, headers, body))
        if end:
            self._finish(None)

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        if stream_id != self.active:
            return
        if data and not self.head_only:
            if self.chunked:
                self.out.append(b"%x\r\n" % len(data) + data + b"\r\n")
            else:
                self.out.append(data)
        if end:
            self._finish(None)

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        if stream_id == self.active:
            self._finish(headers)

    def _finish(self, trailers: Headers | None) -> None:
        if self.chunked and not self.head_only:
            if trailers:
                self.out.append(b"0\r\n" + _header_block(trailers))
            else:
                self.out.append(b"0\r\n\r\n")
        self._response_done()


class Parsing(Enum):
    """Where llhttp is in the bytes (HttptoolsAdapter): ahead of the cycle's `their`, since
    pipelined requests are parsed while an earlier one is served.

    BETWEEN -> HEAD (a message began) -> BODY (its head is complete) -> BETWEEN (it ended);
    IGNORING: a parse error after a `Connection: close` request, whose rest RFC 9112 9.6
    lets us ignore; final.
    """

    BETWEEN = "between"
    HEAD = "head"
    BODY = "body"
    IGNORING = "ignoring"


P_BETWEEN, P_HEAD, P_BODY, P_IGNORING = Parsing


class HttptoolsAdapter(H1Adapter):
    """The fast path: llhttp via httptools, responses framed by H1Adapter."""

    def __init__(self, max_head: int, max_requests: int, allow_h2c: bool) -> None:
        import httptools

        super().__init__(max_head, max_requests, allow_h2c)
        self._httptools = httptools
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: Headers = []
        self.parsing = P_BETWEEN
        self.head_bytes = 0
        self.h2c: tuple[Request, bytes, int, list[bytes]] | None = None
        self.trailers: Headers = []
        self.last_keep_alive = True
        self.completed = 0  # messages parsed whole so far

    @property
    def head_pending(self) -> bool:
        return self.parsing is P_HEAD and self.our is not CLOSED

    def release(self) -> None:
        # The parser holds this adapter's callbacks (bound methods): a cycle that only a
        # full gc would free, with the connection's buffers in it. No bytes come now.
        self._close()  # receive_data returns before it would need the parser
        vars(self).pop("parser", None)

    # httptools callbacks (called from inside feed_data)
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.trailers = []
        self.parsing = P_HEAD
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.parsing is P_HEAD:
            self.headers.append((name.lower(), value))
        else:  # llhttp reports chunked trailers through the same callback
            self.trailers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.parsing = P_BODY
        parser = self.parser
        version = parser.get_http_version()
        self.http11 = version == "1.1"
        self.last_keep_alive = parser.should_keep_alive()
        method = parser.get_method().decode("ascii")
        self._new_request(method, self.url, self.headers, version, self.last_keep_alive)

    def on_body(self, body: bytes) -> None:
        self._emit(Body(self.last_id, body))

    def on_message_complete(self) -> None:
        self.completed += 1
        self.parsing = P_BETWEEN
        self._end_of_request(self.last_id, self.trailers or None)

    def receive_data(self, data: bytes) -> list[Event]:
        if self.our is CLOSED:
            return []
        if self.their is TUNNEL:
            return self._tunnel_receive(data)
        if self.parsing is P_IGNORING:
            return []
        if self.h2c is not None:
            self._h2c_feed(data)
            events, self.events = self.events, []
            return events
        if not data:
            if self.active and self.their is BODY:
                self.events.append(StreamReset(self.active))
            self._close()
            return self.resume()
        was_in_head = self.parsing is P_HEAD
        completed = self.completed
        try:
            self.parser.feed_data(data)
        except self._httptools.HttpParserUpgrade as exc:
            self._upgrade(data[exc.args[0] :])
        except self._httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._fail(cause if isinstance(cause, BadRequest) else BadRequest(str(exc)))
        except self._httptools.HttpParserError as exc:
            if not self.last_keep_alive and self.parsing is not P_BODY:
                # RFC 9112 9.6: after a request with `Connection: close`, ignore the rest.
                self.parsing = P_IGNORING
            else:
                self._fail(BadRequest(str(exc) or "malformed request"))
        else:
            # A head still incomplete after this read: count what it has taken so far.
            # When earlier requests also ended in this read, their bytes are not the
            # head's, so the read is not counted (the next read will be).
            in_head = self.parsing is P_HEAD
            if in_head and (was_in_head or completed == self.completed):
                self.head_bytes += len(data)
            if in_head and self.head_bytes > self.max_head:
                self._fail(BadRequest("request head too large", 431))
        events = self.events
        self.events = []
        return events

    def _upgrade(self, trailing: bytes) -> None:
        """llhttp stops at the head of an Upgrade request; an h2c body is ours to read."""
        request = self._find_request()
        if request is not None and request.protocol == "websocket":
            self._open_tunnel(trailing)
            return
        if request is None and self.pending:
            self._fail(BadRequest("an Upgrade request cannot be pipelined"))
            return
        settings = None if request is None else first(request.headers, b"http2-settings")
        if request is None or settings is None or not self.allow_h2c:
            # Served as a plain request; llhttp stays paused, so the connection ends after it.
            self.keep_alive = False
            return
        if not _wants_h2c(request.headers):
            self.keep_alive = False
            return
        length = first(request.headers, b"content-length")
        if first(request.headers, b"transfer-encoding") is not None:
            self._fail(BadRequest("h2c upgrade with a chunked body"))
            return
        self.events = []
        self.active = 0
        self.h2c = (request, settings, int(length or 0), [])
        self._h2c_feed(trailing)

    def _h2c_feed(self, data: bytes) -> None:
        assert self.h2c is not None
        request, settings, left, parts = self.h2c
        parts.append(data[:left])
        if len(data) < left:
            self.h2c = (request, settings, left - len(data), parts)
            return
        self.h2c = None
        body = b"".join(parts)
        self.out.append(SWITCHING_TO_H2C)
        self.events.append(H2CUpgrade(request, body, settings, data[left:]))
        self._close()  # HTTP/2 takes the connection over

    def _find_request(self) -> Request | None:
        for event in self.events:
            if isinstance(event, Request):
                return event
        return None


class H11Adapter(H1Adapter):
    """The reference path: h11 parses requests and frames responses."""

    def __init__(self, max_head: int, max_requests: int, allow_h2c: bool) -> None:
        import h11

        super().__init__(max_head, max_requests, allow_h2c)
        self._h11 = h11
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        self.h2c: tuple[Request, bytes, list[bytes]] | None = None

    def release(self) -> None:
        pass  # h11's Connection holds no callbacks into this adapter: no cycle to break

    @property
    def head_pending(self) -> bool:
        conn = self.conn
        return (
            conn.their_state is self._h11.IDLE
            and bool(conn.trailing_data[0])
            and self.our is not CLOSED
        )

    def receive_data(self, data: bytes) -> list[Event]:
        if self.our is CLOSED:
            return []
        if self.their is TUNNEL:
            return self._tunnel_receive(data)
        self.conn.receive_data(data)
        self._next_events()
        events = self.events
        self.events = []
        return events

    def _next_events(self) -> None:
        h11 = self._h11
        conn = self.conn
        while self.our is not CLOSED:
            if conn.their_state is h11.MUST_CLOSE:
                return  # RFC 9112 9.6: nothing after a `Connection: close` request counts
            if conn.their_state is h11.IDLE:
                problem = _head_problem(conn.trailing_data[0])
                if problem:
                    self._fail(BadRequest(problem))
                    return
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(BadRequest(str(exc), exc.error_status_hint))
                return
            if event is h11.PAUSED and conn.their_state is h11.MIGHT_SWITCH_PROTOCOL:
                if self.active and self.request_protocol == "websocket":
                    self._open_tunnel(bytes(conn.trailing_data[0]))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if self.h2c is not None:
                self._h2c_event(event)
            elif isinstance(event, h11.Request):
                headers = list(event.headers)
                version = event.http_version.decode()
                self.http11 = version == "1.1"
                settings = first(headers, b"http2-settings")
                if self.allow_h2c and settings is not None and _wants_h2c(headers):
                    # Read the upgrade request's body whole, then hand over to HTTP/2.
                    self.last_id += 1
                    method = event.method.decode("ascii")
                    request = Request(self.last_id, method, event.target, headers, version)
                    self.h2c = (request, settings, [])
                    continue
                self._new_request(
                    event.method.decode("ascii"),
                    event.target,
                    headers,
                    version,
                    conn.their_state is not h11.MUST_CLOSE and _keep_alive(headers, version),
                )
            elif isinstance(event, h11.Data):
                self._emit(Body(self.last_id, bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                self._end_of_request(self.last_id, list(event.headers) or None)
                self._next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                if self.active and self.their is BODY:
                    self.events.append(StreamReset(self.active))
                self._close()
                return

    @property
    def backlog(self) -> int:
        # Pipelined bytes wait unparsed in h11's buffer: they count as backlog.
        unparsed: int = len(self.conn._receive_buffer)
        return self.unacked + self.pending_bytes + unparsed

    def _h2c_event(self, event: object) -> None:
        h11 = self._h11
        assert self.h2c is not None
        request, settings, body = self.h2c
        if isinstance(event, h11.Data):
            body.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            self.h2c = None
            trailing = bytes(self.conn.trailing_data[0])
            self.out.append(SWITCHING_TO_H2C)
            self.events.append(H2CUpgrade(request, b"".join(body), settings, trailing))
            self._close()  # h11 is done with this connection; HTTP/2 takes it over
        else:
            self.h2c = None
            self._fail(BadRequest("connection closed during h2c upgrade"))

    # h11 frames the response itself, so the sending side goes through it.
    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        if stream_id != self.active or self.our is not SEND_RESPONSE or not self.http11:
            return
        h11 = self._h11
        reason = _reason(status)
        event = h11.InformationalResponse(status_code=status, headers=headers, reason=reason)
        self.out.append(self.conn.send(event))

    def _send_continue(self) -> None:
        self.send_informational(self.active, 100, [])

    def send_response(
        self, stream_id: int, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        if stream_id != self.active or self.our is not SEND_RESPONSE:
            return
        if status == 101:
            # h11 is paused on the upgrade request; the tunnel's head and bytes are ours.
            H1Adapter.send_response(self, stream_id, status, headers, body, end)
            return
        h11 = self._h11
        headers = self._frame_headers(status, headers, body, end)
        self.our = BODY
        self.expect_continue = False
        response = h11.Response(status_code=status, headers=headers, reason=_reason(status))
        self.out.append(self.conn.send(response))
        if body and not self.head_only:
            self.out.append(self.conn.send(h11.Data(data=body)))
        if end:
            self._finish(None)

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        if self.their is TUNNEL:
            H1Adapter.send_data(self, stream_id, data, end)
            return
        if stream_id != self.active:
            return
        if data and not self.head_only:
            self.out.append(self.conn.send(self._h11.Data(data=data)))
        if end:
            self._finish(None)

    def _finish(self, trailers: Headers | None) -> None:
        if self.their is TUNNEL:
            self._response_done()
            return
        h11 = self._h11
        if not self.chunked:
            trailers = None
        try:
            self.out.append(self.conn.send(h11.EndOfMessage(headers=trailers or [])))
        except h11.LocalProtocolError:
            self._close()  # a body shorter than its Content-Length
        self._response_done()
        if self.our is CLOSED:
            return
        if self.conn.our_state is h11.MUST_CLOSE:
            self._close()
            return
        self._next_cycle()
        self._next_events()

    def _next_cycle(self) -> None:
        """Both sides done (our response sent, their body read or skipped): next request."""
        h11 = self._h11
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()


def _reason(status: int) -> bytes:
    return (_STATUS_LINES.get(status) or _status_line(status))[13:-2]


def _header_block(headers: Headers) -> bytes:
    return b"".join([name + b": " + value + b"\r\n" for name, value in headers]) + b"\r\n"


def _wants_h2c(headers: Headers) -> bool:
    upgrade = first(headers, b"upgrade")
    return upgrade is not None and upgrade.strip().lower() == b"h2c"


def _keep_alive(headers: Headers, version: str) -> bool:
    connection = (first(headers, b"connection") or b"").lower()
    if version == "1.0":
        return b"keep-alive" in connection
    return b"close" not in connection


def _head_problem(buffered: bytes | bytearray) -> str | None:
    """What h11 tolerates but llhttp refuses, checked on the raw head so both parsers agree."""
    end = buffered.find(b"\r\n\r\n")
    head = buffered if end < 0 else buffered[:end]
    if head.count(b"\n") != head.count(b"\r\n"):
        return "bare LF in request head"
    if len(_CONTENT_LENGTH_LINE.findall(head)) > 1:
        return "duplicate Content-Length"
    return None
