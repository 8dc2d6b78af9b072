"""Fixtures for the end-to-end tests: real server processes, real clients, loopback only.

Servers are started as `python -m edgecorn ...` subprocesses from the repo root.
Helpers reach the tests through fixtures (`server_factory`, `h1`, `h2conn`,
`curl`) so test modules never import this file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `tests.e2e_apps` must import however pytest was started
    sys.path.insert(0, str(REPO_ROOT))
APP = "tests.e2e_apps:app"
READY_TIMEOUT = 15.0
PARSERS = ["h11", "httptools"]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree_pids(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    todo.extend(int(p) for p in fh.read().split())
        except OSError:
            pass
    return pids


def rss_kib(pid: int) -> int:
    """VmRSS of a process and all its descendants, in KiB."""
    total = 0
    for p in _tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    args: list[str]
    log_dir: Path
    port: int | None = None  # the TLS --bind
    insecure_port: int | None = None  # the first TCP --insecure-bind
    cafile: str | None = None
    extra_ports: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.insecure_port}"

    def stdout(self) -> str:
        return (self.log_dir / "stdout.log").read_text(errors="replace")

    def stderr(self) -> str:
        return (self.log_dir / "stderr.log").read_text(errors="replace")

    def wait_stdout(self, needle: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.stdout()
            if needle in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def describe(self) -> str:
        return (
            f"server {' '.join(self.args)} (pid {self.pid}, rc {self.proc.poll()})\n"
            f"--- stderr ---\n{self.stderr()[-8000:]}\n--- stdout ---\n{self.stdout()[-2000:]}"
        )


def _wait_tcp(port: int, server: Server, deadline: float) -> None:
    while True:
        if not server.alive():
            raise RuntimeError(f"server exited before listening on {port}\n{server.describe()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"server not listening on {port} after {READY_TIMEOUT}s\n{server.describe()}"
                ) from None
            time.sleep(0.05)


def _wait_serving(server: Server, deadline: float) -> None:
    """Sockets are bound before the app starts (a connect can succeed early): wait for
    the "Running on" line, or for the server to die (then fail with its log)."""
    while "Running on" not in server.stderr():
        if not server.alive():
            raise RuntimeError(f"server exited during start-up\n{server.describe()}")
        if time.monotonic() > deadline:
            return  # logging may be configured away: the port answers, go on
        time.sleep(0.05)


def _wait_unix(path: str, server: Server, deadline: float) -> None:
    while True:
        if not server.alive():
            raise RuntimeError(f"server exited before listening on {path}\n{server.describe()}")
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(0.5)
                sock.connect(path)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not listening on {path}\n{server.describe()}") from None
            time.sleep(0.05)


class ServerFactory:
    """Starts edgecorn subprocesses and stops every one of them at teardown."""

    def __init__(
        self, certs: tuple[str, str, str], tmp: Path, worker_class: str = "asyncio",
        http2_engine: str = "auto", quic_engine: str = "aioquic",
    ) -> None:
        self.certfile, self.keyfile, self.cafile = certs
        self.tmp = tmp
        self.worker_class = worker_class
        self.http2_engine = http2_engine
        self.quic_engine = quic_engine
        self.servers: list[Server] = []
        self.count = 0

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "edgecorn", *args]

    def spawn(self, args: Sequence[str], pass_fds: Sequence[int] = ()) -> Server:
        """Start `python -m edgecorn ARGS` with logs in files; no readiness wait."""
        self.count += 1
        log_dir = self.tmp / f"server{self.count}"
        log_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command(*args)
        with open(log_dir / "stdout.log", "wb") as out, open(log_dir / "stderr.log", "wb") as err:
            proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=subprocess_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=tuple(pass_fds),
            )
        server = Server(proc=proc, args=cmd, log_dir=log_dir, cafile=self.cafile)
        self.servers.append(server)
        return server

    def start(
        self,
        *extra: str,
        app: str = APP,
        parser: str | None = None,
        tls: bool = True,
        insecure: bool = True,
        config: str | None = None,
        access_log: bool = True,
        wait_ports: Sequence[int] = (),
        wait_unix: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
    ) -> Server:
        """Start a server: a --bind (TLS unless `tls=False`) and, unless `insecure=False`,
        one cleartext --insecure-bind.

        `config` is YAML text written to a file and passed with `-c`.
        """
        args: list[str] = [app, "--workers", "0", "-k", self.worker_class,
                           "--http2-engine", self.http2_engine, "--quic-engine", self.quic_engine]
        insecure_port = None
        # Always give --bind: without it the default 127.0.0.1:8000 would be bound too.
        port = free_port()
        args += ["--bind", f"127.0.0.1:{port}"]
        if tls:
            args += ["--certfile", self.certfile, "--keyfile", self.keyfile]
        if insecure:
            insecure_port = free_port()
            args += ["--insecure-bind", f"127.0.0.1:{insecure_port}"]
        if parser:
            args += ["--http1-parser", parser]
        if access_log:
            args += ["--access-logfile", "-"]
        if config is not None:
            self.count += 1
            path = self.tmp / f"config{self.count}.yaml"
            path.write_text(config)
            args += ["-c", str(path)]
        args += list(extra)
        server = self.spawn(args, pass_fds=pass_fds)
        server.port, server.insecure_port = port, insecure_port
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            for p in [p for p in (port, insecure_port) if p] + list(wait_ports):
                _wait_tcp(p, server, deadline)
            for path_ in wait_unix:
                _wait_unix(path_, server, deadline)
            _wait_serving(server, deadline)
        except RuntimeError as exc:
            server.stop()
            print(server.describe(), file=sys.stderr)
            pytest.fail(str(exc), pytrace=False)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            rc = server.stop()
            if rc not in (0, None, -signal.SIGTERM) and "Traceback" in server.stderr():
                print(f"\n[e2e] {server.describe()}", file=sys.stderr)
        self.servers.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(autouse=True)
def _server_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a test fails, print the stderr of every server it used."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed:
        return
    servers: list[Server] = []
    for value in getattr(request.node, "funcargs", {}).values():
        if isinstance(value, Server):
            servers.append(value)
        elif isinstance(value, ServerFactory):
            servers.extend(value.servers)
    for srv in servers:
        print(f"\n[e2e] {srv.describe()}", file=sys.stderr)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(certfile, keyfile, cafile): a dev CA and a localhost leaf made by edgecorn itself."""
    from edgecorn.certs import ensure_dev_certs

    certfile, keyfile, cafile = ensure_dev_certs(tmp_path_factory.mktemp("certs"))
    return str(certfile), str(keyfile), str(cafile)


