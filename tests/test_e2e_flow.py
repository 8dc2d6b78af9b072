"""Large bodies both ways, and back-pressure against clients that stop reading."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from tests.apps.e2e import HELLO, MIB, big_chunk
from tests.support.data import sha256_file

pytestmark = pytest.mark.both_backends

RSS_GROWTH_LIMIT_KIB = 100 * 1024
SETTINGS_INITIAL_WINDOW_SIZE = 0x4


@pytest.fixture(scope="module")
def ten_mib(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("bodies") / "ten.bin"
    data = os.urandom(10 * MIB)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def echo_10_mib(curl: Any, base: str, flag: str, ten_mib: tuple[Path, str], out: Path) -> None:
    source, digest = ten_mib
    result = curl(
        flag,
        "--data-binary",
        f"@{source}",
        "-H",
        "Content-Type: application/octet-stream",
        "-o",
        str(out),
        "-w",
        "%{http_code} %{http_version}",
        f"{base}/echo",
        timeout=110,
    )
    code, version = result.text.split()
    assert code == "200"
    assert version == ("2" if "http2" in flag else "1.1")
    assert out.stat().st_size == 10 * MIB
    assert sha256_file(out) == digest


@pytest.mark.timeout(120)
@pytest.mark.parametrize("tls", [False, True], ids=["cleartext", "tls"])
def test_echo_10_mib_h1(
    h1_server: Any, curl: Any, ten_mib: tuple[Path, str], tmp_path: Path, tls: bool
) -> None:
    base = h1_server.https if tls else h1_server.http
    echo_10_mib(curl, base, "--http1.1", ten_mib, tmp_path / "out.bin")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_echo_10_mib_h2(
    server: Any, curl: Any, ten_mib: tuple[Path, str], tmp_path: Path, tls: bool
) -> None:
    flag = "--http2" if tls else "--http2-prior-knowledge"
    echo_10_mib(curl, server.https if tls else server.http, flag, ten_mib, tmp_path / "out.bin")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_download_and_upload_checksums(
    server: Any, curl: Any, ten_mib: tuple[Path, str], tmp_path: Path, flag: str
) -> None:
    out = tmp_path / "big.bin"
    curl(flag, "-o", str(out), f"{server.https}/big?mb=10", timeout=110)
    assert sha256_file(out) == hashlib.sha256(big_chunk() * 10).hexdigest()
    source, digest = ten_mib
    result = curl(flag, "--data-binary", f"@{source}", f"{server.https}/body", timeout=110)
    assert result.stdout and json.loads(result.stdout) == {
        "length": 10 * MIB,
        "sha256": digest,
    }


def settle_rss(srv: Any, seconds: float = 3.0) -> int:
    """Give a misbehaving server time to buffer, then report its peak-ish RSS."""
    deadline = time.monotonic() + seconds
    peak = srv.rss_kib()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        peak = max(peak, srv.rss_kib())
    return peak


def baseline_rss(srv: Any, curl: Any) -> int:
    # Warm up every code path first so the baseline includes imports and buffers.
    curl("--http1.1", f"{srv.http}/")
    curl("--http2", f"{srv.https}/")
    curl("--http1.1", "-o", "/dev/null", f"{srv.http}/big?mb=2")
    return srv.rss_kib()


@pytest.mark.timeout(90)
def test_backpressure_h1_slow_reader(server_factory: Any, parser: str, curl: Any) -> None:
    srv = server_factory.start(parser=parser, access_log=False)
    base = baseline_rss(srv, curl)
    sock = socket.create_connection(("127.0.0.1", srv.insecure_port), timeout=10)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /big?mb=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.recv(1024)
        assert head.startswith(b"HTTP/1.1 200"), head
        # ... and never read again.
        peak = settle_rss(srv)
        assert peak - base < RSS_GROWTH_LIMIT_KIB, (
            f"RSS grew {(peak - base) // 1024} MiB with a client that does not read"
        )
        assert srv.alive()
        assert curl("--http1.1", f"{srv.http}/").stdout == HELLO
        assert curl("--http2", f"{srv.https}/").stdout == HELLO
    finally:
        sock.close()


@pytest.mark.timeout(90)
def test_backpressure_h1_endless_stream(server_factory: Any, curl: Any) -> None:
    srv = server_factory.start(access_log=False)
    base = baseline_rss(srv, curl)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    ctx = ssl.create_default_context(cafile=srv.cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    tls = ctx.wrap_socket(sock, server_hostname="localhost")
    try:
        tls.sendall(b"GET /big?mb=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tls.recv(1024).startswith(b"HTTP/1.1 200")
        peak = settle_rss(srv)
        assert peak - base < RSS_GROWTH_LIMIT_KIB, f"RSS grew {(peak - base) // 1024} MiB"
        assert curl("--http1.1", f"{srv.https}/").stdout == HELLO
    finally:
        tls.close()


@pytest.mark.timeout(90)
def test_backpressure_h2_window_never_opened(server_factory: Any, curl: Any, h2conn: Any) -> None:
    srv = server_factory.start(access_log=False)
    base = baseline_rss(srv, curl)
    conn = h2conn(srv.port, settings={SETTINGS_INITIAL_WINDOW_SIZE: 16384})
    conn.auto_ack = False  # never send WINDOW_UPDATE
    big = conn.request("GET", "/big?mb=200")
    endless = conn.request("GET", "/big?mb=0")
    deadline = time.monotonic() + 5
    while (
        conn.responses[big].status is None or conn.responses[endless].status is None
    ) and time.monotonic() < deadline:
        conn.pump()
    assert conn.responses[big].status == 200
    assert conn.responses[endless].status == 200
    # Both streams used up their windows; the connection window (64 KiB) is spent too.
    peak = settle_rss(srv)
    assert peak - base < RSS_GROWTH_LIMIT_KIB, f"RSS grew {(peak - base) // 1024} MiB"
    conn.sock.settimeout(0.5)
    try:
        while True:  # take whatever the server has sent so far, still without acking
            conn.pump()
    except TimeoutError:
        pass
    conn.sock.settimeout(10)
    received = len(conn.responses[big].body) + len(conn.responses[endless].body)
    assert received <= 65535, f"server sent {received} bytes past the flow-control window"
    # The stalled connection does not stall the server.
    assert curl("--http2", f"{srv.https}/").stdout == HELLO
    other = h2conn(srv.port)
    assert other.get("/").body == HELLO
