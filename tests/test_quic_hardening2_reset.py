"""Stateless resets (issue 14, RFC 9000 10.3): a peer whose connection the server lost
(a worker restarted, a connection forgotten) is told at once, by any worker, instead of
retransmitting into silence until its idle timeout.

In memory: the real endpoint, manager and app with a fake socket, and an aioquic client.
aioquic's client does not look for stateless resets itself, so `is_reset_for` does what
RFC 9000 10.3.1 asks of a client: compare the datagram's last 16 bytes with the tokens
the server gave it. End to end: ngtcp2's client, which does act on them."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from edgecorn.asyncio.runtime import AsyncioRuntime
from edgecorn.asyncio.udp import QUICListener
from edgecorn.logging import AccessLogger
from edgecorn.manager import ConnectionManager
from edgecorn.quic.retry import ResetTokens
from edgecorn.quic.worker import quic_setup
from edgecorn.sockets import Sockets
from tests.support.h3 import gtls_start, wait_quic
from tests.support.procs import alive, wait_workers
from tests.support.quic_peer import CLIENT, Peer, server_config
from tests.support.wait import wait_until
from tests.test_quic_endpoint import FakeSocket, Harness, app, run


class Worker(Harness):
    """One worker's QUIC endpoint, with the secret the supervisor hands every worker."""

    def __init__(
        self, certs: tuple[str, str, str], secret: bytes, cid_tag: int | None = None, **options: Any
    ) -> None:
        self.config = server_config(certs, **options)
        self.cafile = certs[2]
        self.manager = ConnectionManager(self.config, app, {}, AccessLogger(self.config))
        self.sock: Any = FakeSocket()
        sockets = Sockets(quic=[self.sock], quic_tag=cid_tag, quic_secret=secret)
        setup = quic_setup(self.config, sockets)
        assert setup is not None
        self.runtime = AsyncioRuntime(asyncio.get_running_loop())
        self.tasks = self.runtime.tasks
        self.listener = QUICListener(self.manager, self.sock, setup, self.runtime)
        self.loop = asyncio.get_running_loop()

    def feed(self, datagrams: list[bytes]) -> list[bytes]:
        """Datagrams in; what the endpoint sent back at once."""
        for data in datagrams:
            self.listener.datagram_received(data, CLIENT)
        sent, self.sock.sent = self.sock.sent, []
        return [data for data, _ in sent]


def client_tokens(peer: Peer) -> dict[bytes, bytes]:
    """CID -> stateless reset token, as the client holds them (transport parameter and
    NEW_CONNECTION_ID frames)."""
    cids = [peer.quic._peer_cid, *peer.quic._peer_cid_available]
    return {c.cid: c.stateless_reset_token for c in cids}


def is_reset_for(peer: Peer, data: bytes) -> bool:
    """RFC 9000 10.3.1: a datagram ending in a token of one of the peer's CIDs."""
    return len(data) >= 21 and data[-16:] in client_tokens(peer).values()


async def connected(worker: Worker) -> Peer:
    peer = worker.peer()
    sid = peer.request("GET", "/before")
    await worker.exchange(peer, lambda: peer.response(sid)[2])
    assert peer.response(sid)[1] == b"3 https GET /before 0"
    return peer


def test_a_restarted_worker_resets_the_connections_of_the_one_it_replaced(
    certs: tuple[str, str, str],
) -> None:
    async def main() -> None:
        secret = os.urandom(32)
        old = Worker(certs, secret)
        peer = await connected(old)
        # every token the client holds is the shared derivation, whichever way it came
        tokens = client_tokens(peer)
        assert len(tokens) > 1  # the handshake's CID and NEW_CONNECTION_ID ones
        assert all(ResetTokens(secret).token(cid) == t for cid, t in tokens.items())
        new = Worker(certs, secret)  # the same socket index after a crash: no state
        peer.request("GET", "/after")
        sent = peer.datagrams(new.loop.time())
        replies = new.feed(sent)
        assert replies, "no stateless reset"
        assert all(is_reset_for(peer, data) for data in replies)
        assert all(data[0] & 0xC0 == 0x40 for data in replies)  # a short header's form
        assert max(map(len, replies)) < min(map(len, sent))  # 10.3.3: smaller, no loops
        assert not new.manager.connections  # and no state for it

    run(main())


