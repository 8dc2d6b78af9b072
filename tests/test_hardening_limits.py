"""Per-worker limits (issue 14): `max_connections` and `max_concurrent_requests`.

- Past max_connections a worker stops accepting: the next connection waits in the
  kernel's accept queue (counted in /proc/net/tcp) and is served once one of ours goes.
- Past max_concurrent_requests a request gets 503, over HTTP/1.1 (raw socket), HTTP/2
  (curl) and HTTP/3 (curl_cffi); the count is the worker's, across protocols.
Both on asyncio and trio. Every wait is bounded.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.h3 import cffi_h3, wait_quic
from tests.support.net import head_status

BACKENDS = ["asyncio", "trio"]


def accept_queue(port: int) -> int:
    """Connections waiting in the accept queue of the listener on 127.0.0.1:`port`."""
    with open("/proc/net/tcp") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                return int(fields[4].split(":")[1], 16)  # rx_queue of a listener
    raise AssertionError(f"no listener on {port}")


def request(sock: socket.socket, path: str = "/") -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def wait_lines(path: Path, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("started") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} apps did not start")


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_connections_leaves_new_ones_in_the_backlog(server_factory: Any, backend: str) -> None:
    server_factory.worker_class = backend
    server = server_factory.start(tls=False, config="max_connections: 2\nkeep_alive_timeout: 60\n")
    port = server.insecure_port
    first = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    waiting = None
    try:
        for sock in first:  # both served, so both are the worker's
            request(sock)
            assert head_status(sock) == 200
        assert accept_queue(port) == 0
        waiting = socket.create_connection(("127.0.0.1", port), timeout=10)
        request(waiting)
        waiting.settimeout(1.0)
        with pytest.raises(TimeoutError):
            waiting.recv(1)  # not accepted, so not answered
        assert accept_queue(port) == 1, server.stderr()[-2000:]
        first[0].close()  # one of ours goes: the waiting one is accepted and answered
        waiting.settimeout(10)
        assert head_status(waiting) == 200
        assert accept_queue(port) == 0
        request(first[1])  # the other is still served
        assert head_status(first[1]) == 200
    finally:
        for sock in first + ([waiting] if waiting else []):
            sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_concurrent_requests_answers_503(
    server_factory: Any, backend: str, cafile: str, tmp_path: Path
) -> None:
    server_factory.worker_class = backend
    server = server_factory.start(config="max_concurrent_requests: 2\n")
    wait_quic(server)
    starts = tmp_path / "starts"
    slow = [socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10)]
    slow.append(socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10))
    try:
        for sock in slow:
            request(sock, f"/slow?s=4&file={starts}")
        wait_lines(starts, 2)  # the worker runs 2 requests: the limit
        h1 = socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10)
        with h1:
            request(h1)
            assert head_status(h1) == 503
        h2 = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                "--http2",
                "--cacert",
                cafile,
                "--max-time",
                "10",
                f"{server.https}/",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert h2.stdout == "503 2", h2
        h3 = cffi_h3("GET", f"{server.https}/", cafile)
        assert h3.status_code == 503
        for sock in slow:  # the running ones are answered in full
            assert head_status(sock) == 200
    finally:
        for sock in slow:
            sock.close()
    # Under the limit again: served.
    assert cffi_h3("GET", f"{server.https}/", cafile).status_code == 200
    with socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10) as h1:
        request(h1)
        assert head_status(h1) == 200
