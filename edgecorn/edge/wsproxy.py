"""WebSockets through `proxy:`: the client's WebSocket (over h1, h2 or h3) bridged to an
HTTP/1.1 Upgrade to the upstream, messages relayed both ways, closes mirrored."""

from __future__ import annotations

import base64
import logging
import os
from typing import Protocol

import anyio
import h11
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .. import metrics
from ..asgi.types import Receive, Scope, Send
from .answers import refuse_websocket
from .errors import UpstreamError
from .headers import response_headers
from .spec import Route
from .upstream import Connection, Upstream


class Proxy(Protocol):
    """What the bridge needs of the proxy route."""

    route: Route
    upstreams: list[Upstream]

    def candidates(self) -> list[Upstream]: ...

    def target(self, scope: Scope, upstream: Upstream) -> bytes: ...

    def request_headers(
        self, scope: Scope, upstream: Upstream
    ) -> tuple[list[tuple[bytes, bytes]], dict[bytes, bytes]]: ...


log = logging.getLogger("edgecorn.error")

# Ours to set for the upstream handshake; the client's own (h2/h3 have none) are not relayed.
HANDSHAKE = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-accept",
        b"content-length",
    }
)
MAX_MESSAGE = 16 * 1024 * 1024


async def proxy_websocket(proxy: Proxy, scope: Scope, receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    route = proxy.route
    last: UpstreamError | None = None
    for upstream in proxy.candidates():
        try:
            conn, _ = await upstream.connect(route.connect_timeout)
        except UpstreamError as error:
            upstream.failed(str(error))
            last = error
            if metrics.recorder is not None:
                metrics.recorder.upstream_error(route, upstream.url, error.status)
            continue
        try:
            await _bridge(proxy, conn, scope, receive, send, upstream)
        except UpstreamError as error:
            if metrics.recorder is not None:
                metrics.recorder.upstream_error(route, upstream.url, error.status)
            log.error("upstream %s: WebSocket %s: %s", upstream.url, scope["path"], error)
            await _deny(scope, send, error.status)
        finally:
            await conn.aclose()
        return
    assert last is not None
    log.error(
        "upstream %s: WebSocket %s: %s: answering %d",
        ", ".join(route.upstreams),
        scope["path"],
        last,
        last.status,
    )
    await _deny(scope, send, last.status)


async def _deny(scope: Scope, send: Send, status: int) -> None:
    await refuse_websocket(scope, send, status, f"{status} upstream WebSocket failed\n")


async def _bridge(
    proxy: Proxy, conn: Connection, scope: Scope, receive: Receive, send: Send, upstream: Upstream
) -> None:
    headers, _ = proxy.request_headers(scope, upstream)
    headers = [(n, v) for n, v in headers if n not in HANDSHAKE]
    key = base64.b64encode(os.urandom(16))
    headers += [
        (b"connection", b"upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-key", key),
        (b"sec-websocket-version", b"13"),
    ]
    if scope.get("subprotocols"):
        headers.append((b"sec-websocket-protocol", ", ".join(scope["subprotocols"]).encode()))
    scope_http = dict(scope, method="GET", query_string=scope.get("query_string", b""))
    target = proxy.target(scope_http, upstream)
    try:
        await conn.send_event(h11.Request(method="GET", target=target, headers=headers))
        event = await conn.next_event(proxy.route.read_timeout)
    except TimeoutError:
        raise UpstreamError(504, "no handshake response in time") from None
    except (OSError, anyio.BrokenResourceError, h11.ProtocolError) as exc:
        raise UpstreamError(502, f"handshake failed: {exc}") from None
    if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
        protocol = next(
            (v.decode() for n, v in event.headers if n == b"sec-websocket-protocol"), None
        )
        await send({"type": "websocket.accept", "subprotocol": protocol})
        trailing, _ = conn.h11.trailing_data
        await _relay(
            conn, WSConnection(ConnectionType.CLIENT, trailing_data=trailing), receive, send
        )
        return
    if not isinstance(event, h11.Response):
        raise UpstreamError(502, "closed the connection during the handshake")
    # The upstream refused the WebSocket: pass its answer on when the client can see it.
    body = b""
    while True:
        try:
            part = await conn.next_event(proxy.route.read_timeout)
        except (TimeoutError, h11.ProtocolError):
            break
        if isinstance(part, h11.Data) and len(body) < 64 * 1024:
            body += bytes(part.data)
        elif not isinstance(part, h11.Data):
            break
    if "websocket.http.response" in scope.get("extensions", {}):
        fields = [
            (n, v) for n, v in response_headers(event.headers, "1.1") if n != b"content-length"
        ] + [(b"content-length", b"%d" % len(body))]
        await send(
            {
                "type": "websocket.http.response.start",
                "status": event.status_code,
                "headers": fields,
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


async def _relay(conn: Connection, ws: WSConnection, receive: Receive, send: Send) -> None:
    stream = conn.stream
    lock = anyio.Lock()  # both directions write upstream (frames; pongs and close replies)

    async def write(data: bytes) -> None:
        async with lock:
            await stream.send(data)

    async def to_upstream() -> None:
        while True:
            message = await receive()
            kind = message["type"]
            try:
                if kind == "websocket.receive":
                    text = message.get("text")
                    event: TextMessage | BytesMessage = (
                        TextMessage(data=text)
                        if text is not None
                        else BytesMessage(data=message.get("bytes") or b"")
                    )
                    await write(ws.send(event))
                elif kind == "websocket.disconnect":
                    code = message.get("code", 1000)
                    code = 1000 if code in (1005, 1006) else code
                    await write(
                        ws.send(CloseConnection(code=code, reason=message.get("reason", "")))
                    )
                    return
            except (OSError, anyio.BrokenResourceError, LocalProtocolError):
                return

    async def to_client() -> None:
        parts: list[str | bytes] = []
        size = 0
        data: bytes | None = b""
        try:
            while True:
                # Events first: the bytes that came with the upstream's 101 (wsproto's
                # trailing_data) may already hold a frame for the client.
                for event in ws.events():
                    if isinstance(event, (TextMessage, BytesMessage)):
                        parts.append(
                            event.data if isinstance(event.data, str) else bytes(event.data)
                        )
                        size += len(event.data)
                        if size > MAX_MESSAGE:
                            await send({"type": "websocket.close", "code": 1009})
                            return
                        if event.message_finished:
                            if isinstance(event, TextMessage):
                                text = "".join(p for p in parts if isinstance(p, str))
                                await send({"type": "websocket.send", "text": text})
                            else:
                                blob = b"".join(p for p in parts if isinstance(p, bytes))
                                await send({"type": "websocket.send", "bytes": blob})
                            parts, size = [], 0
                    elif isinstance(event, Ping):
                        await write(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        try:
                            await write(ws.send(event.response()))
                        except (OSError, anyio.BrokenResourceError, LocalProtocolError):
                            pass
                        await send(
                            {
                                "type": "websocket.close",
                                "code": event.code,
                                "reason": event.reason or "",
                            }
                        )
                        return
                if data is None:
                    await send({"type": "websocket.close", "code": 1011})
                    return
                try:
                    data = await stream.receive(64 * 1024)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    data = None
                ws.receive_data(data)
        except RemoteProtocolError:
            await send({"type": "websocket.close", "code": 1002})
        except (OSError, anyio.BrokenResourceError):
            await send({"type": "websocket.close", "code": 1011})

    async with anyio.create_task_group() as group:

        async def run(job: object) -> None:
            await job()  # type: ignore[operator]
            group.cancel_scope.cancel()  # one direction ended: the bridge is over

        group.start_soon(run, to_upstream)
        group.start_soon(run, to_client)