@pytest.fixture(scope="session")
def cafile(certs: tuple[str, str, str]) -> str:
    return certs[2]


# The core end-to-end suite runs on every worker class (the same tests, parametrized).
CORE_E2E = {"test_e2e_http1", "test_e2e_http2", "test_e2e_clients", "test_e2e_flow",
            "test_e2e_server"}
WORKER_CLASSES = ("asyncio", "trio")
# The HTTP/2 suites (end-to-end and sans-IO) run on every HTTP/2 engine, the same way.
H2_SUITES = {"test_e2e_http2", "test_h2_sansio"}
HTTP2_ENGINES = ("h2", "jh2")
# The HTTP/3 suite runs on every QUIC engine; the rest stays on the reference one (aioquic).
H3_SUITES = {"test_e2e_h3"}
QUIC_ENGINES = ("aioquic", "qh3")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    if module in CORE_E2E and "worker_class" in metafunc.fixturenames:
        metafunc.parametrize("worker_class", WORKER_CLASSES, indirect=True, scope="session")
    if module in H2_SUITES and "http2_engine" in metafunc.fixturenames:
        metafunc.parametrize("http2_engine", HTTP2_ENGINES, indirect=True, scope="session")
    if module in H3_SUITES and "quic_engine" in metafunc.fixturenames:
        metafunc.parametrize("quic_engine", QUIC_ENGINES, indirect=True, scope="session")


@pytest.fixture(scope="session")
def worker_class(request: pytest.FixtureRequest) -> str:
    """`-k` for the servers a test starts: parametrized for the core suite, else asyncio."""
    return str(getattr(request, "param", "asyncio"))


@pytest.fixture(scope="session")
def http2_engine(request: pytest.FixtureRequest) -> str:
    """`--http2-engine`: parametrized for the HTTP/2 suites, else auto."""
    return str(getattr(request, "param", "auto"))


