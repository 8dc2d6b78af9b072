"""WebSockets end to end: `websockets` over HTTP/1.1 (ws:// and wss://, both HTTP/1 parsers),
extended CONNECT over HTTP/2 (RFC 8441, the `h2` package) and HTTP/3 (RFC 9220, aioquic),
a raw-socket RFC 6455 conformance set, graceful shutdown and keep-alive pings.

The server runs `tests.apps.ws:app` in a subprocess; the apps record what a test must see
afterwards (`websocket.disconnect` codes) in a file named in the query string.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from wsproto.events import CloseConnection, TextMessage

from tests.apps.ws import (
    CLOSE_CODE,
    CLOSE_REASON,
    DENY_BODY,
    DENY_STATUS,
)
from tests.support.wait import wait_for_lines
from tests.support.ws import (
    H2WS,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWS,
    build_frame,
    close_payload,
    h3_connect,
)

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.ws:app"
MIB = 1024 * 1024
ENABLE_CONNECT_PROTOCOL = 0x8  # the same number in HTTP/2 (RFC 8441) and HTTP/3 (RFC 9220)


# --------------------------------------------------------------------------- fixtures / helpers


@pytest.fixture(scope="module")
def ws_server(session_factory: Any, parser: str) -> Iterator[Any]:
    """One server per HTTP/1 parser (TLS + cleartext + QUIC on the TLS port) for this module."""
    server = session_factory.start(app=APP, parser=parser)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ws_h2_server(session_factory: Any) -> Iterator[Any]:
    """A default-parser server for the HTTP/2 and HTTP/3 tests (the parser does not matter)."""
    server = session_factory.start(app=APP)
    yield server
    server.stop()


def client_ssl(cafile: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def url(server: Any, path: str, tls: bool = False) -> str:
    if tls:
        return f"wss://localhost:{server.port}{path}"
    return f"ws://127.0.0.1:{server.insecure_port}{path}"


def run(coro: Any, timeout: float = 30.0) -> Any:
    """Run a coroutine to completion with an overall bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def read_lines(path: Path, want: str, timeout: float = 5.0) -> list[str]:
    """The record file's lines, once one starts with `want` (or at the deadline)."""
    return wait_for_lines(path, want, timeout, prefix=True)


