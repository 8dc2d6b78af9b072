"""trusted_proxies: the real client from Forwarded / X-Forwarded-* — only from trusted peers.

Unit tests call `forwarded.apply` on scopes; the e2e tests run edgecorn trusting
127.0.0.2 only and send the same forged fields from 127.0.0.1 (ignored) and from
127.0.0.2 (believed) over h1 (raw socket), h2 (curl) and h3 (curl_cffi), plus a
WebSocket, and read the access log.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgecorn import forwarded
from edgecorn.forwarded import apply, parse_forwarded
from tests.support.net import free_port

TRUSTED = "127.0.0.2"
APP = "tests.apps.forwarded:app"


def scope(peer: str, headers: list[tuple[bytes, bytes]], scheme: str = "http") -> dict[str, Any]:
    return {
        "client": (peer, 5000),
        "scheme": scheme,
        "headers": [(b"host", b"edge.example"), *headers],
        "extensions": {"http.response.trailers": {}},
    }


CIDRS = ["10.0.0.0/8", "2001:db8::/32"]


def test_untrusted_peer_changes_nothing() -> None:
    s = scope("192.0.2.1", [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-proto", b"https")])
    before = {**s, "headers": list(s["headers"])}
    apply(s, CIDRS)
    assert s == before


def test_xff_rightmost_untrusted_wins() -> None:
    # the client forged 6.6.6.6; 203.0.113.9 is what our first proxy (10.1.1.1) saw
    s = scope("10.0.0.5", [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9, 10.1.1.1")])
    apply(s, CIDRS)
    assert s["client"] == ("203.0.113.9", 0)
    assert s["extensions"]["edgecorn.peer"] == {"client": ("10.0.0.5", 5000), "scheme": "http"}
    assert s["extensions"]["http.response.trailers"] == {}


def test_xff_several_fields_and_ports() -> None:
    s = scope(
        "10.0.0.5", [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"[2001:db9::1]:81")]
    )
    apply(s, CIDRS)
    assert s["client"] == ("2001:db9::1", 81)


def test_all_hops_trusted_takes_leftmost() -> None:
    s = scope("10.0.0.5", [(b"x-forwarded-for", b"10.9.9.9, 10.1.1.1")])
    apply(s, CIDRS)
    assert s["client"] == ("10.9.9.9", 0)


def test_unknown_node_stops_the_walk() -> None:
    s = scope("10.0.0.5", [(b"x-forwarded-for", b"6.6.6.6, unknown")])
    apply(s, CIDRS)
    assert s["client"] == ("10.0.0.5", 5000)  # cannot see past it: the peer stays


def test_proto_and_host() -> None:
    s = scope(
        "10.0.0.5",
        [
            (b"x-forwarded-for", b"198.51.100.7"),
            (b"x-forwarded-proto", b"http, HTTPS"),
            (b"x-forwarded-host", b"www.example"),
        ],
    )
    apply(s, CIDRS)
    assert s["scheme"] == "https"
    assert [v for n, v in s["headers"] if n == b"host"] == [b"www.example"]


def test_bad_proto_and_host_ignored() -> None:
    s = scope(
        "10.0.0.5",
        [(b"x-forwarded-proto", b"gopher"), (b"x-forwarded-host", b"a b\r\nx: y")],
    )
    apply(s, CIDRS)
    assert s["scheme"] == "http"
    assert [v for n, v in s["headers"] if n == b"host"] == [b"edge.example"]


def test_websocket_scheme_stays_ws_family() -> None:
    s = scope("10.0.0.5", [(b"x-forwarded-proto", b"https")], scheme="ws")
    apply(s, CIDRS)
    assert s["scheme"] == "wss"


def test_forwarded_header_wins_over_xff() -> None:
    s = scope(
        "10.0.0.5",
        [
            (b"x-forwarded-for", b"6.6.6.6"),
            (
                b"forwarded",
                b'for=6.6.6.6;proto=http, for="[2001:db9::5]:4711";proto=https;host=a.example',
            ),
            (b"forwarded", b"for=10.2.2.2;proto=http"),
        ],
    )
    apply(s, CIDRS)
    assert s["client"] == ("2001:db9::5", 4711)
    assert s["scheme"] == "https"  # proto and host of the client's own element
    assert [v for n, v in s["headers"] if n == b"host"] == [b"a.example"]


def test_parse_forwarded_quoting() -> None:
    assert parse_forwarded('For="[::1]:80";Proto=https;host="a\\"b", for=_hidden') == [
        {"for": "[::1]:80", "proto": "https", "host": 'a"b'},
        {"for": "_hidden"},
    ]
    assert parse_forwarded("") == []


def test_trust_cache_is_bounded() -> None:
    trust = forwarded.Trust(["10.0.0.0/8"])
    for i in range(forwarded._CACHE_SIZE + 10):
        trust(f"192.0.{i // 256 % 256}.{i % 256}")
    assert len(trust.seen) <= forwarded._CACHE_SIZE
    assert trust("10.1.2.3") and not trust("not an address")


# --------------------------------------------------------------------------- e2e

FORGED = {
    "X-Forwarded-For": "6.6.6.6, 198.51.100.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "real.example",
}


@pytest.fixture
def edge(server_factory: Any, tmp_path: Path) -> Any:
    log = tmp_path / "access.log"
    config = f'trusted_proxies: ["{TRUSTED}/32"]\naccesslog: "{log}"\n'
    quic_port = free_port()
    server = server_factory.start(
        "--quic-bind", f"127.0.0.1:{quic_port}", app=APP, config=config, access_log=False
    )
    server.access_path = log
    server.quic_port = quic_port
    return server


def h1_get(port: int, source: str, headers: dict[str, str]) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(f"GET /who HTTP/1.1\r\nHost: edge\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return dict(json.loads(body))


@pytest.mark.parametrize("source", ["127.0.0.1", TRUSTED])
def test_h1_cleartext(edge: Any, source: str) -> None:
    facts = h1_get(edge.insecure_port, source, FORGED)
    if source == TRUSTED:
        assert facts["client"] == ["198.51.100.7", 0]
        assert facts["scheme"] == "https"
        assert facts["host"] == ["real.example"]
        assert facts["peer"][0] == TRUSTED
    else:
        assert facts["client"][0] == "127.0.0.1" and facts["client"][1] > 0
        assert facts["scheme"] == "http"
        assert facts["host"] == ["edge"]
        assert facts["peer"] is None


@pytest.mark.parametrize("source", ["127.0.0.1", TRUSTED])
def test_h2_curl(edge: Any, source: str, cafile: str) -> None:
    cmd = [
        "curl",
        "-sS",
        "--http2",
        "--cacert",
        cafile,
        "--interface",
        source,
        "-H",
        "Forwarded: for=6.6.6.6, for=203.0.113.4;proto=http",
    ]
    out = subprocess.run([*cmd, f"{edge.https}/who"], capture_output=True, timeout=20, check=True)
    facts = json.loads(out.stdout)
    assert facts["http_version"] == "2"
    if source == TRUSTED:
        assert facts["client"] == ["203.0.113.4", 0]
        assert facts["scheme"] == "http"
    else:
        assert facts["client"][0] == "127.0.0.1"
        assert facts["scheme"] == "https"


@pytest.mark.parametrize("source", ["127.0.0.1", TRUSTED])
def test_h3_curl_cffi(edge: Any, source: str, cafile: str) -> None:
    from curl_cffi import CurlHttpVersion, requests

    r = requests.get(
        f"https://localhost:{edge.quic_port}/who",
        http_version=CurlHttpVersion.V3ONLY,
        verify=cafile,
        interface=source,
        headers=FORGED,
        timeout=15,
    )
    facts = r.json()
    assert facts["http_version"] == "3"
    if source == TRUSTED:
        assert facts["client"] == ["198.51.100.7", 0]
    else:
        assert facts["client"][0] == "127.0.0.1"


def test_websocket_from_trusted_peer(edge: Any) -> None:
    from websockets.sync.client import connect

    sock = socket.create_connection(
        ("127.0.0.1", edge.insecure_port), timeout=5, source_address=(TRUSTED, 0)
    )
    with connect(
        f"ws://127.0.0.1:{edge.insecure_port}/ws", sock=sock, additional_headers=FORGED
    ) as ws:
        facts = json.loads(ws.recv(timeout=5))
    assert facts["client"] == ["198.51.100.7", 0]
    assert facts["scheme"] == "wss"
    assert facts["peer"][0] == TRUSTED


def test_access_log_names_the_real_client(edge: Any) -> None:
    h1_get(edge.insecure_port, TRUSTED, {"X-Forwarded-For": "198.51.100.99"})
    h1_get(edge.insecure_port, "127.0.0.1", {"X-Forwarded-For": "198.51.100.66"})
    edge.stop()
    lines = edge.access_path.read_text().splitlines()
    assert any(line.startswith("198.51.100.99") for line in lines), lines
    assert not any("198.51.100.66" in line.split()[0] for line in lines), lines
    assert any(line.startswith("127.0.0.1") for line in lines), lines
