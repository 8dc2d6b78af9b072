"""The PROXY protocol (v1 text and v2 binary) as an L4 balancer sends it.

With `proxy_protocol: true` every TCP connection starts with a PROXY header that
names the real client; only peers in `trusted_proxies` may send one, and a
connection without a valid header is closed. The header is read from the raw
socket *before* anything else (so before the TLS handshake on TLS listeners):
`parse` is sans-IO, and `read_asyncio` / `read_trio` feed it with peeked bytes
and then consume exactly the header, leaving the rest (a ClientHello, a request)
in the kernel's buffer for the normal path.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # the spec's longest v1 line, CRLF included
V2_MAX = 16 + 65535
_V1_PREFIX = b"PROXY "

log = logging.getLogger("edgecorn.error")


class ProxyHeaderError(ValueError):
    """Not a PROXY header, or a broken one."""


@dataclass
class ProxyHeader:
    length: int  # bytes the header took on the wire
    version: int
    local: bool = False  # v2 LOCAL (the balancer's own health check): no client named
    source: tuple[str, int] | None = None  # the real client (None: UNKNOWN / LOCAL / UNIX)
    destination: tuple[str, int] | None = None
    tlvs: list[tuple[int, bytes]] = field(default_factory=list)


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of `data`; None if more bytes are needed."""
    if data[:1] == b"\r":
        if len(data) < 16:
            if not V2_SIGNATURE.startswith(data[:12]):
                raise ProxyHeaderError("not a PROXY protocol v2 signature")
            return None
        return _parse_v2(data)
    if data[:1] == b"P":
        return _parse_v1(data)
    if data:
        raise ProxyHeaderError("no PROXY protocol header")
    return None


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or not (data.startswith(_V1_PREFIX) or _V1_PREFIX.startswith(data)):
            raise ProxyHeaderError("not a PROXY protocol v1 line")
        return None
    line = data[:end].decode("ascii", "replace")
    parts = line.split(" ")
    if parts[0] != "PROXY" or len(parts) < 2:
        raise ProxyHeaderError("not a PROXY protocol v1 line")
    if parts[1] == "UNKNOWN":
        return ProxyHeader(end + 2, 1)  # the sender does not know: keep the peer's address
    if parts[1] not in ("TCP4", "TCP6") or len(parts) != 6:
        raise ProxyHeaderError(f"PROXY v1: bad protocol or field count in {line!r}")
    version = 4 if parts[1] == "TCP4" else 6
    source = (_address(parts[2], version), _port(parts[4]))
    destination = (_address(parts[3], version), _port(parts[5]))
    return ProxyHeader(end + 2, 1, source=source, destination=destination)


def _address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"PROXY v1: bad address {text!r}") from None
    if address.version != version:
        raise ProxyHeaderError(f"PROXY v1: {text!r} is not an IPv{version} address")
    return str(address)


def _port(text: str) -> int:
    # decimal without leading zeros, 0-65535 (the spec's wording)
    if not text.isdigit() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyHeaderError(f"PROXY v1: bad port {text!r}")
    return int(text)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if data[:12] != V2_SIGNATURE:
        raise ProxyHeaderError("not a PROXY protocol v2 signature")
    version_command, family, size = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"PROXY v2: unsupported version {version_command >> 4}")
    command = version_command & 0x0F
    if command > 1:
        raise ProxyHeaderError(f"PROXY v2: unknown command {command}")
    total = 16 + size
    if len(data) < total:
        return None
    body = data[16:total]
    header = ProxyHeader(total, 2, local=command == 0)
    address_family, transport = family >> 4, family & 0x0F
    if address_family == 1:  # AF_INET
        used = 12
        if size < used:
            raise ProxyHeaderError("PROXY v2: IPv4 address block too short")
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", body)
        addresses = (
            (str(ipaddress.IPv4Address(src)), sport),
            (str(ipaddress.IPv4Address(dst)), dport),
        )
    elif address_family == 2:  # AF_INET6
        used = 36
        if size < used:
            raise ProxyHeaderError("PROXY v2: IPv6 address block too short")
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", body)
        addresses = (
            (str(ipaddress.IPv6Address(src)), sport),
            (str(ipaddress.IPv6Address(dst)), dport),
        )
    elif address_family == 3:  # AF_UNIX: nothing an ASGI client tuple can hold
        used, addresses = min(size, 216), None
    elif address_family == 0:
        used, addresses = 0, None
    else:
        raise ProxyHeaderError(f"PROXY v2: unknown address family {address_family}")
    if transport > 2:
        raise ProxyHeaderError(f"PROXY v2: unknown transport {transport}")
    if addresses is not None and not header.local:
        header.source, header.destination = addresses
    header.tlvs = _tlvs(body[used:])
    return header


