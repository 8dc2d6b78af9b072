"""WebSocketStream's explicit phases (issue 8), sans-IO: a real stream on the fake host of
tests/test_fuzz_ws.py, client frames from a wsproto client, phases and what the host
was told asserted after each step."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wsproto.events import CloseConnection, TextMessage

from edgecorn.asgi.websocket import Phase, WebSocketStream
from edgecorn.protocol.events import Headers, Request
from tests.test_fuzz_ws import FakeHost, accepted_stream, client

KEY = (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")


def stream_for(headers: Headers, version: str = "1.1") -> tuple[WebSocketStream, FakeHost]:
    host = FakeHost()
    request = Request(1, "GET" if version == "1.1" else "CONNECT", b"/ws", headers, version)
    return WebSocketStream(host, request), host


def run(stream: WebSocketStream, app: Any) -> None:
    async def main() -> None:
        await stream.run(app)

    asyncio.run(main())


def test_accept_then_the_peer_closes_first() -> None:
    stream, host = accepted_stream(deflate=False)
    assert stream.phase is Phase.OPEN and not stream.disconnected
    peer = client(deflate=False)
    stream.on_body(peer.send(TextMessage(data="hi")))
    assert stream.inbox.popleft() == {"type": "websocket.receive", "text": "hi"}
    stream.on_body(peer.send(CloseConnection(code=1000, reason="bye")))
    assert stream.phase is Phase.CLOSED and stream.disconnected
    assert stream.inbox.popleft() == {"type": "websocket.disconnect", "code": 1000, "reason": "bye"}
    assert host.ended  # our answering close frame, then the stream's end
    host.sent.clear()
    asyncio.run(stream.send({"type": "websocket.send", "text": "late"}))
    assert not host.sent  # dropped: ASGI sends after a disconnect


def test_our_close_waits_in_closing_for_the_peer_answer() -> None:
    stream, host = accepted_stream(deflate=False)
    asyncio.run(stream.send({"type": "websocket.close", "code": 1000}))
    assert stream.phase is Phase.CLOSING and not stream.disconnected and not host.ended
    sent = len(host.sent)
    asyncio.run(stream.send({"type": "websocket.send", "text": "after close"}))
    assert len(host.sent) == sent  # nothing after our close frame
    peer = client(deflate=False)
    peer.receive_data(bytes(host.sent))
    assert any(isinstance(e, CloseConnection) for e in peer.events())
    stream.on_body(peer.send(CloseConnection(code=1000)))
    assert stream.phase is Phase.CLOSED and stream.disconnected and host.ended


def test_a_reset_while_open_disconnects_without_leaving_the_phase() -> None:
    """`disconnected` is the peer's side: it changes independently of our phase."""
    stream, host = accepted_stream(deflate=False)
    stream.on_reset()
    assert stream.phase is Phase.OPEN and stream.disconnected
    assert stream.inbox[-1]["type"] == "websocket.disconnect"


def test_a_denial_goes_through_both_denial_phases() -> None:
    stream, host = stream_for([(b"host", b"a"), KEY, (b"sec-websocket-version", b"13")])
    assert stream.phase is Phase.HANDSHAKE and not stream.bad_handshake

    async def deny() -> None:
        await stream.send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        assert stream.phase is Phase.DENIAL and host.status is None
        more = {"type": "websocket.http.response.body", "body": b"no", "more_body": True}
        await stream.send(more)
        assert stream.phase is Phase.DENIAL_BODY and host.status == 401
        await stream.send({"type": "websocket.http.response.body", "body": b"!"})
        assert stream.phase is Phase.CLOSED and stream.disconnected
        with pytest.raises(RuntimeError):
            await stream.send({"type": "websocket.accept"})

    asyncio.run(deny())


@pytest.mark.parametrize(
    ("headers", "version", "status"),
    [
        ([(b"host", b"a"), (b"sec-websocket-version", b"13")], "1.1", 400),  # no key
        ([(b"host", b"a"), KEY, (b"sec-websocket-version", b"12")], "1.1", 426),
        ([(b"host", b"a"), KEY], "1.1", 426),  # HTTP/1.1 must name the version
        ([(b"host", b"a"), (b"sec-websocket-version", b"8")], "2", 426),
        ([(b"host", b"a")], "2", 0),  # extended CONNECT: neither key nor version needed
    ],
)
def test_a_bad_handshake_is_answered_before_the_app(
    headers: Headers, version: str, status: int
) -> None:
    stream, host = stream_for(headers, version)
    assert stream.bad_handshake == status
    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["type"])
        await send({"type": "websocket.close"})  # before accept: a 403

    run(stream, app)
    assert stream.phase is Phase.CLOSED
    assert host.status == (status or 403)
    assert called == ([] if status else ["websocket"])


def test_a_peer_gone_during_the_handshake_gets_no_answer() -> None:
    stream, host = stream_for([(b"host", b"a"), KEY, (b"sec-websocket-version", b"13")])
    stream.on_reset()
    assert stream.phase is Phase.HANDSHAKE and stream.disconnected

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        assert (await receive())["type"] == "websocket.disconnect"

    run(stream, app)
    assert stream.phase is Phase.CLOSED and host.status is None and host.ended  # aborted


@pytest.mark.parametrize("gone", ["reset", "end"])
def test_a_peer_gone_after_accept_lets_the_stream_finish(gone: str) -> None:
    """The peer reset an open WebSocket, or ended its side without a close frame: no
    closing handshake can complete, so when the app returns the stream ends at once
    (stream_done) instead of waiting for a CLOSED that nothing would ever set."""
    stream, host = stream_for([(b"host", b"a"), KEY, (b"sec-websocket-version", b"13")], "2")
    finished: list[WebSocketStream] = []
    host.stream_done = finished.append  # type: ignore[method-assign]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        stream.on_reset() if gone == "reset" else stream.on_end()
        assert (await receive())["type"] == "websocket.disconnect"

    async def main() -> None:
        # a bound for the hang this test is about, not a timing assertion
        await asyncio.wait_for(stream.run(app), 10)

    asyncio.run(main())
    assert stream.phase is Phase.CLOSED and finished == [stream] and host.ended
