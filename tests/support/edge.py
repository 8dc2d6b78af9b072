"""Helpers for the edge end-to-end tests (issue 9): a site directory laid out like the issue's
example, processes that are not edgecorn (Uvicorn, `python -m http.server`, a `websockets`
server) as upstreams, the edge itself as `python -m edgecorn -c FILE`, and one `fetch()` that
asks over HTTP/1.1 or HTTP/2 (curl) or HTTP/3 (curl_cffi) and returns the same `Reply`.

Every wait here is bounded in count and in time; every process started here is stopped by
its own pid.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from tests.apps.e2e import MIB, big_chunk
from tests.support.net import free_port
from tests.support.procs import READY_TIMEOUT, Proc, spawn, wait_tcp

SITE_MODULES = Path(__file__).resolve().parent.parent / "apps" / "site"
PROTOCOLS = ("h1", "h2", "h3")

# The example file, verbatim. Only the three port numbers are changed when it is
# written (tests bind free loopback ports, never 8443 or 9000).
EXAMPLE_YAML = """\
bind: ["0.0.0.0:8443"]             # TLS over TCP (h1/h2) and, by default, QUIC on the same UDP port
certfile: certs/localhost.pem
keyfile: certs/localhost.key
routes:                            # first match wins; host and path are optional
  - host: api.localhost            # exact host, or "*.example.com"
    path: /v1/                     # a prefix; "=/healthz" for an exact path
    proxy: http://127.0.0.1:9000   # or a list of upstreams (round robin, unhealthy ones skipped)
    strip_prefix: true             # the upstream sees /users, not /v1/users
  - path: /static/
    static: ./public               # a directory
  - path: /legacy/
    wsgi: legacy:application       # WSGI app, in the thread pool
  - path: =/healthz
    respond: {status: 200, body: "ok\\n"}
  - path: /old/
    redirect: {to: "https://localhost:8443/new/", status: 308}
  - app: demo:app                  # ASGI app; `edgecorn -c edge.yaml` needs no app argument
"""

SECRET = b"outside the static root\n"
INDEX_HTML = b"<!doctype html><title>edge</title><p>static index</p>\n"
SUB2_INDEX = b"<!doctype html><p>sub2 index</p>\n"
STYLE_CSS = b"body { color: #123456 }\n"
APP_JS = b"console.log('plain app.js');\n" * 40
APP_JS_BR = b"\x1b-not-really-brotli-but-the-sibling-file-bytes\n"
BIG_STATIC = 10 * MIB


def example_yaml(port: int, upstream_port: int) -> str:
    text = EXAMPLE_YAML
    for old, new in (
        ('"0.0.0.0:8443"', f'"127.0.0.1:{port}"'),
        ("http://127.0.0.1:9000", f"http://127.0.0.1:{upstream_port}"),
        ("https://localhost:8443/new/", f"https://localhost:{port}/new/"),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


# --------------------------------------------------------------------------- bytes


def pattern_bytes(size: int) -> Iterator[bytes]:
    """The bytes of the upstream's `/bytes?n=size` body, one MiB at a time."""
    chunk = big_chunk()
    left = size
    while left > 0:
        piece = chunk if left >= MIB else chunk[:left]
        left -= len(piece)
        yield piece


def pattern_sha(size: int) -> str:
    digest = hashlib.sha256()
    for piece in pattern_bytes(size):
        digest.update(piece)
    return digest.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the site


