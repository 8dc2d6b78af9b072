"""The ASGI extensions `tls`, `http.response.pathsend` and `http.response.push`, end to end
with independent clients (curl, nghttp, h2load, gtlsclient, curl_cffi) and the h2 library as
a push-enabled client; tests/apps/extensions.py is the app."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.h3 import cffi_h3, gtlsclient, wait_quic

pytestmark = [pytest.mark.timeout(120), pytest.mark.both_backends]

APP = "tests.apps.extensions:app"
SIZE = 5 * 1024 * 1024
CHACHA = "--ciphers=NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305"
TLS13_CHACHA = 0x1303
TLS12_ECDSA_AES128 = 0xC02B  # ECDHE-ECDSA-AES128-GCM-SHA256 (the dev certificate is ECDSA)


@pytest.fixture(scope="module")
def ext_server(session_factory: Any) -> Iterator[Any]:
    """TLS h1/h2 and HTTP/3 on one port, cleartext h1/h2c on another."""
    server = session_factory.start(app=APP)
    wait_quic(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("pathsend") / "big.bin"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def server_pem(certfile: str) -> str:
    leaf = x509.load_pem_x509_certificates(Path(certfile).read_bytes())[0]
    return leaf.public_bytes(serialization.Encoding.PEM).decode()


def info(result: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# --------------------------------------------------------------------------- tls


def test_tls_over_tcp(ext_server: Any, curl: Any, certs: tuple[str, str, str]) -> None:
    url = f"https://localhost:{ext_server.port}/x"
    for version, flag in (("1.1", "--http1.1"), ("2", "--http2")):
        got = info(curl(flag, "--tls13-ciphers", "TLS_CHACHA20_POLY1305_SHA256", url))
        assert got["version"] == version
        assert "tls" in got["extensions"]
        tls = got["tls"]
        assert tls == {
            "server_cert": server_pem(certs[0]),
            "client_cert_chain": [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": 0x0304,
            "cipher_suite": TLS13_CHACHA,
        }
    got = info(
        curl(
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            "--ciphers",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            url,
        )
    )
    assert (got["tls"]["tls_version"], got["tls"]["cipher_suite"]) == (0x0303, TLS12_ECDSA_AES128)


def test_tls_over_quic(ext_server: Any, certs: tuple[str, str, str], tmp_path: Path) -> None:
    port = ext_server.port
    run = gtlsclient(port, f"https://127.0.0.1:{port}/x", download=tmp_path / "dl", extra=[CHACHA])
    assert run.alpn == "h3" and run.statuses() == [200], run.summary()
    got = json.loads(run.file("x").read_bytes())
    assert got["version"] == "3"
    assert got["tls"] == {
        "server_cert": server_pem(certs[0]),
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": 0x0304,
        "cipher_suite": TLS13_CHACHA,
    }


def test_no_tls_in_cleartext(ext_server: Any, curl: Any) -> None:
    url = f"http://127.0.0.1:{ext_server.insecure_port}/x"
    for flag, version in (("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")):
        got = info(curl(flag, url))
        assert got["version"] == version
        assert got["tls"] is None and "tls" not in got["extensions"]
        assert "http.response.pathsend" in got["extensions"]


def client_certificate(cafile: str, folder: Path) -> tuple[Path, Path, str]:
    """A client certificate for CN=alice signed by the test CA (its key is beside it)."""
    ca_cert = x509.load_pem_x509_certificate(Path(cafile).read_bytes())
    ca_key = serialization.load_pem_private_key((Path(cafile).parent / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgecorn tests"),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "alice.pem", folder / "alice.key"
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path.write_text(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, pem


@pytest.mark.parametrize("mode", ["CERT_OPTIONAL", "CERT_REQUIRED"])
def test_client_certificate(
    server_factory: Any, curl: Any, cafile: str, tmp_path: Path, mode: str
) -> None:
    cert_path, key_path, pem = client_certificate(cafile, tmp_path)
    server = server_factory.start(
        app=APP, insecure=False, config=f"verify_mode: {mode}\nca_certs: {cafile}\n"
    )
    url = f"https://localhost:{server.port}/x"
    for flag in ("--http1.1", "--http2"):
        got = info(curl(flag, "--cert", str(cert_path), "--key", str(key_path), url))
        tls = got["tls"]
        assert tls["client_cert_chain"] == [pem]
        assert tls["client_cert_name"] == "O=edgecorn tests,CN=alice"
        assert tls["client_cert_error"] is None
    without = curl("--http1.1", url, check=False)
    if mode == "CERT_OPTIONAL":
        assert without.returncode == 0, without.stderr
        tls = json.loads(without.stdout)["tls"]
        assert (tls["client_cert_chain"], tls["client_cert_name"]) == ([], None)
    else:
        assert without.returncode != 0 and not without.stdout


# --------------------------------------------------------------------------- pathsend


def test_pathsend_h1_h2(ext_server: Any, curl: Any, big_file: tuple[Path, str]) -> None:
    path, digest = big_file
    query = f"/file?path={path}"
    for url, flag in (
        (f"https://localhost:{ext_server.port}{query}", "--http1.1"),
        (f"https://localhost:{ext_server.port}{query}", "--http2"),
        (f"http://127.0.0.1:{ext_server.insecure_port}{query}", "--http1.1"),
        (f"http://127.0.0.1:{ext_server.insecure_port}{query}", "--http2-prior-knowledge"),
    ):
        result = curl(flag, url)
        assert (len(result.stdout), hashlib.sha256(result.stdout).hexdigest()) == (SIZE, digest)


def test_pathsend_h3(ext_server: Any, cafile: str, big_file: tuple[Path, str]) -> None:
    path, digest = big_file
    r = cffi_h3("GET", f"https://127.0.0.1:{ext_server.port}/file?path={path}", cafile)
    assert r.status_code == 200 and r.http_version == 30
    assert (len(r.content), hashlib.sha256(r.content).hexdigest()) == (SIZE, digest)


def test_pathsend_missing_file_is_500(ext_server: Any, curl: Any, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{ext_server.insecure_port}/file?path={tmp_path}/nothing"
    # the app's os.stat raises first; a pathsend of a vanished file fails the same way
    result = curl("-o", "/dev/null", "-w", "%{http_code}", url)
    assert result.stdout == b"500"


# --------------------------------------------------------------------------- push


@pytest.mark.both_http2_engines
def test_push_to_h2_client_that_allows_it(ext_server: Any, h2conn: Any) -> None:
    conn = h2conn(ext_server.port)  # the h2 library's client: SETTINGS_ENABLE_PUSH=1
    assert "http.response.push" in json.loads(conn.get("/x").body)["extensions"]
    parent = conn.request("GET", "/page")
    page = conn.response(parent)
    assert (page.status, page.body) == (200, b"page")
    assert len(conn.pushes) == 2
    for event, asset in zip(conn.pushes, ("/style.css", "/script.js"), strict=True):
        fields = dict(event.headers)
        assert fields[b":path"] == asset.encode()
        assert fields[b":method"] == b"GET" and fields[b":scheme"] == b"https"
        assert fields[b":authority"] == f"localhost:{ext_server.port}".encode()
        assert fields[b"x-pushed"] == b"1"
        assert event.parent_stream_id == parent and event.pushed_stream_id % 2 == 0
        pushed = conn.response(event.pushed_stream_id)
        assert pushed.status == 200
        assert pushed.body == f"GET {asset} pushed=1".encode()
    # still usable afterwards, and a pushed stream's own scope does not offer push
    assert conn.get("/x").status == 200


@pytest.mark.both_http2_engines
def test_no_push_when_client_disables_it(ext_server: Any, h2conn: Any) -> None:
    conn = h2conn(ext_server.port, settings={0x2: 0})  # SETTINGS_ENABLE_PUSH=0
    assert "http.response.push" not in json.loads(conn.get("/x").body)["extensions"]
    page = conn.get("/page")
    assert (page.status, page.body, conn.pushes) == (200, b"page", [])


def test_push_with_nghttp(ext_server: Any, cafile: str) -> None:
    exe = shutil.which("nghttp")
    if exe is None:
        pytest.fail("nghttp is not installed")
    url = f"https://localhost:{ext_server.port}/page"
    env = {**os.environ, "SSL_CERT_FILE": cafile}
    proc = subprocess.run([exe, "-nv", url], capture_output=True, timeout=30, env=env)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out[-3000:]
    assert out.count("recv PUSH_PROMISE frame") == 2, out[-3000:]
    assert re.search(r":path: /style\.css", out) and re.search(r":path: /script\.js", out)
    # both pushed streams were answered and ended
    promised = re.findall(r"promised_stream_id=(\d+)", out)
    for sid in promised:
        assert re.search(rf"recv DATA frame <length=\d+, flags=0x01, stream_id={sid}>", out), out
    quiet = subprocess.run([exe, "--no-push", url], capture_output=True, timeout=30, env=env)
    assert (quiet.returncode, quiet.stdout) == (0, b"page")


def test_push_ignored_elsewhere(ext_server: Any, curl: Any, cafile: str) -> None:
    https = f"https://localhost:{ext_server.port}"
    # curl: h1, and h2 where libcurl disables push
    for flag in ("--http1.1", "--http2"):
        assert curl(flag, f"{https}/page").stdout == b"page"
        assert "http.response.push" not in info(curl(flag, f"{https}/x"))["extensions"]
    r = cffi_h3("GET", f"https://127.0.0.1:{ext_server.port}/page", cafile)
    assert (r.status_code, r.content, r.http_version) == (200, b"page", 30)
    r = cffi_h3("GET", f"https://127.0.0.1:{ext_server.port}/x", cafile)
    assert "http.response.push" not in r.json()["extensions"]
    assert "tls" in r.json()["extensions"]
    h2load = shutil.which("h2load")
    if h2load is None:
        pytest.fail("h2load is not installed")
    proc = subprocess.run(
        [h2load, "-n", "20", "-c", "2", f"{https}/page"], capture_output=True, timeout=60
    )
    out = proc.stdout.decode(errors="replace")
    assert "20 succeeded" in out and "20 2xx" in out, out


def test_tls_over_wss(ext_server: Any, cafile: str) -> None:
    """The TLS extension covers WebSockets over TLS too (and not ws://)."""
    import ssl

    from websockets.sync.client import connect

    context = ssl.create_default_context(cafile=cafile)
    with connect(f"wss://localhost:{ext_server.port}/ws", ssl=context, open_timeout=10) as ws:
        report = json.loads(ws.recv(timeout=10))
    assert report["tls"]["tls_version"] in (0x0303, 0x0304)
    assert "websocket.http.response" in report["extensions"]
    with connect(f"ws://127.0.0.1:{ext_server.insecure_port}/ws", open_timeout=10) as ws:
        report = json.loads(ws.recv(timeout=10))
    assert report["tls"] is None and "tls" not in report["extensions"]


# --------------------------------------------------------------------------- push, sans-IO


def h2_pair(enable_push: int = 1, max_streams: int | None = None) -> tuple[Any, Any]:
    """Our adapter and an h2-library client, settled, with `GET /` open on stream 1."""
    import h2.config
    import h2.connection

    from edgecorn.protocol.h2 import H2Adapter

    server = H2Adapter(
        max_concurrent_streams=100,
        max_header_list_size=65536,
        max_inbound_frame_size=16384,
        max_requests=1000,
    )
    server.initiate()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    settings = {0x2: enable_push}
    if max_streams is not None:
        settings[0x3] = max_streams
    client.update_settings(settings)
    client.send_headers(
        1, [(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", "/")]
    )
    events = server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())  # the client's SETTINGS ack
    assert events[-1].push == bool(enable_push)
    return server, client


FIELDS = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/x")]


def test_h2_adapter_push() -> None:
    import h2.events

    server, client = h2_pair()
    events = server.push(1, FIELDS)
    assert [type(e).__name__ for e in events] == ["Request", "EndBody"]
    request = events[0]
    assert (request.stream_id, request.method, request.raw_path, request.push) == (
        2,
        "GET",
        b"/x",
        False,
    )
    received = client.receive_data(server.data_to_send())
    assert [type(e) for e in received] == [h2.events.PushedStreamReceived]
    assert server.push(2, FIELDS) == []  # a pushed stream does not push
    server.send_response(2, 200, [], b"ok", True)
    received = client.receive_data(server.data_to_send())
    assert {type(e) for e in received} >= {h2.events.ResponseReceived, h2.events.StreamEnded}
    server.goaway()
    assert server.push(1, FIELDS) == []  # nothing new after GOAWAY


def test_h2_adapter_no_push() -> None:
    server, _ = h2_pair(enable_push=0)
    assert server.push(1, FIELDS) == [] and server.data_to_send() == b""
    server, _ = h2_pair(max_streams=1)
    assert len(server.push(1, FIELDS)) == 2
    assert server.push(1, FIELDS) == []  # the client's stream limit is reached
    assert server.push(99, FIELDS) == []  # no such stream


def test_h2_cancelled_pushes_are_not_rapid_reset() -> None:
    """Clients cancel pushes they have cached: that is not a flood."""
    server, client = h2_pair()
    for _ in range(300):
        (request, _) = server.push(1, FIELDS)
        client.receive_data(server.data_to_send())
        client.reset_stream(request.stream_id, 0x8)
        events = server.receive_data(client.data_to_send())
        assert not any(type(e).__name__ == "ProtocolError" for e in events)
    assert not server.terminated
