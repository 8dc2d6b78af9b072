"""WebSocketStream: the ASGI `websocket` scope over any protocol.

HTTP/1.1 (`Upgrade: websocket`), HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220)
differ only in the handshake answer (101 with Sec-WebSocket-Accept, or 200);
after it, frames are the stream's body bytes both ways, parsed by wsproto.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import zlib
from collections import deque
from enum import Enum
from typing import Any

from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol

from ..headers import first
from ..protocol.events import Headers, Request
from .host import StreamHost
from .http import build_scope
from .types import ASGIApp

log = logging.getLogger("edgecorn.error")

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DENIED = b"403 Forbidden\n"


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key.strip() + _GUID).digest())


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate that inflates at most `max_message` bytes of one message: a
    small compressed frame that would inflate past it is refused (1009) after inflating
    only that much (wsproto's own inflates a whole frame, however big it becomes)."""

    def __init__(self, max_message: int) -> None:
        super().__init__()
        self.max_message = max_message
        self.inflated = 0  # of the message being received

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        decompressor = self._decompressor
        assert decompressor is not None
        try:  # one byte past the limit tells "too big" from "exactly the limit"
            out = decompressor.decompress(data, self.max_message - self.inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self.inflated += len(out)
        if self.inflated > self.max_message:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        return self._inflate(bytes(data))

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not fin or not self._inbound_compressed or not self._inbound_is_compressible:
            if fin:
                self.inflated = 0
            return super().frame_inbound_complete(proto, fin)
        tail = self._inflate(b"\x00\x00\xff\xff")  # the end of a message (RFC 7692 7.2.2)
        self.inflated = 0
        if proto.client:
            no_context_takeover = self.server_no_context_takeover
        else:
            no_context_takeover = self.client_no_context_takeover
        if no_context_takeover:
            self._decompressor = None
        self._inbound_compressed = None
        return tail


class Phase(Enum):
    """Where the stream is, seen from the server's side.

    HANDSHAKE -> OPEN (websocket.accept) -> CLOSING (our close frame sent) -> CLOSED
    HANDSHAKE -> DENIAL (websocket.http.response.start) -> DENIAL_BODY (its head sent)
              -> CLOSED, or HANDSHAKE -> CLOSED (a refusal or error answered in one piece)
    OPEN -> CLOSED without CLOSING: the peer's close frame answered, or a dead peer.
    CLOSED: nothing more is sent on the stream; the app's `run` may end.
    """

    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSING = "closing"
    DENIAL = "denial"
    DENIAL_BODY = "denial-body"
    CLOSED = "closed"


class WebSocketStream:
    """One WebSocket for an ASGI app: the phase above, plus three flags that are not
    phases because they change independently of it:

    - `disconnected`: the peer's side is over (reset, close frame, end of a denial, a
      dead peer). It can happen in any phase — during the handshake, while OPEN, while
      our close waits for its answer — and only stops input and the app's sends.
    - `app_told`: websocket.disconnect is queued for the app; once per stream, whichever
      side closed first.
    - `pong_due`: the keep-alive ping's own two-step cycle (sent, answered), ticking
      beside the OPEN phase.

    Whether the handshake was accepted is `ws is not None` (wsproto exists from accept on).
    """

    def __init__(self, conn: StreamHost, request: Request) -> None:
        self.conn = conn
        self.stream_id = request.stream_id
        self.h1 = request.http_version in ("1.1", "1.0")
        scope = build_scope(conn, request)
        scope["type"] = "websocket"
        # build_scope's scheme: the connection's, or a trusted proxy's (forwarded.py)
        scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
        scope.pop("method", None)
        kept = scope["extensions"]
        scope["extensions"] = {"websocket.http.response": {}}
        for key in ("edgecorn.peer", "tls"):  # the ASGI TLS extension covers wss:// too
            if key in kept:
                scope["extensions"][key] = kept[key]
        offered = first(request.headers, b"sec-websocket-protocol")
        scope["subprotocols"] = (
            [p.strip() for p in offered.decode("latin-1").split(",") if p.strip()]
            if offered
            else []
        )
        self.scope = scope
        self.key = first(request.headers, b"sec-websocket-key")
        self.offered_extensions = first(request.headers, b"sec-websocket-extensions")
        limits = conn.context.limits
        self.max_message = limits.max_message_size
        self.max_queue = limits.max_app_queue_size
        self.ws: WSConnection | None = None
        self.inbox: deque[dict[str, Any]] = deque([{"type": "websocket.connect"}])
        self.waiter: Any = None
        self.phase = Phase.HANDSHAKE
        self.disconnected = False
        self.unacked = 0
        self.parts: list[bytes | str] = []
        self.part_size = 0
        self.pong_due = False
        self.ping_timer: Any = None
        # What is wrong with the handshake request itself, answered before any app runs:
        # HTTP/1.1 needs a key; RFC 6455 4.4: only version 13 exists, and anything else
        # (or none, over HTTP/1.1) is answered 426 naming it. Extended CONNECT may leave
        # the version out.
        version = first(request.headers, b"sec-websocket-version")
        self.bad_handshake = 0
        if self.key is None and self.h1:
            self.bad_handshake = 400
        elif version != b"13" and (self.h1 or version is not None):
            self.bad_handshake = 426
        self.app_told = False  # websocket.disconnect is queued for the app
        self._deny_status = 200
        self._deny_headers: Headers = []

    # --- stream events from the connection -----------------------------------

    def on_body(self, data: bytes) -> None:
        self.unacked += len(data)
        if self.ws is None or self.disconnected:
            self._ack()
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Message):
                self._message(event)
            elif isinstance(event, CloseConnection):
                self._peer_closed(event)
            elif isinstance(event, Ping):
                self._send_frames(self.ws.send(event.response()))
            elif isinstance(event, Pong):
                self.pong_due = False
        if len(self.inbox) < self.max_queue:
            self._ack()
        self._wake()

    def on_end(self) -> None:
        if not self.disconnected:
            self._disconnect(CloseReason.ABNORMAL_CLOSURE)

    def on_reset(self) -> None:
        if not self.disconnected:
            self._disconnect(CloseReason.ABNORMAL_CLOSURE)

    def _ack(self) -> None:
        if self.unacked:
            size, self.unacked = self.unacked, 0
            self.conn.ack(self.stream_id, size)

    def _message(self, event: Message) -> None:  # type: ignore[type-arg]
        data = event.data
        self.parts.append(data)
        # The limit is in bytes, for text too (as the inflated size is counted).
        self.part_size += (
            len(data) if isinstance(data, bytes) or data.isascii() else len(data.encode())
        )
        if self.part_size > self.max_message:
            self.parts, self.part_size = [], 0
            self._close(CloseReason.MESSAGE_TOO_BIG, "message too big")
            return
        if not event.message_finished:
            return
        if isinstance(event, TextMessage):
            text = "".join(self.parts)  # type: ignore[arg-type]
            self.inbox.append({"type": "websocket.receive", "text": text})
        elif isinstance(event, BytesMessage):
            data = b"".join(self.parts)  # type: ignore[arg-type]
            self.inbox.append({"type": "websocket.receive", "bytes": data})
        self.parts, self.part_size = [], 0

    def _peer_closed(self, event: CloseConnection) -> None:
        assert self.ws is not None
        if self.ws.state is ConnectionState.REMOTE_CLOSING:
            self._send_frames(self.ws.send(event.response()))
        elif self.ws.state is ConnectionState.OPEN:  # wsproto's ParseFailed: a protocol error
            self._send_frames(self.ws.send(CloseConnection(code=event.code, reason=event.reason)))
        self._disconnect(event.code, event.reason or "")
        self._finish()

    def _disconnect(self, code: int, reason: str = "") -> None:
        self.disconnected = True
        self._tell_app(code, reason)
        self._cancel_ping()
        self._wake()

    def _tell_app(self, code: int, reason: str) -> None:
        if not self.app_told:
            self.app_told = True
            self.inbox.append({"type": "websocket.disconnect", "code": int(code), "reason": reason})

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- the ASGI side -----------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        try:
            if self.bad_handshake == 400:
                await self._respond(400, b"missing Sec-WebSocket-Key\n")
                return
            if self.bad_handshake == 426:
                version = [(b"sec-websocket-version", b"13")]
                await self._respond(426, b"426 Upgrade Required: WebSocket version 13\n", version)
                return
            await app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("error in ASGI websocket app for %s", self.scope["path"])
            if self.ws is not None:
                self._close(CloseReason.INTERNAL_ERROR, "")
            elif self.phase is Phase.HANDSHAKE:
                await self._respond(500, b"500 Internal Server Error\n")
        else:
            if self.phase is Phase.HANDSHAKE and not self.disconnected:
                await self._respond(403, _DENIED)  # returned without accepting
            elif self.ws is not None:
                self._close(CloseReason.NORMAL_CLOSURE, "")
        finally:
            self._cancel_ping()
            if self.ws is not None:
                if self.disconnected:
                    # The peer reset the stream or ended its side without a close frame:
                    # no closing handshake can complete (and `_close` sent none), so end now.
                    self._finish()
                # the closing handshake (bounded by the close timer)
                while self.phase is not Phase.CLOSED:
                    self.waiter = self.conn.create_future()
                    await self.waiter
            elif self.phase is not Phase.CLOSED:
                self.phase = Phase.CLOSED
                self.conn.abort(self.stream_id)
            self.conn.stream_done(self)

    async def receive(self) -> dict[str, Any]:
        while not self.inbox:
            self.waiter = self.conn.create_future()
            await self.waiter
        message = self.inbox.popleft()
        if len(self.inbox) < self.max_queue // 2 + 1:
            self._ack()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if self.ws is None:
                raise RuntimeError("websocket.send before websocket.accept")
            if self.disconnected or self.phase is not Phase.OPEN:
                return  # ASGI: sends after a disconnect (or our close) are dropped
            text = message.get("text")
            payload = (
                self.ws.send(TextMessage(data=text))
                if text is not None
                else self.ws.send(BytesMessage(data=message.get("bytes") or b""))
            )
            await self.conn.send_body(self.stream_id, payload, False)
        elif kind == "websocket.accept":
            await self._accept(message)
        elif kind == "websocket.close":
            if self.ws is not None:
                self._close(int(message.get("code", 1000)), message.get("reason") or "")
            elif self.phase is Phase.HANDSHAKE:
                await self._respond(403, _DENIED)
        elif kind == "websocket.http.response.start":
            if self.phase is not Phase.HANDSHAKE:
                raise RuntimeError("websocket.http.response.start after the handshake")
            self.phase = Phase.DENIAL
            headers = self.conn.response_headers(message.get("headers", ()))
            self._deny_status = int(message["status"])
            self._deny_headers = headers
        elif kind == "websocket.http.response.body":
            phase = self.phase
            if phase is not Phase.DENIAL and phase is not Phase.DENIAL_BODY:
                raise RuntimeError("websocket.http.response.body without a response start")
            body = message.get("body", b"")
            end = not message.get("more_body", False)
            if phase is Phase.DENIAL:
                self.phase = Phase.DENIAL_BODY
                status, headers = self._deny_status, self._deny_headers
                await self.conn.respond(self.stream_id, status, headers, body, end)
            else:
                await self.conn.send_body(self.stream_id, body, end)
            if end:
                self.phase = Phase.CLOSED
                self.disconnected = True
        else:
            raise ValueError(f"unexpected ASGI message type {kind!r} on a websocket")

    async def _accept(self, message: dict[str, Any]) -> None:
        if self.phase is not Phase.HANDSHAKE:
            raise RuntimeError("websocket.accept sent twice or after a denial")
        if self.disconnected:
            return
        headers: Headers = [(name.lower(), value) for name, value in message.get("headers", ())]
        extensions: list[Extension] = []
        if self.offered_extensions and self.conn.context.limits.permessage_deflate:
            deflate = BoundedDeflate(self.max_message)
            for offer in self.offered_extensions.decode("latin-1").split(","):
                if offer.strip().startswith(deflate.name):
                    answer = deflate.accept(offer.strip())
                    if answer is not None:  # True, or the accepted parameters
                        value = deflate.name if answer is True else f"{deflate.name}; {answer}"
                        headers.append((b"sec-websocket-extensions", value.encode()))
                        extensions.append(deflate)
                    break
        subprotocol = message.get("subprotocol")
        if subprotocol:
            headers.append((b"sec-websocket-protocol", subprotocol.encode()))
        if self.h1:
            assert self.key is not None
            headers[:0] = [
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", accept_key(self.key)),
            ]
            status = 101
        else:
            status = 200
            if self.key is not None:
                # RFC 8441/9220 need no key, but some clients send one and refuse an
                # answer without Sec-WebSocket-Accept; harmless for the others.
                headers.append((b"sec-websocket-accept", accept_key(self.key)))
        self.ws = WSConnection(ConnectionType.SERVER, extensions)
        self.phase = Phase.OPEN
        headers = self.conn.response_headers(headers)
        await self.conn.respond(self.stream_id, status, headers, b"", False)
        self._schedule_ping()

    async def _respond(self, status: int, body: bytes, extra: Headers | None = None) -> None:
        headers = self.conn.response_headers(
            [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
            + (extra or [])
        )
        self.phase = Phase.CLOSED  # a denial in one piece
        await self.conn.respond(self.stream_id, status, headers, body, True)

    def _send_frames(self, data: bytes) -> None:
        # Control frames (pong, close) are small: queue them without waiting for room.
        if data and self.phase is not Phase.CLOSED:
            self.conn.write_body(self.stream_id, data)

    def _close(self, code: int, reason: str) -> None:
        if self.phase is not Phase.OPEN or self.disconnected:
            return
        assert self.ws is not None
        if self.ws.state is ConnectionState.OPEN:
            self.phase = Phase.CLOSING
            self._send_frames(self.ws.send(CloseConnection(code=code, reason=reason)))
            self._tell_app(code, reason)
            self._wake()
            # The peer answers with its close frame; then `_peer_closed` finishes the stream.
            # If it never does, the close timer ends the stream anyway.
            self.conn.call_later(5.0, self._finish)

    def _finish(self) -> None:
        if self.phase is not Phase.CLOSED:
            self.phase = Phase.CLOSED
            self.disconnected = True
            self._tell_app(CloseReason.ABNORMAL_CLOSURE, "")
            self._cancel_ping()
            self.conn.end_body(self.stream_id)
            self._wake()

    def going_away(self) -> None:
        """Graceful shutdown: 1001, the peer answers, the stream ends."""
        if self.ws is not None:
            self._close(CloseReason.GOING_AWAY, "server shutting down")

    # --- keep-alive pings ------------------------------------------------------------

    def _schedule_ping(self) -> None:
        interval = self.conn.context.limits.ping_interval
        if interval:
            self.ping_timer = self.conn.call_later(interval, self._ping)

    def _ping(self) -> None:
        self.ping_timer = None
        if self.phase is Phase.CLOSED or self.disconnected or self.ws is None:
            return
        if self.pong_due:  # no answer to the last ping in a whole interval: a dead peer
            self._disconnect(CloseReason.ABNORMAL_CLOSURE, "ping timeout")
            self.phase = Phase.CLOSED
            self.conn.abort(self.stream_id)
            self._wake()
            return
        self.pong_due = True
        self._send_frames(self.ws.send(Ping()))
        self._schedule_ping()

    def _cancel_ping(self) -> None:
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
