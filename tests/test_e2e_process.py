"""The process model end to end: graceful stop, rolling restart, crash replacement,
max_requests, the PID file, start-up failures, SIGTTIN/SIGTTOU, and QUIC across workers
(many connections; NAT rebinding through a relay that changes its source port).

Real `python -m edgecorn` processes on loopback; clients: the conftest HTTP/1.1 and HTTP/2
clients (the `h1` / `h2conn` fixtures) and curl_cffi for HTTP/3. Every wait is bounded;
nothing asserts on timing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.apps.e2e import HELLO, MIB, STARTUP_FAILURE
from tests.support.data import big_sha
from tests.support.h3 import cffi_h3, wait_quic
from tests.support.load import Load, UdpRelay, summary, tolerate_goaway
from tests.support.net import free_port
from tests.support.procs import children, wait_workers
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(90)

SLOW_BODY = b"slow done"


def start(factory: Any, workers: int, *extra: str, **kwargs: Any) -> Any:
    """A TLS server (h1/h2 on TCP, h3 on UDP, same port) with all its workers serving."""
    kwargs.setdefault("insecure", False)
    server = factory.start("--workers", str(workers), *extra, **kwargs)
    if workers:
        wait_workers(server, workers)
    else:
        wait_quic(server)
    return server


def h1_get(h1: Any, port: int, path: str = "/", tls: bool = True, timeout: float = 10.0) -> Any:
    conn = h1(port, tls=tls, timeout=timeout)
    try:
        conn.request("GET", path, headers=[("Connection", "close")])
        return conn.read_response()
    finally:
        conn.close()


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("edgecorn: error:")]


# --------------------------------------------------------------------------- graceful stop


@pytest.mark.parametrize("workers", [0, 2])
def test_sigterm_finishes_in_flight_requests(
    server_factory: Any, h1: Any, h2conn: Any, cafile: str, tmp_path: Path, workers: int
) -> None:
    server = start(server_factory, workers, "--graceful-timeout", "20")
    marker = tmp_path / "started.txt"
    path = f"/slow?s=2&file={quote(str(marker))}"
    n_h1, n_h2_conns, n_h2_streams, n_h3 = 17, 2, 8, 17
    total = n_h1 + n_h2_conns * n_h2_streams + n_h3

    h1_conns = []
    for _ in range(n_h1):
        conn = h1(server.port, tls=True, timeout=20)
        conn.request("GET", path)
        h1_conns.append(conn)
    h2_streams = []
    for _ in range(n_h2_conns):
        conn = tolerate_goaway(h2conn(server.port, timeout=20))
        h2_streams += [(conn, conn.request("GET", path)) for _ in range(n_h2_streams)]
    h3_results: list[Any] = [None] * n_h3

    def h3_request(i: int) -> None:
        try:
            h3_results[i] = cffi_h3("GET", f"https://127.0.0.1:{server.port}{path}", cafile)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            h3_results[i] = exc

    threads = [threading.Thread(target=h3_request, args=(i,), daemon=True) for i in range(n_h3)]
    for thread in threads:
        thread.start()

    def started() -> int:
        return marker.read_text().count("started") if marker.exists() else 0

    assert wait_until(lambda: started() == total, 15), f"{started()} of {total} started"
    server.proc.send_signal(signal.SIGTERM)
    draining = max(1, workers)
    assert wait_until(lambda: server.stderr().count("Shutting down") >= draining, 10), (
        server.describe()
    )

    # New connections are refused (or never answered) while the old ones finish.
    try:
        resp = h1_get(h1, server.port, timeout=1.5)
    except (OSError, EOFError):
        pass
    else:
        pytest.fail(f"a new TCP connection was served after SIGTERM: {resp.status}")
    try:
        late = cffi_h3("GET", f"https://127.0.0.1:{server.port}/", cafile, timeout=2)
    except Exception:  # noqa: BLE001 - curl_cffi's timeout / connect error: what we want
        pass
    else:
        pytest.fail(f"a new QUIC connection was served after SIGTERM: {late.status_code}")

    for conn in h1_conns:
        resp = conn.read_response()
        conn.close()  # as a client does after `Connection: close`
        assert (resp.status, resp.body) == (200, SLOW_BODY)
        assert (resp.header("connection") or "").lower() == "close"
    for conn, sid in h2_streams:
        resp = conn.response(sid)
        assert resp.reset is None and (resp.status, resp.body) == (200, SLOW_BODY), resp
    assert all(
        conn.goaway is not None
        and conn.goaway.error_code == 0
        and conn.goaway.last_stream_id >= max(s for c, s in h2_streams if c is conn)
        for conn, _ in h2_streams
    ), [c.goaway for c, _ in h2_streams]
    for conn, _ in h2_streams:
        conn.close()
    for thread in threads:
        thread.join(30)
    bad = [r for r in h3_results if r is None or isinstance(r, Exception)]
    assert not bad, f"{len(bad)} of {n_h3} HTTP/3 requests failed: {bad[:3]}"
    for result in h3_results:
        assert (result.status_code, result.content) == (200, SLOW_BODY)
    assert server.proc.wait(30) == 0, server.describe()


# --------------------------------------------------------------------------- rolling restart


@pytest.mark.timeout(60)
def test_sighup_rolling_restart_under_load(
    server_factory: Any, h1: Any, h2conn: Any, cafile: str
) -> None:
    """~10 s of sequential requests over h1, h2 and h3 across a SIGHUP: no failure."""
    server = start(server_factory, 2, "--graceful-timeout", "10")
    old = children(server.pid)
    load = Load(server.port, cafile, h1, h2conn, max_seconds=30).start()
    began = time.monotonic()
    try:
        assert wait_until(lambda: all(load.count(p) >= 10 for p in load.protos), 15), summary(
            load.results
        )
        os.kill(server.pid, signal.SIGHUP)
        new: set[int] = set()

        def restarted() -> bool:
            nonlocal new
            new = children(server.pid)
            return len(new) == 2 and not new & old

        assert wait_until(restarted, 25), f"old {old}, now {new}\n{server.describe()}"
        new = wait_workers(server, 2)
        restarted_at = time.monotonic()
        wait_until(lambda: time.monotonic() - began >= 10, 10, interval=0.2)
    finally:
        results = load.stop()
    assert results and all(r.ok for r in results), summary(results)
    for proto in load.protos:
        assert any(r.proto == proto and r.started > restarted_at for r in results), proto
    assert not new & old and len(new) == 2


# --------------------------------------------------------------------------- crash replacement


def test_killed_worker_is_replaced(server_factory: Any, h1: Any, h2conn: Any, cafile: str) -> None:
    server = start(server_factory, 2, "--graceful-timeout", "5")
    before = wait_workers(server, 2)
    load = Load(server.port, cafile, h1, h2conn, max_seconds=40).start()
    try:
        assert wait_until(lambda: all(load.count(p) >= 5 for p in load.protos), 15), summary(
            load.results
        )
        victim = min(before)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: children(server.pid) - before, 15), server.describe()
        after = wait_workers(server, 2)
        up_at = time.monotonic()
        assert victim not in after and len(after - before) == 1

        def served_after() -> bool:
            return all(
                sum(1 for r in list(load.results) if r.proto == p and r.started > up_at) >= 10
                for p in load.protos
            )

        assert wait_until(served_after, 20), summary(load.results)
    finally:
        results = load.stop()
    early = [r for r in results if r.ended < killed_at]
    late = [r for r in results if r.started > up_at]
    assert early and all(r.ok for r in early), summary(early)
    assert late and all(r.ok for r in late), summary(late)
    ok = sum(r.ok for r in results)
    assert ok >= 0.95 * len(results), summary(results)


# --------------------------------------------------------------------------- QUIC, many workers


def test_hundred_quic_connections_two_workers(server_factory: Any, cafile: str) -> None:
    server = start(server_factory, 2)

    def one(i: int) -> tuple[int, bytes]:
        resp = cffi_h3("GET", f"https://127.0.0.1:{server.port}/?n={i}", cafile, timeout=20)
        return resp.status_code, resp.content

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(100)))
    failures = [r for r in results if r != (200, HELLO)]
    assert not failures, failures[:5]
    assert len(children(server.pid)) == 2  # nobody crashed on the way


@pytest.mark.timeout(120)
def test_nat_rebinding_keeps_the_connection(server_factory: Any, cafile: str) -> None:
    """The client's source port changes twice during an 8 MiB download; with two workers the
    kernel's hash would pick the other worker for a new port half the time: steering by
    connection ID must keep every datagram on the connection's worker."""
    server = start(server_factory, 2)
    expected = big_sha(8)
    for attempt in range(4):
        relay = UdpRelay(("127.0.0.1", server.port), switch_after=[2 * MIB, 5 * MIB]).start()
        try:
            url = f"https://127.0.0.1:{relay.port}/big?mb=8"
            resp = cffi_h3("GET", url, cafile, timeout=20)
        finally:
            relay.close()
        assert resp.status_code == 200, attempt
        assert len(resp.content) == 8 * MIB, (attempt, len(resp.content))
        assert hashlib.sha256(resp.content).hexdigest() == expected, attempt
        assert relay.switches == 2 and len(set(relay.ports)) == 3, relay.ports
    assert len(children(server.pid)) == 2


