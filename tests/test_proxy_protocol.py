"""PROXY protocol v1/v2: the sans-IO parser fed bytes, then edgecorn with
`proxy_protocol: true` behind a raw-socket "balancer" on 127.0.0.2 (the only trusted
peer): h1 cleartext and TLS (header first, then the handshake), on both worker classes.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import struct
from typing import Any

import pytest

from edgecorn.proxyproto import V2_SIGNATURE, ProxyHeaderError, parse

TRUSTED = "127.0.0.2"
APP = "tests.apps.forwarded:app"


def v2(
    command: int = 1,
    family: int = 0x11,
    addresses: bytes | None = None,
    tlvs: bytes = b"",
) -> bytes:
    if addresses is None:
        addresses = struct.pack(
            "!4s4sHH",
            ipaddress.IPv4Address("198.51.100.7").packed,
            ipaddress.IPv4Address("10.0.0.1").packed,
            40001,
            443,
        )
    body = addresses + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


# --------------------------------------------------------------------------- parser


def test_v1_tcp4() -> None:
    data = b"PROXY TCP4 198.51.100.7 10.0.0.1 40001 443\r\nGET / HTTP/1.1\r\n"
    header = parse(data)
    assert header is not None
    assert header.version == 1
    assert header.source == ("198.51.100.7", 40001)
    assert header.destination == ("10.0.0.1", 443)
    assert data[header.length :] == b"GET / HTTP/1.1\r\n"


def test_v1_tcp6() -> None:
    header = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 5 443\r\n")
    assert header is not None and header.source == ("2001:db8::7", 5)


def test_v1_unknown_keeps_peer() -> None:
    data = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n\x16\x03\x01"
    header = parse(data)
    assert header is not None and header.source is None
    assert data[header.length :] == b"\x16\x03\x01"
    assert parse(b"PROXY UNKNOWN\r\n") is not None


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 198.51.100.7 10.0.0.1 40001\r\n",  # a field missing
        b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",  # family mismatch
        b"PROXY TCP4 198.51.100.7 10.0.0.1 65536 1\r\n",  # port range
        b"PROXY TCP4 198.51.100.7 10.0.0.1 01 1\r\n",  # leading zero
        b"PROXY UDP4 198.51.100.7 10.0.0.1 1 2\r\n",
        b"PROXYTCP4\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # no header at all
        b"\x16\x03\x01\x02\x00\x01",  # a TLS ClientHello
        b"P" + b"R" * 200,  # no CRLF in 107 bytes
    ],
)
def test_v1_garbage(line: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(line)


def test_v1_truncated_needs_more() -> None:
    full = b"PROXY TCP4 198.51.100.7 10.0.0.1 40001 443\r\n"
    for cut in range(len(full)):
        assert parse(full[:cut]) is None, cut


def test_v2_inet_with_tlvs() -> None:
    tlvs = b"\x01\x00\x02h2" + b"\x02\x00\x0bexample.com"  # ALPN, AUTHORITY
    data = v2(tlvs=tlvs) + b"rest"
    header = parse(data)
    assert header is not None and header.version == 2 and not header.local
    assert header.source == ("198.51.100.7", 40001)
    assert header.destination == ("10.0.0.1", 443)
    assert header.tlvs == [(1, b"h2"), (2, b"example.com")]
    assert data[header.length :] == b"rest"


def test_v2_inet6() -> None:
    addresses = struct.pack(
        "!16s16sHH",
        ipaddress.IPv6Address("2001:db8::7").packed,
        ipaddress.IPv6Address("2001:db8::1").packed,
        1234,
        443,
    )
    header = parse(v2(family=0x21, addresses=addresses))
    assert header is not None and header.source == ("2001:db8::7", 1234)


def test_v2_local_and_unspec_name_no_client() -> None:
    header = parse(v2(command=0))  # LOCAL: the balancer's own health check
    assert header is not None and header.local and header.source is None
    header = parse(v2(family=0x00, addresses=b""))
    assert header is not None and header.source is None


def test_v2_truncated_needs_more() -> None:
    full = v2(tlvs=b"\x04\x00\x01x")
    for cut in range(len(full)):
        assert parse(full[:cut]) is None, cut


@pytest.mark.parametrize(
    "data",
    [
        V2_SIGNATURE[:11] + b"X" + b"\x21\x11\x00\x0c",  # signature off by one byte
        V2_SIGNATURE + b"\x31\x11\x00\x00",  # version 3
        V2_SIGNATURE + b"\x22\x11\x00\x00",  # command 2
        V2_SIGNATURE + b"\x21\x41\x00\x00",  # family 4
        V2_SIGNATURE + b"\x21\x11\x00\x04abcd",  # IPv4 block too short
        v2(tlvs=b"\x01\x00\x05ab"),  # TLV longer than the header
        v2(tlvs=b"\x01\x00"),  # TLV header cut
        b"\r\n\r\nGET",
    ],
)
def test_v2_garbage(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(data)


# --------------------------------------------------------------------------- e2e


@pytest.fixture(params=["asyncio", "trio"])
def edge(request: pytest.FixtureRequest, server_factory: Any) -> Any:
    config = f'trusted_proxies: ["{TRUSTED}/32"]\nproxy_protocol: true\nheader_timeout: 2\n'
    return server_factory.start("-k", request.param, app=APP, config=config)


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


GET = b"GET /who HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n"


def _facts(data: bytes) -> dict[str, Any]:
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return dict(json.loads(body))


def _connect(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


V1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 443\r\n"


@pytest.mark.parametrize("header", [V1, v2()], ids=["v1", "v2"])
def test_cleartext_client_from_header(edge: Any, header: bytes) -> None:
    with _connect(edge.insecure_port, TRUSTED) as sock:
        facts = _facts(_exchange(sock, header + GET))  # header and request in one segment
    assert facts["client"] == ["198.51.100.7", 40001]


def test_header_split_over_segments(edge: Any) -> None:
    with _connect(edge.insecure_port, TRUSTED) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        header = v2(tlvs=b"\x04\x00\x03abc")
        sock.sendall(header[:7])
        sock.sendall(header[7:20])
        facts = _facts(_exchange(sock, header[20:] + GET))
    assert facts["client"] == ["198.51.100.7", 40001]


@pytest.mark.parametrize("header", [V1, v2()], ids=["v1", "v2"])
def test_tls_header_then_handshake(edge: Any, header: bytes, cafile: str) -> None:
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["http/1.1"])
    with _connect(edge.port, TRUSTED) as raw:
        raw.sendall(header)
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            facts = _facts(_exchange(tls, GET))
    assert facts["client"] == ["198.51.100.7", 40001]
    assert facts["scheme"] == "https"


def test_local_command_keeps_peer_address(edge: Any) -> None:
    with _connect(edge.insecure_port, TRUSTED) as sock:
        facts = _facts(_exchange(sock, v2(command=0) + GET))
    assert facts["client"][0] == TRUSTED


@pytest.mark.parametrize(
    "source,payload",
    [
        (TRUSTED, GET),  # no header: refused
        (TRUSTED, b"PROXY TCP4 junk\r\n" + GET),  # a broken one
        ("127.0.0.1", V1 + GET),  # a header from a peer that is not trusted
    ],
    ids=["missing", "garbage", "untrusted"],
)
def test_refused(edge: Any, source: str, payload: bytes) -> None:
    with _connect(edge.insecure_port, source) as sock:
        assert _exchange(sock, payload) == b""
    # and the listener still serves the next (good) connection
    with _connect(edge.insecure_port, TRUSTED) as sock:
        assert _facts(_exchange(sock, V1 + GET))["client"][0] == "198.51.100.7"


def test_silent_peer_cut_at_header_timeout(edge: Any) -> None:
    with _connect(edge.insecure_port, TRUSTED) as sock:
        sock.settimeout(10)
        sock.sendall(b"PROXY TCP4 ")
        assert sock.recv(100) == b""  # closed after header_timeout (2 s), not kept