def make_site(root: Path, certs: tuple[str, str, str]) -> Path:
    """The directory the example file lives in: certs/, public/, legacy.py, demo.py, and a
    secret next to public/ that no static request may ever reach."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "certs").mkdir(exist_ok=True)
    shutil.copy(certs[0], root / "certs" / "localhost.pem")
    shutil.copy(certs[1], root / "certs" / "localhost.key")
    for name in ("legacy.py", "demo.py"):
        shutil.copy(SITE_MODULES / name, root / name)
    (root / "secret.txt").write_bytes(SECRET)
    public = root / "public"
    public.mkdir(exist_ok=True)
    (public / "index.html").write_bytes(INDEX_HTML)
    (public / "style.css").write_bytes(STYLE_CSS)
    (public / "data.json").write_bytes(b'{"ok": true}\n')
    (public / "app.js").write_bytes(APP_JS)
    (public / "app.js.gz").write_bytes(gzip.compress(APP_JS, mtime=0))
    (public / "app.js.br").write_bytes(APP_JS_BR)
    (public / ".hidden").write_bytes(SECRET)
    (public / ".git").mkdir(exist_ok=True)
    (public / ".git" / "config").write_bytes(SECRET)
    (public / "sub").mkdir(exist_ok=True)  # a directory without index.html
    (public / "sub" / "a.txt").write_bytes(b"file a\n")
    (public / "sub" / ".env").write_bytes(SECRET)
    (public / "sub2").mkdir(exist_ok=True)
    (public / "sub2" / "index.html").write_bytes(SUB2_INDEX)
    with open(public / "big.bin", "wb") as fh:
        for piece in pattern_bytes(BIG_STATIC):
            fh.write(piece)
    # Symlinks that leave the root: to a file and to a directory above it.
    for name, target in (("escape.txt", root / "secret.txt"), ("escape_dir", root)):
        link = public / name
        if not link.is_symlink():
            link.symlink_to(target)
    return root


# --------------------------------------------------------------------------- processes


def start_uvicorn(log_dir: Path, port: int | None = None, name: str = "uvicorn") -> Proc:
    port = port or free_port()
    proc = spawn(
        name,
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.apps.upstream:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        log_dir,
    )
    proc.port = port
    wait_tcp(proc, port)
    return proc


def start_ws_upstream(log_dir: Path) -> Proc:
    port = free_port()
    proc = spawn(
        "ws-upstream", [sys.executable, "-m", "tests.apps.ws_upstream", str(port)], log_dir
    )
    proc.port = port
    wait_tcp(proc, port)
    return proc


def start_http_server(log_dir: Path, directory: Path) -> Proc:
    port = free_port()
    proc = spawn(
        "http-server",
        [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(directory),
            str(port),
        ],
        log_dir,
    )
    proc.port = port
    wait_tcp(proc, port)
    return proc


def start_edge(
    config: Path,
    port: int,
    log_dir: Path,
    *args: str,
    cwd: Path | None = None,
    paths: Sequence[Path | str] = (),
) -> Proc:
    """`python -m edgecorn -c CONFIG ARGS`, ready when its QUIC listener is logged."""
    cmd = [sys.executable, "-m", "edgecorn", "-c", str(config), *args]
    proc = spawn("edge", cmd, log_dir, cwd=cwd or config.parent, paths=paths)
    proc.port = port
    try:
        wait_tcp(proc, port)
        if not proc.wait_stderr("Running on quic://", READY_TIMEOUT):
            raise RuntimeError(f"QUIC listener not logged\n{proc.describe()}")
    except RuntimeError:
        proc.stop()
        raise
    return proc


class ServerFirstWS:
    """A raw WebSocket upstream (a thread here, not edgecorn) that writes its 101 response
    and one text frame in a single send, as servers that speak first do."""

    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, text: bytes) -> None:
        assert len(text) < 126
        self.text = text
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
                key = b""
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"sec-websocket-key":
                        key = value.strip()
                accept = base64.b64encode(hashlib.sha1(key + self.GUID).digest())
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                    + accept
                    + b"\r\n\r\n"
                    + bytes([0x81, len(self.text)])
                    + self.text
                )
                while conn.recv(65536):  # hold the connection until the edge lets go
                    pass
            except OSError:
                pass

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()
        self.thread.join(2)


class StallingWS(ServerFirstWS):
    """A raw WebSocket upstream that pings while it does not read: after the handshake it
    waits for the first bytes of the client's (big) message, sends a ping, stops reading
    for `stall` seconds, then reads the `expect` bytes of that message and answers with
    one text frame. The edge must write its pong while its write of the big message is
    still blocked: two writers on one upstream connection."""

    def __init__(self, text: bytes, expect: int, stall: float = 1.5) -> None:
        self.expect, self.stall = expect, stall
        super().__init__(text)

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                buf = b""
                while b"\r\n\r\n" not in buf and len(buf) < 65536:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                key = b""
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"sec-websocket-key":
                        key = value.strip()
                accept = base64.b64encode(hashlib.sha1(key + self.GUID).digest())
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                got = len(rest) or len(conn.recv(65536))
                conn.sendall(bytes([0x89, 4]) + b"ping")  # a ping, unmasked (server side)
                time.sleep(self.stall)
                deadline = time.monotonic() + 20
                while got < self.expect and time.monotonic() < deadline:
                    data = conn.recv(1 << 20)
                    if not data:
                        return
                    got += len(data)
                conn.sendall(bytes([0x81, len(self.text)]) + self.text)
                while conn.recv(65536):  # hold the connection until the edge lets go
                    pass
            except OSError:
                pass


# --------------------------------------------------------------------------- clients


@dataclass
class Reply:
    status: int
    version: str  # "1.1", "2", "3"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    error: str = ""  # the client's error when the transfer failed (status may be 0)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return values[-1] if values else None

    def names(self) -> set[str]:
        return {k for k, _ in self.headers}

    def json(self) -> Any:
        return json.loads(self.body)

    def upstream_headers(self) -> dict[str, list[str]]:
        """For the echo upstream: the request headers it saw, by lower-case name."""
        seen: dict[str, list[str]] = {}
        for name, value in self.json()["headers"]:
            seen.setdefault(name.lower(), []).append(value)
        return seen

    def __str__(self) -> str:
        return (
            f"HTTP/{self.version} {self.status} error={self.error!r} "
            f"headers={self.headers} body={self.body[:300]!r}"
        )


def _parse_head_file(text: str) -> list[tuple[str, str]]:
    """The header lines of the last response block curl wrote with -D."""
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    if not blocks:
        return []
    lines = blocks[-1].split("\n")[1:]
    return [
        (k.strip().lower(), v.strip())
        for k, _, v in (line.partition(":") for line in lines)
        if k.strip()
    ]


def fetch(
    proto: str,
    url: str,
    cafile: str,
    tmp: Path,
    *,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    data_file: Path | None = None,
    data: bytes | None = None,
    interface: str | None = None,
    timeout: float = 30.0,
) -> Reply:
    """One request over h1/h2 (curl) or h3 (curl_cffi, HTTP/3 only). No redirects followed,
    no content decoding. A failed transfer comes back with `error` set, never raises."""
    if proto == "h3":
        return _fetch_h3(url, cafile, method, headers, data_file, data, interface, timeout)
    tmp.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.monotonic_ns()}"
    head, body = tmp / f"head-{stamp}", tmp / f"body-{stamp}"
    cmd = [
        "curl",
        "-sS",
        "--cacert",
        cafile,
        "--max-time",
        str(int(timeout)),
        "--http1.1" if proto == "h1" else "--http2",
        "-X",
        method,
        "-D",
        str(head),
        "-o",
        str(body),
        "-w",
        "%{http_code} %{http_version}",
    ]
    for name, value in headers:
        cmd += ["-H", f"{name}: {value}"]
    if data is not None:
        data_file = tmp / f"data-{stamp}"
        data_file.write_bytes(data)
    if data_file is not None:
        cmd += ["--data-binary", f"@{data_file}"]
    if interface:
        cmd += ["--interface", interface]
    proc = subprocess.run([*cmd, url], capture_output=True, timeout=timeout + 10)
    status_text, _, version = proc.stdout.decode().partition(" ")
    reply = Reply(
        status=int(status_text or 0),
        version=version.strip(),
        headers=_parse_head_file(head.read_text("latin-1")) if head.exists() else [],
        body=body.read_bytes() if body.exists() else b"",
        error=""
        if proc.returncode == 0
        else f"curl exit {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}",
    )
    for path in (head, body):
        path.unlink(missing_ok=True)
    return reply


def _fetch_h3(
    url: str,
    cafile: str,
    method: str,
    headers: Sequence[tuple[str, str]],
    data_file: Path | None,
    data: bytes | None,
    interface: str | None,
    timeout: float,
) -> Reply:
    from curl_cffi import CurlHttpVersion, requests

    if data_file is not None:
        data = data_file.read_bytes()
    kwargs: dict[str, Any] = {"verify": cafile}  # a CA file (typed as bool upstream)
    if interface:
        kwargs["interface"] = interface
    try:
        resp = requests.request(
            cast(Any, method),
            url,
            http_version=CurlHttpVersion.V3ONLY,
            headers=dict(headers),
            data=data,
            timeout=timeout,
            allow_redirects=False,
            accept_encoding=None,
            default_headers=False,
            **kwargs,
        )
    except Exception as exc:  # curl_cffi raises its own RequestsError/CurlError types
        return Reply(status=0, version="3", error=f"{type(exc).__name__}: {exc}")
    pairs = [(k.lower(), v or "") for k, v in resp.headers.multi_items()]
    return Reply(status=resp.status_code, version="3", headers=pairs, body=resp.content)


def expected_version(proto: str) -> str:
    return {"h1": "1.1", "h2": "2", "h3": "3"}[proto]


def forwarded_elements(value: str) -> list[dict[str, str]]:
    """RFC 7239 `Forwarded`: a list of elements, each a dict of lower-case params."""
    elements = []
    for element in value.split(","):
        params = {}
        for pair in element.split(";"):
            name, _, val = pair.strip().partition("=")
            if name:
                params[name.lower()] = val.strip().strip('"')
        elements.append(params)
    return elements


def print_logs_on_failure(request: pytest.FixtureRequest, *procs: Proc) -> None:
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for proc in procs:
            print(f"\n[edge-e2e] {proc.describe()}", file=sys.stderr)
