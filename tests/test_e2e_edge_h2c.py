"""Issue 9, `upstream_protocol: h2c`: proxy routes to an HTTP/2 (prior knowledge) upstream that
is not edgecorn (Hypercorn on a cleartext bind), through the edge over h1/h2/h3 clients (curl,
curl_cffi). The upstream app reports the HTTP version and the client port it saw, so a test
can tell that requests travelled over HTTP/2 and counts the upstream connections they used.
On asyncio and trio (the edge's upstream side differs per loop).
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from tests.apps.e2e import MIB
from tests.support.edge import fetch, print_logs_on_failure, start_edge
from tests.support.net import free_port
from tests.support.procs import Proc, spawn, wait_tcp

pytestmark = pytest.mark.timeout(60)

UPSTREAM_APP = """
import asyncio, hashlib, json, os

CHUNK = bytes(range(256)) * 256  # 64 KiB
PORTS = {}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":  # an echo that says which HTTP version it came over
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = f"{scope['http_version']} {message.get('text')}"
            await send({"type": "websocket.send", "text": text})
    path = scope["path"].rsplit("/", 1)[-1]
    query = scope["query_string"].decode()
    digest, size = hashlib.sha256(), 0
    more = True
    while more:
        message = await receive()
        body = message.get("body", b"")
        digest.update(body)
        size += len(body)
        more = message.get("more_body", False)
    if path == "bytes":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        left = int(query)
        while left > 0:
            piece = CHUNK[:left]
            left -= len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": left > 0})
        return
    if path == "die":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(8):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await asyncio.sleep(0.3)
        os._exit(1)
    if path == "slow":
        await asyncio.sleep(3)
    if path == "tag":
        PORTS.setdefault(query, set()).add(scope["client"][1])
        await asyncio.sleep(0.5)  # all of a burst are in flight at once
    answer = {
        "version": scope["http_version"],
        "method": scope["method"],
        "path": scope["path"],
        "size": size,
        "sha256": digest.hexdigest(),
        "ports": sorted(PORTS.get(query, ())),
    }
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(answer).encode()})
"""

EDGE_YAML = """\
bind: ["127.0.0.1:{port}"]
certfile: {certfile}
keyfile: {keyfile}
routes:
  - path: /slow/
    proxy: http://127.0.0.1:{up}
    upstream_protocol: h2c
    read_timeout: 1
  - path: /down/
    proxy: http://127.0.0.1:{dead}
    upstream_protocol: h2c
    connect_timeout: 1
  - path: /goaway/
    proxy: http://127.0.0.1:{h2up}
    upstream_protocol: h2c
  - path: /flow/
    proxy: http://127.0.0.1:{h2up}
    upstream_protocol: h2c
  - path: /tls/
    proxy: https://localhost:{tls}
    upstream_protocol: h2
  - path: /mortal/
    proxy: http://127.0.0.1:{mortal}
    upstream_protocol: h2c
  - proxy: http://127.0.0.1:{up}
    upstream_protocol: h2c
