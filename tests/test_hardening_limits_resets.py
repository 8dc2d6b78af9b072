"""Stateless resets are rate-limited per peer address, not per socket (issue 14).

With one budget per socket, one address sending junk short-header datagrams used up
every reset, and the peers of connections really lost got none. Sans-IO: the limiter
on its own, then the real endpoint (asyncio listener, fake socket) fed datagrams.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from edgecorn.quic.ratelimit import PeerRate, peer_key
from edgecorn.quic.retry import ResetTokens
from tests.test_quic_endpoint import Harness, run

HOSTILE = ("203.0.113.7", 40000)
VICTIM = ("198.51.100.9", 40001)


def test_one_peer_over_its_limit_leaves_the_others_theirs() -> None:
    rate = PeerRate(10, total=1000)
    assert sum(rate.allow(HOSTILE, 5.0) for _ in range(500)) == 10
    assert sum(rate.allow(VICTIM, 5.0) for _ in range(500)) == 10
    assert sum(rate.allow(HOSTILE, 5.5) for _ in range(500)) == 5  # refilled at 10 a second


def test_the_total_bounds_many_peers() -> None:
    rate = PeerRate(10, total=100)
    peers = [(f"10.0.{i // 256}.{i % 256}", 443) for i in range(1000)]
    assert sum(rate.allow(peer, 1.0) for peer in peers) == 100


def test_the_table_is_bounded_and_forgets_the_oldest() -> None:
    rate = PeerRate(1, total=10**6, max_peers=64)
    for i in range(10_000):
        rate.allow((f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 1), 0.0)
    assert len(rate.peers) == 64
    assert rate.allow(HOSTILE, 0.0)  # a new address: a bucket of its own
    assert not rate.allow(HOSTILE, 0.0)
    assert len(rate.peers) == 64


def test_addresses_share_a_bucket_by_host_and_ipv6_64() -> None:
    assert peer_key(("192.0.2.1", 1)) == peer_key(("192.0.2.1", 2))
    assert peer_key(("192.0.2.1", 1)) == peer_key(("::ffff:192.0.2.1", 1, 0, 0))
    assert peer_key(("2001:db8:1:2::1", 1, 0, 0)) == peer_key(("2001:db8:1:2:ff::9", 1, 0, 0))
    assert peer_key(("2001:db8:1:2::1", 1, 0, 0)) != peer_key(("2001:db8:1:3::1", 1, 0, 0))
    assert peer_key(("fe80::1%lo", 1, 0, 1)) == peer_key(("fe80::2", 1, 0, 1))
    rate = PeerRate(1, total=100)
    assert rate.allow(("2001:db8::1", 1, 0, 0), 0.0)
    assert not rate.allow(("2001:db8::2", 9, 0, 0), 0.0)  # the same /64


def test_reset_tokens_limit_per_peer() -> None:
    resets = ResetTokens(b"k" * 32, rate=10, total=1000)
    data = b"\x40" + bytes(60)
    assert sum(resets.reset(data, b"c" * 8, HOSTILE, 1.0) is not None for _ in range(300)) == 10
    assert resets.reset(data, b"c" * 8, VICTIM, 1.0) is not None


def test_a_flooding_address_does_not_silence_the_endpoints_resets_for_others(
    certs: tuple[str, str, str],
) -> None:
    """Junk short-header datagrams from one address (CIDs of no connection), then one
    from another address: that one is still answered with a reset."""

    async def main() -> None:
        harness = Harness(certs)
        listener: Any = harness.listener

        def junk() -> bytes:
            return b"\x41" + os.urandom(8) + os.urandom(60)

        for _ in range(1000):
            listener.datagram_received(junk(), HOSTILE)
        to_hostile = [data for data, addr in harness.sock.sent if addr == HOSTILE]
        assert 0 < len(to_hostile) <= 20, len(to_hostile)  # its own burst (and a refill)
        harness.sock.sent.clear()
        listener.datagram_received(junk(), VICTIM)
        assert [addr for _, addr in harness.sock.sent] == [VICTIM]
        assert not harness.manager.connections and not listener.routes
        await asyncio.sleep(0)

    run(main())
