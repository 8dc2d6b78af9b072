"""What the relay sees of QUIC without keys: the long headers (RFC 8999 invariants and
RFC 9000/9369 long header layouts), as the runner reads them from its pcaps.

Enough for the runner's checks: handshakes (distinct SCIDs of server Initials),
versions, Retry and the token the client echoed, 0-RTT bytes, and Handshake bytes
per connection (a resumed handshake carries no certificate).
"""

from __future__ import annotations

from dataclasses import dataclass, field

V1 = 0x00000001
V2 = 0x6B3343CF
# long packet type bits -> name, per version (QUIC v2 rotates them: RFC 9369 3.2)
TYPES = {
    V1: {0: "initial", 1: "0rtt", 2: "handshake", 3: "retry"},
    V2: {1: "initial", 2: "0rtt", 3: "handshake", 0: "retry"},
}


@dataclass
class Packet:
    kind: str  # initial, 0rtt, handshake, retry, version_negotiation, short, unknown
    version: int
    dcid: bytes = b""
    scid: bytes = b""
    size: int = 0
    token: bytes = b""  # Initial: the token field; Retry: the token it carries


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    length = 1 << (first >> 6)
    value = first & 0x3F
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    return value, pos + length


def parse_datagram(data: bytes) -> list[Packet]:
    """Every coalesced packet in a datagram; a short header ends the list."""
    packets: list[Packet] = []
    pos = 0
    try:
        while pos < len(data):
            first = data[pos]
            if not first & 0x80:
                packets.append(Packet("short", 0, size=len(data) - pos))
                break
            version = int.from_bytes(data[pos + 1 : pos + 5], "big")
            dcid_len = data[pos + 5]
            dcid = data[pos + 6 : pos + 6 + dcid_len]
            at = pos + 6 + dcid_len
            scid = data[at + 1 : at + 1 + data[at]]
            at += 1 + data[at]
            if version == 0:
                packets.append(Packet("version_negotiation", 0, dcid, scid, len(data) - pos))
                break
            kind = TYPES.get(version, {}).get((first >> 4) & 0x03, "unknown")
            if kind == "retry":
                token = data[at : len(data) - 16]  # the integrity tag is the last 16 bytes
                packets.append(Packet(kind, version, dcid, scid, len(data) - pos, token))
                break
            if kind == "unknown":
                packets.append(Packet(kind, version, dcid, scid, len(data) - pos))
                break
            token = b""
            if kind == "initial":
                token_len, at = _varint(data, at)
                token = data[at : at + token_len]
                at += token_len
            length, at = _varint(data, at)
            end = at + length
            packets.append(Packet(kind, version, dcid, scid, end - pos, token))
            pos = end
    except IndexError:
        packets.append(Packet("unknown", 0, size=len(data) - pos))
    return packets


@dataclass
class Trace:
    """Everything the relay forwarded, parsed; `to_server` is what reached the server."""

    to_server: list[tuple[float, int, list[Packet]]] = field(default_factory=list)
    to_client: list[tuple[float, int, list[Packet]]] = field(default_factory=list)

    def packets(self, to_server: bool, kind: str) -> list[Packet]:
        records = self.to_server if to_server else self.to_client
        return [p for _, _, packets in records for p in packets if p.kind == kind]

    def handshakes(self) -> int:
        return len({p.scid for p in self.packets(False, "initial")})

    def server_versions(self) -> set[int]:
        return {p.version for p in self.packets(False, "initial")}

    def handshake_versions(self, to_server: bool) -> set[int]:
        return {p.version for p in self.packets(to_server, "handshake")}

    def retry_tokens(self) -> list[bytes]:
        return [p.token for p in self.packets(False, "retry")]

    def retry_token_used(self) -> bool:
        tokens = set(self.retry_tokens())
        return any(p.token in tokens for p in self.packets(True, "initial") if p.token)

    def zero_rtt_bytes(self) -> int:
        return sum(p.size for p in self.packets(True, "0rtt"))

    def server_handshake_bytes(self) -> list[int]:
        """Bytes of server Handshake packets per connection, in order of the connections."""
        per_conn: dict[bytes, int] = {}
        for p in self.packets(False, "handshake"):
            per_conn[p.scid] = per_conn.get(p.scid, 0) + p.size
        return list(per_conn.values())

    def amplification(self) -> tuple[int, int]:
        """(bytes the server sent, bytes the client's Initials brought) before the first
        client Handshake packet reached the server, which validates its address."""
        events = [(t, True, size, ps) for t, size, ps in self.to_server]
        events += [(t, False, size, ps) for t, size, ps in self.to_client]
        events.sort(key=lambda e: e[0])
        received = sent = 0
        for _, to_server, size, packets in events:
            if to_server:
                if any(p.kind == "handshake" for p in packets):
                    break
                received += size
            else:
                sent += size
        return sent, received

    def dump(self) -> str:
        """One line per datagram, both directions in time order (for the logs)."""
        rows = [(t, "->", size, ps) for t, size, ps in self.to_server]
        rows += [(t, "<-", size, ps) for t, size, ps in self.to_client]
        rows.sort(key=lambda row: row[0])
        start = rows[0][0] if rows else 0.0
        return "".join(
            f"{t - start:9.4f} {arrow} {size:5d} {' '.join(p.kind for p in ps)}\n"
            for t, arrow, size, ps in rows
        )
