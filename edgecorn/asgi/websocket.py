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


class WebSocketStream:
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
        config = conn.config
        self.max_message = config.websocket_max_message_size
        self.max_queue = max(1, config.max_app_queue_size)
        self.ws: WSConnection | None = None
        self.inbox: deque[dict[str, Any]] = deque([{"type": "websocket.connect"}])
        self.waiter: Any = None
        self.accepted = False
        self.denying = False  # a websocket.http.response is being sent
        self.done = False  # the stream is finished for the app
        self.closed_sent = False
        self.disconnected = False
        self.unacked = 0
        self.parts: list[bytes | str] = []
        self.part_size = 0
        self.pong_due = False
        self.ping_timer: Any = None
        self.valid = self.key is not None or not self.h1
        # RFC 6455 4.4: only version 13 exists; anything else (or none, over HTTP/1.1)
        # is answered 426 naming it. Extended CONNECT may leave the header out.
        version = first(request.headers, b"sec-websocket-version")
        self.version_ok = version == b"13" if self.h1 else version in (None, b"13")
        self.app_told = False  # websocket.disconnect is queued for the app
        self._deny_status = 200
        self._deny_headers: Headers = []
        self._deny_started = False

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
            if not self.valid:
                await self._respond(400, b"missing Sec-WebSocket-Key\n")
                return
            if not self.version_ok:
                version = [(b"sec-websocket-version", b"13")]
                await self._respond(426, b"426 Upgrade Required: WebSocket version 13\n", version)
                return
            await app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("error in ASGI websocket app for %s", self.scope["path"])
            if self.accepted:
                self._close(CloseReason.INTERNAL_ERROR, "")
            elif not self.denying:
                await self._respond(500, b"500 Internal Server Error\n")
        else:
            if not self.accepted and not self.denying and not self.disconnected:
                await self._respond(403, _DENIED)  # returned without accepting
            elif self.accepted:
                self._close(CloseReason.NORMAL_CLOSURE, "")
        finally:
            self._cancel_ping()
            if self.accepted:
                while not self.done:  # the closing handshake (bounded by the close timer)
                    self.waiter = self.conn.create_future()
                    await self.waiter
            elif not self.done:
                self.done = True
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
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            if self.disconnected or self.closed_sent:
                return  # ASGI: sends after a disconnect are dropped
            assert self.ws is not None
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
            if self.accepted:
                self._close(int(message.get("code", 1000)), message.get("reason") or "")
            elif not self.denying:
                await self._respond(403, _DENIED)
        elif kind == "websocket.http.response.start":
            if self.accepted or self.denying:
                raise RuntimeError("websocket.http.response.start after the handshake")
            self.denying = True
            headers = self.conn.response_headers(message.get("headers", ()))
            self._deny_status = int(message["status"])
            self._deny_headers = headers
            self._deny_started = False
        elif kind == "websocket.http.response.body":
            if not self.denying or self.done:
                raise RuntimeError("websocket.http.response.body without a response start")
            body = message.get("body", b"")
            end = not message.get("more_body", False)
            if not self._deny_started:
                self._deny_started = True
                status, headers = self._deny_status, self._deny_headers
                await self.conn.respond(self.stream_id, status, headers, body, end)
            else:
                await self.conn.send_body(self.stream_id, body, end)
            if end:
                self.done = True
                self.disconnected = True
        else:
            raise ValueError(f"unexpected ASGI message type {kind!r} on a websocket")

    async def _accept(self, message: dict[str, Any]) -> None:
        if self.accepted or self.denying:
            raise RuntimeError("websocket.accept sent twice or after a denial")
        if self.disconnected:
            return
        headers: Headers = [(name.lower(), value) for name, value in message.get("headers", ())]
        extensions: list[Extension] = []
        if self.offered_extensions and self.conn.config.websocket_permessage_deflate:
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
        self.accepted = True
        headers = self.conn.response_headers(headers)
        await self.conn.respond(self.stream_id, status, headers, b"", False)
        self._schedule_ping()

    async def _respond(self, status: int, body: bytes, extra: Headers | None = None) -> None:
        headers = self.conn.response_headers(
            [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
            + (extra or [])
        )
        self.denying = True
        self.done = True
        await self.conn.respond(self.stream_id, status, headers, body, True)

    def _send_frames(self, data: bytes) -> None:
        # Control frames (pong, close) are small: queue them without waiting for room.
        if data and not self.done:
            self.conn.write_body(self.stream_id, data)

    def _close(self, code: int, reason: str) -> None:
        if self.ws is None or self.closed_sent or self.disconnected:
            return
        if self.ws.state is ConnectionState.OPEN:
            self.closed_sent = True
            self._send_frames(self.ws.send(CloseConnection(code=code, reason=reason)))
            self._tell_app(code, reason)
            self._wake()
            # The peer answers with its close frame; then `_peer_closed` finishes the stream.
            # If it never does, the close timer ends the stream anyway.
            self.conn.call_later(5.0, self._finish)

    def _finish(self) -> None:
        if not self.done:
            self.done = True
            self.disconnected = True
            self._tell_app(CloseReason.ABNORMAL_CLOSURE, "")
            self._cancel_ping()
            self.conn.end_body(self.stream_id)
            self._wake()

    def going_away(self) -> None:
        """Graceful shutdown: 1001, the peer answers, the stream ends."""
        if self.accepted:
            self._close(CloseReason.GOING_AWAY, "server shutting down")

    # --- keep-alive pings ------------------------------------------------------------

    def _schedule_ping(self) -> None:
        interval = self.conn.config.websocket_ping_interval
        if interval:
            self.ping_timer = self.conn.call_later(interval, self._ping)

    def _ping(self) -> None:
        self.ping_timer = None
        if self.done or self.disconnected or self.ws is None:
            return
        if self.pong_due:  # no answer to the last ping in a whole interval: a dead peer
            self._disconnect(CloseReason.ABNORMAL_CLOSURE, "ping timeout")
            self.done = True
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