"""


def pattern_sha(size: int) -> str:
    chunk = bytes(range(256)) * 256
    digest = hashlib.sha256()
    left = size
    while left > 0:
        piece = chunk[:left]
        digest.update(piece)
        left -= len(piece)
    return digest.hexdigest()


class H2Upstream:
    """An HTTP/2 upstream (the h2 library in a thread, not edgecorn). A `/goaway/` request on
    a connection answers GOAWAY(last_stream_id=0) the first time: the stream was never
    processed. `/flow/stream` sends STREAM_SIZE bytes within the edge's flow-control windows
    and counts them in `streamed`, which is what the edge let the upstream send. Anything else
    is answered with the connection's number."""

    STREAM_SIZE = 128 * MIB

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self.goaways = 0
        self.streamed = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            args = (conn, self.connections)
            threading.Thread(target=self._handle, args=args, daemon=True).start()

    def _handle(self, sock: socket.socket, number: int) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        conn = h2.connection.H2Connection(config)
        conn.initiate_connection()
        chunk = bytes(range(256)) * 64
        pending: dict[int, int] = {}  # stream id -> bytes left to stream
        with sock:
            sock.settimeout(10)
            while not self.stopped.is_set():
                for stream_id, left in list(pending.items()):
                    while left > 0:
                        window = conn.local_flow_control_window(stream_id)
                        size = min(window, conn.max_outbound_frame_size, left)
                        if size <= 0:
                            break
                        conn.send_data(stream_id, chunk[:size])
                        left -= size
                        self.streamed += size
                    pending[stream_id] = left
                    if not left:
                        conn.end_stream(stream_id)
                        del pending[stream_id]
                try:
                    sock.sendall(conn.data_to_send())
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.StreamReset):
                        pending.pop(event.stream_id, None)
                    if not isinstance(event, h2.events.RequestReceived):
                        continue
                    path = dict(event.headers)[b":path"]
                    if path.startswith(b"/goaway/") and not self.goaways:
                        self.goaways += 1
                        conn.close_connection(last_stream_id=0)
                        sock.sendall(conn.data_to_send())
                        return
                    if path == b"/flow/trailers":
                        conn.send_headers(event.stream_id, [(b":status", b"200")])
                        conn.send_data(event.stream_id, b"body before trailers\n")
                        trailers = [(b"x-checksum", b"c0ffee")]
                        conn.send_headers(event.stream_id, trailers, end_stream=True)
                        continue
                    if path == b"/flow/stream":
                        conn.send_headers(event.stream_id, [(b":status", b"200")])
                        pending[event.stream_id] = self.STREAM_SIZE
                        continue
                    body = f"connection {number}\n".encode()
                    headers = [(b":status", b"200"), (b"content-length", b"%d" % len(body))]
                    conn.send_headers(event.stream_id, headers)
                    conn.send_data(event.stream_id, body, end_stream=True)


def start_hypercorn(
    directory: Path, logs: Path, name: str, port: int = 0, tls: tuple[str, ...] = ()
) -> Proc:
    port = port or free_port()
    cmd = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "h2c_app:app"]
    if tls:
        cmd += ["--certfile", tls[0], "--keyfile", tls[1]]
    proc = spawn(name, cmd, logs, cwd=directory)
    proc.port = port
    wait_tcp(proc, port)
    return proc


