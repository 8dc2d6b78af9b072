"""metrics: the rest of issue 10 end to end. Two workers behind routes (the command-line app,
a proxy to Uvicorn, a proxy to a port nobody listens on): h1/h2/h3 requests counted per route
in one scrape, the dead upstream's 502s as upstream errors, open connections and streams while
slow requests are in flight; QUIC handshakes, Retry packets (`quic_retry: on`) and 0-RTT
accepted/refused as ngtcp2's client sees them. Plus the 0-RTT packet finder, fed bytes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from edgecorn.metrics import has_0rtt  # noqa: E402
from tests.support.h3 import cffi_h3, client_initial, gtlsclient, wait_quic  # noqa: E402
from tests.support.metrics import scrape, value  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.procs import children  # noqa: E402

pytestmark = pytest.mark.timeout(120)

ROUTES_YAML = """\
metrics: {{bind: "127.0.0.1:{metrics}"}}
routes:
  - path: /api/
    proxy: http://127.0.0.1:{upstream}
  - path: /dead/
    proxy: http://127.0.0.1:{dead}
    connect_timeout: 2
"""


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[int]:
    """Uvicorn serving tests/apps/upstream.py: a real upstream that is not edgecorn."""
    port = free_port()
    with open(tmp_path / "uvicorn.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.apps.upstream:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "off",
                "--no-access-log",
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail((tmp_path / "uvicorn.log").read_text())
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def curl(*args: str) -> str:
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args],
        capture_output=True,
        timeout=20,
    )
    return out.stdout.decode()


def poll(port: int, name: str, want: float, timeout: float = 10.0, **labels: str) -> float:
    """Scrape until the gauge reads `want` (gauges are sampled once a second per worker)."""
    deadline = time.monotonic() + timeout
    got = value(scrape(port), name, **labels)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.2)
        got = value(scrape(port), name, **labels)
    return got


def test_routes_upstream_errors_and_open_connections(
    server_factory: Any, cafile: str, upstream: int
) -> None:
    metrics_port, quic_port, dead_port = free_port(), free_port(), free_port()
    server = server_factory.start(
        "--workers",
        "2",
        "--quic-bind",
        f"127.0.0.1:{quic_port}",
        config=ROUTES_YAML.format(metrics=metrics_port, upstream=upstream, dead=dead_port),
    )
    wait_quic(server)
    deadline = time.monotonic() + 10
    while len(children(server.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(children(server.pid)) == 2
    https = ["--cacert", cafile, "--http2"]

    for _ in range(4):
        assert curl(f"{server.http}/") == "200"
    for _ in range(3):
        assert curl(f"{server.http}/api/x") == "200"
        assert curl(*https, f"{server.https}/api/x") == "200"
    for _ in range(2):
        assert curl(f"{server.http}/dead/x") == "502"
        assert cffi_h3("GET", f"https://localhost:{quic_port}/", cafile).status_code == 200
    assert cffi_h3("GET", f"https://localhost:{quic_port}/api/y", cafile).status_code == 200

    # a WebSocket to the dead upstream: its failed attempt is counted as well
    with socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10) as ws:
        ws.sendall(
            b"GET /dead/ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        )
        assert not ws.recv(100).startswith(b"HTTP/1.1 101")

    samples = scrape(metrics_port)

    def requests(protocol: str, route: str, status: str) -> float:
        return value(
            samples, "edgecorn_requests_total", protocol=protocol, route=route, status=status
        )

    assert requests("h1", "*/", "200") == 4
    assert requests("h1", "*/api/", "200") == 3
    assert requests("h2", "*/api/", "200") == 3
    assert requests("h1", "*/dead/", "502") == 2
    assert requests("h3", "*/", "200") == 2
    assert requests("h3", "*/api/", "200") == 1
    assert (
        value(samples, "edgecorn_request_duration_seconds_count", protocol="h1", route="*/api/")
        == 3
    )
    dead = f"http://127.0.0.1:{dead_port}"
    assert (
        value(
            samples, "edgecorn_upstream_errors_total", route="*/dead/", upstream=dead, status="502"
        )
        == 3
    )
    assert (
        value(
            samples,
            "edgecorn_upstream_errors_total",
            route="*/api/",
            upstream=f"http://127.0.0.1:{upstream}",
            status="502",
        )
        == 0
    )
    assert value(samples, "edgecorn_quic_handshakes_total", result="completed") == 3
    assert value(samples, "edgecorn_quic_retries_total") == 0  # under_load, and no load

    # Slow requests in flight: one h1 (a raw socket), one h2 (curl in the background).
    raw = socket.create_connection(("127.0.0.1", server.insecure_port), timeout=5)
    h2 = subprocess.Popen(
        ["curl", "-sS", "-o", "/dev/null", "--max-time", "60", *https, f"{server.https}/slow?s=60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        raw.sendall(b"GET /slow?s=60 HTTP/1.1\r\nhost: x\r\n\r\n")
        assert poll(metrics_port, "edgecorn_open_streams", 1, protocol="h1") == 1
        assert poll(metrics_port, "edgecorn_open_connections", 1, protocol="h1") == 1
        assert poll(metrics_port, "edgecorn_open_streams", 1, protocol="h2") == 1
        assert poll(metrics_port, "edgecorn_open_connections", 1, protocol="h2") == 1
    finally:
        raw.close()
        h2.kill()
        h2.wait(10)
    assert poll(metrics_port, "edgecorn_open_connections", 0, protocol="h1") == 0
    assert poll(metrics_port, "edgecorn_open_connections", 0, protocol="h2") == 0


def test_quic_retries_and_early_data(server_factory: Any, tmp_path: Path) -> None:
    metrics_port, quic_port = free_port(), free_port()
    server = server_factory.start(
        "--quic-bind",
        f"127.0.0.1:{quic_port}",
        "--quic-early-data",
        config=f'metrics: {{bind: "127.0.0.1:{metrics_port}"}}\nquic_retry: on\n',
    )
    wait_quic(server)
    url = f"https://127.0.0.1:{quic_port}/"
    tp = f"--tp-file={tmp_path / 'tp'}"
    first = gtlsclient(
        quic_port,
        url,
        download=tmp_path / "d0",
        extra=[f"--session-file={tmp_path / 'session'}", tp],
    )
    assert first.statuses() == [200] and first.received("Retry"), first.summary()
    ticket = (tmp_path / "session").read_bytes()
    runs = []
    for i in range(2):  # one ticket used twice: tickets are single use, so 0-RTT is refused
        (tmp_path / f"s{i}").write_bytes(ticket)
        runs.append(
            gtlsclient(
                quic_port,
                url,
                download=tmp_path / f"d{i + 1}",
                extra=[f"--session-file={tmp_path / f's{i}'}", tp],
            )
        )
    used, replay = runs
    assert used.statuses() == [200] and used.sent_0rtt_stream_data(), used.summary()
    assert not used.early_data_rejected, used.summary()
    assert replay.statuses() == [200] and replay.early_data_rejected, replay.summary()

    samples = scrape(metrics_port)
    assert value(samples, "edgecorn_quic_handshakes_total", result="completed") == 3
    assert value(samples, "edgecorn_quic_retries_total") == 3
    assert value(samples, "edgecorn_quic_early_data_total", result="accepted") == 1
    assert value(samples, "edgecorn_quic_early_data_total", result="refused") == 1
    assert value(samples, "edgecorn_requests_total", protocol="h3", route="", status="200") == 3


# --------------------------------------------------------------------------- sans-IO


def packet(first: int, version: int, body: int = 40) -> bytes:
    """A long-header packet with a real length field (and an empty token for Initials)."""
    head = bytes([first]) + version.to_bytes(4, "big") + b"\x08" + b"d" * 8 + b"\x08" + b"s" * 8
    if (first & 0x30) == (0x10 if version == V2 else 0x00):
        head += b"\x00"  # Initial: token length 0
    return head + (0x4000 | body).to_bytes(2, "big") + b"p" * body


V1, V2 = 0x00000001, 0x6B3343CF


def test_0rtt_finder_on_real_and_built_packets(cafile: str) -> None:
    initial = client_initial(4433, cafile)  # an aioquic client's first datagram
    assert not has_0rtt(initial)
    zero_rtt = packet(0xD0, V1)  # v1 type bits 01: 0-RTT
    assert has_0rtt(zero_rtt)
    assert has_0rtt(packet(0xC0, V1) + zero_rtt)  # coalesced after an Initial
    assert not has_0rtt(packet(0xC0, V1) + packet(0xE0, V1))  # Initial + Handshake
    assert has_0rtt(packet(0xE0, V1) + zero_rtt)
    # v2 numbers the types differently (RFC 9369): 10 is 0-RTT, 01 is Initial
    assert has_0rtt(packet(0xE0, V2)) and not has_0rtt(packet(0xD0, V2))
    assert has_0rtt(packet(0xD0, V2) + packet(0xE0, V2))
    both = packet(0xC0, V1) + zero_rtt
    for cut in range(len(both)):  # truncated input never raises
        has_0rtt(both[:cut])
    assert not has_0rtt(b"\x40" + b"x" * 30)  # a short header
