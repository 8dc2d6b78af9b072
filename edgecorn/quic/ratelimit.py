"""Rate limits per peer address for what an endpoint sends without a connection
(stateless resets, refusals): a token bucket per address, in a bounded table.

One limit per socket let one hostile address spend the whole budget, so that the
peers of every other lost connection got no reset. Here each address (an IPv4 /32,
an IPv6 /64: one host or one subscriber) has its own bucket, and a total bucket
still bounds what a flood from many (spoofed) addresses costs. The table keeps the
`max_peers` addresses seen last: a forgotten one starts again with a full bucket,
which the total bucket bounds too.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from typing import Any

MAX_PEERS = 4096  # ~1 MB at most for the table


class Bucket:
    """`rate` tokens a second, at most `burst` saved."""

    __slots__ = ("rate", "burst", "tokens", "checked_at")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.checked_at: float | None = None

    def take(self, now: float) -> bool:
        if self.checked_at is not None:
            elapsed = max(0.0, now - self.checked_at)
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.checked_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def peer_key(addr: Any) -> bytes:
    """The bucket an address belongs to: its IPv4 address (an IPv4-mapped IPv6 one
    too), or the /64 of an IPv6 address; an unparsable one is its own key."""
    host = str(addr[0]).partition("%")[0]  # no zone index (fe80::1%eth0)
    try:
        if ":" not in host:
            return socket.inet_pton(socket.AF_INET, host)
        packed = socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return host.encode()
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return packed[12:]
    return packed[:8]


class PeerRate:
    """At most `rate` a second per peer address (bursts of `burst`), and at most
    `total` a second for all of them; `max_peers` addresses remembered."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        total: float | None = None,
        max_peers: int = MAX_PEERS,
    ) -> None:
        self.rate = rate
        self.burst = rate if burst is None else burst
        total = rate * 100 if total is None else total
        self.total = Bucket(total, total)
        self.max_peers = max_peers
        self.peers: OrderedDict[bytes, Bucket] = OrderedDict()

    def allow(self, addr: Any, now: float) -> bool:
        key = peer_key(addr)
        bucket = self.peers.get(key)
        if bucket is None:
            if len(self.peers) >= self.max_peers:
                self.peers.popitem(last=False)  # the address seen longest ago
            bucket = self.peers[key] = Bucket(self.rate, self.burst)
        else:
            self.peers.move_to_end(key)
        # The peer's own bucket first: a peer over its limit spends nothing of the total.
        return bucket.take(now) and self.total.take(now)
