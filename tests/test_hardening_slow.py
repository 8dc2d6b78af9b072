"""Slow clients are cut off (issue 14): `header_timeout` bounds the time a request head
may take, `body_timeout` the longest pause inside a request body.

HTTP/1.1 over raw sockets (both parsers): 408 and a close; the app sees
`http.disconnect`. HTTP/2 (the conftest `h2` client): the stalled stream is reset and
its app sees `http.disconnect`, while the connection lives on. Timeouts are 1 s; every
client loop is bounded in count, so nothing here asserts on timing.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.hardening:read_body"
CONFIG = "header_timeout: 1\nbody_timeout: 1\n"


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 1 << 20:
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            return data + b"<RST>"
        if not part:
            return data
        data += part
    return data


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_h1_slow_head_gets_408(server_factory: Any, parser: str) -> None:
    server = server_factory.start(app=APP, parser=parser, config=CONFIG)
    sock = socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: localhost\r\n")
        answered = b""
        for i in range(40):  # a header line every 0.25 s: active, but never done
            try:
                sock.sendall(b"x-slow-%d: 1\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.25)
            sock.setblocking(False)
            try:
                answered = sock.recv(65536)
            except BlockingIOError:
                continue
            finally:
                sock.setblocking(True)
            break
        answered += _read_all(sock)
    assert answered.startswith(b"HTTP/1.1 408 "), answered
    assert b"connection: close" in answered.lower() and not answered.endswith(b"<RST>")


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_h1_stalled_body_gets_408_and_app_sees_disconnect(
    server_factory: Any, parser: str, tmp_path: Path
) -> None:
    server = server_factory.start(app=APP, parser=parser, config=CONFIG)
    marker = tmp_path / "events.txt"
    sock = socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10)
    with sock:
        sock.sendall(
            b"POST /?file=%s HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\nab"
            % str(marker).encode()
        )
        answer = _read_all(sock)  # bounded by the socket timeout
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert wait_until(lambda: marker.exists() and "disconnect" in marker.read_text(), 5)


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_h1_body_that_keeps_coming_is_not_cut(server_factory: Any, parser: str) -> None:
    """Pauses shorter than body_timeout are fine, however long the body takes."""
    server = server_factory.start(app=APP, parser=parser, config=CONFIG)
    sock = socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10)
    with sock:
        sock.sendall(b"POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\n\r\n")
        for _ in range(10):  # 2.5 s in all, more than twice the timeout
            time.sleep(0.25)
            sock.sendall(b"x")
        sock.sendall(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"read 10" in answer, answer
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer


def test_h2_stalled_body_resets_the_stream_only(
    server_factory: Any, h2conn: Any, tmp_path: Path
) -> None:
    server = server_factory.start(app=APP, config=CONFIG)
    marker = tmp_path / "events.txt"
    conn = h2conn(server.port)
    stalled = conn.request(
        "POST", f"/?file={marker}", body=b"ab", end=False, headers=[("content-length", "100000")]
    )
    resp = conn.response(stalled)  # bounded by the socket timeout
    assert resp.reset is not None and resp.status is None, resp
    assert wait_until(lambda: marker.exists() and "disconnect" in marker.read_text(), 5)
    after = conn.get("/")  # the connection itself goes on
    assert (after.status, after.body) == (200, b"read 0")


def test_keep_alive_timeout_never_fires_before_its_time(server_factory: Any) -> None:
    # Timeouts are counted in once-a-second ticks. A count that started at the first tick
    # after a connect closed a new connection anywhere from 0 to 1 s in with a 1 s
    # timeout. Six clients connect 0.2 s apart (so some tick falls inside some client's
    # wait, whatever the ticks' phase) and each sends its request 0.8 s after its connect:
    # every one must be answered.
    server = server_factory.start(app=APP, config="keep_alive_timeout: 1\n")
    start = time.monotonic()
    plan = sorted(
        [(0.2 * i, "connect", i) for i in range(6)] + [(0.2 * i + 0.8, "send", i) for i in range(6)]
    )
    socks: dict[int, socket.socket] = {}
    answers: dict[int, bytes] = {}
    for at, action, i in plan:
        time.sleep(max(0.0, start + at - time.monotonic()))
        if action == "connect":
            socks[i] = socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10)
            continue
        with socks[i] as sock:
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                answers[i] = b"<closed>"
                continue
            answers[i] = _read_all(sock)[:12]
    assert list(answers.values()) == [b"HTTP/1.1 200"] * 6, answers
