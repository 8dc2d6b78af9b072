"""The QUIC endpoint and connection (edgecorn.quic.endpoint / .connection) on the asyncio
listener, with a fake socket: an aioquic client in memory sends datagrams into
`datagram_received`, and what the endpoint sends comes back to it. The manager, the
streams and the ASGI app are the real ones; there is no socket and no network."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from edgecorn.asyncio.runtime import AsyncioRuntime
from edgecorn.asyncio.udp import QUICListener
from edgecorn.logging import AccessLogger
from edgecorn.manager import ConnectionManager
from edgecorn.quic.worker import QuicSetup, quic_setup
from edgecorn.sockets import Sockets
from tests.support.quic_peer import CLIENT, SERVER, Peer, server_config


class FakeSocket:
    """What the endpoint uses of a UDP socket; no `sendmsg`, so no GSO."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def getsockname(self) -> tuple[str, int]:
        return SERVER

    def sendto(self, data: bytes, addr: Any) -> int:
        self.sent.append((data, addr))
        return len(data)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = f"{scope['http_version']} {scope['scheme']} {scope['method']} {scope['path']}"
    reply = text.encode() + b" " + str(len(body)).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": reply})


class Harness:
    def __init__(self, certs: tuple[str, str, str], cid_tag: int | None = None, **options: Any):
        self.config = server_config(certs, **options)
        self.cafile = certs[2]
        self.manager = ConnectionManager(self.config, app, {}, AccessLogger(self.config))
        self.sock: Any = FakeSocket()  # a socket.socket to the endpoint
        sockets = Sockets(quic=[self.sock], quic_tag=cid_tag)
        setup = quic_setup(self.config, sockets)
        assert isinstance(setup, QuicSetup)
        self.runtime = AsyncioRuntime(asyncio.get_running_loop())
        self.tasks = self.runtime.tasks
        self.listener = QUICListener(self.manager, self.sock, setup, self.runtime)
        self.loop = asyncio.get_running_loop()

    def peer(self) -> Peer:
        return Peer(self.cafile, self.loop.time())

    async def exchange(self, peer: Peer, done: Any, rounds: int = 300) -> None:
        """Datagrams both ways (and the client's timers), letting the loop run the app,
        flushes and the server's timers, until `done()` and a round moves nothing."""
        for _ in range(rounds):
            now = self.loop.time()
            timer = peer.quic.get_timer()
            if timer is not None and timer <= now:
                peer.handle_timer(now)
            incoming = peer.datagrams(now)
            for data in incoming:
                self.listener.datagram_received(data, CLIENT)
            await asyncio.sleep(0.01 if not incoming else 0)
            await asyncio.sleep(0)
            sent, self.sock.sent = self.sock.sent, []
            for data, addr in sent:
                assert addr == CLIENT
                peer.receive(data, self.loop.time())
            if done() and not sent and not incoming:
                return
        raise AssertionError("no progress")


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_get_and_post_through_endpoint_connection_streams_and_app(
    certs: tuple[str, str, str],
) -> None:
    async def main() -> None:
        harness = Harness(certs)
        peer = harness.peer()
        get = peer.request("GET", "/hello")
        post = peer.request("POST", "/up", body=b"x" * 100_000)
        await harness.exchange(peer, lambda: peer.response(get)[2] and peer.response(post)[2])
        headers, body, _ = peer.response(get)
        assert headers[b":status"] == b"200"
        assert body == b"3 https GET /hello 0"
        assert peer.response(post)[1] == b"3 https POST /up 100000"
        assert b"alt-svc" not in headers  # not on responses that came over HTTP/3
        assert len(harness.manager.connections) == 1
        (conn,) = harness.manager.connections
        assert conn.client == CLIENT and conn.server == SERVER  # type: ignore[attr-defined]

    run(main())


def test_retry_on_answers_the_first_initial_with_retry_then_accepts_the_token(
    certs: tuple[str, str, str],
) -> None:
    async def main() -> None:
        harness = Harness(certs, quic_retry="on")
        peer = harness.peer()
        first = peer.datagrams(harness.loop.time())
        for data in first:
            harness.listener.datagram_received(data, CLIENT)
        (retry, addr), *_ = harness.sock.sent
        assert retry[0] & 0xF0 == 0xF0  # long header, type Retry (v1)
        assert not harness.listener.routes and not harness.manager.connections
        harness.sock.sent.clear()
        peer.receive(retry, harness.loop.time())
        sid = peer.request("GET", "/after-retry")
        await harness.exchange(peer, lambda: peer.response(sid)[2])
        assert peer.response(sid)[1] == b"3 https GET /after-retry 0"

    run(main())


def test_datagrams_that_start_nothing_are_dropped_or_answered_without_state(
    certs: tuple[str, str, str],
) -> None:
    async def main() -> None:
        harness = Harness(certs)
        listener = harness.listener
        # empty, short, a short header for no connection, a truncated long header, and
        # an unknown version too small to be a first flight (RFC 9000 5.2.2: dropped)
        for junk in (b"", b"\x00", b"\x40" + b"\x01" * 20, b"\xc3" + b"\xff" * 30, b"\xff" * 300):
            listener.datagram_received(junk, CLIENT)
        assert not harness.sock.sent and not listener.routes
        # an unknown version, padded like a first flight: version negotiation, no state
        dcid, scid = b"\x01" * 8, b"\x02" * 8
        head = b"\xc0" + struct.pack("!I", 0x1A2A3A4A) + b"\x08" + dcid + b"\x08" + scid
        listener.datagram_received(head + bytes(1200 - len(head)), CLIENT)
        ((reply, addr),) = harness.sock.sent
        assert reply[1:5] == b"\x00\x00\x00\x00" and addr == CLIENT
        assert reply[6:14] == scid  # addressed to the client's source CID
        assert not listener.routes and not harness.manager.connections

    run(main())


def test_tagged_worker_routes_every_connection_id_it_issued(
    certs: tuple[str, str, str],
) -> None:
    async def main() -> None:
        harness = Harness(certs, cid_tag=5)
        peer = harness.peer()
        sid = peer.request("GET", "/")
        await harness.exchange(peer, lambda: peer.response(sid)[2])
        ours = [cid for cid in harness.listener.routes if cid[0] == 5]
        assert len(ours) >= 2  # the first host CID and the spares issued after the handshake
        (conn,) = set(harness.listener.routes.values())
        assert all(harness.listener.routes[cid] is conn for cid in ours)

    run(main())


def test_graceful_shutdown_answers_then_closes_and_forgets_the_connection(
    certs: tuple[str, str, str],
) -> None:
    async def main() -> None:
        harness = Harness(certs)
        peer = harness.peer()
        sid = peer.request("GET", "/before")
        await harness.exchange(peer, lambda: peer.response(sid)[2])
        harness.manager.shutdown()  # GOAWAY; nothing open, so CONNECTION_CLOSE follows
        await harness.exchange(
            peer, lambda: not harness.manager.connections and peer.terminated() is not None
        )
        assert not harness.listener.routes and not harness.listener.handshaking
        assert peer.response(sid)[1] == b"3 https GET /before 0"

    run(main())