@dataclass
class Lab:
    edge: Proc
    upstream: Proc
    h2up: H2Upstream
    mortal_port: int  # an upstream each kill test starts there (its app exits mid-response)
    root: Path
    worker: str
    base: str
    cafile: str
    tmp: Path


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def lab(
    request: pytest.FixtureRequest,
    certs: tuple[str, str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp(f"h2c-{request.param}")
    (root / "h2c_app.py").write_text(UPSTREAM_APP)
    logs = root / "logs"
    started: list[Proc] = []
    h2up = H2Upstream()
    try:
        upstream = start_hypercorn(root, logs, "hypercorn")
        started.append(upstream)
        tls = start_hypercorn(root, logs, "hypercorn-tls", tls=certs)
        started.append(tls)
        mortal = free_port()
        port = free_port()
        config = root / "edge.yaml"
        config.write_text(
            EDGE_YAML.format(
                port=port,
                certfile=certs[0],
                keyfile=certs[1],
                up=upstream.port,
                dead=free_port(),
                mortal=mortal,
                h2up=h2up.port,
                tls=tls.port,
            )
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SSL_CERT_FILE", certs[2])  # the edge trusts the TLS upstream's CA
            edge = start_edge(config, port, logs, "-k", request.param, cwd=root)
        started.append(edge)
    except RuntimeError:
        for proc in reversed(started):
            proc.stop()
        h2up.stop()
        raise
    yield Lab(
        edge,
        upstream,
        h2up,
        mortal,
        root,
        request.param,
        f"https://localhost:{port}",
        certs[2],
        root / "tmp",
    )
    for proc in reversed(started):
        proc.stop()
    h2up.stop()


def one_client_on_trio(lab: Lab, proto: str) -> None:
    """The edge's upstream side is the same whatever carried the request: trio runs h2 only."""
    if lab.worker == "trio" and proto != "h2":
        pytest.skip("the client protocols are covered on asyncio")


@pytest.fixture(autouse=True)
def _logs(request: pytest.FixtureRequest) -> None:
    if "lab" in request.fixturenames:
        lab: Lab = request.getfixturevalue("lab")
        print_logs_on_failure(request, lab.edge, lab.upstream)


@pytest.mark.parametrize("proto", ["h1", "h2", "h3"])
def test_get_and_post_reach_the_upstream_over_http2(lab: Lab, proto: str) -> None:
    one_client_on_trio(lab, proto)
    reply = fetch(proto, f"{lab.base}/api/hello?x=1", lab.cafile, lab.tmp)
    assert reply.status == 200, reply
    seen = reply.json()
    assert seen["version"] == "2" and seen["method"] == "GET", seen
    assert seen["path"] == "/api/hello"
    body = b"posted through the edge\n" * 100
    reply = fetch(proto, f"{lab.base}/api/echo", lab.cafile, lab.tmp, method="POST", data=body)
    assert reply.status == 200, reply
    seen = reply.json()
    assert seen["version"] == "2" and seen["method"] == "POST", seen
    assert (seen["size"], seen["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())


@pytest.mark.parametrize("proto", ["h1", "h2", "h3"])
def test_ten_mib_up_and_down(lab: Lab, proto: str) -> None:
    one_client_on_trio(lab, proto)
    size = 10 * MIB
    reply = fetch(proto, f"{lab.base}/big/bytes?{size}", lab.cafile, lab.tmp)
    assert reply.status == 200 and not reply.error, reply
    assert len(reply.body) == size
    assert hashlib.sha256(reply.body).hexdigest() == pattern_sha(size)
    upload = lab.tmp / f"upload-{proto}"
    upload.parent.mkdir(parents=True, exist_ok=True)
    data = (bytes(range(251)) * (size // 251 + 1))[:size]
    upload.write_bytes(data)
    reply = fetch(
        proto, f"{lab.base}/up/echo", lab.cafile, lab.tmp, method="POST", data_file=upload
    )
    assert reply.status == 200, reply
    seen = reply.json()
    assert (seen["size"], seen["sha256"]) == (size, hashlib.sha256(data).hexdigest())


def test_fifty_concurrent_requests_share_one_upstream_connection(lab: Lab) -> None:
    tag = f"burst-{lab.edge.pid}"
    urls = [f"{lab.base}/tag/tag?{tag}" for _ in range(50)]
    out = lab.tmp / "burst"
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["curl", "-sS", "--cacert", lab.cafile, "--http2", "--max-time", "20"]
    cmd += ["--parallel", "--parallel-immediate", "--parallel-max", "50", "-w", "%{http_code}\n"]
    for index, url in enumerate(urls):
        cmd += ["-o", str(out / f"{index}"), url]
    done = subprocess.run(cmd, capture_output=True, timeout=40)
    codes = done.stdout.decode().split()
    assert codes == ["200"] * 50, done.stderr.decode()
    reply = fetch("h2", f"{lab.base}/tag/ports?{tag}", lab.cafile, lab.tmp)
    ports = reply.json()["ports"]
    assert len(ports) == 1, ports  # one client port at the upstream: one connection


def test_dead_upstream_answers_502(lab: Lab) -> None:
    reply = fetch("h2", f"{lab.base}/down/x", lab.cafile, lab.tmp)
    assert reply.status == 502, reply
    assert "upstream http://127.0.0.1:" in lab.edge.stderr()


def test_slow_upstream_answers_504(lab: Lab) -> None:
    reply = fetch("h1", f"{lab.base}/slow/slow", lab.cafile, lab.tmp)
    assert reply.status == 504, reply
    # The connection the timed-out stream was on still carries the next request.
    reply = fetch("h1", f"{lab.base}/after/hello", lab.cafile, lab.tmp)
    assert reply.status == 200 and reply.json()["version"] == "2", reply


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_upstream_killed_mid_response_fails_the_transfer(lab: Lab, proto: str) -> None:
    one_client_on_trio(lab, proto)
    mortal = start_hypercorn(lab.root, lab.root / "logs", f"mortal-{proto}", lab.mortal_port)
    try:
        reply = fetch(proto, f"{lab.base}/mortal/die", lab.cafile, lab.tmp)
    finally:
        mortal.stop()
    assert reply.error, reply  # a reset or a truncation, never a clean short 200
    assert len(reply.body) < 8 * 64 * 1024 + 1


def test_goaway_before_the_stream_retries_an_idempotent_request(lab: Lab) -> None:
    before = lab.h2up.connections
    reply = fetch("h2", f"{lab.base}/goaway/x", lab.cafile, lab.tmp)
    assert reply.status == 200, reply
    assert lab.h2up.goaways == 1  # the first try met the GOAWAY ...
    assert lab.h2up.connections >= before + 1  # ... the retry went on a new connection
    assert reply.body == f"connection {lab.h2up.connections}\n".encode()


def test_slow_client_holds_back_the_upstream_stream(lab: Lab) -> None:
    """A client that stops reading stops the upstream's stream (the edge gives back no window)
    while other requests on the same upstream connection carry on."""
    context = ssl.create_default_context(cafile=lab.cafile)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    raw.connect(("127.0.0.1", int(lab.base.rsplit(":", 1)[1])))
    with context.wrap_socket(raw, server_hostname="localhost") as client:
        client.settimeout(10)
        client.sendall(b"GET /flow/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        got = 0
        while got < MIB:
            got += len(client.recv(65536))
        streamed = [-1]
        for _ in range(40):  # until the upstream stops making progress (at most ~20 s)
            time.sleep(0.5)
            reply = fetch("h1", f"{lab.base}/flow/other", lab.cafile, lab.tmp)
            assert reply.status == 200, reply  # the shared connection still serves others
            streamed.append(lab.h2up.streamed)
            if streamed[-1] == streamed[-2]:
                break
        assert streamed[-1] == streamed[-2], streamed
        # Between the upstream and this client: socket buffers and one 256 KiB stream window,
        # far from the whole body.
        assert streamed[-1] < 16 * MIB, streamed
        while got < 4 * MIB:  # and reading again lets it go on
            got += len(client.recv(65536))


def test_websocket_through_an_h2c_route_uses_an_http1_upgrade(lab: Lab) -> None:
    from websockets.sync.client import connect

    context = ssl.create_default_context(cafile=lab.cafile)
    url = lab.base.replace("https://", "wss://") + "/ws/echo"
    with connect(url, ssl=context, open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "1.1 hello"


def test_https_upstream_with_h2_over_alpn(lab: Lab) -> None:
    reply = fetch("h1", f"{lab.base}/tls/hello", lab.cafile, lab.tmp)
    assert reply.status == 200, reply
    assert reply.json()["version"] == "2"


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"proxy": "http://a:1", "upstream_protocol": "h3"}, "expected one of http/1.1, h2c, h2"),
        ({"proxy": "https://a:1", "upstream_protocol": "h2c"}, "h2c needs http:// upstreams"),
        ({"proxy": ["http://a:1", "http://b:1"], "upstream_protocol": "h2"}, "h2 needs https://"),
    ],
)
def test_upstream_protocol_is_checked(route: dict[str, object], message: str) -> None:
    from edgecorn.edge.spec import ItemError, check_routes

    with pytest.raises(ItemError) as caught:
        check_routes([route], ".")
    assert message in caught.value.message
    assert caught.value.field == "upstream_protocol"
    ok = check_routes([{"proxy": "http://a:1", "upstream_protocol": "h2c"}], ".")
    assert ok[0].upstream_protocol == "h2c"


@pytest.mark.parametrize("proto", ["h1", "h2"])
def test_response_trailers_are_relayed(lab: Lab, proto: str) -> None:
    cmd = ["curl", "-sS", "--cacert", lab.cafile, "--max-time", "20", "-D", "-"]
    cmd += ["--http1.1" if proto == "h1" else "--http2", "-H", "TE: trailers"]
    done = subprocess.run([*cmd, f"{lab.base}/flow/trailers"], capture_output=True, timeout=30)
    out = done.stdout.decode("latin-1").replace("\r\n", "\n")
    assert done.returncode == 0, done.stderr
    head, _, rest = out.partition("\n\n")
    assert head.split("\n")[0].split()[1] == "200", out
    assert "x-checksum" not in head.lower()  # not a header: a trailer, after the body
    assert rest.startswith("body before trailers\n"), out
    assert "x-checksum: c0ffee" in rest.lower(), out
