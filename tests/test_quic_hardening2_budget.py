"""The half-open budget (issue 14): a hard cap on QUIC connections still in handshake,
by count (quic_max_handshakes) and by estimated memory (quic_handshake_memory), past
which new Initials get a stateless Retry, or with Retry off are dropped, whatever
quic_retry_threshold says. In memory (the real endpoint, forged Initials) and end to
end (a raw UDP socket against a real server, RSS measured)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from edgecorn.quic.engine import HANDSHAKE_COST
from tests.support.h3 import wait_quic
from tests.test_quic_endpoint import run
from tests.test_quic_hardening2_reset import Worker
from tests.test_quic_hardening_flood import flood, forged_initials, is_retry

pytestmark = pytest.mark.timeout(120)


async def feed(worker: Worker, datagrams: list[bytes], port: int = 20000) -> list[bytes]:
    """Each datagram from its own client address; what went back in this loop turn."""
    for i, data in enumerate(datagrams):
        worker.listener.datagram_received(data, ("127.0.0.1", port + i))
    for _ in range(3):
        await asyncio.sleep(0)  # connections flush at the end of the turn
    sent, worker.sock.sent = worker.sock.sent, []
    return [data for data, _ in sent]


def answered(replies: list[bytes]) -> set[bytes]:
    """The client connections that got a handshake (long-header, not Retry) reply."""
    return {r[6 : 6 + r[5]] for r in replies if r[0] & 0x80 and not is_retry(r)}


def test_past_the_count_cap_initials_are_dropped_when_retry_is_off(
    certs: tuple[str, str, str],
) -> None:
    async def main() -> None:
        worker = Worker(certs, os.urandom(32), quic_retry="off", quic_max_handshakes=50)
        replies = await feed(worker, forged_initials(4433, certs[2], 200))
        assert worker.listener.handshaking == 50
        assert len(worker.manager.connections) == 50
        assert len(answered(replies)) == 50
        assert not any(is_retry(r) for r in replies)

    run(main())


def test_past_the_count_cap_initials_get_retry_whatever_the_threshold(
    certs: tuple[str, str, str],
) -> None:
    async def main() -> None:
        worker = Worker(certs, os.urandom(32), quic_retry_threshold=100_000, quic_max_handshakes=50)
        replies = await feed(worker, forged_initials(4433, certs[2], 200))
        assert worker.listener.handshaking == 50
        assert sum(map(is_retry, replies)) == 150

    run(main())


def test_past_the_memory_estimate_initials_get_retry(certs: tuple[str, str, str]) -> None:
    async def main() -> None:
        memory = 20 * (HANDSHAKE_COST + 1300)
        worker = Worker(certs, os.urandom(32), quic_handshake_memory=memory)
        datagrams = forged_initials(4433, certs[2], 100)
        replies = await feed(worker, datagrams)
        listener = worker.listener
        assert listener.handshake_bytes <= memory
        assert listener.handshaking == 20  # each: the cost and its ~1250-byte Initial
        assert sum(map(is_retry, replies)) == 80

    run(main())


def test_a_retried_initial_is_dropped_while_full_and_the_budget_frees_up(
    certs: tuple[str, str, str],
) -> None:
    async def main() -> None:
        worker = Worker(certs, os.urandom(32), quic_retry="on", quic_max_handshakes=1)
        listener = worker.listener
        # a real client completes: the budget is all back
        peer = worker.peer()
        sid = peer.request("GET", "/one")
        await worker.exchange(peer, lambda: peer.response(sid)[2])
        assert peer.response(sid)[1] == b"3 https GET /one 0"
        assert (listener.handshaking, listener.handshake_bytes) == (0, 0)
        # a client through Retry, its Initial with the token accepted: the budget is full
        now = worker.loop.time()
        first, second = worker.peer(), worker.peer()
        (retry,) = await feed(worker, first.datagrams(now), 30000)
        assert is_retry(retry)
        first.receive(retry, now)
        assert answered(await feed(worker, first.datagrams(now), 30000))
        assert listener.handshaking == 1
        # another client gets its Retry, but its Initial with the token finds no room
        (retry,) = await feed(worker, second.datagrams(now), 30001)
        assert is_retry(retry)
        second.receive(retry, now)
        assert await feed(worker, second.datagrams(now), 30001) == []  # dropped, no state
        assert listener.handshaking == 1 and len(worker.manager.connections) == 2  # + /one
        for conn in list(worker.manager.connections):
            conn._terminate()  # type: ignore[attr-defined]
        assert (listener.handshaking, listener.handshake_bytes) == (0, 0)

    run(main())


FLOOD = 1500


def test_an_initial_flood_with_retry_off_stays_within_the_cap(server_factory: Any) -> None:
    """quic_retry off: without the cap, 1500 forged Initials made 1500 half-open
    connections (~100 MiB here); with quic_max_handshakes 200 the rest are dropped."""
    server = server_factory.start("--quic-retry", "off", "--quic-max-handshakes", "200")
    wait_quic(server)
    datagrams = forged_initials(server.port, server.cafile, FLOOD)
    before = server.rss_kib()
    replies = flood(server.port, datagrams, time.monotonic() + 60)
    grown = server.rss_kib() - before
    served = answered(replies)
    print(f"RSS +{grown} KiB, {len(served)} connections answered")  # visible with -s
    assert server.alive()
    assert 100 <= len(served) <= 200
    assert grown < 40 * 1024, f"RSS grew {grown} KiB"
