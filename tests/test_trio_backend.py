"""The trio backend end to end: `python -m edgecorn -k trio` (and `edgecorn.trio.serve`)
driven by real clients over h1, h2 (TLS + ALPN and h2c), h3 and WebSockets.

The server runs `tests.apps.backends:app`: the e2e routes (anyio, so backend-neutral),
the WebSocket apps of `tests.apps.ws`, and `/backend`, which names the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.apps import e2e as e2e_apps
from tests.apps.backends import app
from tests.apps.e2e import HELLO, MIB
from tests.support.wait import wait_for_lines

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.backends:app"

# --------------------------------------------------------------------------- helpers


def start(factory: Any, *extra: str, **kwargs: Any) -> Any:
    from tests.support.h3 import wait_quic

    server = factory.start("-k", "trio", *extra, app=APP, **kwargs)
    if kwargs.get("tls", True):
        wait_quic(server)
    return server


@pytest.fixture(scope="module")
def trio_server(session_factory: Any) -> Iterator[Any]:
    """TLS (h2, http/1.1) + cleartext (http/1.1, h2c) + QUIC on the TLS port, on trio."""
    server = start(session_factory)
    yield server
    server.stop()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_clean(server: Any) -> None:
    err = server.stderr()
    assert "Traceback" not in err, server.describe()
    assert "[ERROR]" not in err, server.describe()


# --------------------------------------------------------------------------- HTTP/1.1 and HTTP/2


def test_http11_cleartext_and_tls(trio_server: Any, curl: Any) -> None:
    for base in (trio_server.http, f"https://localhost:{trio_server.port}"):
        r = curl("--http1.1", "-w", "\n%{http_version}", f"{base}/")
        assert r.text == HELLO.decode() + "\n1.1", r.text
        r = curl("--http1.1", f"{base}/backend")
        assert r.text == "trio"
        r = curl("--http1.1", f"{base}/scope?q=1")
        info = json.loads(r.stdout)
        assert (info["http_version"], info["path"]) == ("1.1", "/scope")
        assert info["query_string"] == "q=1"
    r = curl("--http1.1", "-i", f"https://localhost:{trio_server.port}/")
    assert f'alt-svc: h3=":{trio_server.port}"' in r.text  # the QUIC listener is advertised


def test_http11_tls_close_sends_close_notify(trio_server: Any, h1: Any) -> None:
    conn = h1(trio_server.port, tls=True)
    conn.request("GET", "/", headers=[("Connection", "close")])
    resp = conn.read_response()
    assert (resp.status, resp.body) == (200, HELLO)
    # A strict TLS client (Python's ssl) sees a clean EOF, not a truncation error.
    assert conn.closed_by_peer(5.0)


def test_http2_tls_alpn(trio_server: Any, curl: Any, cafile: str) -> None:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", trio_server.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "h2"
    r = curl("--http2", "-v", "-w", "\n%{http_version}", f"https://localhost:{trio_server.port}/")
    assert r.text == HELLO.decode() + "\n2", r.text
    assert "ALPN: server accepted h2" in r.stderr or "ALPN, server accepted to use h2" in r.stderr
    r = curl("--http2", f"https://localhost:{trio_server.port}/backend")
    assert r.text == "trio"


def test_h2c_prior_knowledge(trio_server: Any, curl: Any) -> None:
    r = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", f"{trio_server.http}/")
    assert r.text == HELLO.decode() + "\n2", r.text
    r = curl("--http2-prior-knowledge", f"{trio_server.http}/scope")
    assert json.loads(r.stdout)["http_version"] == "2"


def test_h2_multiplexed_streams(trio_server: Any, h2conn: Any) -> None:
    conn = h2conn(trio_server.port)
    ids = [conn.request("GET", f"/scope?i={i}") for i in range(20)]
    for i, stream_id in enumerate(ids):
        resp = conn.response(stream_id)
        assert resp.status == 200
        assert json.loads(resp.body)["query_string"] == f"i={i}"


@pytest.mark.parametrize(
    "mode", ["h1", "h1-tls", "h2-tls", "h2c"], ids=["h1", "h1-tls", "h2-tls", "h2c"]
)
def test_10mib_echo_checksum(trio_server: Any, curl: Any, tmp_path: Path, mode: str) -> None:
    data = os.urandom(10 * MIB)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(data)
    tls = f"https://localhost:{trio_server.port}/echo"
    url, flag = {
        "h1": (f"{trio_server.http}/echo", "--http1.1"),
        "h1-tls": (tls, "--http1.1"),
        "h2-tls": (tls, "--http2"),
        "h2c": (f"{trio_server.http}/echo", "--http2-prior-knowledge"),
    }[mode]
    r = curl(
        flag, "--data-binary", f"@{upload}", "-H", "content-type: application/octet-stream", url
    )
    assert len(r.stdout) == len(data)
    assert sha256(r.stdout) == sha256(data)
    r = curl(flag, "--data-binary", f"@{upload}", url.replace("/echo", "/body"))
    assert json.loads(r.stdout) == {"length": len(data), "sha256": sha256(data)}


def test_h1_disconnect_delivered(trio_server: Any, h1: Any, tmp_path: Path) -> None:
    record = tmp_path / "h1.txt"
    conn = h1(trio_server.insecure_port)
    conn.request("GET", f"/disconnect?file={record}")
    assert "started" in wait_for_lines(record, "started")
    conn.close()
    assert "disconnect" in wait_for_lines(record, "disconnect"), record.read_text()


def test_h2_disconnect_delivered(trio_server: Any, h2conn: Any, tmp_path: Path) -> None:
    record = tmp_path / "h2.txt"
    conn = h2conn(trio_server.port)
    stream_id = conn.request("GET", f"/disconnect?file={record}")
    assert "started" in wait_for_lines(record, "started")
    conn.conn.reset_stream(stream_id)
    conn.flush()
    assert "disconnect" in wait_for_lines(record, "disconnect"), record.read_text()
    assert conn.get("/").status == 200  # the connection lives on


# --------------------------------------------------------------------------- WebSockets


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_websocket_echo_h1(trio_server: Any, cafile: str, tls: bool, tmp_path: Path) -> None:
    from websockets.asyncio.client import connect

    record = tmp_path / "ws.txt"
    if tls:
        ctx: ssl.SSLContext | None = ssl.create_default_context(cafile=cafile)
        assert ctx is not None
        ctx.set_alpn_protocols(["http/1.1"])
        url = f"wss://localhost:{trio_server.port}/scope?file={record}"
    else:
        ctx = None
        url = f"ws://127.0.0.1:{trio_server.insecure_port}/scope?file={record}"

    async def main() -> None:
        async with connect(url, ssl=ctx, max_size=None) as ws:
            info = json.loads(await ws.recv())
            seen = {k: info[k] for k in ("type", "http_version", "scheme", "path")}
            assert seen == {
                "type": "websocket",
                "http_version": "1.1",
                "scheme": "wss" if tls else "ws",
                "path": "/scope",
            }
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            blob = os.urandom(MIB)
            await ws.send(blob)
            assert await ws.recv() == blob

    asyncio.run(asyncio.wait_for(main(), 30))
    assert "disconnect 1000" in wait_for_lines(record, "disconnect 1000")


def test_websocket_echo_h2(trio_server: Any, cafile: str) -> None:
    from tests.support.ws import H2WS

    conn = H2WS(trio_server.port, cafile)
    try:
        stream = conn.connect("/scope")
        assert stream.status == 200, stream
        conn.until(lambda: bool(stream.messages()))
        assert json.loads(stream.messages()[0])["http_version"] == "2"
        assert conn.echo(stream, "over h2") == "over h2"
        assert conn.echo(stream, b"\x00" * 100_000) == b"\x00" * 100_000
    finally:
        conn.close()


def test_websocket_echo_h3(trio_server: Any, cafile: str) -> None:
    from tests.support.ws import h3_connect

    async def main() -> None:
        async with h3_connect(trio_server.port, cafile) as client:
            stream = client.connect_ws(f"localhost:{trio_server.port}", "/scope")
            await client.wait(stream, lambda: stream.status is not None or stream.ended)
            assert stream.status == 200, (stream.headers, stream.body)
            await client.wait(stream, lambda: bool(stream.messages()))
            assert json.loads(stream.messages()[0])["http_version"] == "3"
            assert await client.echo(stream, "over h3") == "over h3"
            assert await client.echo(stream, b"\x07" * 200_000) == b"\x07" * 200_000

    asyncio.run(asyncio.wait_for(main(), 30))


# --------------------------------------------------------------------------- HTTP/3


def test_http3_curl_cffi(trio_server: Any, cafile: str) -> None:
    from curl_cffi import CurlHttpVersion, requests

    base = f"https://localhost:{trio_server.port}"
    r = requests.get(f"{base}/", http_version=CurlHttpVersion.V3ONLY, verify=cafile, timeout=30)
    assert (r.status_code, r.content) == (200, HELLO)
    assert r.http_version == CurlHttpVersion.V3
    r = requests.get(
        f"{base}/backend", http_version=CurlHttpVersion.V3ONLY, verify=cafile, timeout=30
    )
    assert r.content == b"trio"
    data = os.urandom(10 * MIB)
    r = requests.post(
        f"{base}/echo", data=data, http_version=CurlHttpVersion.V3ONLY, verify=cafile, timeout=60
    )
    assert r.status_code == 200 and sha256(r.content) == sha256(data)
    assert_clean(trio_server)


# --------------------------------------------------------------------------- lifetime


def test_lifespan_state(trio_server: Any, curl: Any) -> None:
    r = curl("--http1.1", f"{trio_server.http}/lifespan-state")
    assert json.loads(r.stdout) == {"started": "yes", "has_state": True}


def test_keep_alive_timeout_closes_idle(server_factory: Any, h1: Any) -> None:
    srv = start(server_factory, "--keep-alive", "1", tls=False)
    conn = h1(srv.insecure_port)
    conn.request("GET", "/")
    assert conn.read_response().status == 200
    started = time.monotonic()
    assert conn.closed_by_peer(5.0)
    assert time.monotonic() - started < 4.0


def test_graceful_shutdown_finishes_request(server_factory: Any, curl: Any, tmp_path: Path) -> None:
    srv = start(server_factory, "--graceful-timeout", "10")
    record = tmp_path / "slow.txt"
    results: dict[str, Any] = {}

    def fetch() -> None:
        results["r"] = curl("--http1.1", f"{srv.http}/slow?s=2&file={record}", check=False)

    thread = threading.Thread(target=fetch)
    thread.start()
    assert "started" in wait_for_lines(record, "started")
    srv.proc.send_signal(signal.SIGTERM)
    thread.join(20)
    r = results["r"]
    assert r.returncode == 0, r.stderr
    assert r.text == "slow done"
    assert srv.proc.wait(10) == 0, srv.describe()
    assert "Shutting down" in srv.stderr()
    assert_clean(srv)


def test_graceful_shutdown_h2_and_websocket(server_factory: Any, curl: Any, tmp_path: Path) -> None:
    """SIGTERM: an h2 request in flight still completes (after GOAWAY) and a WebSocket
    gets close code 1001."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    srv = start(server_factory, "--graceful-timeout", "10")
    record = tmp_path / "slow.txt"
    ws_record = tmp_path / "ws.txt"
    results: dict[str, Any] = {}

    def fetch() -> None:
        url = f"https://localhost:{srv.port}/slow?s=1&file={record}"
        results["r"] = curl("--http2", "-w", "\n%{http_version}", url, check=False)

    async def main() -> int:
        url = f"ws://127.0.0.1:{srv.insecure_port}/echo?file={ws_record}"
        async with connect(url, ping_interval=None) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            thread = threading.Thread(target=fetch)
            thread.start()
            assert "started" in wait_for_lines(record, "started")
            srv.proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 8)
            thread.join(15)
            assert info.value.rcvd is not None
            return info.value.rcvd.code

    assert asyncio.run(main()) == 1001
    r = results["r"]
    assert (r.returncode, r.text) == (0, "slow done\n2"), r.stderr
    lines = wait_for_lines(ws_record, "disconnect 1001", prefix=True)
    assert any(line.startswith("disconnect 1001") for line in lines), lines
    assert srv.proc.wait(10) == 0, srv.describe()
    assert_clean(srv)


