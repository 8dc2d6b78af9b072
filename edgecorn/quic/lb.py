"""Connection IDs in the QUIC-LB format (draft-ietf-quic-load-balancers, plaintext mode).

    first octet | server ID | nonce
    CR(3) LEN(5)  configured  worker index, then random bytes

CR are the config rotation bits (`quic_lb_config_id`, 0-6; 7 means "unroutable"),
LEN self-describes the length of the rest of the CID (CID length - 1). A CID-aware L4
balancer in front of several hosts reads the server ID and keeps each connection on
its host whatever the client's address does; inside the host, the BPF steering
(reuseport.py) reads the worker index at `worker_offset`, the first nonce octet. To the
balancer the nonce is opaque, so the worker byte costs it nothing.

Without `quic_lb_server_id` our CIDs keep the older layout: the worker index is the
first octet (offset 0) and the rest is random.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CID_LENGTH = 8  # engine.CID_LENGTH (not imported: the supervisor needs no aioquic)
MIN_NONCE = 4  # the draft's smallest nonce


@dataclass(frozen=True)
class CidFormat:
    config_id: int = 0
    server_id: bytes = b""
    length: int = CID_LENGTH

    def __post_init__(self) -> None:
        if not 0 <= self.config_id <= 6:
            raise ValueError("QUIC-LB config rotation codepoint must be 0-6")
        if self.server_id and self.length - 1 - len(self.server_id) < MIN_NONCE:
            raise ValueError(f"a {len(self.server_id)}-byte server ID leaves no 4-byte nonce")

    @property
    def worker_offset(self) -> int:
        """Where in the CID the worker index is (what the BPF program reads)."""
        return 1 + len(self.server_id) if self.server_id else 0

    def new(self, worker: int | None) -> bytes:
        if not self.server_id:  # no QUIC-LB: the worker index first, if any
            random = os.urandom(self.length)
            return random if worker is None else bytes([worker]) + random[1:]
        first = (self.config_id << 5) | (self.length - 1)
        nonce = os.urandom(self.length - 1 - len(self.server_id))
        if worker is not None:
            nonce = bytes([worker]) + nonce[1:]
        return bytes([first]) + self.server_id + nonce

    def worker(self, cid: bytes) -> int:
        return cid[self.worker_offset]


LEGACY = CidFormat()


def cid_format(server_id_hex: str | None, config_id: int = 0) -> CidFormat:
    """The format for a Config's `quic_lb_server_id` / `quic_lb_config_id`."""
    if not server_id_hex:
        return LEGACY
    return CidFormat(config_id, bytes.fromhex(server_id_hex))


def worker_offset(server_id_hex: str | None) -> int:
    """Where the worker index is in our CIDs, for the supervisor's BPF program."""
    return 1 + len(bytes.fromhex(server_id_hex)) if server_id_hex else 0


@dataclass(frozen=True)
class Decoded:
    """A CID as a QUIC-LB balancer reads it (draft section 5, plaintext)."""

    config_id: int
    length: int  # the whole CID, from the self-described length
    server_id: bytes
    nonce: bytes


def decode(cid: bytes, server_id_length: int) -> Decoded:
    """Read a CID the way a balancer configured with `server_id_length` does."""
    first = cid[0]
    config_id = first >> 5
    if config_id == 0b111:
        raise ValueError("unroutable connection ID (config rotation 0b111)")
    length = (first & 0x1F) + 1
    if length != len(cid):
        raise ValueError(f"self-described length {length} != {len(cid)}")
    end = 1 + server_id_length
    return Decoded(config_id, length, cid[1:end], cid[end:])
