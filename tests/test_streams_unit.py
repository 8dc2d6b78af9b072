"""HTTPStream and WebSocketStream on a fake host (tests/support/hosts.py), sans-IO: the
scope comes from the frozen per-connection context, and the stream's commands (respond,
send_body, ack, abort, stream_done, ...) are what the app's messages ask for."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import CloseConnection, TextMessage
from wsproto.utilities import generate_accept_token

from edgecorn.asgi.host import ConnectionContext, StreamLimits
from edgecorn.asgi.http import HTTPStream
from edgecorn.asgi.websocket import WebSocketStream
from edgecorn.protocol.events import Request
from tests.support.hosts import AccessLog, FakeHost

HEADERS = [(b"host", b"example.com")]
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
WS_HEADERS = [
    (b"host", b"example.com"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", KEY),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-protocol", b"chat, superchat"),
]


def context(**changes: Any) -> ConnectionContext:
    base = ConnectionContext(
        "https",
        ("10.0.0.7", 40000),
        ("10.0.0.1", 443),
        root_path="/root",
        state={"pool": "shared"},
        extensions={"tls": {"tls_version": 0x0304}, "http.response.trailers": {}},
        access_log=AccessLog(True),
    )
    return dataclasses.replace(base, **changes)


def request(path: bytes = b"/a%20b?x=1", **fields: Any) -> Request:
    return Request(1, "POST", path, fields.pop("headers", HEADERS), "1.1", **fields)


def run(stream: Any, app: Any) -> None:
    asyncio.run(asyncio.wait_for(stream.run(app), 5))


# --- the context ------------------------------------------------------------------------


def test_context_is_frozen() -> None:
    ctx = context()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.scheme = "http"  # type: ignore[misc]


def test_http_scope_comes_from_the_context() -> None:
    ctx = context()
    stream = HTTPStream(FakeHost(ctx), request())
    scope = stream.scope
    assert scope["type"] == "http"
    assert scope["scheme"] == "https"
    assert scope["client"] == ("10.0.0.7", 40000)
    assert scope["server"] == ("10.0.0.1", 443)
    assert scope["root_path"] == "/root"
    assert scope["path"] == "/a b" and scope["query_string"] == b"x=1"
    assert scope["state"] == {"pool": "shared"} and scope["state"] is not ctx.state
    assert scope["extensions"] is ctx.extensions
    assert "http.response.push" not in scope["extensions"]


def test_push_allowed_adds_the_push_extension_for_that_request_only() -> None:
    ctx = context()
    scope = HTTPStream(FakeHost(ctx), request(push=True)).scope
    assert "http.response.push" in scope["extensions"]
    assert "http.response.push" not in ctx.extensions


def test_trusted_proxy_from_the_context_rewrites_the_client() -> None:
    headers = HEADERS + [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"http")]
    trusted = context(trusted_proxies=["10.0.0.0/8"])
    scope = HTTPStream(FakeHost(trusted), request(headers=headers)).scope
    assert scope["client"][0] == "203.0.113.9"
    assert scope["scheme"] == "http"
    untrusted = HTTPStream(FakeHost(context()), request(headers=headers)).scope
    assert untrusted["client"] == ("10.0.0.7", 40000)


# --- HTTPStream commands ------------------------------------------------------------------


def test_body_in_response_out() -> None:
    host = FakeHost(context())
    stream = HTTPStream(host, request())
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append(await receive())
        await send({"type": "http.response.start", "status": 201, "headers": [(b"a", b"1")]})
        await send({"type": "http.response.body", "body": b"hello"})

    async def main() -> None:
        task = asyncio.ensure_future(stream.run(app))
        await asyncio.sleep(0)  # the app waits for body: the host was asked for it
        assert host.names() == ["want_body"]
        stream.on_body(b"abc")
        stream.on_end()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert got == [{"type": "http.request", "body": b"abc", "more_body": False}]
    assert host.calls[1] == ("ack", 1, 3)
    assert host.calls[2] == (
        "respond",
        1,
        201,
        [(b"a", b"1"), (b"server", b"fake")],
        b"hello",
        True,
    )
    assert host.names()[-1] == "stream_done"
    assert host.context.access_log.lines == [("/a b", 201, 5, True)]


def test_streamed_body_and_trailers() -> None:
    host = FakeHost(context())
    stream = HTTPStream(host, request())
    stream.on_end()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        await send({"type": "http.response.trailers", "headers": [(b"x-t", b"1")]})

    run(stream, app)
    assert host.calls == [
        ("respond", 1, 200, [(b"server", b"fake")], b"a", False),
        ("send_body", 1, b"b", False),  # trailers follow: not the end yet
        ("send_trailers", 1, [(b"x-t", b"1")]),
        ("stream_done", 1),
    ]


def test_app_error_before_the_head_is_a_500() -> None:
    host = FakeHost(context())
    stream = HTTPStream(host, request())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    run(stream, app)
    name, _, status, headers, body, end = host.calls[0]
    assert (name, status, end) == ("respond", 500, True)
    assert (b"content-length", b"%d" % len(body)) in headers
    assert host.names() == ["respond", "stream_done"]


def test_app_error_after_the_head_resets_the_stream() -> None:
    host = FakeHost(context())
    stream = HTTPStream(host, request())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("boom")

    run(stream, app)
    assert host.names() == ["respond", "abort", "stream_done"]
    assert host.context.access_log.lines == [("/a b", 200, 4, False)]


def test_reset_gives_the_waiting_app_a_disconnect() -> None:
    host = FakeHost(context())
    stream = HTTPStream(host, request())
    stream.on_end()
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append(await receive())
        got.append(await receive())  # waits until the peer goes

    async def main() -> None:
        task = asyncio.ensure_future(stream.run(app))
        await asyncio.sleep(0)
        stream.on_reset()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert got[1] == {"type": "http.disconnect"}
    assert "respond" not in host.names()


def test_push_uses_the_context_scheme() -> None:
    host = FakeHost(context())
    stream = HTTPStream(host, request(push=True))
    stream.on_end()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.push", "path": "/style.css", "headers": []})
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b""})

    run(stream, app)
    _, _, fields = host.calls[0]
    assert (b":scheme", b"https") in fields and (b":path", b"/style.css") in fields


# --- WebSocketStream ------------------------------------------------------------------------


def ws_request(headers: list[tuple[bytes, bytes]] = WS_HEADERS) -> Request:
    return Request(1, "GET", b"/ws", headers, "1.1")


def test_websocket_scope_from_the_context() -> None:
    scope = WebSocketStream(FakeHost(context()), ws_request()).scope
    assert scope["type"] == "websocket" and scope["scheme"] == "wss"
    assert "method" not in scope
    assert scope["client"] == ("10.0.0.7", 40000) and scope["root_path"] == "/root"
    assert scope["subprotocols"] == ["chat", "superchat"]
    # only what applies to a WebSocket: the TLS facts, not the http.response.* extensions
    assert set(scope["extensions"]) == {"websocket.http.response", "tls"}
    plain = WebSocketStream(FakeHost(context(scheme="http")), ws_request()).scope
    assert plain["scheme"] == "ws"


def test_websocket_accept_echo_close() -> None:
    limits = StreamLimits(ping_interval=7.5, permessage_deflate=False)
    host = FakeHost(context(limits=limits))
    offered = WS_HEADERS + [(b"sec-websocket-extensions", b"permessage-deflate")]
    stream = WebSocketStream(host, ws_request(offered))
    client = WSConnection(ConnectionType.CLIENT)
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append(await receive())
        await send({"type": "websocket.accept", "subprotocol": "chat"})
        message = await receive()
        got.append(message)
        await send({"type": "websocket.send", "text": message["text"].upper()})
        got.append(await receive())

    async def main() -> None:
        task = asyncio.ensure_future(stream.run(app))
        for _ in range(3):
            await asyncio.sleep(0)
        stream.on_body(client.send(TextMessage(data="hi")))
        for _ in range(3):
            await asyncio.sleep(0)
        stream.on_body(client.send(CloseConnection(code=1000)))
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert got[0] == {"type": "websocket.connect"}
    assert got[1] == {"type": "websocket.receive", "text": "hi"}
    assert got[2]["type"] == "websocket.disconnect" and got[2]["code"] == 1000
    _, _, status, headers, body, end = host.calls[0]
    assert (status, body, end) == (101, b"", False)
    fields = dict(headers)
    assert fields[b"sec-websocket-accept"] == generate_accept_token(KEY)
    assert fields[b"sec-websocket-protocol"] == b"chat"
    assert b"sec-websocket-extensions" not in fields  # permessage_deflate off in the limits
    assert [timer.delay for timer in host.timers][:1] == [7.5]  # ping_interval from the limits
    assert host.timers[0].cancelled
    client.receive_data(bytes(host.sent))
    events = list(client.events())
    assert isinstance(events[0], TextMessage) and events[0].data == "HI"
    assert isinstance(events[1], CloseConnection) and events[1].code == 1000
    assert "end_body" in host.names() and host.names()[-1] == "stream_done"


def test_websocket_message_over_the_context_limit_closes_1009() -> None:
    host = FakeHost(context(limits=StreamLimits(max_message_size=10)))
    stream = WebSocketStream(host, ws_request())
    client = WSConnection(ConnectionType.CLIENT)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        stream.on_body(client.send(TextMessage(data="x" * 11)))
        assert (await receive())["type"] == "websocket.disconnect"

    async def main() -> None:
        task = asyncio.ensure_future(stream.run(app))
        for _ in range(5):
            await asyncio.sleep(0)
        stream.on_body(client.send(CloseConnection(code=1009)))
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    client.receive_data(bytes(host.sent))
    closes = [e for e in client.events() if isinstance(e, CloseConnection)]
    assert closes and closes[0].code == 1009


def test_websocket_denied_when_the_app_returns_without_accepting() -> None:
    host = FakeHost(context())
    stream = WebSocketStream(host, ws_request())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    run(stream, app)
    assert host.calls[0][0:3] == ("respond", 1, 403)
    assert host.names() == ["respond", "stream_done"]