# --------------------------------------------------------------------------- max_requests


def test_max_requests_recycles_the_worker(server_factory: Any, h1: Any) -> None:
    server = start(
        server_factory, 1, "--max-requests", "20", "--max-requests-jitter", "5", insecure=True
    )
    first = children(server.pid)
    seen = set(first)
    statuses = []
    for i in range(100):
        try:
            resp = h1_get(h1, server.insecure_port, tls=False)
        except (OSError, EOFError) as exc:
            pytest.fail(
                f"request {i} (workers seen: {sorted(seen)}) failed: {exc!r}\n{server.describe()}"
            )
        statuses.append((resp.status, resp.body))
        seen |= children(server.pid)
    assert statuses == [(200, HELLO)] * 100
    assert wait_until(lambda: children(server.pid) and not children(server.pid) & first, 10)
    assert len(seen) >= 2, seen


def test_max_worker_rss_replaces_gracefully(server_factory: Any, h1: Any) -> None:
    """Every worker is over a 1 MB limit: each is replaced as soon as it is up, again and
    again; the replacements overlap, so no request fails meanwhile."""
    server = server_factory.start("--workers", "1", config="max_worker_rss: 1\n")
    # (no wait_workers: with every worker over the limit there are often two)
    assert wait_until(lambda: children(server.pid), 15), server.describe()
    seen = children(server.pid)
    statuses = []
    deadline = time.monotonic() + 20
    for _ in range(300):
        resp = h1_get(h1, server.insecure_port, tls=False)
        statuses.append((resp.status, resp.body))
        seen |= children(server.pid)
        if (len(seen) >= 4 and len(statuses) >= 30) or time.monotonic() > deadline:
            break
        time.sleep(0.03)  # the 300 requests span several replacements (about one a second)
    assert statuses == [(200, HELLO)] * len(statuses)
    assert len(seen) >= 3, (seen, server.describe())
    assert "max_worker_rss" in server.stderr()