# --------------------------------------------------------------------------- websockets over h1


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_echo_text_binary_and_scope(ws_server: Any, cafile: str, tls: bool) -> None:
    async def main() -> None:
        ssl_ctx = client_ssl(cafile) if tls else None
        async with ws_connect(url(ws_server, "/scope?x=1", tls), ssl=ssl_ctx) as ws:
            info = json.loads(await ws.recv())
            assert info["type"] == "websocket"
            assert info["http_version"] == "1.1"
            assert info["scheme"] == ("wss" if tls else "ws")
            assert (info["path"], info["query_string"]) == ("/scope", "x=1")
            assert "websocket.http.response" in info["extensions"]
            assert not info["has_method"]
            await ws.send("héllo wörld")
            assert await ws.recv() == "héllo wörld"
            await ws.send(b"\x00\x01\xfe\xff")
            assert await ws.recv() == b"\x00\x01\xfe\xff"
            await ws.send("")
            assert await ws.recv() == ""

    run(main())


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_one_mib_messages(ws_server: Any, cafile: str, tls: bool) -> None:
    blob = bytes(range(256)) * (MIB // 256)
    text = "abcdefghijklmnopqrstuvwxyz0123456789é" * (MIB // 38)

    async def main() -> None:
        ssl_ctx = client_ssl(cafile) if tls else None
        async with ws_connect(
            url(ws_server, "/echo", tls), ssl=ssl_ctx, max_size=4 * MIB, compression=None
        ) as ws:
            for _ in range(2):
                await ws.send(blob)
                assert await ws.recv() == blob
            await ws.send(text)
            assert await ws.recv() == text

    run(main())


def test_fragmented_messages(ws_server: Any) -> None:
    async def main() -> None:
        async with ws_connect(url(ws_server, "/echo")) as ws:
            await ws.send(["frag-1 ", "frag-2 ", "frag-3"])
            assert await ws.recv() == "frag-1 frag-2 frag-3"
            await ws.send([b"\x01" * 1000, b"\x02" * 70000, b"\x03"])
            assert await ws.recv() == b"\x01" * 1000 + b"\x02" * 70000 + b"\x03"

            async def parts() -> Any:
                for i in range(5):
                    yield f"part{i};"

            await ws.send(parts())
            assert await ws.recv() == "part0;part1;part2;part3;part4;"

    run(main())


def test_subprotocol_negotiation(ws_server: Any) -> None:
    async def main() -> None:
        # The app sees the offered list in order (/scope accepts without choosing one).
        async with ws_connect(
            url(ws_server, "/scope"),
            subprotocols=["unknown", "chat.v1"],  # type: ignore[list-item]
        ) as ws:
            assert ws.subprotocol is None
            info = json.loads(await ws.recv())
            assert info["subprotocols"] == ["unknown", "chat.v1"]
        # /echo prefers chat.v2, then chat.v1; the client offers an unknown one first.
        async with ws_connect(
            url(ws_server, "/echo"),
            subprotocols=["unknown", "chat.v1"],  # type: ignore[list-item]
        ) as ws:
            assert ws.subprotocol == "chat.v1"
        async with ws_connect(
            url(ws_server, "/echo"),
            subprotocols=["chat.v1", "chat.v2"],  # type: ignore[list-item]
        ) as ws:
            assert ws.subprotocol == "chat.v2"
            await ws.send("x")
            assert await ws.recv() == "x"
        async with ws_connect(url(ws_server, "/echo")) as ws:
            assert ws.subprotocol is None
        async with ws_connect(
            url(ws_server, "/echo"),
            subprotocols=["nope"],  # type: ignore[list-item]
        ) as ws:
            assert ws.subprotocol is None

    run(main())


def test_ping_pong(ws_server: Any) -> None:
    async def main() -> None:
        async with ws_connect(url(ws_server, "/echo"), ping_interval=None) as ws:
            for payload in (b"", b"abc", b"x" * 125):
                waiter = await ws.ping(payload)
                latency = await asyncio.wait_for(waiter, 5)
                assert latency >= 0
            await ws.send("still open")
            assert await ws.recv() == "still open"

    run(main())


def test_server_initiated_close(ws_server: Any, tmp_path: Path) -> None:
    record = tmp_path / "close.txt"

    async def main() -> None:
        async with ws_connect(url(ws_server, f"/close?file={record}")) as ws:
            assert await ws.recv() == "closing"
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None, "no close frame from the server"
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (CLOSE_CODE, CLOSE_REASON)

    run(main())
    lines = read_lines(record, "after-close")
    assert any(line.startswith("after-close websocket.disconnect") for line in lines), lines


def test_client_initiated_close(ws_server: Any, tmp_path: Path) -> None:
    record = tmp_path / "disconnect.txt"

    async def main() -> None:
        async with ws_connect(url(ws_server, f"/echo?file={record}")) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            await ws.close(code=4002, reason="client says bye")
            # The server answered the closing handshake with the same code.
            assert ws.close_code == 4002

    run(main())
    lines = read_lines(record, "disconnect")
    assert "disconnect 4002 client says bye" in lines, lines


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_denial_response(ws_server: Any, cafile: str, tls: bool) -> None:
    async def main() -> None:
        ssl_ctx = client_ssl(cafile) if tls else None
        with pytest.raises(InvalidStatus) as info:
            async with ws_connect(url(ws_server, "/deny", tls), ssl=ssl_ctx):
                pass
        response = info.value.response
        assert response.status_code == DENY_STATUS
        assert response.headers.get("x-denied") == "yes"
        assert response.body == b"".join(DENY_BODY)

    run(main())


@pytest.mark.parametrize("path", ["/reject", "/ignore"])
def test_closed_before_accept_is_403(ws_server: Any, path: str) -> None:
    async def main() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with ws_connect(url(ws_server, path)):
                pass
        assert info.value.response.status_code == 403

    run(main())
    # The server goes on serving.
    raw = RawWS(ws_server.insecure_port, "/echo")
    try:
        assert raw.status == 101
        assert raw.echo("after 403") == "after 403"
    finally:
        raw.close()


def test_max_message_size_closes_1009(server_factory: Any, parser: str) -> None:
    srv = server_factory.start(app=APP, parser=parser, config="websocket_max_message_size: 1024\n")

    async def main() -> None:
        async with ws_connect(url(srv, "/echo"), compression=None) as ws:
            await ws.send(b"a" * 1024)  # exactly the limit passes
            assert await ws.recv() == b"a" * 1024
            await ws.send(["b" * 600, "b" * 600])  # fragments add up past it
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None, "no close frame from the server"
            assert info.value.rcvd.code == 1009
        async with ws_connect(url(srv, "/echo"), compression=None) as ws:
            await ws.send(b"c" * 5000)
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009

    run(main())


def test_many_concurrent_connections(ws_server: Any) -> None:
    async def one(i: int) -> list[str | bytes]:
        async with ws_connect(url(ws_server, "/echo"), open_timeout=20) as ws:
            got: list[str | bytes] = []
            for j in range(3):
                await ws.send(f"conn {i} msg {j}")
                got.append(await ws.recv())
            await ws.send(bytes([i]) * 100)
            got.append(await ws.recv())
            return got

    async def main() -> list[list[str | bytes]]:
        return await asyncio.gather(*(one(i) for i in range(50)))

    results = run(main(), timeout=40)
    for i, got in enumerate(results):
        assert got == [f"conn {i} msg {j}" for j in range(3)] + [bytes([i]) * 100]


def test_permessage_deflate(ws_server: Any) -> None:
    """websockets offers permessage-deflate by default; compressed echo must round-trip."""

    async def main() -> None:
        async with ws_connect(url(ws_server, "/echo")) as ws:
            negotiated = [ext.name for ext in ws.protocol.extensions]
            payload = "compress me " * 5000
            await ws.send(payload)
            assert await ws.recv() == payload
            return negotiated

    assert run(main()) == ["permessage-deflate"]


# --------------------------------------------------------------------------- RFC 6455 (raw h1)


CONFORMANCE = [
    ("unmasked", build_frame(OP_TEXT, b"hello", mask=False), 1002),
    ("invalid-utf8", build_frame(OP_TEXT, b"ok \xff\xfe bad"), 1007),
    ("rsv1-no-extension", build_frame(OP_TEXT, b"hello", rsv=0b100), 1002),
    ("rsv2", build_frame(OP_BINARY, b"hello", rsv=0b010), 1002),
    ("control-payload-126", build_frame(OP_PING, b"p" * 126), 1002),
    ("fragmented-ping", build_frame(OP_PING, b"p", fin=False), 1002),
    ("close-code-999", build_frame(OP_CLOSE, close_payload(999)), 1002),
    ("close-code-1005", build_frame(OP_CLOSE, close_payload(1005)), 1002),
    ("close-code-1006", build_frame(OP_CLOSE, close_payload(1006)), 1002),
    ("close-1-byte-payload", build_frame(OP_CLOSE, b"\x03"), 1002),
    ("unknown-opcode-3", build_frame(0x3, b"x"), 1002),
    ("unknown-opcode-0xB", build_frame(0xB, b"x"), 1002),
    ("continuation-without-start", build_frame(OP_CONT, b"x"), 1002),
    (
        "text-during-fragmented-message",
        build_frame(OP_TEXT, b"a", fin=False) + build_frame(OP_TEXT, b"b"),
        1002,
    ),
]


@pytest.mark.parametrize(
    "data,code", [(d, c) for _, d, c in CONFORMANCE], ids=[n for n, _, _ in CONFORMANCE]
)
def test_rfc6455_protocol_errors(ws_server: Any, tmp_path: Path, data: bytes, code: int) -> None:
    record = tmp_path / "conformance.txt"
    raw = RawWS(ws_server.insecure_port, f"/echo?file={record}")
    try:
        assert raw.status == 101, raw.head
        assert raw.echo("before") == "before"
        raw.send(data)
        got = raw.close_code()
        assert got == code, f"expected a close frame with {code}, got {got} (None = no close frame)"
        assert raw.wait_eof(5), "the server did not close the TCP connection after the close"
    finally:
        raw.close()
    # The app was told, and the server goes on serving new connections.
    lines = read_lines(record, "disconnect")
    assert any(line.startswith("disconnect") for line in lines), lines
    again = RawWS(ws_server.insecure_port, "/echo")
    try:
        assert again.status == 101
        assert again.echo("after") == "after"
    finally:
        again.close()


def test_raw_valid_framing(ws_server: Any) -> None:
    """Valid edge cases a raw client can produce: interleaved ping, 64-bit length, close echo."""
    raw = RawWS(ws_server.insecure_port, "/echo")
    try:
        raw.send(
            build_frame(OP_TEXT, b"ab", fin=False)
            + build_frame(OP_PING, b"mid")
            + build_frame(OP_CONT, b"cd")
        )
        frames = [raw.recv_frame(), raw.recv_frame()]
        got = [(f.opcode, f.payload) for f in frames if f]
        assert got == [(OP_PONG, b"mid"), (OP_TEXT, b"abcd")]
        big = b"z" * 70000  # 16-bit extended length
        raw.send_frame(OP_BINARY, big)
        frame = raw.recv_data_frame()
        assert frame is not None and (frame.opcode, frame.payload) == (OP_BINARY, big)
        raw.send_frame(OP_CLOSE, close_payload(1000, "done"))
        assert raw.close_code() == 1000
        assert raw.wait_eof(5)
    finally:
        raw.close()


# --------------------------------------------------------------------------- HTTP/2 (RFC 8441)


def test_h2_extended_connect_echo(ws_h2_server: Any, cafile: str) -> None:
    conn = H2WS(ws_h2_server.port, cafile)
    try:
        assert conn.server_settings is not None
        assert conn.server_settings.get(ENABLE_CONNECT_PROTOCOL) == 1, conn.server_settings
        stream = conn.connect("/scope")
        assert stream.status == 200, stream
        conn.until(lambda: bool(stream.messages()))
        info = json.loads(stream.messages()[0])
        assert info["type"] == "websocket"
        assert info["http_version"] == "2"
        assert info["scheme"] == "wss"
        assert info["path"] == "/scope"
        assert conn.echo(stream, "over h2") == "over h2"
        assert conn.echo(stream, b"\x00" * 100_000) == b"\x00" * 100_000  # > the 64 KiB window
        conn.send_ws(stream, CloseConnection(code=1000, reason="bye"))
        assert conn.wait_close(stream) == 1000
        conn.until(lambda: stream.ended)
        assert stream.reset is None, f"stream reset ({stream.reset}) instead of ended"
    finally:
        conn.close()


def test_h2_subprotocol_and_denial(ws_h2_server: Any, cafile: str) -> None:
    conn = H2WS(ws_h2_server.port, cafile)
    try:
        stream = conn.connect("/echo", extra=(("sec-websocket-protocol", "x, chat.v1"),))
        assert stream.status == 200
        assert (b"sec-websocket-protocol", b"chat.v1") in stream.headers, stream.headers
        denied = conn.connect("/deny")
        conn.until(lambda: denied.ended)
        assert denied.status == DENY_STATUS
        assert denied.body == b"".join(DENY_BODY)
        rejected = conn.connect("/reject")
        conn.until(lambda: rejected.ended)
        assert rejected.status == 403
        assert conn.echo(stream, "still here") == "still here"
    finally:
        conn.close()


def test_h2_plain_connect_refused(ws_h2_server: Any, cafile: str) -> None:
    conn = H2WS(ws_h2_server.port, cafile)
    try:
        stream = conn.connect(protocol=None)
        assert stream.status is not None and stream.status != 200
        assert stream.status == 501
        # The connection is still usable.
        assert conn.get("/plain").body == b"plain http /plain"
    finally:
        conn.close()


def test_h2_multiplexed_websockets_and_get(ws_h2_server: Any, cafile: str) -> None:
    conn = H2WS(ws_h2_server.port, cafile)
    try:
        streams = [conn.connect("/echo") for _ in range(4)]
        assert all(s.status == 200 for s in streams)
        # Interleave: send on all, then a GET, then read all echoes.
        for i, stream in enumerate(streams):
            conn.send_ws(stream, TextMessage(data=f"ws {i}"))
        get = conn.get("/plain")
        assert get.status == 200 and get.body == b"plain http /plain"
        conn.until(lambda: all(s.messages() for s in streams))
        assert [s.messages() for s in streams] == [[f"ws {i}"] for i in range(4)]
        for i, stream in enumerate(streams):
            assert conn.echo(stream, bytes([i]) * 10) == bytes([i]) * 10
    finally:
        conn.close()


def test_h2_protocol_error_closes_only_that_websocket(ws_h2_server: Any, cafile: str) -> None:
    conn = H2WS(ws_h2_server.port, cafile)
    try:
        bad, good = conn.connect("/echo"), conn.connect("/echo")
        assert bad.status == good.status == 200
        assert conn.echo(bad, "bad before") == "bad before"
        conn.send_raw(bad, build_frame(OP_TEXT, b"unmasked", mask=False))
        conn.until(lambda: bad.close_code() is not None or bad.ended)
        # Only that stream: the other WebSocket and a new request still work.
        assert conn.echo(good, "good after") == "good after"
        assert conn.get("/plain").body == b"plain http /plain"
        assert conn.terminated is None, f"connection terminated: {conn.terminated}"
        newer = conn.connect("/echo")
        assert conn.echo(newer, "new one") == "new one"
        assert bad.close_code() == 1002, (
            f"expected a close frame with 1002 on the bad stream; got frames "
            f"{bad.server_frames}, ended={bad.ended}, reset={bad.reset}"
        )
    finally:
        conn.close()


# --------------------------------------------------------------------------- HTTP/3 (RFC 9220)


def test_h3_extended_connect_echo(ws_h2_server: Any, cafile: str) -> None:
    async def main() -> None:
        async with h3_connect(ws_h2_server.port, cafile) as client:
            stream = client.connect_ws(f"localhost:{ws_h2_server.port}", "/scope")
            await client.wait(stream, lambda: stream.status is not None or stream.ended)
            assert stream.status == 200, (stream.headers, stream.body)
            settings = client.server_settings
            assert settings is not None and settings.get(ENABLE_CONNECT_PROTOCOL) == 1, settings
            await client.wait(stream, lambda: bool(stream.messages()))
            info = json.loads(stream.messages()[0])
            assert info["type"] == "websocket"
            assert info["http_version"] == "3"
            assert info["scheme"] == "wss"
            assert await client.echo(stream, "over h3") == "over h3"
            assert await client.echo(stream, b"\x07" * 200_000) == b"\x07" * 200_000
            second = client.connect_ws(f"localhost:{ws_h2_server.port}", "/echo")
            await client.wait(second, lambda: second.status is not None)
            assert second.status == 200
            assert await client.echo(second, "second") == "second"
            client.send_ws(stream, CloseConnection(code=1000))
            await client.wait(stream, lambda: stream.close_code() is not None or stream.ended)
            assert stream.close_code() == 1000
            # The connection (and the listener) survive one WebSocket stream closing.
            assert await client.echo(second, "after close") == "after close"

    run(main())
    # A new QUIC connection still works (the UDP listener is alive).

    async def again() -> None:
        async with h3_connect(ws_h2_server.port, cafile) as client:
            stream = client.connect_ws(f"localhost:{ws_h2_server.port}", "/echo")
            await client.wait(stream, lambda: stream.status is not None)
            assert stream.status == 200
            assert await client.echo(stream, "x") == "x"

    run(again())


# --------------------------------------------------------------------------- lifetime


def test_graceful_shutdown_sends_1001(server_factory: Any, tmp_path: Path) -> None:
    srv = server_factory.start(app=APP, config="graceful_timeout: 5\n")
    record = tmp_path / "shutdown.txt"

    async def main() -> None:
        async with ws_connect(url(srv, f"/echo?file={record}"), ping_interval=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            srv.proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5 + 3)
            assert info.value.rcvd is not None, "no close frame from the server"
            assert info.value.rcvd.code == 1001

    run(main())
    srv.proc.wait(10)
    assert srv.proc.returncode in (0, -signal.SIGTERM), srv.describe()
    assert "disconnect 1001" in " ".join(read_lines(record, "disconnect")), srv.describe()


def test_ping_timeout_drops_silent_peer(server_factory: Any) -> None:
    srv = server_factory.start(app=APP, config="websocket_ping_interval: 0.5\n")

    def silent_peer() -> tuple[bool, int]:
        raw = RawWS(srv.insecure_port, "/echo")
        try:
            assert raw.status == 101
            dropped = raw.wait_eof(6)  # never answers the pings
            return dropped, sum(1 for f in raw.frames if f.opcode == OP_PING)
        finally:
            raw.close()

    async def main() -> tuple[bool, int]:
        silent = asyncio.create_task(asyncio.to_thread(silent_peer))
        # websockets answers pings by itself (its own pings off, so only the server pings).
        async with ws_connect(url(srv, "/echo"), ping_interval=None) as ws:
            await asyncio.sleep(3)
            await ws.send("still alive")
            assert await ws.recv() == "still alive"
        return await silent

    dropped, pings = run(main())
    assert dropped, "a peer that never answers pings was not disconnected"
    assert pings >= 1, "the server dropped the peer without pinging it first"


def test_ping_timeout_pings_are_sent(server_factory: Any) -> None:
    """Answered pings keep a raw peer connected; once it stops answering, it is dropped."""
    srv = server_factory.start(app=APP, config="websocket_ping_interval: 0.5\n")
    raw = RawWS(srv.insecure_port, "/echo")
    try:
        frame = raw.recv_frame()
        assert frame is not None and frame.opcode == OP_PING, frame
        # Answer this one: the connection survives the next interval.
        raw.send_frame(OP_PONG, frame.payload)
        frame = raw.recv_frame()
        assert frame is not None and frame.opcode == OP_PING, frame
        raw.send_frame(OP_PONG, frame.payload)
        assert raw.echo("answered") == "answered"
        # Now stop answering.
        assert raw.wait_eof(6)
    finally:
        raw.close()
