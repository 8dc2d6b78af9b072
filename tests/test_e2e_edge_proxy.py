"""Issue 9 end to end: the reverse proxy and the route options the example file does not use,
in front of upstreams that are not edgecorn (Uvicorn, `python -m http.server`, a `websockets`
server). Dead, slow and killed upstreams; forwarded headers from untrusted and trusted peers
(the client binds 127.0.0.2, which `trusted_proxies` names); hop-by-hop headers both ways;
body limits; WebSockets over h1/h2/h3 bridged to HTTP/1.1; RSS while a client reads a
256 MiB proxied download slowly; routes with no match.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from wsproto.events import CloseConnection, TextMessage

from tests.apps.e2e import MIB
from tests.support.edge import (
    PROTOCOLS,
    SECRET,
    Reply,
    ServerFirstWS,
    StallingWS,
    fetch,
    forwarded_elements,
    make_site,
    pattern_bytes,
    print_logs_on_failure,
    start_edge,
    start_http_server,
    start_uvicorn,
    start_ws_upstream,
)
from tests.support.net import free_port
from tests.support.procs import Proc
from tests.support.ws import H2WS, OP_BINARY, OP_CLOSE, OP_TEXT, RawWS, close_payload, h3_connect

pytestmark = pytest.mark.timeout(90)

TRUSTED_PEER = "127.0.0.2"  # the client binds it; the edge trusts only it
MORTAL = [(proto, chunked) for proto in PROTOCOLS for chunked in (False, True)]
HTTP_SERVER_FILE = b"served by python -m http.server\n"
FIRST_FRAME_TEXT = b"the upstream speaks first"
STALL_TEXT = b"read it all"
STALL_SIZE = 16 * MIB

LAB_YAML = """\
bind: ["127.0.0.1:{port}"]
certfile: certs/localhost.pem
keyfile: certs/localhost.key
trusted_proxies: ["{trusted}/32"]
routes:
  - path: /ws/
    proxy: http://127.0.0.1:{ws}
  - path: /ws-first/
    proxy: http://127.0.0.1:{ws_first}
  - path: /ws-stall/
    proxy: http://127.0.0.1:{ws_stall}
  - path: /slow/
    proxy: http://127.0.0.1:{up}
    read_timeout: 1
  - path: /down/
    proxy: http://127.0.0.1:{dead}
    connect_timeout: 1
  - path: /small/
    proxy: http://127.0.0.1:{up}
    max_body_size: 1024
  - path: /pool/
    proxy: ["http://127.0.0.1:{dead2}", "http://127.0.0.1:{up}"]
  - path: /files/
    proxy: http://127.0.0.1:{files}
    strip_prefix: true
  - path: /renamed/
    proxy: http://127.0.0.1:{up}
    host_header: backend.internal
{mortal_routes}\
  - host: "*.wild.localhost"
    respond: {{status: 203, body: "wild\\n", headers: {{x-route: wild}}}}
  - path: /mounted/
    app: demo:app
    strip_prefix: true
  - path: /listing/
    static: ./public
    listing: true
    cache_control: "public, max-age=60"
  - path: /echo/
    proxy: http://127.0.0.1:{up}