def _tlvs(data: bytes) -> list[tuple[int, bytes]]:
    tlvs = []
    at = 0
    while at < len(data):
        if len(data) - at < 3:
            raise ProxyHeaderError("PROXY v2: truncated TLV")
        kind, size = struct.unpack_from("!BH", data, at)
        at += 3
        if len(data) - at < size:
            raise ProxyHeaderError("PROXY v2: TLV longer than the header")
        tlvs.append((kind, data[at : at + size]))
        at += size
    return tlvs


# --- reading it off a socket -------------------------------------------------------------
# Peek, parse, and consume only header bytes: on an incomplete header every byte peeked
# belongs to it (v1 has no CRLF yet, v2 is short of its stated length), so taking them
# is safe and the next wait is for new bytes, not a busy loop on the same ones.


def _take(buffer: bytearray, peeked: bytes) -> tuple[ProxyHeader | None, int]:
    """What to do with bytes peeked after `buffer`: (the header or None, bytes to consume)."""
    if not peeked:
        raise ProxyHeaderError("connection closed before its PROXY header")
    header = parse(bytes(buffer) + peeked)
    if header is None:
        return None, len(peeked)
    return header, header.length - len(buffer)


async def read_asyncio(sock: socket.socket, timeout: float) -> ProxyHeader:
    """Read a non-blocking socket's PROXY header on the running asyncio (or uvloop) loop;
    raises ProxyHeaderError, OSError or TimeoutError."""
    import asyncio

    loop = asyncio.get_running_loop()
    buffer = bytearray()

    async def read() -> ProxyHeader:
        while True:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(sock.fileno())
            try:
                peeked = sock.recv(V2_MAX, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                continue
            header, size = _take(buffer, peeked)
            buffer.extend(sock.recv(size))  # already there: cannot block
            if header is not None:
                return header

    return await asyncio.wait_for(read(), timeout)


def _wake(ready: Any) -> None:
    if not ready.done():
        ready.set_result(None)


async def read_trio(sock: Any, timeout: float) -> ProxyHeader | None:
    """The same for a trio socket; None when the timeout passed."""
    import trio

    buffer = bytearray()
    with trio.move_on_after(timeout):
        while True:
            header, size = _take(buffer, await sock.recv(V2_MAX, socket.MSG_PEEK))
            buffer.extend(await sock.recv(size))
            if header is not None:
                return header
    return None


def trusted_peer(sock: Any, cidrs: list[str]) -> bool:
    """May this peer send a PROXY header at all? (Only `trusted_proxies` may.)"""
    from .forwarded import trust_for

    try:
        peer = sock.getpeername()
    except OSError:
        return False
    return isinstance(peer, tuple) and trust_for(cidrs)(peer[0])


async def read_trio_stream(stream: Any, config: Any) -> ProxyHeader | None:
    """A trio connection's header (TLS or not: read under the SSLStream); None: refuse."""
    sock = getattr(stream, "transport_stream", stream).socket
    if not trusted_peer(sock, config.trusted_proxies):
        log.debug("PROXY protocol from a peer not in trusted_proxies: refused")
        return None
    try:
        return await read_trio(sock, config.header_timeout)
    except (ProxyHeaderError, OSError) as exc:
        log.debug("no valid PROXY header: %s", exc)
        return None
