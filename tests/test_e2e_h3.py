"""HTTP/3 end to end, over loopback, with independent clients: ngtcp2's `gtlsclient`
(GnuTLS) and curl_cffi (libcurl + ngtcp2 + BoringSSL); a raw aioquic client only where a
client must misbehave on purpose (stall its flow-control windows, stop reading, vanish).

Not covered here: QUIC v2 (RFC 9369). gtlsclient 0.12 only knows the v2 *draft* version and
curl_cffi only speaks v1, so v2 is left to the Chromium test (`--quic-version=RFCv2`); here we
only check that version negotiation advertises v2 and that a real client falls back to v1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apps.e2e import HELLO, MIB
from tests.support.data import big_sha, sha256_file
from tests.support.h3 import (
    QUIC_V1,
    QUIC_V2,
    RawH3Client,
    cffi_h3,
    client_initial,
    gtls_start,
    gtlsclient,
    long_header,
    parse_version_negotiation,
    udp_exchange,
    wait_quic,
)
from tests.support.net import free_port
from tests.support.wait import wait_until

pytestmark = [pytest.mark.timeout(90), pytest.mark.both_quic_engines]

CHACHA = "--ciphers=NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305"


def start_h3(factory: Any, *extra: str, **kwargs: Any) -> Any:
    server = factory.start(*extra, **kwargs)
    wait_quic(server)
    return server


def assert_no_traceback(server: Any) -> None:
    err = server.stderr()
    assert "Traceback" not in err, server.describe()
    assert "[ERROR]" not in err, server.describe()


@pytest.fixture(scope="module")
def h3server(session_factory: Any) -> Iterator[Any]:
    """Default settings: h1/h2 on TLS TCP and HTTP/3 on the same UDP port."""
    server = start_h3(session_factory)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def early_server(session_factory: Any) -> Iterator[Any]:
    server = start_h3(session_factory, "--quic-early-data")
    yield server
    server.stop()


# --------------------------------------------------------------------------- basics


def test_get_gtlsclient(h3server: Any, tmp_path: Path) -> None:
    port = h3server.port
    run = gtlsclient(
        port,
        f"https://127.0.0.1:{port}/",
        f"https://127.0.0.1:{port}/scope/x?q=1",
        download=tmp_path / "dl",
    )
    assert run.alpn == "h3", run.summary()
    assert run.statuses() == [200, 200], run.summary()
    assert run.file("index.html").read_bytes() == HELLO
    info = json.loads(run.file("x?q=1").read_bytes())
    assert (info["http_version"], info["scheme"], info["method"]) == ("3", "https", "GET")
    assert (info["path"], info["query_string"]) == ("/scope/x", "q=1")
    assert ["host", f"127.0.0.1:{port}"] in info["headers"]
    assert not any(name == "early-data" for name, _ in info["headers"])
    assert info["server"] == ["127.0.0.1", port]


def test_get_curl_cffi(h3server: Any, cafile: str) -> None:
    from curl_cffi import CurlHttpVersion

    r = cffi_h3("GET", f"https://localhost:{h3server.port}/", cafile)
    assert (r.status_code, r.content) == (200, HELLO)
    assert r.http_version == CurlHttpVersion.V3  # libcurl's CURL_HTTP_VERSION_3 (30)
    r = cffi_h3("GET", f"https://127.0.0.1:{h3server.port}/scope", cafile)
    assert r.status_code == 200
    assert r.json()["http_version"] == "3"
    r = cffi_h3("GET", f"https://127.0.0.1:{h3server.port}/nowhere", cafile)
    assert (r.status_code, r.content) == (404, b"not found")


def test_post_10mib_curl_cffi(h3server: Any, cafile: str) -> None:
    data = os.urandom(10 * MIB)
    want = hashlib.sha256(data).hexdigest()
    base = f"https://127.0.0.1:{h3server.port}"
    r = cffi_h3("POST", f"{base}/echo", cafile, data=data)
    assert r.status_code == 200 and r.http_version == 30
    assert (len(r.content), hashlib.sha256(r.content).hexdigest()) == (len(data), want)
    r = cffi_h3("POST", f"{base}/body", cafile, data=data)
    assert r.status_code == 200
    assert r.json() == {"length": len(data), "sha256": want}


def test_post_10mib_gtlsclient(h3server: Any, tmp_path: Path) -> None:
    body = tmp_path / "body.bin"
    body.write_bytes(os.urandom(10 * MIB))
    port = h3server.port
    run = gtlsclient(
        port,
        f"https://127.0.0.1:{port}/echo",
        download=tmp_path / "dl",
        extra=["-m", "POST", "-d", str(body)],
    )
    assert run.alpn == "h3" and run.statuses() == [200], run.summary()
    assert sha256_file(run.file("echo")) == sha256_file(body)


def test_download_1mib_both_clients(h3server: Any, cafile: str, tmp_path: Path) -> None:
    port = h3server.port
    r = cffi_h3("GET", f"https://127.0.0.1:{port}/big?mb=1", cafile)
    assert r.status_code == 200 and r.headers["content-length"] == str(MIB)
    assert hashlib.sha256(r.content).hexdigest() == big_sha(1)
    run = gtlsclient(port, f"https://127.0.0.1:{port}/big?mb=1", download=tmp_path / "dl")
    assert run.statuses() == [200], run.summary()
    assert sha256_file(run.file("big?mb=1")) == big_sha(1)


def test_many_streams_one_connection(h3server: Any, tmp_path: Path) -> None:
    port = h3server.port
    n = 130  # more than aioquic's initial 128 bidi streams: MAX_STREAMS must follow
    urls = [f"https://127.0.0.1:{port}/scope/f{i}" for i in range(n)]
    urls.append(f"https://127.0.0.1:{port}/big?mb=2")
    run = gtlsclient(port, *urls, download=tmp_path / "dl")
    assert run.handshakes == 1, run.summary()
    assert run.statuses() == [200] * (n + 1), run.summary()
    for i in range(n):
        assert json.loads(run.file(f"f{i}").read_bytes())["path"] == f"/scope/f{i}"
    assert sha256_file(run.file("big?mb=2")) == big_sha(2)


# --------------------------------------------------------------------------- TLS / QUIC features


def test_chacha20_only_client(h3server: Any, tmp_path: Path) -> None:
    port = h3server.port
    run = gtlsclient(port, f"https://127.0.0.1:{port}/", download=tmp_path / "dl", extra=[CHACHA])
    assert run.cipher == "CHACHA20-POLY1305", run.summary()
    assert run.statuses() == [200], run.summary()
    assert run.file("index.html").read_bytes() == HELLO


def test_client_key_update_during_download(h3server: Any, tmp_path: Path) -> None:
    port = h3server.port
    run = gtlsclient(
        port,
        f"https://127.0.0.1:{port}/big?mb=8",
        download=tmp_path / "dl",
        extra=["--key-update=20ms"],
    )
    assert run.statuses() == [200], run.summary()
    assert "Initiate key update" in run.output, run.summary()
    assert "key update confirmed" in run.output, run.summary()
    assert run.received("1RTT k=1") or "type=1RTT k=1" in run.output, run.summary()
    assert sha256_file(run.file("big?mb=8")) == big_sha(8)


def test_version_negotiation_real_client(h3server: Any, tmp_path: Path) -> None:
    """A client starting with an unknown version gets Version Negotiation, then uses v1."""
    port = h3server.port
    run = gtlsclient(
        port,
        f"https://127.0.0.1:{port}/",
        download=tmp_path / "dl",
        extra=["-v", "0x1a2a3a4a", "--preferred-versions=v1"],
    )
    assert run.received("VN"), run.summary()
    assert run.statuses() == [200], run.summary()
    assert run.alpn == "h3"


def test_retry(server_factory: Any, tmp_path: Path, cafile: str) -> None:
    server = start_h3(server_factory, "--quic-retry", "on")
    port = server.port
    run = gtlsclient(port, f"https://127.0.0.1:{port}/", download=tmp_path / "dl")
    assert run.received("Retry"), run.summary()
    assert "retry_source_connection_id=" in run.output, run.summary()
    assert run.statuses() == [200], run.summary()
    assert run.file("index.html").read_bytes() == HELLO
    r = cffi_h3("GET", f"https://127.0.0.1:{port}/big?mb=1", cafile)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == big_sha(1)
    assert_no_traceback(server)


# --------------------------------------------------------------------------- resumption, 0-RTT


def _session_runs(
    server: Any,
    tmp_path: Path,
    second_extra: list[str],
    path: str = "/scope",
    second_path: str | None = None,
) -> tuple[Any, Any]:
    port = server.port
    files = [f"--session-file={tmp_path / 'session'}", f"--tp-file={tmp_path / 'tp'}"]
    first = gtlsclient(
        port, f"https://127.0.0.1:{port}{path}", download=tmp_path / "dl1", extra=files
    )
    assert first.statuses() == [200], first.summary()
    assert (tmp_path / "session").stat().st_size > 0, "no session ticket was stored"
    second = gtlsclient(
        port,
        f"https://127.0.0.1:{port}{second_path or path}",
        download=tmp_path / "dl2",
        extra=files + second_extra,
    )
    return first, second


def _headers(run: Any, name: str = "scope") -> dict[str, str]:
    return dict(json.loads(run.file(name).read_bytes())["headers"])


def test_resumption(h3server: Any, tmp_path: Path) -> None:
    first, second = _session_runs(h3server, tmp_path, ["--disable-early-data"])
    assert second.statuses() == [200], second.summary()
    # A resumed (PSK) handshake has no Certificate/CertificateVerify from the server.
    full, resumed = first.handshake_crypto_received(), second.handshake_crypto_received()
    assert full > 600 and resumed < 400 and resumed < full - 400, (full, resumed)
    assert not second.sent_0rtt_stream_data()
    assert "early-data" not in _headers(second)


def test_early_data_get_accepted(early_server: Any, tmp_path: Path) -> None:
    first, second = _session_runs(early_server, tmp_path, [])
    assert "early-data" not in _headers(first)
    assert second.sent_0rtt_stream_data(), second.summary()
    assert not second.early_data_rejected, second.summary()
    assert second.statuses() == [200], second.summary()
    assert second.handshake_crypto_received() < 400
    assert _headers(second).get("early-data") == "1"


def test_early_data_post_refused_with_425(early_server: Any, tmp_path: Path) -> None:
    body = tmp_path / "post.txt"
    body.write_bytes(b"not idempotent")
    first, second = _session_runs(
        early_server, tmp_path, ["-m", "POST", "-d", str(body)], second_path="/echo"
    )
    assert second.sent_0rtt_stream_data(), second.summary()
    assert second.statuses() == [425], second.summary()
    # The app never saw the POST (RFC 8470: the client may retry it after the handshake).
    log = early_server.stdout()
    assert '"POST /echo HTTP/3" 200' not in log, log


def test_session_ticket_single_use(early_server: Any, tmp_path: Path) -> None:
    """Replaying a used ticket: no resumption, so no 0-RTT (a replayed 0-RTT GET is refused)."""
    port = early_server.port
    gtlsclient(
        port,
        f"https://127.0.0.1:{port}/",
        download=tmp_path / "dl0",
        extra=[f"--session-file={tmp_path / 'session'}", f"--tp-file={tmp_path / 'tp'}"],
    )
    saved = (tmp_path / "session").read_bytes()
    runs = []
    for i in range(2):  # the same ticket twice
        (tmp_path / f"s{i}").write_bytes(saved)
        runs.append(
            gtlsclient(
                port,
                f"https://127.0.0.1:{port}/scope",
                download=tmp_path / f"d{i}",
                extra=[f"--session-file={tmp_path / f's{i}'}", f"--tp-file={tmp_path / 'tp'}"],
            )
        )
    used, replay = runs
    assert used.statuses() == [200] and _headers(used).get("early-data") == "1", used.summary()
    assert replay.statuses() == [200], replay.summary()
    assert replay.early_data_rejected, replay.summary()
    assert replay.handshake_crypto_received() > 600, replay.summary()
    assert "early-data" not in _headers(replay)


def test_no_early_data_unless_enabled(h3server: Any, tmp_path: Path) -> None:
    first, second = _session_runs(h3server, tmp_path, [])
    assert second.statuses() == [200], second.summary()
    assert "early-data" not in _headers(second), "0-RTT request reached the app"
    if second.sent_0rtt_stream_data():
        assert second.early_data_rejected, second.summary()


# --------------------------------------------------------------------------- Alt-Svc


def _alt_svc(curl: Any, port: int, version: str) -> list[str]:
    result = curl(version, "-D", "-", "-o", "/dev/null", f"https://127.0.0.1:{port}/")
    lines = result.text.splitlines()
    assert lines and ("HTTP/1.1 200" in lines[0] or "HTTP/2 200" in lines[0]), result.text
    return [line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("alt-svc:")]


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_alt_svc_advertised(h3server: Any, curl: Any, version: str) -> None:
    assert _alt_svc(curl, h3server.port, version) == [f'h3=":{h3server.port}"; ma=86400']


def test_alt_svc_not_on_cleartext(h3server: Any, curl: Any) -> None:
    result = curl("-D", "-", "-o", "/dev/null", f"{h3server.http}/")
    assert "alt-svc" not in result.text.lower(), result.text


@pytest.mark.parametrize(
    "flags", [["--no-alt-svc"], ["--no-quic-on-tls-binds"]], ids=["no-alt-svc", "quic-off"]
)
def test_alt_svc_absent(server_factory: Any, curl: Any, flags: list[str]) -> None:
    server = server_factory.start(*flags)
    quic_on = "--no-quic-on-tls-binds" not in flags
    if quic_on:
        wait_quic(server)
    else:
        time.sleep(0.3)  # a QUIC listener would start right after the TCP ones
        assert "Running on quic://" not in server.stderr(), server.stderr()
    for version in ("--http1.1", "--http2"):
        assert _alt_svc(curl, server.port, version) == []
    # And a QUIC Initial to the port: answered only when QUIC is on.
    replies = udp_exchange(server.port, [client_initial(server.port, server.cafile)], wait=1.0)
    if quic_on:
        assert replies and replies[0] != b"<refused>"
    else:
        assert replies in ([], [b"<refused>"])


def test_alt_svc_port_override_and_quic_bind(server_factory: Any, curl: Any, cafile: str) -> None:
    server = start_h3(server_factory, "--alt-svc-port", "9443")
    for version in ("--http1.1", "--http2"):
        assert _alt_svc(curl, server.port, version) == ['h3=":9443"; ma=86400']
    quic_port = free_port()
    other = start_h3(
        server_factory, "--no-quic-on-tls-binds", "--quic-bind", f"127.0.0.1:{quic_port}"
    )
    assert _alt_svc(curl, other.port, "--http2") == [f'h3=":{quic_port}"; ma=86400']
    r = cffi_h3("GET", f"https://127.0.0.1:{quic_port}/", cafile)
    assert (r.status_code, r.content) == (200, HELLO)


def test_curl_cffi_alt_svc_upgrade(h3server: Any, cafile: str, tmp_path: Path) -> None:
    """libcurl's Alt-Svc cache (CURLOPT_ALTSVC): the first request goes over h2, learns
    `h3=":PORT"`, and the next one (a new handle reading the cache file) goes over h3."""
    from io import BytesIO

    from curl_cffi import Curl, CurlHttpVersion, CurlInfo, CurlOpt

    cache = tmp_path / "altsvc.txt"
    ctrl = (1 << 3) | (1 << 4) | (1 << 5)  # CURLALTSVC_H1 | _H2 | _H3
    versions, bodies = [], []
    for _ in range(2):
        handle = Curl()
        buf = BytesIO()
        handle.setopt(CurlOpt.URL, f"https://localhost:{h3server.port}/".encode())
        handle.setopt(CurlOpt.CAINFO, cafile.encode())
        handle.setopt(CurlOpt.ALTSVC, str(cache).encode())
        handle.setopt(CurlOpt.ALTSVC_CTRL, ctrl)
        handle.setopt(CurlOpt.WRITEDATA, buf)
        handle.setopt(CurlOpt.TIMEOUT_MS, 20000)
        handle.perform()
        assert handle.getinfo(CurlInfo.RESPONSE_CODE) == 200
        versions.append(handle.getinfo(CurlInfo.HTTP_VERSION))
        bodies.append(buf.getvalue())
        handle.close()  # writes the cache file
    assert versions == [CurlHttpVersion.V2_0, CurlHttpVersion.V3], versions
    assert bodies == [HELLO, HELLO]
    assert f"h3 localhost {h3server.port}" in cache.read_text()


# --------------------------------------------------------------------------- back-pressure


def test_stalled_readers_keep_memory_bounded(
    server_factory: Any, cafile: str, tmp_path: Path
) -> None:
    server = start_h3(server_factory, config="graceful_timeout: 0.5\n")  # quick teardown
    port = server.port
    warm = cffi_h3("GET", f"https://127.0.0.1:{port}/big?mb=4", cafile)
    assert warm.status_code == 200
    baseline = server.rss_kib()
    peak = baseline

    # 1) A client that never grants flow-control credit beyond 256 KiB, on an endless body.
    frozen = RawH3Client(port, cafile, freeze_windows=True, window=256 * 1024)
    sid = frozen.request("/big?mb=0")
    assert frozen.pump_until(lambda: frozen.responses[sid].received >= 128 * 1024, 10)
    assert frozen.responses[sid].status == 200
    for _ in range(20):  # ~2 s: ACKs keep flowing, credit never does
        frozen.pump(0.1)
        peak = max(peak, server.rss_kib())
    assert frozen.responses[sid].received <= 256 * 1024
    assert not frozen.responses[sid].ended

    # 2) A client that reads 2 MiB of a 500 MiB body, then stops reading its socket.
    stopped = RawH3Client(port, cafile)
    sid2 = stopped.request("/big?mb=500")
    assert stopped.pump_until(lambda: stopped.responses[sid2].received >= 2 * MIB, 10)
    for _ in range(20):  # ~2 s of not reading at all
        stopped.stop_reading(0.1)
        peak = max(peak, server.rss_kib())

    growth_mib = (peak - baseline) / 1024
    print(f"server RSS: baseline {baseline} KiB, peak {peak} KiB")
    assert growth_mib < 100, f"server RSS grew by {growth_mib:.0f} MiB (baseline {baseline} KiB)"

    # The server still answers others while both stalls are in place.
    r = cffi_h3("GET", f"https://127.0.0.1:{port}/big?mb=1", cafile)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == big_sha(1)
    run = gtlsclient(port, f"https://127.0.0.1:{port}/", download=tmp_path / "dl")
    assert run.statuses() == [200], run.summary()
    frozen.close()
    stopped.vanish()
    assert server.alive()
    assert_no_traceback(server)


# --------------------------------------------------------------------------- robustness


def test_garbage_datagrams(h3server: Any, tmp_path: Path, cafile: str, quic_engine: str) -> None:
    port = h3server.port
    initial = client_initial(port, cafile)
    assert len(initial) >= 1200
    corrupt = bytearray(initial)
    for i in range(60, len(corrupt), 7):
        corrupt[i] ^= 0x5A
    garbage = [
        b"",
        b"\x00",
        b"\xff",
        b"\x40" + os.urandom(20),  # short header, too small to reset
        initial[:1],
        initial[:5],
        initial[:20],
        initial[:60],
        initial[:300],
        initial[:1199],
        bytes(corrupt),  # a full-size Initial whose payload does not decrypt
        long_header(0, os.urandom(8), os.urandom(8)),  # a Version Negotiation packet
        long_header(QUIC_V1, os.urandom(8), os.urandom(8), size=100),  # Initial, too short
        long_header(QUIC_V1, b"\x01" * 30, b"", size=1200),  # v1 DCID over 20 bytes
    ]
    replies = udp_exchange(port, garbage, wait=1.0)
    assert replies == [], [r[:40].hex() for r in replies]
    # A short header for no connection of ours: a stateless reset, smaller than it
    # (RFC 9000 10.3; tests/test_quic_hardening2_reset.py checks the token). qh3 draws
    # its own reset tokens, so on it nobody could recognise one: none is sent.
    replies = udp_exchange(port, [b"\x40" + os.urandom(40)], wait=1.0)
    assert [len(r) for r in replies] == ([] if quic_engine == "qh3" else [40]), replies
    assert all(r[0] & 0xC0 == 0x40 for r in replies)
    # Random blobs: a big one may look like a long header of some unknown version, and
    # earn a Version Negotiation packet; one with a short header's first bit, a stateless
    # reset (at most 64 bytes); anything else is dropped.
    blobs = [os.urandom(n) for n in (*range(1, 64), 100, 1199, 1200, 1500)]
    blobs += [b"\xc0" + os.urandom(1199)]
    replies = udp_exchange(port, blobs, wait=1.0)
    assert all(r[1:5] == b"\0\0\0\0" or (r[0] & 0xC0 == 0x40 and len(r) <= 64) for r in replies), [
        r[:40].hex() for r in replies
    ]

    # A v1-shaped Initial with a version we do not speak: Version Negotiation (RFC 9000 6.1).
    dcid, scid = os.urandom(8), os.urandom(5)
    replies = udp_exchange(port, [long_header(0x1A2A3A4A, dcid, scid, v1_layout=True)], wait=1.0)
    assert len(replies) == 1, replies
    vn_dcid, vn_scid, versions = parse_version_negotiation(replies[0])
    assert (vn_dcid, vn_scid) == (scid, dcid)
    assert QUIC_V1 in versions and QUIC_V2 in versions and 0x1A2A3A4A not in versions

    # Still serving, with both clients.
    r = cffi_h3("GET", f"https://127.0.0.1:{port}/", cafile)
    assert (r.status_code, r.content) == (200, HELLO)
    run = gtlsclient(port, f"https://127.0.0.1:{port}/", download=tmp_path / "dl")
    assert run.statuses() == [200], run.summary()
    assert_no_traceback(h3server)


def test_version_negotiation_for_opaque_long_header(h3server: Any) -> None:
    dcid, scid = os.urandom(8), os.urandom(5)
    replies = udp_exchange(h3server.port, [long_header(0x1A2A3A4A, dcid, scid)], wait=1.0)
    assert len(replies) == 1, "no Version Negotiation for a 1200-byte unknown-version packet"
    vn_dcid, vn_scid, versions = parse_version_negotiation(replies[0])
    assert (vn_dcid, vn_scid) == (scid, dcid)
    assert QUIC_V1 in versions and QUIC_V2 in versions
    # Long CIDs are allowed for unknown versions (up to 255 bytes, RFC 8999 5.1).
    long_dcid = os.urandom(40)
    replies = udp_exchange(h3server.port, [long_header(0x1A2A3A4A, long_dcid, scid)], wait=1.0)
    assert len(replies) == 1
    assert parse_version_negotiation(replies[0])[:2] == (scid, long_dcid)


def test_no_version_negotiation_for_small_datagrams(h3server: Any) -> None:
    for size in (60, 600, 1199):
        packet = long_header(0x1A2A3A4A, os.urandom(8), os.urandom(8), size=size, v1_layout=True)
        assert udp_exchange(h3server.port, [packet], wait=0.3) == [], f"VN for {size} bytes"


def test_vanished_clients(server_factory: Any, cafile: str, tmp_path: Path) -> None:
    server = start_h3(server_factory, config="quic_idle_timeout: 2\n")
    port = server.port

    # gtlsclient killed (SIGKILL: no CONNECTION_CLOSE) in the middle of a 300 MiB download.
    bg = gtls_start(port, f"https://127.0.0.1:{port}/big?mb=300", download=tmp_path / "dl")
    target = tmp_path / "dl" / "big?mb=300"
    got_some = wait_until(lambda: target.exists() and target.stat().st_size > 4 * MIB, 15)
    bg.kill()
    assert got_some, bg.output()[-3000:]

    # aioquic clients that vanish: one while the app awaits a disconnect, one mid-download.
    # (One at a time: a client not pumped while another is inflates the server's RTT
    # estimate for it, and the idle timeout is at least 3 PTOs.)
    marker = tmp_path / "disconnect.txt"
    waiter = RawH3Client(port, cafile)
    waiter.request(f"/disconnect?file={marker}")
    assert waiter.pump_until(lambda: marker.exists() and "started" in marker.read_text(), 10)
    waiter.pump(0.2)
    waiter.vanish()
    downloader = RawH3Client(port, cafile)
    sid = downloader.request("/big?mb=0")
    assert downloader.pump_until(lambda: downloader.responses[sid].received >= 2 * MIB, 10)
    downloader.vanish()

    r = cffi_h3("GET", f"https://127.0.0.1:{port}/big?mb=1", cafile)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == big_sha(1)
    run = gtlsclient(port, f"https://127.0.0.1:{port}/", download=tmp_path / "dl2")
    assert run.statuses() == [200], run.summary()

    # The idle timeout (2 s) ends the vanished connections and tells the app.
    assert wait_until(lambda: "disconnect" in marker.read_text(), 20), marker.read_text()
    assert marker.read_text().split() == ["started", "disconnect"]
    assert server.alive()
    assert_no_traceback(server)


GOAWAY_BUG = (
    "product bug: after GOAWAY, QUICConnection.send_datagrams calls h3.close() as soon as "
    "h3.open is empty, i.e. right after the last response was queued in aioquic and before "
    "datagrams_to_send() sent it; aioquic's close() then sends only CONNECTION_CLOSE and the "
    "queued response is lost (client: ERR_DRAINING, no :status)"
)


def test_graceful_shutdown_finishes_inflight_h3(
    server_factory: Any, cafile: str, tmp_path: Path
) -> None:
    server = start_h3(server_factory, config="graceful_timeout: 10\n")
    port = server.port
    results: list[Any] = []

    def cffi_slow() -> None:
        try:
            results.append(cffi_h3("GET", f"https://127.0.0.1:{port}/slow?s=2", cafile))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    thread = threading.Thread(target=cffi_slow, daemon=True)
    thread.start()
    bg = gtls_start(port, f"https://127.0.0.1:{port}/slow?s=2", download=tmp_path / "dl")
    assert wait_until(lambda: "submit request headers" in bg.output(), 5), bg.output()[-2000:]
    time.sleep(0.5)  # let both requests reach the app before the signal
    server.proc.send_signal(signal.SIGTERM)

    run = bg.wait(20)
    thread.join(20)
    assert run.statuses() == [200], run.summary()
    assert run.file("slow?s=2").read_bytes() == b"slow done"
    assert len(results) == 1 and not isinstance(results[0], Exception), results
    assert (results[0].status_code, results[0].content) == (200, b"slow done")
    try:
        rc = server.proc.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server did not exit after SIGTERM\n{server.describe()}")
    assert rc == 0, server.describe()
    assert_no_traceback(server)


def test_keep_alive_max_requests_goaway(server_factory: Any, tmp_path: Path) -> None:
    """After `keep_alive_max_requests` requests the server sends GOAWAY: those requests are
    answered, later streams are refused with H3_REQUEST_REJECTED (0x10b), never half-served."""
    server = start_h3(server_factory, config="keep_alive_max_requests: 5\n")
    port = server.port
    urls = [f"https://127.0.0.1:{port}/scope/r{i}" for i in range(8)]
    run = gtlsclient(port, *urls, download=tmp_path / "dl")
    assert run.statuses() == [200] * 5, run.summary()
    for i in range(5):
        assert json.loads(run.file(f"r{i}").read_bytes())["path"] == f"/scope/r{i}"
    for sid in (20, 24, 28):
        assert f"HTTP stream {sid} closed with error code 267" in run.output, run.summary()
    assert server.alive()
    assert_no_traceback(server)


def test_h3_max_concurrent_streams_setting(server_factory: Any, tmp_path: Path) -> None:
    server = start_h3(server_factory, config="h3_max_concurrent_streams: 10\n")
    port = server.port
    run = gtlsclient(port, f"https://127.0.0.1:{port}/", download=tmp_path / "dl")
    assert run.statuses() == [200], run.summary()
    assert "initial_max_streams_bidi=10\n" in run.output, run.summary()


def test_udp_port_is_shared_with_tls_port(h3server: Any) -> None:
    """QUIC listens on the TLS bind's port number by default (UDP, same number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(OSError):
            sock.bind(("127.0.0.1", h3server.port))


def test_trailers_and_early_hints(h3server: Any, tmp_path: Path) -> None:
    """Response trailers (Hypercorn's are broken on h3) and a 103 before the 200, as an
    independent HTTP/3 stack (nghttp3) parses them."""
    port = h3server.port
    run = gtlsclient(
        port,
        f"https://127.0.0.1:{port}/trailers",
        f"https://127.0.0.1:{port}/early-hints",
        download=tmp_path / "dl",
    )
    assert run.alpn == "h3", run.summary()
    body = run.file("trailers").read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    trailer = re.search(r"stream 0x0 trailers started\s*\n.*\[x-body-sha256: (\w+)\]", run.output)
    assert trailer is not None and trailer.group(1) == digest, run.summary()
    hints = re.findall(r"stream 0x4 \[:status: (\d+)\]", run.output)
    assert hints == ["103", "200"], run.summary()
    assert "stream 0x4 [link: </style.css>; rel=preload; as=style]" in run.output
