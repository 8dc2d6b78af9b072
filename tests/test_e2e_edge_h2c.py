"""Issue 9, `upstream_protocol: h2c`: proxy routes to an HTTP/2 (prior knowledge) upstream that
is not edgecorn (Hypercorn on a cleartext bind), through the edge over h1/h2/h3 clients (curl,
curl_cffi). The upstream app reports the HTTP version and the client port it saw, so a test
can tell that requests travelled over HTTP/2 and counts the upstream connections they used.
On asyncio and trio (the edge's upstream side differs per loop).
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from tests.e2e_apps import MIB
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
    proxy: http://127.0.0.1:{goaway}
    upstream_protocol: h2c
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


class GoawayUpstream:
    """An HTTP/2 upstream (the h2 library in a thread, not edgecorn) whose first connection
    answers the first request with GOAWAY(last_stream_id=0): that stream was never processed.
    Later connections answer each request with the connection's number."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
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
        with sock:
            sock.settimeout(10)
            sock.sendall(conn.data_to_send())
            while not self.stopped.is_set():
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    if not isinstance(event, h2.events.RequestReceived):
                        continue
                    if number == 1:
                        conn.close_connection(last_stream_id=0)
                        sock.sendall(conn.data_to_send())
                        return
                    body = f"connection {number}\n".encode()
                    headers = [(b":status", b"200"), (b"content-length", b"%d" % len(body))]
                    conn.send_headers(event.stream_id, headers)
                    conn.send_data(event.stream_id, body, end_stream=True)
                sock.sendall(conn.data_to_send())


def start_hypercorn(directory: Path, logs: Path, name: str, port: int = 0) -> Proc:
    port = port or free_port()
    cmd = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "h2c_app:app"]
    proc = spawn(name, cmd, logs, cwd=directory)
    proc.port = port
    wait_tcp(proc, port)
    return proc


@dataclass
class Lab:
    edge: Proc
    upstream: Proc
    goaway: GoawayUpstream
    mortal_port: int  # an upstream each kill test starts there (its app exits mid-response)
    root: Path
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
    goaway = GoawayUpstream()
    try:
        upstream = start_hypercorn(root, logs, "hypercorn")
        started.append(upstream)
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
                goaway=goaway.port,
            )
        )
        edge = start_edge(config, port, logs, "-k", request.param, cwd=root)
        started.append(edge)
    except RuntimeError:
        for proc in reversed(started):
            proc.stop()
        goaway.stop()
        raise
    yield Lab(
        edge, upstream, goaway, mortal, root, f"https://localhost:{port}", certs[2], root / "tmp"
    )
    for proc in reversed(started):
        proc.stop()
    goaway.stop()


@pytest.fixture(autouse=True)
def _logs(request: pytest.FixtureRequest, lab: Lab) -> None:
    print_logs_on_failure(request, lab.edge, lab.upstream)


@pytest.mark.parametrize("proto", ["h1", "h2", "h3"])
def test_get_and_post_reach_the_upstream_over_http2(lab: Lab, proto: str) -> None:
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
    mortal = start_hypercorn(lab.root, lab.root / "logs", f"mortal-{proto}", lab.mortal_port)
    try:
        reply = fetch(proto, f"{lab.base}/mortal/die", lab.cafile, lab.tmp)
    finally:
        mortal.stop()
    assert reply.error, reply  # a reset or a truncation, never a clean short 200
    assert len(reply.body) < 8 * 64 * 1024 + 1


def test_goaway_before_the_stream_retries_an_idempotent_request(lab: Lab) -> None:
    before = lab.goaway.connections
    reply = fetch("h2", f"{lab.base}/goaway/x", lab.cafile, lab.tmp)
    assert reply.status == 200, reply
    if before == 0:  # this edge's first request there met the GOAWAY, then a new connection
        assert reply.body == b"connection 2\n"
        assert lab.goaway.connections == 2