"""


def mortal_path(proto: str, chunked: bool) -> str:
    return f"/mortal-{proto}-{'chunked' if chunked else 'length'}/"


@dataclass
class Lab:
    edge: Proc
    upstream: Proc
    ws: Proc
    files: Proc
    site: Path
    port: int
    cafile: str
    mortal_ports: dict[str, int]
    dead_port: int

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def get(self, proto: str, path: str, tmp: Path, **kwargs: Any) -> Reply:
        return fetch(proto, self.url(path), self.cafile, tmp, **kwargs)


@pytest.fixture(scope="module")
def lab(certs: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("edge-lab")
    site = make_site(root / "site", certs)
    logs = root / "logs"
    files_dir = root / "files"
    files_dir.mkdir()
    (files_dir / "hello.txt").write_bytes(HTTP_SERVER_FILE)
    started: list[Proc] = []
    first = ServerFirstWS(FIRST_FRAME_TEXT)
    stall = StallingWS(STALL_TEXT, STALL_SIZE)
    try:
        upstream = start_uvicorn(logs)
        started.append(upstream)
        ws = start_ws_upstream(logs)
        started.append(ws)
        files = start_http_server(logs, files_dir)
        started.append(files)
        mortal_ports = {mortal_path(p, c): free_port() for p, c in MORTAL}
        mortal_routes = "".join(
            f"  - path: {path}\n    proxy: http://127.0.0.1:{port}\n"
            for path, port in mortal_ports.items()
        )
        port, dead = free_port(), free_port()
        (site / "edge.yaml").write_text(
            LAB_YAML.format(
                port=port,
                trusted=TRUSTED_PEER,
                ws=ws.port,
                ws_first=first.port,
                ws_stall=stall.port,
                up=upstream.port,
                dead=dead,
                dead2=free_port(),
                files=files.port,
                mortal_routes=mortal_routes,
            )
        )
        edge = start_edge(site / "edge.yaml", port, logs, cwd=site)
    except RuntimeError as exc:
        for proc in started:
            proc.stop()
        first.stop()
        stall.stop()
        pytest.fail(str(exc), pytrace=False)
    yield Lab(edge, upstream, ws, files, site, port, certs[2], mortal_ports, dead)
    edge.stop()
    for proc in started:
        proc.stop()
    first.stop()
    stall.stop()


@pytest.fixture(autouse=True)
def _logs(request: pytest.FixtureRequest, lab: Lab) -> Iterator[None]:
    yield
    print_logs_on_failure(request, lab.edge, lab.upstream, lab.ws, lab.files)


# --------------------------------------------------------------------------- failures upstream


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_dead_upstream_is_502(lab: Lab, proto: str, tmp_path: Path) -> None:
    r = lab.get(proto, "/down/x", tmp_path)
    assert r.status == 502 and not r.error, r
    assert 0 < len(r.body) < 1024, r  # a short text body
    deadline = time.monotonic() + 5
    while f"127.0.0.1:{lab.dead_port}" not in lab.edge.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"127.0.0.1:{lab.dead_port}" in lab.edge.stderr(), "no error-log line names it"


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_slow_upstream_is_504(lab: Lab, proto: str, tmp_path: Path) -> None:
    r = lab.get(proto, "/slow/slow?delay=6", tmp_path)
    assert r.status == 504 and not r.error, r
    assert 0 < len(r.body) < 1024, r


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_dead_pool_member_is_skipped_for_gets(lab: Lab, proto: str, tmp_path: Path) -> None:
    """Round robin over a dead and a live upstream: a refused connect sent nothing, so an
    idempotent request is retried on the live one."""
    for i in range(4):
        r = lab.get(proto, f"/pool/n{i}", tmp_path)
        assert r.status == 200 and r.json()["path"] == f"/pool/n{i}", (i, r)


@pytest.mark.parametrize(("proto", "chunked"), MORTAL)
def test_upstream_killed_mid_response(lab: Lab, proto: str, chunked: bool, tmp_path: Path) -> None:
    """The upstream sends 64 KiB of a longer body and is SIGKILLed: the client must see a
    failed transfer (reset, truncation), never a clean short 200."""
    path = mortal_path(proto, chunked)
    upstream = start_uvicorn(tmp_path / "logs", lab.mortal_ports[path], name="mortal")
    try:
        r = lab.get(proto, f"{path}die?n=65536{'&chunked=1' if chunked else ''}", tmp_path)
    finally:
        upstream.stop()
    assert upstream.proc.returncode == -9, upstream.describe()  # it really died mid-response
    clean = not r.error and r.status == 200
    assert not clean, f"a clean {r.status} with {len(r.body)} of {MIB} bytes: {r}"
    assert len(r.body) < MIB
    # The edge is fine afterwards.
    assert lab.get(proto, "/echo/after", tmp_path).status == 200


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_forwarded_headers_replaced_from_untrusted_peer(
    lab: Lab, proto: str, tmp_path: Path
) -> None:
    r = lab.get(
        proto,
        "/echo/fwd",
        tmp_path,
        headers=[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=6.6.6.6;proto=http"),
        ],
    )
    assert r.status == 200, r
    seen = r.upstream_headers()
    assert seen.get("x-forwarded-for") == ["127.0.0.1"], seen
    assert seen.get("x-forwarded-proto") == ["https"], seen
    assert "evil.example" not in str(seen.get("x-forwarded-host")), seen
    elements = [e for v in seen.get("forwarded", []) for e in forwarded_elements(v)]
    assert [e.get("for") for e in elements] == ["127.0.0.1"], seen


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_forwarded_headers_appended_from_trusted_peer(lab: Lab, proto: str, tmp_path: Path) -> None:
    r = lab.get(
        proto,
        "/echo/fwd",
        tmp_path,
        interface=TRUSTED_PEER,
        headers=[("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=6.6.6.6;proto=http")],
    )
    assert r.status == 200, r
    seen = r.upstream_headers()
    xff = ",".join(seen.get("x-forwarded-for", []))
    assert [part.strip() for part in xff.split(",")] == ["6.6.6.6", TRUSTED_PEER], seen
    elements = [e for v in seen.get("forwarded", []) for e in forwarded_elements(v)]
    assert [e.get("for") for e in elements] == ["6.6.6.6", TRUSTED_PEER], seen


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_hop_by_hop_headers_removed_both_ways(lab: Lab, proto: str, tmp_path: Path) -> None:
    extra = [("X-End-To-End", "kept")]
    if proto == "h1":  # h2/h3 forbid connection-specific fields outright
        extra += [
            ("Connection", "keep-alive, X-Client-Hop"),
            ("X-Client-Hop", "secret"),
            ("Keep-Alive", "timeout=5"),
        ]
    r = lab.get(proto, "/echo/hop", tmp_path, headers=extra)
    assert r.status == 200, r
    seen = r.upstream_headers()
    assert seen.get("x-end-to-end") == ["kept"], seen
    assert "x-client-hop" not in seen and "keep-alive" not in seen, seen
    assert "x-client-hop" not in ",".join(seen.get("connection", [])).lower(), seen
    # The upstream's response named x-up-hop in Connection and sent Keep-Alive.
    assert r.header("x-kept") == "yes", r
    assert not {"x-up-hop", "keep-alive"} & r.names(), r
    assert "x-up-hop" not in (r.header("connection") or "").lower(), r


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_host_header_override(lab: Lab, proto: str, tmp_path: Path) -> None:
    r = lab.get(proto, "/renamed/x", tmp_path, headers=[("Host", "localhost")])
    assert r.status == 200, r
    seen = r.upstream_headers()
    assert seen.get("host") == ["backend.internal"], seen
    assert seen.get("x-forwarded-host") == ["localhost"], seen


# --------------------------------------------------------------------------- routes and limits


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_body_limit_is_413(lab: Lab, proto: str, tmp_path: Path) -> None:
    fits = lab.get(proto, "/small/x", tmp_path, method="POST", data=b"a" * 1000)
    assert fits.status == 200 and fits.json()["body_length"] == 1000, fits
    big = lab.get(proto, "/small/x", tmp_path, method="POST", data=b"a" * 4096)
    assert big.status == 413, big


def test_body_limit_counts_chunked_uploads(lab: Lab, tmp_path: Path) -> None:
    r = lab.get(
        "h1",
        "/small/x",
        tmp_path,
        method="POST",
        data=b"a" * 4096,
        headers=[("Transfer-Encoding", "chunked")],
    )
    assert r.status == 413, r


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_http_server_upstream(lab: Lab, proto: str, tmp_path: Path) -> None:
    for _ in range(3):  # http.server closes after each answer: the pool must cope
        r = lab.get(proto, "/files/hello.txt", tmp_path)
        assert (r.status, r.body) == (200, HTTP_SERVER_FILE), r
    assert lab.get(proto, "/files/missing.txt", tmp_path).status == 404


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_app_with_strip_prefix_gets_root_path(lab: Lab, proto: str, tmp_path: Path) -> None:
    r = lab.get(proto, "/mounted/x?q=1", tmp_path)
    assert r.status == 200, r
    info = r.json()
    assert info["app"] == "demo" and info["root_path"] == "/mounted", info
    # ASGI servers differ on whether `path` includes root_path; either way the app's own
    # part of it is /x.
    path = info["path"]
    relative = path[len("/mounted") :] if path.startswith("/mounted/") else path
    assert relative == "/x", info
    assert info["state"] is True, info


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_wildcard_host_and_no_match(lab: Lab, proto: str, tmp_path: Path) -> None:
    wild = lab.get(proto, "/any", tmp_path, headers=[("Host", "a.wild.localhost")])
    assert (wild.status, wild.body) == (203, b"wild\n"), wild
    assert wild.header("x-route") == "wild", wild
    other = lab.get(proto, "/any", tmp_path, headers=[("Host", "wild.example")])
    assert other.status == 404, other
    assert lab.get(proto, "/nothing/here", tmp_path).status == 404


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_static_listing_and_cache_control(lab: Lab, proto: str, tmp_path: Path) -> None:
    listing = lab.get(proto, "/listing/sub/", tmp_path)
    assert listing.status == 200 and b"a.txt" in listing.body, listing
    assert b".env" not in listing.body, listing  # hidden files are not listed
    root = lab.get(proto, "/listing/sub/a.txt", tmp_path)
    assert (root.status, root.body) == (200, b"file a\n"), root
    assert root.header("cache-control") == "public, max-age=60", root


def test_static_traversal_without_catch_all(lab: Lab, h1: Any, h2conn: Any) -> None:
    """No catch-all here, so every attempt is a 404, however the edge normalizes paths."""
    targets = [
        "/listing/../secret.txt",
        "/listing/%2e%2e/secret.txt",
        "/listing/%2E%2e%2fsecret.txt",
        "/listing/sub/..%2f..%2fsecret.txt",
        "/listing/escape.txt",
        "/listing/escape_dir/secret.txt",
        "/listing/escape_dir/",
        "/listing/.hidden",
        "/listing/.git/config",
        "/listing/.git/",
        "/listing/%2egit/config",
    ]
    conn2 = h2conn(lab.port)
    for target in targets:
        conn = h1(lab.port, tls=True)
        conn.request("GET", target)
        resp = conn.read_response()
        assert resp.status == 404 and SECRET not in resp.body, (target, resp.status, resp.body)
        r2 = conn2.get(target)
        assert r2.status == 404 and SECRET not in r2.body, (target, r2.status, r2.body)


# --------------------------------------------------------------------------- WebSockets


def _hello(message: str | bytes) -> dict[str, Any]:
    info = json.loads(message)
    info["headers"] = {k: v for k, v in info["headers"]}
    return dict(info)


def test_websocket_h1_through_proxy(lab: Lab) -> None:
    ws = RawWS(lab.port, "/ws/chat?room=1", tls=True, cafile=lab.cafile)
    try:
        assert ws.status == 101, ws.head
        hello = _hello(ws.echo("hello?") or "")
        assert hello["path"] == "/ws/chat?room=1", hello
        assert hello["headers"].get("x-forwarded-for") == "127.0.0.1", hello
        assert ws.echo("over h1") == "over h1"
        ws.send_frame(OP_TEXT, b"x" * 200_000)
        frame = ws.recv_data_frame()
        assert frame is not None and frame.payload == b"x" * 200_000
        ws.send_frame(OP_CLOSE, close_payload(1000, "bye"))
        assert ws.close_code() == 1000
    finally:
        ws.close()
    # Server-side close codes come back through the edge.
    ws = RawWS(lab.port, "/ws/chat", tls=True, cafile=lab.cafile)
    try:
        assert ws.status == 101 and ws.echo("first") == "first"
        ws.send_frame(OP_TEXT, b"close 4001")
        assert ws.close_code() == 4001
    finally:
        ws.close()


def test_websocket_h2_through_proxy(lab: Lab) -> None:
    conn = H2WS(lab.port, lab.cafile)
    try:
        stream = conn.connect("/ws/chat")
        assert stream.status == 200, stream
        hello = _hello(conn.echo(stream, "hello?"))
        assert hello["path"] == "/ws/chat", hello
        assert hello["headers"].get("x-forwarded-for") == "127.0.0.1", hello
        assert conn.echo(stream, "over h2") == "over h2"
        assert conn.echo(stream, b"\x01" * 100_000) == b"\x01" * 100_000
        closing = conn.connect("/ws/chat")
        assert closing.status == 200, closing
        conn.send_ws(closing, TextMessage(data="close 4002"))
        assert conn.wait_close(closing) == 4002
        conn.send_ws(stream, CloseConnection(code=1000))
        assert conn.wait_close(stream) == 1000
        assert conn.get("/echo/after-ws").status == 200
    finally:
        conn.close()


def test_websocket_h3_through_proxy(lab: Lab) -> None:
    async def main() -> None:
        async with h3_connect(lab.port, lab.cafile) as client:
            authority = f"localhost:{lab.port}"
            stream = client.connect_ws(authority, "/ws/chat")
            await client.wait(stream, lambda: stream.status is not None or stream.ended)
            assert stream.status == 200, (stream.headers, stream.body)
            hello = _hello(await client.echo(stream, "hello?"))
            assert hello["path"] == "/ws/chat", hello
            assert hello["headers"].get("x-forwarded-for") == "127.0.0.1", hello
            assert await client.echo(stream, "over h3") == "over h3"
            assert await client.echo(stream, b"\x02" * 150_000) == b"\x02" * 150_000
            closing = client.connect_ws(authority, "/ws/chat")
            await client.wait(closing, lambda: closing.status is not None or closing.ended)
            client.send_ws(closing, TextMessage(data="close 4003"))
            await client.wait(closing, lambda: closing.close_code() is not None or closing.ended)
            assert closing.close_code() == 4003
            client.send_ws(stream, CloseConnection(code=1000))
            await client.wait(stream, lambda: stream.close_code() is not None or stream.ended)
            assert stream.close_code() == 1000

    asyncio.run(asyncio.wait_for(main(), 30))


def test_websocket_frame_sent_with_the_101(lab: Lab) -> None:
    """The upstream writes its 101 and a first text frame in one send (servers that speak
    first do this). The client must get that frame without sending anything."""
    ws = RawWS(lab.port, "/ws-first/x", tls=True, cafile=lab.cafile, timeout=3)
    try:
        assert ws.status == 101, ws.head
        try:
            frame = ws.recv_data_frame()
        except TimeoutError:
            frame = None
        assert frame is not None and frame.payload == FIRST_FRAME_TEXT, frame
    finally:
        ws.close()


def test_websocket_pong_while_upstream_write_is_blocked(lab: Lab) -> None:
    """The upstream pings, then stops reading a 16 MiB message for a while: the edge's pong
    and its blocked write of the message share the upstream connection. Both must get
    through, and the upstream's answer after it read everything must reach the client."""
    ws = RawWS(lab.port, "/ws-stall/x", tls=True, cafile=lab.cafile, timeout=20)
    try:
        assert ws.status == 101, ws.head
        ws.send_frame(OP_BINARY, b"\x05" * STALL_SIZE)
        frame = ws.recv_data_frame()
        assert frame is not None, "closed without a frame"
        assert (frame.opcode, frame.payload) == (OP_TEXT, STALL_TEXT), (frame, frame.close_code)
    finally:
        ws.close()