# qh3 2.1.0 limits, pinned so a fixed qh3 is noticed: its compiled core cannot answer an
# aioquic client's Initial ("packet builder capacity exhausted", with qh3's own server too),
# and these tests talk with aioquic clients; it fixes the concurrent-stream limit at 100.
QH3_XFAIL = {
    "test_alt_svc_absent[qh3-no-alt-svc]": "qh3 core cannot answer an aioquic client Initial",
    "test_stalled_readers_keep_memory_bounded[qh3]": "qh3 core vs aioquic clients",
    "test_vanished_clients[qh3]": "qh3 core vs aioquic clients",
    "test_h3_max_concurrent_streams_setting[qh3]": "qh3 fixes the stream limit: refused",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = QH3_XFAIL.get(item.name)
        if reason is not None and item.module is not None and item.module.__name__.endswith(
            "test_e2e_h3"
        ):
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(scope="session")
def quic_engine(request: pytest.FixtureRequest) -> str:
    """`--quic-engine`: parametrized for the HTTP/3 suite, else aioquic."""
    return str(getattr(request, "param", "aioquic"))


@pytest.fixture(scope="session")
def session_factory(
    certs: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory, worker_class: str,
    http2_engine: str, quic_engine: str,
) -> Iterator[ServerFactory]:
    factory = ServerFactory(
        certs, tmp_path_factory.mktemp("session-servers"), worker_class, http2_engine,
        quic_engine,
    )
    yield factory
    factory.stop_all()


@pytest.fixture
def server_factory(
    certs: tuple[str, str, str], tmp_path: Path, worker_class: str, http2_engine: str,
    quic_engine: str,
) -> Iterator[ServerFactory]:
    """Per-test servers: `server_factory.start(*extra_args, parser=..., config=yaml)`."""
    factory = ServerFactory(certs, tmp_path, worker_class, http2_engine, quic_engine)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session", params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    """The HTTP/1 parser under test; every test using it runs once per parser."""
    return str(request.param)


@pytest.fixture(scope="session")
def h1_server(session_factory: ServerFactory, parser: str) -> Iterator[Server]:
    """A shared server (TLS + cleartext) using the parametrized HTTP/1 parser."""
    server = session_factory.start(parser=parser)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server(session_factory: ServerFactory) -> Server:
    """A shared server with default settings, for HTTP/2 and client-driven tests."""
    return session_factory.start()


# --------------------------------------------------------------------------- HTTP/1 client


@dataclass
class Response:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes
    chunked: bool = False
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = self.headers_all(name)
        return values[-1] if values else None

    def headers_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


class H1Conn:
    """A raw-socket HTTP/1.1 client: send exactly the bytes you want, parse what comes back."""

    def __init__(self, port: int, tls: bool = False, cafile: str | None = None,
                 timeout: float = 10.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.set_alpn_protocols(["http/1.1"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, headers: Sequence[tuple[str, str]] = (),
                body: bytes | None = None, version: str = "HTTP/1.1") -> None:
        lines = [f"{method} {path} {version}"]
        names = {k.lower() for k, _ in headers}
        if "host" not in names:
            lines.append("Host: localhost")
        if body is not None and "content-length" not in names and \
                "transfer-encoding" not in names:
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in headers]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed; buffered {self.buf[:300]!r}")
        head, self.buf = self.buf.split(sep, 1)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self) -> Response:
        raw = self._read_until(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/"), f"bad status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return Response(
            status=int(parts[1]), reason=parts[2] if len(parts) > 2 else "",
            version=parts[0], headers=headers, body=b"", raw_head=raw,
        )

    def read_response(self, head: bool = False, informational: list[Response] | None = None
                      ) -> Response:
        """Read one final response; 1xx responses are appended to `informational`."""
        while True:
            resp = self.read_head()
            if 100 <= resp.status < 200 and resp.status != 101:
                if informational is None:
                    raise AssertionError(f"unexpected informational response {resp.raw_head!r}")
                informational.append(resp)
                continue
            break
        if head or resp.status in (204, 304) or resp.status == 101:
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            resp.chunked = True
            chunks = []
            while True:
                size_line = self._read_until(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                chunks.append(self._read_exact(size))
                assert self._read_exact(2) == b"\r\n", "chunk not followed by CRLF"
            while True:
                line = self._read_until(b"\r\n")
                if not line:
                    break
                name, _, value = line.decode("latin-1").partition(":")
                resp.trailers.append((name.strip().lower(), value.strip()))
            resp.body = b"".join(chunks)
        elif resp.header("content-length") is not None:
            resp.body = self._read_exact(int(resp.header("content-length") or 0))
        else:
            resp.body = self.read_until_close()
        return resp

    def read_until_close(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """Everything until EOF (bounded by the socket timeout and `limit`)."""
        while len(self.buf) < limit and self._fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within `timeout` without sending more."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        if data:
            self.buf += data
            return False
        self.eof = True
        return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def h1(cafile: str) -> Iterator[Any]:
    """`h1(port, tls=False)` → a connected `H1Conn`; all are closed at teardown."""
    conns: list[H1Conn] = []

    def connect(port: int, tls: bool = False, timeout: float = 10.0) -> H1Conn:
        conn = H1Conn(port, tls=tls, cafile=cafile, timeout=timeout)
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        conn.close()


# --------------------------------------------------------------------------- HTTP/2 client


@dataclass
class H2Response:
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    informational: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    reset: int | None = None
    ended: bool = False

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class H2Conn:
    """A blocking HTTP/2 client on the `h2` package, over TLS (ALPN h2) or h2c prior knowledge."""

    def __init__(self, port: int, tls: bool = True, cafile: str | None = None,
                 settings: dict[int, int] | None = None, timeout: float = 10.0) -> None:
        import h2.config
        import h2.connection

        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        self.tls = tls
        self.port = port
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.responses: dict[int, H2Response] = {}
        self.closed = False
        self.goaway: Any = None
        self.auto_ack = True
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Sequence[tuple[str, str]] = (), end: bool = True) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https" if self.tls else "http"),
                (":authority", f"localhost:{self.port}"), (":path", path), *headers]
        if body is not None:
            hdrs.append(("content-length", str(len(body))))
        self.responses[stream_id] = H2Response()
        self.conn.send_headers(stream_id, hdrs, end_stream=end and not body)
        self.flush()
        if body:
            self.send_body(stream_id, body, end=end)
        return stream_id

    def send_body(self, stream_id: int, body: bytes, end: bool = True) -> None:
        view = memoryview(body)
        while view:
            window = min(self.conn.local_flow_control_window(stream_id),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump()
                continue
            self.conn.send_data(stream_id, bytes(view[:window]))
            view = view[window:]
            self.flush()
        if end:
            self.conn.end_stream(stream_id)
            self.flush()

    def pump(self) -> list[Any]:
        """Read once from the socket and process the events."""
        import h2.events as ev

        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            raise EOFError("server closed the HTTP/2 connection")
        events = self.conn.receive_data(data)
        for event in events:
            resp = self.responses.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, ev.InformationalResponseReceived) and resp:
                resp.informational.append(list(event.headers))
            elif isinstance(event, ev.ResponseReceived) and resp:
                resp.headers = list(event.headers)
                resp.status = int(dict(event.headers)[b":status"])
            elif isinstance(event, ev.TrailersReceived) and resp:
                resp.trailers = list(event.headers)
            elif isinstance(event, ev.DataReceived):
                if resp:
                    resp.body += event.data
                if self.auto_ack and event.flow_controlled_length:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            elif isinstance(event, ev.StreamEnded) and resp:
                resp.ended = True
            elif isinstance(event, ev.StreamReset) and resp:
                resp.reset = event.error_code
                resp.ended = True
            elif isinstance(event, ev.ConnectionTerminated):
                self.goaway = event
        self.flush()
        return events

    def response(self, stream_id: int) -> H2Response:
        resp = self.responses[stream_id]
        while not resp.ended:
            self.pump()
        return resp

    def get(self, path: str, **kwargs: Any) -> H2Response:
        return self.response(self.request("GET", path, **kwargs))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@pytest.fixture
def h2conn(cafile: str) -> Iterator[Any]:
    """`h2conn(port, tls=True, settings=None)` → a connected `H2Conn`."""
    conns: list[H2Conn] = []

    def connect(port: int, tls: bool = True, settings: dict[int, int] | None = None,
                timeout: float = 10.0) -> H2Conn:
        conn = H2Conn(port, tls=tls, cafile=cafile, settings=settings, timeout=timeout)
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        conn.close()


# --------------------------------------------------------------------------- curl


@dataclass
class CurlResult:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


@pytest.fixture(scope="session")
def curl(cafile: str) -> Any:
    """`curl(*args)` runs curl with `--cacert` and bounded timeouts; returns a CurlResult."""
    exe = shutil.which("curl")
    if exe is None:
        pytest.fail("curl is not installed (scripts/test installs it)")

    def run(*args: str, timeout: float = 60.0, check: bool = True) -> CurlResult:
        cmd = [exe, "-sS", "--cacert", cafile, "--max-time", str(int(timeout) - 5), *args]
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
        result = CurlResult(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))
        if check:
            assert proc.returncode == 0, f"{' '.join(cmd)} failed: {result.stderr[-3000:]}"
        return result

    return run
