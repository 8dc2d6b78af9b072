"""The server as a whole: lifespan, WSGI, listeners, the quickstart, config errors, logs."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.apps.e2e import HELLO, STARTUP_FAILURE
from tests.support.net import free_port

pytestmark = [pytest.mark.timeout(60), pytest.mark.both_backends]

REPO_ROOT = Path(__file__).resolve().parent.parent


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


# --------------------------------------------------------------------------- certificates


def test_dev_certs_are_a_ca_and_a_localhost_leaf(certs: tuple[str, str, str]) -> None:
    from cryptography import x509

    certfile, keyfile, cafile = certs
    chain = x509.load_pem_x509_certificates(Path(certfile).read_bytes())
    leaf, ca = chain[0], x509.load_pem_x509_certificate(Path(cafile).read_bytes())
    assert leaf.issuer == ca.subject and leaf.subject != ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips and ipaddress.ip_address("::1") in ips
    assert Path(keyfile).stat().st_mode & 0o077 == 0, "private key readable by others"


# --------------------------------------------------------------------------- lifespan


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_lifespan_state_reaches_requests(server: Any, curl: Any, flag: str) -> None:
    result = curl(flag, f"{server.https}/lifespan-state")
    assert json.loads(result.stdout) == {"started": "yes", "has_state": True}


def test_failing_lifespan_startup_exits_nonzero(server_factory: Any) -> None:
    srv = server_factory.spawn(
        [
            "tests.apps.e2e:failing_lifespan_app",
            "--workers",
            "0",
            "--bind",
            f"127.0.0.1:{free_port()}",
        ]
    )
    rc = wait_exit(srv.proc, 20)
    assert rc is not None, "server kept running after lifespan.startup.failed"
    assert rc != 0
    assert STARTUP_FAILURE in srv.stderr(), srv.stderr()


def test_graceful_shutdown_finishes_open_request(
    server_factory: Any, h1: Any, tmp_path: Path
) -> None:
    srv = server_factory.start()
    record = tmp_path / "slow.txt"
    conn = h1(srv.insecure_port)
    conn.request("GET", f"/slow?s=1&file={record}")
    deadline = time.monotonic() + 10
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # until the request has reached the app
    srv.proc.send_signal(signal.SIGTERM)
    resp = conn.read_response()
    assert (resp.status, resp.body) == (200, b"slow done")
    assert (resp.header("connection") or "").lower() == "close"  # draining: no keep-alive
    assert conn.closed_by_peer(5)
    assert wait_exit(srv.proc, 10) == 0, srv.stderr()


def test_graceful_shutdown_h2_goaway(server_factory: Any, h2conn: Any, tmp_path: Path) -> None:
    """SIGTERM: GOAWAY (NO_ERROR) first, then the open stream still gets its whole response.

    The frames are parsed by hand: the `h2` package closes its own state machine when it
    receives a GOAWAY, so it cannot take the response that legitimately follows one.
    """
    import hpack
    import hyperframe.frame as hf

    srv = server_factory.start()
    record = tmp_path / "slow.txt"
    conn = h2conn(srv.port)
    conn.sock.settimeout(2)
    try:
        while True:  # settle the SETTINGS exchange before going raw
            conn.pump()
    except TimeoutError:
        pass
    stream_id = conn.request("GET", f"/slow?s=1&file={record}")
    deadline = time.monotonic() + 10
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    srv.proc.send_signal(signal.SIGTERM)
    conn.sock.settimeout(10)
    raw = b""
    while True:  # until the server closes (bounded by the socket timeout)
        data = conn.sock.recv(65536)
        if not data:
            break
        raw += data
    frames, offset = [], 0
    while offset + 9 <= len(raw):
        frame, length = hf.Frame.parse_frame_header(memoryview(raw[offset : offset + 9]))
        frame.parse_body(memoryview(raw[offset + 9 : offset + 9 + length]))
        frames.append(frame)
        offset += 9 + length
    goaways = [f for f in frames if isinstance(f, hf.GoAwayFrame)]
    assert goaways, f"no GOAWAY before the close: {frames}"
    assert goaways[0].error_code == 0 and goaways[0].last_stream_id >= stream_id, goaways
    mine = [f for f in frames if f.stream_id == stream_id]
    headers = [f for f in mine if isinstance(f, hf.HeadersFrame)]
    assert headers, f"the open stream got no response after GOAWAY: {frames}"
    status = dict(hpack.Decoder().decode(headers[0].data, raw=True))[b":status"]
    body = b"".join(f.data for f in mine if isinstance(f, hf.DataFrame))
    assert (status, body) == (b"200", b"slow done")
    assert "END_STREAM" in mine[-1].flags
    assert wait_exit(srv.proc, 10) == 0, srv.stderr()


# --------------------------------------------------------------------------- WSGI


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_wsgi_app(server_factory: Any, curl: Any, flag: str) -> None:
    srv = server_factory.start(app="wsgi:tests.apps.e2e:wsgi_app")
    body = "wsgi body " * 1000
    result = curl(flag, "--data-binary", body, "-H", "X-Test: yes", f"{srv.https}/some/path?a=1")
    info = json.loads(result.stdout)
    assert info["method"] == "POST"
    assert (info["path"], info["query"]) == ("/some/path", "a=1")
    assert info["body_length"] == len(body)
    assert info["x_test"] == "yes"
    assert info["url_scheme"] == "https"
    result = curl("--http1.1", f"{srv.http}/")
    assert json.loads(result.stdout)["method"] == "GET"


# --------------------------------------------------------------------------- listeners


def test_unix_socket_bind(server_factory: Any, curl: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "e2e.sock")
    server_factory.start("--insecure-bind", f"unix:{path}", insecure=False, wait_unix=[path])
    result = curl("--unix-socket", path, "http://localhost/scope?via=unix")
    info = json.loads(result.stdout)
    assert info["query_string"] == "via=unix"
    assert info["scheme"] == "http"
    result = curl("--unix-socket", path, "--http2-prior-knowledge", "http://localhost/")
    assert result.stdout == HELLO


def test_fd_bind(server_factory: Any, curl: Any) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    try:
        server_factory.start("--insecure-bind", f"fd://{fd}", insecure=False, pass_fds=[fd])
    finally:
        listener.close()  # only the server holds it now
    result = curl("--http1.1", f"http://127.0.0.1:{port}/scope")
    assert json.loads(result.stdout)["server"] == ["127.0.0.1", port]
    assert curl("--http2-prior-knowledge", f"http://127.0.0.1:{port}/").stdout == HELLO


def test_several_binds(server_factory: Any, curl: Any) -> None:
    second = free_port()
    srv = server_factory.start("--insecure-bind", f"127.0.0.1:{second}", wait_ports=[second])
    for port in (srv.insecure_port, second):
        info = json.loads(curl(f"http://127.0.0.1:{port}/scope").stdout)
        assert info["server"] == ["127.0.0.1", port]
    assert json.loads(curl(f"{srv.https}/scope").stdout)["scheme"] == "https"


# --------------------------------------------------------------------------- quickstart


def test_quickstart_example(curl: Any, tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, PORT=str(port), PYTHONPATH=str(REPO_ROOT))
    err = tmp_path / "quickstart.err"
    with open(err, "wb") as errfh:
        proc = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "examples" / "quickstart.py")],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errfh,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"quickstart exited: {err.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"quickstart not listening: {err.read_text()}"
                time.sleep(0.05)
        assert curl(f"http://127.0.0.1:{port}/").stdout == b"hello"
        assert curl("--http2-prior-knowledge", f"http://127.0.0.1:{port}/").stdout == b"hello"
        proc.send_signal(signal.SIGTERM)
        assert wait_exit(proc, 10) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "yaml_text,key,line",
    [
        ("# e2e config\nworkers: 0\nkeep_alive_timeout: soon\n", "keep_alive_timeout", 3),
        ("workers: 0\n\nhttp1_parser: fastest\nloglevel: info\n", "http1_parser", 3),
        ("keep_alive_max_requests: many\n", "keep_alive_max_requests", 1),
    ],
)
def test_config_error_exit_2(tmp_path: Path, yaml_text: str, key: str, line: int) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecorn",
            "-c",
            str(config),
            "tests.apps.e2e:app",
            "--bind",
            f"127.0.0.1:{free_port()}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{proc.stderr}"
    assert key in lines[0]
    assert re.search(rf"(line {line}\b|:{line}\b)", lines[0]), lines[0]
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- access log


def test_access_log_on_stdout(server: Any, curl: Any) -> None:
    probe = uuid.uuid4().hex
    curl("--http1.1", f"{server.http}/scope?probe={probe}")
    curl("--http2", f"{server.https}/scope?probe2={probe}")
    text = server.wait_stdout(f"probe2={probe}")
    h1_lines = [ln for ln in text.splitlines() if f"probe={probe}" in ln]
    h2_lines = [ln for ln in text.splitlines() if f"probe2={probe}" in ln]
    assert len(h1_lines) == 1 and len(h2_lines) == 1, text[-2000:]
    assert f'"GET /scope?probe={probe} HTTP/1.1" 200' in h1_lines[0]
    assert re.search(rf'"GET /scope\?probe2={probe} HTTP/2(\.0)?" 200', h2_lines[0]), h2_lines
    assert re.match(r"127\.0\.0\.1:\d+ ", h1_lines[0]), h1_lines  # %(h)s as Hypercorn
