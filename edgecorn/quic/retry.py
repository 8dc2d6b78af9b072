"""Stateless Retry tokens (RFC 9000 8.1.2).

The key is handed in: the supervisor makes one secret (`Sockets.quic_secret`)
and every worker gets it, so a token one worker issued validates in any other.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
import time
from typing import Any

MAC_SIZE = 16


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
