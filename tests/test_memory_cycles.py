"""A closed connection is freed by refcounting alone (issue 14, the soak's RSS growth).

The server (`tests.apps.cycles`) runs with the cyclic gc off. Real clients open and close
N connections per protocol; once the server holds no connection objects but the one that
asks, `/_gc` collects once and reports what it found unreachable. A connection whose
objects sit in a reference cycle (the httptools parser's callbacks, h2's frame dispatch
table, asyncio's and trio's TLS transports, aioquic's callbacks: bound methods kept by
the objects they are bound to) leaves several objects each, so N connections leave
several times N; freed on close, they leave none.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.support.h3 import gtlsclient, wait_quic
from tests.support.wait import wait_until

pytestmark = [pytest.mark.both_backends, pytest.mark.timeout(60)]

APP = "tests.apps.cycles:app"
N = 40  # connections per protocol: before the fix each left 7 to 40 objects in cycles
CLIENT_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def gc_server(session_factory: Any) -> Iterator[Any]:
    server = session_factory.start(app=APP, access_log=False)
    # The readiness probe's TCP connect to the TLS port never finished a handshake;
    # asyncio's failed handshake is a cycle of its own (exception, traceback, protocol).
    _ask(server.insecure_port, "/_gc")
    yield server
    server.stop()


def _ask(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


def _live(port: int) -> list[str]:
    live: list[str] = json.loads(_ask(port, "/_live"))
    return live


def _garbage_after_close(server: Any) -> dict[str, int]:
    """Once every other connection has gone: what one collection finds (and frees).
    A connection object that only a collection frees counts as garbage, not as open."""
    port = server.insecure_port
    wait_until(lambda: len(_live(port)) <= 1, timeout=10, interval=0.2)
    garbage: dict[str, int] = json.loads(_ask(port, "/_gc"))
    live = _live(port)
    assert len(live) <= 1, f"connections still open: {live}"
    return garbage


def _h2load(*args: str) -> None:
    exe = shutil.which("h2load")
    assert exe is not None, "h2load is not installed"
    done = subprocess.run([exe, *args], capture_output=True, timeout=CLIENT_TIMEOUT)
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0 and f"{N} succeeded" in out, out[-600:]


def _h1(server: Any) -> None:
    _h2load("--h1", "-n", str(N), "-c", str(N), f"{server.http}/")


def _h1_tls(server: Any) -> None:
    _h2load("--h1", "-n", str(N), "-c", str(N), f"{server.https}/")


def _h2_tls(server: Any) -> None:
    _h2load("-n", str(N), "-c", str(N), f"{server.https}/")


def _h2c(server: Any) -> None:  # prior knowledge: the HTTP/2 preface on cleartext
    _h2load("-n", str(N), "-c", str(N), f"{server.http}/")


def _h2c_upgrade(server: Any) -> None:  # HTTP/1.1 Upgrade: h2c, then HTTP/2
    for _ in range(N):
        done = subprocess.run(
            ["curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version}", server.http],
            capture_output=True,
            timeout=CLIENT_TIMEOUT,
        )
        assert done.stdout == b"2", done.stderr


def _h3(server: Any) -> None:  # ngtcp2's client, one QUIC connection per run
    wait_quic(server)
    for i in range(N):
        run = gtlsclient(server.port, f"{server.https}/", download=server.log_dir / f"h3-{i}")
        assert run.statuses() == [200], run.summary()


def _websocket(server: Any) -> None:
    context = ssl.create_default_context(cafile=server.cafile)

    async def run() -> None:
        for i in range(N):
            url = (
                f"ws://127.0.0.1:{server.insecure_port}/"
                if i % 2
                else f"wss://127.0.0.1:{server.port}/"
            )
            async with ws_connect(url, ssl=context if url.startswith("wss") else None) as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"

    asyncio.run(asyncio.wait_for(run(), CLIENT_TIMEOUT))


LOADS: dict[str, Callable[[Any], None]] = {
    "h1": _h1,
    "h1-tls": _h1_tls,
    "h2-tls": _h2_tls,
    "h2c": _h2c,
    "h2c-upgrade": _h2c_upgrade,
    "websocket": _websocket,
    "h3": _h3,
}


@pytest.mark.parametrize("protocol", list(LOADS))
def test_closed_connections_leave_no_cycles(gc_server: Any, protocol: str) -> None:
    _garbage_after_close(gc_server)  # what earlier tests left: not this one's
    LOADS[protocol](gc_server)
    garbage = _garbage_after_close(gc_server)
    total = sum(garbage.values())
    top = sorted(garbage.items(), key=lambda item: -item[1])[:12]
    # A cycle per connection leaves at least N objects; a stray one-off is allowed.
    assert total < N // 2, f"{total} objects in cycles after {N} {protocol} connections: {top}"
