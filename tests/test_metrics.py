"""metrics: {bind}: a Prometheus scrape after h1/h2/h3 traffic on two workers sees every
response (prometheus_client's multiprocess files, merged by the supervisor), on its own
listener only; a killed worker's counts survive it and its restart is counted."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import pytest

pytest.importorskip("prometheus_client")
from tests.support.h3 import cffi_h3, wait_quic  # noqa: E402
from tests.support.metrics import scrape, value  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.procs import children  # noqa: E402


def test_scrape_sums_all_workers(server_factory: Any, cafile: str) -> None:
    metrics_port, quic_port = free_port(), free_port()
    server = server_factory.start(
        "--workers",
        "2",
        "--quic-bind",
        f"127.0.0.1:{quic_port}",
        config=f'metrics: {{bind: "127.0.0.1:{metrics_port}"}}\n',
    )
    wait_quic(server)
    deadline = time.monotonic() + 10
    while len(children(server.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(children(server.pid)) == 2

    h1, h2, h3 = 7, 5, 3
    for _ in range(h1):  # a new connection each: the kernel spreads them over both workers
        out = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", f"{server.http}/"],
            capture_output=True,
            timeout=20,
            check=True,
        )
        assert out.returncode == 0
    subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", f"{server.http}/missing"],
        capture_output=True,
        timeout=20,
        check=True,
    )
    for _ in range(h2):
        subprocess.run(
            ["curl", "-sS", "--http2", "--cacert", cafile, "-o", "/dev/null", f"{server.https}/"],
            capture_output=True,
            timeout=20,
            check=True,
        )
    for _ in range(h3):
        r = cffi_h3("GET", f"https://localhost:{quic_port}/", cafile)
        assert r.status_code == 200

    samples = scrape(metrics_port)
    assert value(samples, "edgecorn_requests_total", protocol="h1", route="", status="200") == h1
    assert value(samples, "edgecorn_requests_total", protocol="h1", route="", status="404") == 1
    assert value(samples, "edgecorn_requests_total", protocol="h2", route="", status="200") == h2
    assert value(samples, "edgecorn_requests_total", protocol="h3", route="", status="200") == h3
    assert (
        value(samples, "edgecorn_request_duration_seconds_count", protocol="h1", route="") == h1 + 1
    )
    assert value(samples, "edgecorn_response_body_bytes_total", protocol="h2") > 0
    # the public listeners do not serve it
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"{server.http}/metrics"],
        capture_output=True,
        timeout=20,
    )
    assert out.stdout == b"404"

    # a worker killed outright: its counts stay, and the restart is counted
    victim = sorted(children(server.pid))[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        alive = sorted(children(server.pid))
        if victim not in alive and len(alive) == 2:
            break
        time.sleep(0.1)
    samples = scrape(metrics_port)
    assert value(samples, "edgecorn_worker_restarts_total") == 1
    assert (
        value(samples, "edgecorn_requests_total", protocol="h1", route="", status="200") == h1
    )  # the dead worker's share included
