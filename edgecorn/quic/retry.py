"""Stateless Retry tokens (RFC 9000 8.1.2) and stateless resets (RFC 9000 10.3).

The key is handed in: the supervisor makes one secret (`Sockets.quic_secret`)
and every worker gets it, so a token one worker issued validates in any other,
and any worker (a restarted one too) can reset a connection another one lost.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import struct
import time
from typing import Any

from .ratelimit import PeerRate

MAC_SIZE = 16
RESET_TOKEN_SIZE = 16
# RFC 9000 10.3: a reset is at least 21 bytes (5 unpredictable, 16 of token) and must be
# smaller than the datagram that triggered it (10.3.3, so two servers cannot loop), one
# byte smaller up to 43 bytes; past that, a random size up to RESET_MAX_SIZE.
RESET_MIN_SIZE = 21
RESET_SMALL = 43
RESET_MAX_SIZE = 64


class RetryTokens:
    """Tokens bound to the client address, authenticated with an HMAC, carrying the
    original DCID, and valid for `lifetime` seconds."""

    def __init__(self, key: bytes, lifetime: float = 10.0) -> None:
        self.key = key
        self.lifetime = lifetime

    def _mac(self, addr: Any, body: bytes) -> bytes:
        host = ipaddress.ip_address(addr[0]).packed
        message = host + struct.pack("!H", addr[1]) + body
        return hmac.new(self.key, message, hashlib.sha256).digest()[:MAC_SIZE]

    def create(self, addr: Any, original_dcid: bytes, retry_scid: bytes) -> bytes:
        body = (
            struct.pack("!Q", int(time.time()))
            + bytes([len(original_dcid)])
            + original_dcid
            + bytes([len(retry_scid)])
            + retry_scid
        )
        return body + self._mac(addr, body)

    def validate(self, addr: Any, dcid: bytes, token: bytes) -> bytes:
        """Return the original DCID, or raise ValueError."""
        if len(token) < 8 + 1 + 1 + MAC_SIZE:
            raise ValueError("short token")
        body, mac = token[:-MAC_SIZE], token[-MAC_SIZE:]
        if not hmac.compare_digest(mac, self._mac(addr, body)):
            raise ValueError("token not ours or another address")
        issued = struct.unpack("!Q", body[:8])[0]
        if not 0 <= time.time() - issued <= self.lifetime:
            raise ValueError("expired token")
        odcid_len = body[8]
        original_dcid = body[9 : 9 + odcid_len]
        retry_scid = body[10 + odcid_len :]
        if retry_scid != dcid:
            raise ValueError("token for another connection")
        return original_dcid


class ResetTokens:
    """Stateless reset tokens: an HMAC of the connection ID under a key of its own,
    derived from the shared secret (RFC 9000 10.3.2), so the token advertised for a CID
    (engine.py) is the one any worker puts in a reset for it; and the resets, at most
    `rate` a second per peer address with bursts of `rate`, and `total` a second for
    all peers (10.3.3: a limit ends any loop and bounds what a flood of junk costs;
    per address, so that one hostile peer cannot spend every other peer's resets)."""

    def __init__(self, secret: bytes, rate: float = 10.0, total: float = 1000.0) -> None:
        self.key = hmac.new(secret, b"edgecorn stateless reset", hashlib.sha256).digest()
        self.limit = PeerRate(rate, total=total)

    def token(self, cid: bytes) -> bytes:
        return hmac.new(self.key, cid, hashlib.sha256).digest()[:RESET_TOKEN_SIZE]

    def reset(self, data: bytes, cid: bytes, addr: Any, now: float) -> bytes | None:
        """A stateless reset answering `data`, a short-header datagram for `cid` from
        `addr`, which is no connection's here; None when it is too small to answer or
        over the rate."""
        if len(data) <= RESET_MIN_SIZE:
            return None  # a reset smaller than it could not be a valid packet
        if not self.limit.allow(addr, now):
            return None
        if len(data) <= RESET_SMALL:
            size = len(data) - 1
        else:  # unpredictable, like the sizes of real short-header packets
            top = min(len(data) - 1, RESET_MAX_SIZE)
            size = RESET_SMALL + os.urandom(1)[0] % (top - RESET_SMALL + 1)
        random = os.urandom(size - RESET_TOKEN_SIZE)
        first = 0x40 | (random[0] & 0x3F)  # short header: form 0, fixed bit 1
        return bytes([first]) + random[1:] + self.token(cid)