# --------------------------------------------------------------------------- memory


def _tls_socket(port: int, cafile: str, rcvbuf: int | None = None) -> ssl.SSLSocket:
    raw = socket.socket()
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(20)
    raw.connect(("127.0.0.1", port))
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _read_head(sock: ssl.SSLSocket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        data = sock.recv(65536)
        if not data:
            break
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


class BodyCounter:
    """Counts the body bytes of an HTTP/1.1 response as they arrive, with Content-Length or
    chunked framing (the edge may use either), keeping the first `keep` bytes."""

    def __init__(self, head: bytes, keep: int) -> None:
        self.chunked = b"transfer-encoding: chunked" in head.lower()
        self.count, self.keep, self.kept = 0, keep, bytearray()
        self.pending = b""  # chunked: bytes not yet parsed
        self.left = 0  # chunked: body bytes left in the current chunk
        self.done = False

    def _body(self, data: bytes) -> None:
        self.count += len(data)
        if len(self.kept) < self.keep:
            self.kept += data[: self.keep - len(self.kept)]

    def feed(self, data: bytes) -> None:
        if not self.chunked:
            self._body(data)
            return
        self.pending += data
        while self.pending and not self.done:
            if self.left:
                take = self.pending[: self.left]
                self._body(take)
                self.left -= len(take)
                self.pending = self.pending[len(take) :]
                continue
            line, sep, rest = self.pending.partition(b"\r\n")
            if not sep:
                return
            if not line:  # the CRLF after a chunk
                self.pending = rest
                continue
            size = int(line.split(b";")[0], 16)
            self.pending, self.left = rest, size
            self.done = size == 0


def test_rss_bounded_while_client_reads_256mib_slowly(lab: Lab) -> None:
    """The upstream generates 256 MiB as fast as it may; the client stalls 2 s, then reads in
    small bites. Without back-pressure the edge would buffer what the client has not taken."""
    size, limit_kib = 256 * MIB, 150 * 1024
    for _ in range(3):  # warm the pool and the code paths before the baseline
        warm = _tls_socket(lab.port, lab.cafile)
        warm.sendall(
            b"GET /echo/bytes?n=1048576 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        while warm.recv(1 << 20):
            pass
        warm.close()
    baseline = peak = lab.edge.rss_kib()
    sock = _tls_socket(lab.port, lab.cafile, rcvbuf=64 * 1024)
    try:
        sock.sendall(
            f"GET /echo/bytes?n={size} HTTP/1.1\r\nHost: localhost\r\n"
            f"Connection: close\r\n\r\n".encode()
        )
        head, first = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        body = BodyCounter(head, keep=MIB)
        body.feed(first)
        stall_until = time.monotonic() + 2.0  # stalled: the upstream keeps trying to send
        while time.monotonic() < stall_until:
            peak = max(peak, lab.edge.rss_kib())
            time.sleep(0.1)
        deadline, reads = time.monotonic() + 60, 0
        while body.count < size and not body.done and time.monotonic() < deadline:
            data = sock.recv(256 * 1024)
            if not data:
                break
            body.feed(data)
            reads += 1
            if reads % 64 == 0:
                peak = max(peak, lab.edge.rss_kib())
                time.sleep(0.01)  # a slow reader, all the way
    finally:
        sock.close()
    assert body.count == size, f"got {body.count} of {size} bytes"
    assert bytes(body.kept) == next(pattern_bytes(MIB))
    grown = peak - baseline
    print(f"edge RSS: baseline {baseline // 1024} MiB, peak {peak // 1024} MiB")  # for -s
    assert grown < limit_kib, f"edge RSS grew by {grown // 1024} MiB (baseline {baseline} KiB)"


def test_rss_bounded_during_256mib_upload(lab: Lab, h1: Any) -> None:
    size, limit_kib = 256 * MIB, 150 * 1024
    baseline = peak = lab.edge.rss_kib()
    conn = h1(lab.port, tls=True, timeout=30)
    digest = hashlib.sha256()
    conn.send(
        f"POST /echo/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\n\r\n".encode()
    )
    piece = os.urandom(MIB)
    for i in range(size // MIB):
        conn.send(piece)
        digest.update(piece)
        if i % 16 == 0:
            peak = max(peak, lab.edge.rss_kib())
    resp = conn.read_response()
    assert resp.status == 200, resp
    info = resp.json()
    assert info["body_length"] == size and info["body_sha256"] == digest.hexdigest(), info
    grown = peak - baseline
    print(f"edge RSS: baseline {baseline // 1024} MiB, peak {peak // 1024} MiB")  # for -s
    assert grown < limit_kib, f"edge RSS grew by {grown // 1024} MiB (baseline {baseline} KiB)"