def test_startup_failure_exit_code(server_factory: Any) -> None:
    srv = server_factory.spawn(
        [
            "tests.apps.e2e:failing_lifespan_app",
            "--workers",
            "0",
            "-k",
            "trio",
            "--insecure-bind",
            "127.0.0.1:0",
            "--bind",
            "127.0.0.1:0",
            "--lifespan",
            "on",
        ]
    )
    assert srv.proc.wait(15) == 3, srv.describe()
    assert e2e_apps.STARTUP_FAILURE in srv.stderr()


def test_workers_two_trio_with_quic(server_factory: Any, curl: Any, cafile: str) -> None:
    """The supervisor's trio workers: TCP shared, QUIC steered by connection-ID tag."""
    from curl_cffi import CurlHttpVersion, requests

    srv = start(server_factory, "--workers", "2")
    for _ in range(6):
        assert curl("--http1.1", f"{srv.http}/backend").text == "trio"
        r = requests.get(
            f"https://localhost:{srv.port}/backend",
            http_version=CurlHttpVersion.V3ONLY,
            verify=cafile,
            timeout=30,
        )
        assert (r.status_code, r.content, r.http_version) == (200, b"trio", CurlHttpVersion.V3)


def test_slow_reader_backpressure(trio_server: Any, h1: Any) -> None:
    """A client that stops reading a 128 MiB response: the server buffers little, then
    finishes the response once the client reads again."""
    before = trio_server.rss_kib()
    conn = h1(trio_server.insecure_port, timeout=20)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    conn.request("GET", "/stream?n=2048&size=65536")
    time.sleep(1.5)
    assert trio_server.rss_kib() - before < 48 * 1024
    resp = conn.read_response()
    assert resp.status == 200 and len(resp.body) == 2048 * 65536
    assert resp.body[:1000] == e2e_apps.pattern(1000)