def test_a_forgotten_connection_is_reset_and_a_live_one_never(
    certs: tuple[str, str, str],
) -> None:
    async def main() -> None:
        worker = Worker(certs, os.urandom(32), cid_tag=3)
        peer = await connected(worker)
        other = await connected(worker)
        assert all(cid[0] == 3 for cid in client_tokens(peer))  # tagged CIDs, same tokens
        for conn in list(worker.manager.connections):
            if peer.quic._peer_cid.cid in conn.cids:  # type: ignore[attr-defined]
                conn._terminate()  # type: ignore[attr-defined]
        peer.request("GET", "/gone")
        replies = worker.feed(peer.datagrams(worker.loop.time()))
        assert replies and all(is_reset_for(peer, data) for data in replies)
        # the other connection is untouched
        sid = other.request("GET", "/alive")
        await worker.exchange(other, lambda: other.response(sid)[2])
        assert other.response(sid)[1] == b"3 https GET /alive 0"
        assert not any(is_reset_for(other, data) for data, _ in worker.sock.sent)

    run(main())


def test_reset_sizes_follow_rfc_9000(certs: tuple[str, str, str]) -> None:
    async def main() -> None:
        worker = Worker(certs, os.urandom(32))
        cid = os.urandom(8)
        token = ResetTokens(worker.listener.retry.key).token(cid)  # type: ignore[union-attr]

        def short(size: int) -> bytes:
            return b"\x41" + cid + os.urandom(size - 9)

        assert worker.feed([short(21)]) == []  # 21 bytes or fewer: never valid, never answered
        for size, expect in ((22, {21}), (43, {42}), (44, {43}), (1200, set(range(43, 65)))):
            (reply,) = worker.feed([short(size)])
            assert len(reply) in expect and reply.endswith(token), (size, len(reply))
        # a long header for no connection is not a short header's business
        assert worker.feed([b"\xc0\x00\x00\x00\x01\x08" + cid + b"\x00" + bytes(60)]) == []

    run(main())


def test_resets_are_rate_limited() -> None:
    resets = ResetTokens(b"k" * 32, rate=100)
    data = b"\x40" + bytes(60)
    sent = sum(resets.reset(data, b"c" * 8, CLIENT, 10.0) is not None for _ in range(500))
    assert sent == 100
    sent = sum(resets.reset(data, b"c" * 8, CLIENT, 10.5) is not None for _ in range(500))
    assert sent == 50  # refilled at `rate` a second (per peer: see test_hardening_limits_resets)


@pytest.mark.timeout(90)
def test_ngtcp2_is_reset_by_the_worker_that_replaced_a_killed_one(
    server_factory: Any, tmp_path: Path
) -> None:
    """A real supervisor and worker: ngtcp2's client completes its handshake, the worker is
    killed, and the request it sends afterwards (--delay-stream) reaches the replacement
    worker, whose reset carries the token the handshake announced: the client ends the
    connection (ERR_DRAINING) instead of waiting out its 30 s idle timeout."""
    server = server_factory.start("--workers", "1")
    wait_quic(server)
    (pid,) = wait_workers(server, 1)
    url = f"https://127.0.0.1:{server.port}/"
    extra = ["--delay-stream=3s", "--timeout=30s"]
    client = gtls_start(server.port, url, download=tmp_path / "dl", extra=extra)
    try:
        assert wait_until(lambda: "QUIC handshake has completed" in client.output(), 15)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not alive(pid), 10)
        assert wait_workers(server, 1) != {pid}
        run = client.wait(25)  # well inside the idle timeout
    finally:
        client.kill()
    announced = re.search(r"remote transport_parameters stateless_reset_token=(0x\w+)", run.output)
    received = re.search(r"pkt rx \d+ SR token=(0x\w+)", run.output)
    assert announced and received, run.summary()
    assert received.group(1) == announced.group(1)  # the handshake CID's token
    assert "ERR_DRAINING" in run.output and run.returncode is not None, run.summary()
