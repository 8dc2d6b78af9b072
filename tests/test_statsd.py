"""statsd_host / statsd_prefix / dogstatsd_tags (Hypercorn's): a UDP socket in the test receives
the lines two workers send for h1/h2/h3 traffic, with Hypercorn's metric names, and counts them;
an app error is counted as hypercorn.log.exception. Plus the config keys and the line format."""

from __future__ import annotations

import socket
import subprocess
import time
from collections import Counter
from typing import Any

import pytest

from edgecorn.config import Config, ConfigError
from edgecorn.statsd import Statsd
from tests.support.h3 import cffi_h3, wait_quic
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def collector() -> Any:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def receive_lines(sock: socket.socket, enough: Any, timeout: float = 10.0) -> list[str]:
    """Datagrams until `enough(lines)` or the timeout; each datagram may hold several lines."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not enough(lines) and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        lines += data.decode("ascii").split("\n")
    return lines


def test_two_workers_send_hypercorns_lines(
    server_factory: Any, cafile: str, collector: socket.socket
) -> None:
    port = collector.getsockname()[1]
    quic_port = free_port()
    server = server_factory.start(
        "--workers",
        "2",
        "--quic-bind",
        f"127.0.0.1:{quic_port}",
        "--statsd-host",
        f"127.0.0.1:{port}",
        "--statsd-prefix",
        "edge",
        "--dogstatsd-tags",
        "env:test,team:web",
    )
    wait_quic(server)
    for _ in range(3):
        subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", f"{server.http}/"], timeout=20, check=True
        )
    subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", f"{server.http}/missing"], timeout=20, check=True
    )
    subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", f"{server.http}/error"], timeout=20, check=True
    )
    for _ in range(2):
        subprocess.run(
            ["curl", "-sS", "--http2", "--cacert", cafile, "-o", "/dev/null", f"{server.https}/"],
            timeout=20,
            check=True,
        )
    assert cffi_h3("GET", f"https://localhost:{quic_port}/", cafile).status_code == 200

    total = 8
    lines = receive_lines(
        collector,
        lambda got: (
            sum("hypercorn.requests:" in line for line in got) >= total
            and any("hypercorn.log.exception" in line for line in got)
        ),
    )
    for line in lines:
        assert line.startswith("edge.hypercorn.") and line.endswith("|#env:test,team:web"), line
    names = Counter(line.split(":", 1)[0] for line in lines)
    assert names["edge.hypercorn.requests"] == total
    assert names["edge.hypercorn.request.duration"] == total
    assert names["edge.hypercorn.request.status.200"] == 6
    assert names["edge.hypercorn.request.status.404"] == 1
    assert names["edge.hypercorn.request.status.500"] == 1
    assert names["edge.hypercorn.log.exception"] == 1
    for line in lines:
        if ".requests:" in line or ".status." in line:
            assert line.split(":", 1)[1].startswith("1|c|@1.0|#"), line
        if ".duration:" in line:
            ms, _, rest = line.split(":", 1)[1].partition("|")
            assert float(ms) >= 0 and rest.startswith("ms|#"), line


def test_line_format_without_prefix_or_tags(collector: socket.socket) -> None:
    host, port = collector.getsockname()
    statsd = Statsd("localhost", port)  # a name, resolved once
    statsd.request({"http_version": "1.1"}, 503, 10, 0.25)
    data = collector.recv(65536).decode()
    assert data.split("\n") == [
        "hypercorn.request.duration:250.000|ms",
        "hypercorn.requests:1|c|@1.0",
        "hypercorn.request.status.503:1|c|@1.0",
    ]
    tagged = Statsd(host, port, prefix="a.b.", tags="x:1")  # a prefix ending in a dot keeps one
    tagged.send(["hypercorn.log.warning:1|c|@1.0"])
    assert collector.recv(65536) == b"a.b.hypercorn.log.warning:1|c|@1.0|#x:1"


def test_nobody_listening_is_not_an_error() -> None:
    statsd = Statsd("127.0.0.1", free_port())
    for _ in range(3):  # the second send sees the first one's ECONNREFUSED on Linux
        statsd.request({}, 200, 0, 0.001)


@pytest.mark.parametrize("value", ["localhost", "8125", ":8125", "host:port", 8125])
def test_statsd_host_must_be_host_and_port(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"statsd_host: expected 'HOST:PORT'"):
        Config(statsd_host=value)


def test_statsd_keys_are_options() -> None:
    config = Config(statsd_host="[::1]:8125", statsd_prefix="", dogstatsd_tags="a:b")
    assert (config.statsd_host, config.statsd_prefix, config.dogstatsd_tags) == (
        "[::1]:8125",
        "",
        "a:b",
    )


def test_with_prometheus_metrics_too(server_factory: Any, collector: socket.socket) -> None:
    import urllib.request

    metrics_port = free_port()
    server = server_factory.start(
        "--statsd-host",
        f"127.0.0.1:{collector.getsockname()[1]}",
        config=f'metrics: {{bind: "127.0.0.1:{metrics_port}"}}\n',
    )
    for _ in range(2):
        subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", f"{server.http}/"], timeout=20, check=True
        )
    lines = receive_lines(collector, lambda got: sum(".requests:" in x for x in got) >= 2)
    assert sum(line.startswith("hypercorn.requests:1|c") for line in lines) == 2
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'edgecorn_requests_total{protocol="h1",route="",status="200"} 2.0' in text