# --------------------------------------------------------------------------- the Python API


def test_serve_api_with_shutdown_trigger(certs: tuple[str, str, str]) -> None:
    from edgecorn.config import Config
    from edgecorn.sockets import create_sockets
    from edgecorn.trio import serve

    certfile, keyfile, cafile = certs
    config = Config(
        bind=["127.0.0.1:0"],
        insecure_bind=["127.0.0.1:0"],
        certfile=certfile,
        keyfile=keyfile,
        quic_on_tls_binds=False,
        graceful_timeout=5,
    )
    sockets = create_sockets(config)
    tls_port = sockets.secure[0].getsockname()[1]
    port = sockets.insecure[0].getsockname()[1]
    seen: dict[str, Any] = {}

    def get(url: str, context: ssl.SSLContext | None = None) -> bytes:
        import urllib.request

        with urllib.request.urlopen(url, timeout=10, context=context) as resp:
            body: bytes = resp.read()
            return body

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve(
                    app,
                    config,
                    sockets=sockets,
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )
            )
            seen["plain"] = await trio.to_thread.run_sync(get, f"http://127.0.0.1:{port}/backend")
            ctx = ssl.create_default_context(cafile=cafile)
            seen["tls"] = await trio.to_thread.run_sync(
                get, f"https://localhost:{tls_port}/lifespan-state", ctx
            )
            started = trio.current_time()
            stop.set()
        seen["stop_time"] = trio.current_time() - started

    try:
        trio.run(main)
    finally:
        sockets.close()
    assert seen["plain"] == b"trio"
    assert json.loads(seen["tls"]) == {"started": "yes", "has_state": True}
    assert seen["stop_time"] < 3.0
    with pytest.raises(OSError):  # the listeners are closed
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# --------------------------------------------------------------------------- the runtime


def test_runtime_defer_timers_and_cancel() -> None:
    from edgecorn.trio.runtime import Runtime

    ran: list[str] = []

    async def main() -> None:
        runtime = Runtime()
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            at = trio.current_time() + 0.05
            handles: list[Any] = []
            # Due in the same batch: the first cancels the second, which must not run.
            runtime.call_at(at, lambda: handles[0].cancel())
            handles.append(runtime.call_at(at, lambda: ran.append("cancelled timer")))
            runtime.call_later(0.02, lambda: ran.append("timer"))
            runtime.defer(lambda: ran.append("deferred 1"))
            runtime.defer(lambda: 1 / 0)  # logged; the scheduler carries on
            runtime.defer(lambda: ran.append("deferred 2"))
            for _ in range(300):  # cancelled timers are compacted, not kept forever
                runtime.call_later(60, lambda: None).cancel()
            assert len(runtime.timers) < 300
            await trio.sleep(0.2)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert ran == ["deferred 1", "deferred 2", "timer"]