# --------------------------------------------------------------------------- PID file


@pytest.mark.parametrize("workers", [0, 2])
def test_pid_file(server_factory: Any, tmp_path: Path, workers: int) -> None:
    pidfile = tmp_path / "run" / "edgecorn.pid"
    pidfile.parent.mkdir()
    server = start(server_factory, workers, "--pid", str(pidfile))
    assert pidfile.read_text().strip() == str(server.pid)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0, server.describe()
    assert not pidfile.exists()


# --------------------------------------------------------------------------- start-up failures


def _spawn_and_wait(factory: Any, args: list[str], timeout: float = 30.0) -> tuple[int, str]:
    server = factory.spawn(args)
    try:
        code = server.proc.wait(timeout)
    except Exception:  # noqa: BLE001
        server.stop()
        pytest.fail(f"server still running after {timeout}s\n{server.describe()}")
    return code, server.stderr()


def _tls_args(factory: Any, port: int) -> list[str]:
    return [
        "--bind",
        f"127.0.0.1:{port}",
        "--certfile",
        factory.certfile,
        "--keyfile",
        factory.keyfile,
    ]


@pytest.mark.parametrize("workers", [0, 2])
def test_missing_app_module(server_factory: Any, workers: int) -> None:
    args = ["tests.no_such_module:app", "--workers", str(workers)]
    code, stderr = _spawn_and_wait(server_factory, args + _tls_args(server_factory, free_port()))
    assert code != 0
    assert len(error_lines(stderr)) == 1, stderr
    assert "no_such_module" in error_lines(stderr)[0]
    assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_port_in_use(server_factory: Any, workers: int, kind: str) -> None:
    port = free_port()
    if kind == "tcp":
        holder = socket.socket()
        holder.bind(("127.0.0.1", port))
        holder.listen()
    else:
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        holder.bind(("127.0.0.1", port))
    with holder:
        args = ["tests.apps.e2e:app", "--workers", str(workers)]
        code, stderr = _spawn_and_wait(server_factory, args + _tls_args(server_factory, port))
    assert code != 0
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert str(port) in lines[0] and "in use" in lines[0].lower(), lines[0]
    assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize("workers", [0, 2])
