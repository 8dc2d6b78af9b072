"""A graceful stop closes the TCP listeners when the drain starts (issue 14).

Before, the asyncio listener only stopped reading its socket: a connect made after
SIGTERM was completed by the kernel, waited in a backlog nobody read and was reset when
the process exited. Now a new connect is refused while a request taken in before the
signal is still being answered, with `--workers 0` and with a supervisor (which holds
the listening sockets too), on both worker classes.

Real `python -m edgecorn` processes on loopback, raw HTTP/1.1 sockets. The app holds its
answer until the test creates a file, so "refused while still answering" is an order of
events, not a timing.
"""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.support.wait import wait_until

pytestmark = [pytest.mark.both_backends, pytest.mark.timeout(120)]

APP = "tests.apps.hardening:held"


def _refused(port: int, opened: list[socket.socket]) -> bool:
    """Does a connect to `port` fail? One that succeeds is kept (closed at the end)."""
    try:
        opened.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    except ConnectionRefusedError:
        return True
    return False


def _response(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"answered"):
        part = sock.recv(65536)  # bounded by the socket timeout
        if not part:
            break
        data += part
    return data


@pytest.mark.parametrize("workers", ["0", "2"])
def test_stop_refuses_new_connections_while_answering(
    server_factory: Any, tmp_path: Path, workers: str
) -> None:
    server = server_factory.start(
        "--workers", workers, "--graceful-timeout", "30", app=APP, tls=False
    )
    port = server.insecure_port
    serving = re.compile(rf"\[(\d+)\] \[INFO\] Running on http://127.0.0.1:{port} ")
    count = max(1, int(workers))  # each worker has logged its listener
    assert wait_until(lambda: len(set(serving.findall(server.stderr()))) == count, 20)
    started, release = tmp_path / "started", tmp_path / "release"
    inflight = socket.create_connection(("127.0.0.1", port), timeout=40)
    opened: list[socket.socket] = []
    try:
        inflight.sendall(
            f"GET /?started={started}&release={release} HTTP/1.1\r\nhost: x\r\n\r\n".encode()
        )
        assert wait_until(started.exists, 15), server.describe()
        assert not _refused(port, opened)  # listening before the signal
        server.proc.send_signal(signal.SIGTERM)
        # The app is still holding its answer (until `release`): the listener must go
        # now, not when the drain ends.
        assert wait_until(lambda: _refused(port, opened), 15), server.describe()
        release.touch()
        answer = _response(inflight)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"answered"), answer
        assert server.proc.wait(30) == 0, server.describe()
    finally:
        release.touch()
        inflight.close()
        for sock in opened:
            sock.close()
