"""Nothing accepted is lost at a graceful stop (issue 14).

HTTP/2: every stream up to GOAWAY's last_stream_id is answered in full before the
connection closes, even when the peer reads slowly (the server's write buffer still
holds responses when the last stream finishes) and keeps sending WINDOW_UPDATEs while
the server closes. Repeated, on both worker classes, because these races show up one
run in several.

Real `python -m edgecorn` processes on loopback; the conftest raw HTTP/2 client (`h2`
package). No timing asserts: sleeps only shape the race, byte counts decide.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.load import tolerate_goaway
from tests.support.procs import children, wait_workers
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(180)

APP = "tests.apps.hardening:drain"
STREAMS = 20


def _one_run(
    server_factory: Any, h2conn: Any, tmp_path: Path, run: int, size: int, tls: bool
) -> int:
    server = server_factory.start("--graceful-timeout", "15", app=APP)
    marker = tmp_path / f"started{run}.txt"
    port = server.port if tls else server.insecure_port
    # A big window: the server may hand the whole answer to its transport at once.
    conn = tolerate_goaway(h2conn(port, tls=tls, settings={4: 2**24}, timeout=20))
    conn.conn.increment_flow_control_window(2**30)
    conn.flush()
    path = f"/?s=0.3&n={size}&file={marker}"
    sids = [conn.request("GET", path) for _ in range(STREAMS)]

    def started() -> int:
        return marker.read_text().count("started") if marker.exists() else 0

    assert wait_until(lambda: started() == STREAMS, 15), server.describe()
    server.proc.send_signal(signal.SIGTERM)
    # Read late: the answers pile up in the server's buffers while it decides to close.
    time.sleep(0.8)
    answered = 0
    try:
        for sid in sids:
            resp = conn.response(sid)
            if resp.reset is None and resp.status == 200 and len(resp.body) == size:
                answered += 1
    except EOFError:
        pass
    conn.close()
    assert server.proc.wait(20) == 0, server.describe()
    assert conn.goaway is not None and conn.goaway.last_stream_id >= max(sids)
    return answered


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"], indirect=True)
def test_graceful_stop_answers_every_h2_stream(
    server_factory: Any, h2conn: Any, tmp_path: Path, worker_class: str
) -> None:
    # Small answers (all in one write) and big ones (still buffered at the close),
    # over TLS and cleartext h2c.
    cases = [(100, True), (300_000, True), (150_000, False), (30_000, True)] * 2
    results = []
    for run, (size, tls) in enumerate(cases):
        results.append((size, tls, _one_run(server_factory, h2conn, tmp_path, run, size, tls)))
        server_factory.stop_all()
    assert all(answered == STREAMS for _, _, answered in results), results


# --------------------------------------------------------------------------- h1 keep-alive


def _h1_connect(port: int, tls: bool, cafile: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.set_alpn_protocols(["http/1.1"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    return sock


def _h1_exchange(sock: socket.socket, size: int) -> str:
    """One request; "ok", "ok-close" (answered with connection: close), "eof" (closed
    before any byte of an answer: the close crossed our request), "partial" or "reset"."""
    try:
        sock.sendall(b"GET /?n=%d HTTP/1.1\r\nhost: localhost\r\n\r\n" % size)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                return "partial" if buf else "eof"
            buf += data
        head, _, body = buf.partition(b"\r\n\r\n")
        fields = dict(
            line.split(b":", 1) for line in head.lower().split(b"\r\n")[1:] if b":" in line
        )
        length = int(fields[b"content-length"])
        while len(body) < length:
            data = sock.recv(65536)
            if not data:
                return "partial"
            body += data
        if not head.startswith(b"HTTP/1.1 200") or len(body) != length:
            return "partial"
        return "ok-close" if fields.get(b"connection", b"").strip() == b"close" else "ok"
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as exc:
        return f"reset: {exc!r}"


def _keep_alive_client(
    port: int, tls: bool, cafile: str, stop: threading.Event, outcomes: list[str]
) -> None:
    """Back-to-back keep-alive requests (bounded in count and time); once `stop` is set,
    no new connection: the open one is used until the server closes it."""
    deadline = time.monotonic() + 20
    sock: socket.socket | None = None
    while len(outcomes) < 5000 and time.monotonic() < deadline:
        if sock is None:
            if stop.is_set():
                break
            try:
                sock = _h1_connect(port, tls, cafile)
            except (OSError, ssl.SSLError):
                break  # the listener is closed: nothing was sent
        outcome = _h1_exchange(sock, 2000)
        outcomes.append(outcome)
        if outcome != "ok":
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def _run_clients(server: Any, cafile: str, stop: threading.Event) -> tuple[list[Any], list[Any]]:
    """8 clients: half over TLS, half over cleartext."""
    results: list[list[str]] = [[] for _ in range(8)]
    threads = []
    for i in range(8):
        tls = i % 2 == 0
        port = server.port if tls else server.insecure_port
        args = (port, tls, cafile, stop, results[i])
        threads.append(threading.Thread(target=_keep_alive_client, args=args))
    for thread in threads:
        thread.start()
    return threads, results


def _check(results: list[list[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in (o for client in results for o in client):
        counts[outcome] = counts.get(outcome, 0) + 1
    bad = {k: v for k, v in counts.items() if k not in ("ok", "ok-close", "eof")}
    assert not bad, counts
    return counts


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"], indirect=True)
def test_keep_alive_clients_across_graceful_stop(
    server_factory: Any, cafile: str, worker_class: str
) -> None:
    """SIGTERM under back-to-back keep-alive load (TLS and cleartext clients), 4 times:
    every request is answered or meets a clean close, never a reset."""
    totals: dict[str, int] = {}
    for _ in range(4):
        server = server_factory.start("--graceful-timeout", "10", app=APP)
        stop = threading.Event()
        threads, results = _run_clients(server, cafile, stop)
        wait_until(lambda r=results: sum(len(x) for x in r) >= 400, 10)
        # New connections during a full stop meet the closed listener (another test's
        # subject); here each client keeps its keep-alive connection until it is closed.
        stop.set()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0, server.describe()
        for thread in threads:
            thread.join(30)
        for outcome, count in _check(results).items():
            totals[outcome] = totals.get(outcome, 0) + count
        server_factory.stop_all()
    assert totals.get("ok-close", 0) > 0, totals  # requests met the drain: answered


def test_keep_alive_clients_across_rolling_restart(server_factory: Any, cafile: str) -> None:
    """SIGHUP on 2 workers under back-to-back keep-alive load: no reset, no lost answer."""
    server = server_factory.start("--workers", "2", "--graceful-timeout", "10", app=APP)
    old = wait_workers(server, 2)
    stop = threading.Event()
    threads, results = _run_clients(server, cafile, stop)
    try:
        wait_until(lambda r=results: sum(len(x) for x in r) >= 400, 10)
        os.kill(server.pid, signal.SIGHUP)
        assert wait_until(lambda: not children(server.pid) & old, 25), server.describe()
        wait_workers(server, 2)
        count = sum(len(r) for r in results)
        wait_until(lambda: sum(len(r) for r in results) >= count + 200, 10)  # new workers serve
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    counts = _check(results)
    assert counts.get("ok-close", 0) > 0, counts


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"], indirect=True)
def test_keep_alive_timeout_close_is_lingering(server_factory: Any, worker_class: str) -> None:
    """A request that crosses the keep-alive timeout's close is read and dropped, not
    answered with RST: the server half-closes and reads until the client closes (a full
    close makes the kernel reset the connection, and the client's next send fails)."""
    server = server_factory.start(app=APP, config="keep_alive_timeout: 1\n")
    sock = _h1_connect(server.insecure_port, False, "")
    try:
        assert _h1_exchange(sock, 10) == "ok"
        sock.settimeout(10)
        assert sock.recv(100) == b""  # the server's FIN after the keep-alive timeout
        request = b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n"
        sock.sendall(request)
        time.sleep(0.3)  # a RST would be back by now (loopback)
        try:
            sock.sendall(request)
            outcome = "still open"
        except (BrokenPipeError, ConnectionResetError) as exc:
            outcome = repr(exc)
    finally:
        sock.close()
    assert outcome == "still open"
