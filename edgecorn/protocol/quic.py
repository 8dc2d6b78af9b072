"""QUIC endpoint pieces that need no I/O: configuration, Retry tokens, session tickets,
and the first look at a datagram that decides where it goes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.logger import QuicFileLogger
from aioquic.quic.packet import (
    QuicPacketType,
    QuicProtocolVersion,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.tls import Epoch, SessionTicket

if TYPE_CHECKING:
    from ..config import Config

CID_LENGTH = 8
SUPPORTED_VERSIONS = [QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2]
# A client's first flight must be padded to 1200 bytes (RFC 9000 14.1): smaller
# Initials are not worth a connection (and would make us an amplifier).
MIN_INITIAL_SIZE = 1200

# Made at import, before workers fork, so every worker of a server validates
# the tokens any of them issued.
_RETRY_KEY = os.urandom(32)


def quic_configuration(config: Config) -> QuicConfiguration:
    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=H3_ALPN,
        connection_id_length=CID_LENGTH,
        idle_timeout=config.quic_idle_timeout,
        supported_versions=list(SUPPORTED_VERSIONS),
        max_datagram_frame_size=65536,
        # aioquic's cost is per packet: 1350 (as quiche and Chromium's servers use) carries
        # 12% more per packet than the 1200 minimum and fits nearly every path's MTU.
        max_datagram_size=config.quic_max_datagram_size,
    )
    assert config.certfile is not None
    configuration.load_cert_chain(config.certfile, config.keyfile, config.keyfile_password)
    if config.ca_certs:
        configuration.load_verify_locations(cafile=config.ca_certs)
    if config.verify_mode is not None:
        configuration.verify_mode = config.verify_mode
    keylog = config.ssl_keylog_file or os.environ.get("SSLKEYLOGFILE")
    if keylog:
        configuration.secrets_log_file = open(keylog, "a", buffering=1)  # noqa: SIM115
    if config.qlog_dir:
        os.makedirs(config.qlog_dir, exist_ok=True)
        configuration.quic_logger = QuicFileLogger(config.qlog_dir)
    return configuration


class EdgeQuicConnection(QuicConnection):
    """aioquic's server connection, with 0-RTT offered in tickets only when enabled,
    and, with several workers, connection IDs whose first byte names the worker
    (see reuseport.py) so the kernel steers every packet to it."""

    def __init__(self, *, early_data: bool, cid_tag: int | None = None,
                 max_streams: int = 128, **kwargs: Any) -> None:
        self.edge_early_data = early_data
        self.edge_cid_tag = cid_tag
        super().__init__(**kwargs)
        # aioquic hard-codes 128 concurrent bidi streams and raises the limit by one per
        # finished stream, so this stays the number of concurrent requests.
        limit = self._local_max_streams_bidi
        limit.value = limit.sent = max_streams
        if cid_tag is not None:
            first = self._host_cids[0]
            first.cid = tagged_cid(cid_tag)
            self.host_cid = first.cid
            self._local_initial_source_connection_id = first.cid

    def _replenish_connection_ids(self) -> None:
        super()._replenish_connection_ids()
        tag = self.edge_cid_tag
        if tag is not None:
            for connection_id in self._host_cids:
                if not connection_id.was_sent and connection_id.cid[0] != tag:
                    connection_id.cid = tagged_cid(tag)  # not yet announced: safe to change

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if not self.edge_early_data:
            # Tickets then carry no early_data extension, so clients resume without 0-RTT.
            self.tls._max_early_data = None
            # aioquic's TLS accepts 0-RTT whenever a resumed ClientHello offers it (it never
            # checks the ticket): refuse the 0-RTT key, so EncryptedExtensions says "rejected".
            tls_context = self.tls
            install = tls_context.update_traffic_key_cb

            def no_early_data(direction: Any, epoch: Any, cipher_suite: Any, secret: bytes) -> None:
                if epoch == Epoch.ZERO_RTT:
                    tls_context.early_data_accepted = False
                    return
                install(direction, epoch, cipher_suite, secret)

            tls_context.update_traffic_key_cb = no_early_data


def tagged_cid(tag: int) -> bytes:
    return bytes([tag]) + os.urandom(CID_LENGTH - 1)


class RetryTokens:
    """Stateless Retry tokens (RFC 9000 8.1.2): bound to the client address, authenticated
    with an HMAC, carrying the original DCID, and valid for `lifetime` seconds."""

    def __init__(self, lifetime: float = 10.0, key: bytes = _RETRY_KEY) -> None:
        self.lifetime = lifetime
        self.key = key

    def _mac(self, addr: Any, body: bytes) -> bytes:
        host = ipaddress.ip_address(addr[0]).packed
        message = host + struct.pack("!H", addr[1]) + body
        return hmac.new(self.key, message, hashlib.sha256).digest()[:16]

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
        if len(token) < 8 + 1 + 1 + 16:
            raise ValueError("short token")
        body, mac = token[:-16], token[-16:]
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


class TicketStore:
    """Session tickets for resumption, kept in memory, each usable once.

    Single use is what makes 0-RTT replay of a ticket fail here (RFC 8446 8.1).
    Tickets live in two generations that rotate every `rotation` seconds, so a
    ticket is forgotten after one to two rotations and the store stays bounded.
    """

    def __init__(self, rotation: float = 3600.0, max_size: int = 100_000) -> None:
        self.rotation = rotation
        self.max_size = max_size
        self.current: dict[bytes, SessionTicket] = {}
        self.previous: dict[bytes, SessionTicket] = {}
        self.rotated_at = time.monotonic()

    def _maybe_rotate(self) -> None:
        full = len(self.current) >= self.max_size
        if full or time.monotonic() - self.rotated_at >= self.rotation:
            self.previous, self.current = self.current, {}
            self.rotated_at = time.monotonic()

    def add(self, ticket: SessionTicket) -> None:
        self._maybe_rotate()
        self.current[ticket.ticket] = ticket

    def pop(self, label: bytes) -> SessionTicket | None:
        self._maybe_rotate()
        return self.current.pop(label, None) or self.previous.pop(label, None)


@dataclass
class Route:
    """What to do with a datagram that matched no connection."""

    reply: bytes | None = None  # send this back (version negotiation, Retry)
    accept: bool = False  # start a connection
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
    data: bytes, addr: Any, retry: RetryTokens | None, want_retry: bool
) -> Route | None:
    """A datagram for no known connection: negotiate version, Retry, accept or drop."""
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
    if retry is not None and header.token:
        try:
            original = retry.validate(addr, header.destination_cid, header.token)
        except ValueError:
            return None  # a forged, stale or replayed token: ignore (the client times out)
        return Route(accept=True, original_dcid=original, retry_scid=header.destination_cid,
                     dcid=header.destination_cid)
    if retry is not None and want_retry:
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