def test_missing_keyfile(server_factory: Any, tmp_path: Path, workers: int) -> None:
    """A TLS file that cannot be read stops the start with one line (not a traceback, and
    not workers that die and are restarted forever)."""
    missing = str(tmp_path / "no-such-key.pem")
    args = [
        "tests.apps.e2e:app",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{free_port()}",
        "--certfile",
        server_factory.certfile,
        "--keyfile",
        missing,
    ]
    code, stderr = _spawn_and_wait(server_factory, args, timeout=15)
    assert code != 0
    lines = error_lines(stderr)
    assert len(lines) == 1 and missing in lines[0], stderr
    assert "Traceback" not in stderr, stderr


def test_failing_lifespan_with_workers(server_factory: Any) -> None:
    args = ["tests.apps.e2e:failing_lifespan_app", "--workers", "2"]
    code, stderr = _spawn_and_wait(server_factory, args + _tls_args(server_factory, free_port()))
    assert code != 0
    lines = error_lines(stderr)
    assert len(lines) == 1 and STARTUP_FAILURE in lines[0], stderr
    assert "Traceback" not in stderr, stderr


# --------------------------------------------------------------------------- SIGTTIN / SIGTTOU


def test_sigttin_sigttou_change_worker_count(server_factory: Any, h1: Any, cafile: str) -> None:
    server = start(server_factory, 2)
    os.kill(server.pid, signal.SIGTTIN)
    three = wait_workers(server, 3)
    os.kill(server.pid, signal.SIGTTOU)
    two = wait_workers(server, 2)
    assert two < three
    os.kill(server.pid, signal.SIGTTOU)
    one = wait_workers(server, 1)
    os.kill(server.pid, signal.SIGTTOU)  # never below one worker
    time.sleep(1.0)
    assert children(server.pid) == one
    resp = h1_get(h1, server.port)
    assert (resp.status, resp.body) == (200, HELLO)
    h3 = cffi_h3("GET", f"https://127.0.0.1:{server.port}/", cafile, timeout=10)
    assert (h3.status_code, h3.content) == (200, HELLO)
    os.kill(server.pid, signal.SIGTTIN)
    assert wait_workers(server, 2) > one
