"""The first look at a datagram: the connection ID it is for, and for a datagram that
matches no connection, what to do (version negotiation, Retry, accept, drop).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicPacketType,
    QuicProtocolVersion,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder

from .engine import CID_LENGTH
from .retry import RetryTokens

SUPPORTED_VERSIONS = [QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2]
# A client's first flight must be padded to 1200 bytes (RFC 9000 14.1): smaller
# Initials are not worth a connection (and would make us an amplifier).
MIN_INITIAL_SIZE = 1200


@dataclass
class Route:
    """What to do with a datagram that matched no connection."""

    reply: bytes | None = None  # send this back (version negotiation, Retry)
    accept: bool = False  # start a connection
    refuse: bool = False  # a first Initial while there is no room: see refusal()
    version: int = 0
    peer_cid: bytes = b""  # the client's source CID (a refusal's destination)
    original_dcid: bytes | None = None
    retry_scid: bytes | None = None
    dcid: bytes = b""


def long_header_invariants(data: bytes) -> tuple[int, bytes, bytes] | None:
    """(version, dcid, scid) of any long header, whatever its version (RFC 8999 5.1)."""
    if len(data) < 7:
        return None
    dcid_end = 6 + data[5]
    if len(data) <= dcid_end:
        return None
    scid_end = dcid_end + 1 + data[dcid_end]
    if len(data) < scid_end:
        return None
    return int.from_bytes(data[1:5], "big"), data[6:dcid_end], data[dcid_end + 1 : scid_end]


def destination_cid(data: bytes) -> bytes | None:
    """The DCID to route by; short headers (the bulk of traffic) need no full parse."""
    if data and not data[0] & 0x80:
        return data[1 : 1 + CID_LENGTH] if len(data) > CID_LENGTH else None
    invariants = long_header_invariants(data)
    if invariants is not None and invariants[0] not in SUPPORTED_VERSIONS:
        return invariants[1]  # unknown version: only the invariants are known
    header = parse_header(data)
    return None if header is None else header.destination_cid


def parse_header(data: bytes) -> Any:
    try:
        return pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
    except ValueError:
        return None


def new_route(
    data: bytes,
    addr: Any,
    retry: RetryTokens | None,
    want_retry: bool,
    full: bool = False,
    no_room: bool = False,
) -> Route | None:
    """A datagram for no known connection: negotiate version, Retry, accept or drop.

    `full`: the half-open budget is spent. A new Initial then gets Retry, which costs
    us no state, or, with Retry off, nothing; one that carries a Retry token is
    dropped too (a client takes one Retry only) and its retransmission may fit later.
    `no_room`: max_connections is reached; an Initial is to be refused (`refuse`),
    before any Retry, which would only cost the client a round trip to the same no."""
    invariants = long_header_invariants(data) if data[:1] >= b"\x80" else None
    if invariants is not None and invariants[0] not in SUPPORTED_VERSIONS:
        version, dcid, scid = invariants
        if version == 0 or len(data) < MIN_INITIAL_SIZE:
            return None  # RFC 9000 5.2.2: drop small packets with unsupported versions
        reply = encode_quic_version_negotiation(
            source_cid=dcid, destination_cid=scid, supported_versions=list(SUPPORTED_VERSIONS)
        )
        return Route(reply=reply)
    header = parse_header(data)
    if header is None:
        return None
    if header.version is not None and header.version not in SUPPORTED_VERSIONS:
        if header.packet_type == QuicPacketType.VERSION_NEGOTIATION:
            return None
        reply = encode_quic_version_negotiation(
            source_cid=header.destination_cid,
            destination_cid=header.source_cid,
            supported_versions=list(SUPPORTED_VERSIONS),
        )
        return Route(reply=reply)
    if header.packet_type != QuicPacketType.INITIAL or len(data) < MIN_INITIAL_SIZE:
        return None
    if no_room:
        return Route(
            refuse=True,
            version=header.version,
            peer_cid=header.source_cid,
            dcid=header.destination_cid,
        )
    if full and (retry is None or header.token):
        return None
    if retry is not None and header.token:
        try:
            original = retry.validate(addr, header.destination_cid, header.token)
        except ValueError:
            return None  # a forged, stale or replayed token: ignore (the client times out)
        return Route(
            accept=True,
            original_dcid=original,
            retry_scid=header.destination_cid,
            dcid=header.destination_cid,
        )
    if retry is not None and (want_retry or full):
        scid = os.urandom(CID_LENGTH)
        reply = encode_quic_retry(
            version=header.version,
            source_cid=scid,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=retry.create(addr, header.destination_cid, scid),
        )
        return Route(reply=reply)
    return Route(accept=True, original_dcid=header.destination_cid, dcid=header.destination_cid)


def refusal(route: Route) -> bytes:
    """An Initial packet carrying CONNECTION_CLOSE with CONNECTION_REFUSED (RFC 9000
    5.2.2: a server that will not take a connection may say so in an Initial), built
    without a connection: keys from the client's DCID, a fresh CID of ours. A client
    fails at once (quic-go refuses the same way when its accept queue is full) instead
    of retransmitting its Initial until its handshake timeout. It is ~50 bytes against
    the client's 1200, so it amplifies nothing."""
    crypto = CryptoPair()
    crypto.setup_initial(route.dcid, is_client=False, version=route.version)
    builder = QuicPacketBuilder(
        host_cid=os.urandom(CID_LENGTH),
        peer_cid=route.peer_cid,
        version=route.version,
        is_client=False,
        max_datagram_size=MIN_INITIAL_SIZE,
    )
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    buf = builder.start_frame(QuicFrameType.TRANSPORT_CLOSE)
    buf.push_uint_var(QuicErrorCode.CONNECTION_REFUSED)
    buf.push_uint_var(QuicFrameType.PADDING)  # the frame that caused it: none
    buf.push_uint_var(0)  # no reason phrase
    datagrams, _ = builder.flush()
    return datagrams[0]
