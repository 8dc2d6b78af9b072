"""`certificates:` picked by SNI over TCP (openssl s_client) and QUIC (gtlsclient, curl_cffi),
reloaded when the files change (a download in flight keeps its certificate) and on SIGHUP,
a failed reload keeps the old one, and config errors name the entry's line."""

from __future__ import annotations

import datetime
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgecorn.config import Config, ConfigError
from tests.support.h3 import cffi_h3, gtls_exe, wait_quic
from tests.support.net import free_port
from tests.support.wait import wait_until

MIB = 1024 * 1024
RELOAD_WAIT = 20.0  # reloads are looked for every 5 s; bound the polling generously


# --------------------------------------------------------------------------- certificates


class CA:
    """A throwaway CA issuing leaves whose CN is a label the tests look for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sni test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.file = folder / "ca.pem"
        self.file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def leaf(self, stem: str, label: str, names: list[str]) -> tuple[str, str]:
        """Write `stem.pem`/`stem.key` (key first, each renamed into place, as tools do)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        paths = self.folder / f"{stem}.pem", self.folder / f"{stem}.key"
        for path, data in ((paths[1], key_pem), (paths[0], cert_pem)):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return str(paths[0]), str(paths[1])


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    folder = tmp_path / "tls"
    folder.mkdir()
    return CA(folder)


def edge_yaml(ca: CA) -> str:
    """default (no names), a.test, *.b.test, localhost (what gtlsclient sends)."""
    ca.leaf("default", "entry-default", ["default.test"])
    ca.leaf("a", "entry-a", ["a.test"])
    ca.leaf("wild", "entry-wild", ["*.b.test"])
    ca.leaf("local", "entry-local", ["localhost"])
    return f"""
certificates:
  - {{cert: {ca.folder}/default.pem, key: {ca.folder}/default.key}}
  - cert: {ca.folder}/a.pem
    key: {ca.folder}/a.key
    names: [a.test, A2.test]
  - {{cert: {ca.folder}/wild.pem, key: {ca.folder}/wild.key, names: ["*.b.test"]}}
  - {{cert: {ca.folder}/local.pem, key: {ca.folder}/local.key, names: [localhost]}}
"""


def tcp_label(port: int, server_name: str | None) -> str:
    """The CN of the certificate openssl s_client is shown for this SNI (None: no SNI)."""
    sni = ["-servername", server_name] if server_name else ["-noservername"]
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *sni],
        input=b"",
        capture_output=True,
        timeout=15,
    )
    match = re.search(rb"^subject=.*?CN\s*=\s*(\S+)", result.stdout, re.M)
    assert match, result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    return match.group(1).decode()


def gtls_dump(port: int, tmp_path: Path) -> str:
    """One bounded gtlsclient GET with its CRYPTO dump (h3util's runs switch that off)."""
    result = subprocess.run(
        [
            gtls_exe(),
            "--exit-on-all-streams-close",
            "--no-http-dump",
            "--handshake-timeout=5s",
            "--timeout=10s",
            f"--download={tmp_path}",
            "127.0.0.1",
            str(port),
            f"https://127.0.0.1:{port}/",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert "[:status: 200]" in output or ":status: 200" in output, output[-3000:]
    return output


def gtls_labels(output: str) -> set[str]:
    """The `entry-*` CNs in the CRYPTO data gtlsclient dumps (the server's certificate)."""
    data = bytearray()
    for line in output.splitlines():
        match = re.match(r"^[0-9a-f]{8}  ((?:[0-9a-f]{2} {1,2}){1,16})", line)
        if match:
            data += bytes.fromhex(match.group(1).replace(" ", ""))
    return {m.decode() for m in re.findall(rb"entry-[a-z]+", bytes(data))}


# --------------------------------------------------------------------------- TCP


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"], indirect=True)
def test_tcp_picks_certificate_by_sni(server_factory: Any, ca: CA) -> None:
    server = server_factory.start(tls=False, insecure=False, config=edge_yaml(ca))
    port = server.port
    assert tcp_label(port, "a.test") == "entry-a"
    assert tcp_label(port, "A2.TEST") == "entry-a"  # names are case-insensitive
    assert tcp_label(port, "x.b.test") == "entry-wild"
    assert tcp_label(port, "y.x.b.test") == "entry-default"  # a wildcard is one label
    assert tcp_label(port, "b.test") == "entry-default"
    assert tcp_label(port, "other.test") == "entry-default"
    assert tcp_label(port, None) == "entry-default"
    # and the connection serves: a verifying client, h2 by ALPN, for a swapped-in entry
    ctx = ssl.create_default_context(cafile=str(ca.file))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="x.b.test") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2",
            "--cacert",
            str(ca.file),
            "--resolve",
            f"a.test:{port}:127.0.0.1",
            f"https://a.test:{port}/",
        ],
        capture_output=True,
        timeout=15,
    )
    assert result.returncode == 0 and result.stdout == b"Hello, world!", result


# --------------------------------------------------------------------------- QUIC


def test_quic_picks_certificate_by_sni(server_factory: Any, ca: CA, tmp_path: Path) -> None:
    from curl_cffi import CurlOpt

    port = free_port()
    server = server_factory.spawn(
        [
            "tests.apps.e2e:app",
            "--workers",
            "0",
            "--bind",
            f"127.0.0.1:{port}",
            "-c",
            str(_write(tmp_path / "edge.yaml", edge_yaml(ca))),
        ]
    )
    server.port = port
    wait_quic(server)
    # ngtcp2 0.12's gtlsclient sends "localhost" for a numeric HOST (its --sni is ignored)
    assert gtls_labels(gtls_dump(port, tmp_path)) == {"entry-local"}
    # curl_cffi (BoringSSL) sends the URL's host; verifying against the CA proves the name
    for host in ("a.test", "x.b.test", "default.test"):
        response = cffi_h3(
            "GET",
            f"https://{host}:{port}/",
            str(ca.file),
            curl_options={CurlOpt.RESOLVE: [f"{host}:{port}:127.0.0.1"]},
        )
        assert response.status_code == 200 and response.content == b"Hello, world!", host


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- reloads


def spawn_edge(server_factory: Any, ca: CA, tmp_path: Path) -> Any:
    """TLS and QUIC on one free port, serving edge_yaml(ca), without a supervisor."""
    port = free_port()
    server = server_factory.spawn(
        [
            "tests.apps.e2e:app",
            "--workers",
            "0",
            "-k",
            server_factory.worker_class,
            "--bind",
            f"127.0.0.1:{port}",
            "-c",
            str(_write(tmp_path / "edge.yaml", edge_yaml(ca))),
        ]
    )
    server.port = port
    wait_quic(server)
    return server


def open_download(port: int, ca: CA, mib: int) -> tuple[ssl.SSLSocket, int]:
    """A TLS GET /big of `mib` MiB to a.test; returns the socket and body bytes read so far."""
    ctx = ssl.create_default_context(cafile=str(ca.file))
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    tls = ctx.wrap_socket(raw, server_hostname="a.test")
    tls.sendall(f"GET /big?mb={mib} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and f"content-length: {mib * MIB}".encode() in head
    return tls, len(body)


def subject_cn(tls: ssl.SSLSocket) -> str:
    peer = tls.getpeercert()
    assert peer is not None
    return dict(item[0] for item in peer["subject"])["commonName"]


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"], indirect=True)
def test_swap_on_disk_during_download(server_factory: Any, ca: CA, tmp_path: Path) -> None:
    server = spawn_edge(server_factory, ca, tmp_path)
    port = server.port
    tls, received = open_download(port, ca, 64)
    with tls:
        while received < MIB:  # well under way (the rest waits in the server: back-pressure)
            received += len(tls.recv(65536))
        ca.leaf("a", "entry-anew", ["a.test"])
        ca.leaf("local", "entry-localnew", ["localhost"])
        assert wait_until(lambda: tcp_label(port, "a.test") == "entry-anew", RELOAD_WAIT, 0.5), (
            server.stderr()
        )
        assert gtls_labels(gtls_dump(port, tmp_path)) == {"entry-localnew"}
        assert tcp_label(port, "x.b.test") == "entry-wild"  # untouched entries stay
        while received < 64 * MIB:
            chunk = tls.recv(1 << 20)
            assert chunk, f"download cut off after {received} bytes"
            received += len(chunk)
        assert received == 64 * MIB
        assert subject_cn(tls) == "entry-a"  # the open connection kept its certificate
    assert "Reloaded the certificate" in server.stderr()


def test_failed_reload_keeps_old_certificate(server_factory: Any, ca: CA, tmp_path: Path) -> None:
    server = spawn_edge(server_factory, ca, tmp_path)
    port = server.port
    Path(ca.folder / "a.pem").write_text("not a certificate\n")
    failed = f"Certificate {ca.folder}/a.pem not reloaded, the old one stays"
    assert wait_until(lambda: failed in server.stderr(), RELOAD_WAIT, 0.2), server.stderr()
    assert tcp_label(port, "a.test") == "entry-a"
    assert gtls_labels(gtls_dump(port, tmp_path)) == {"entry-local"}
    # SIGHUP reloads every entry now (no supervisor here); the broken one is not logged twice
    server.proc.send_signal(signal.SIGHUP)
    reloaded = f"Reloaded the certificate {ca.folder}/wild.pem"
    assert wait_until(lambda: reloaded in server.stderr(), RELOAD_WAIT, 0.2), server.stderr()
    assert server.alive()
    assert server.stderr().count(failed) == 1
    ca.leaf("a", "entry-afixed", ["a.test"])
    assert wait_until(lambda: tcp_label(port, "a.test") == "entry-afixed", RELOAD_WAIT, 0.5)


# --------------------------------------------------------------------------- configuration


def test_config_errors_name_the_entry_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "edge.yaml",
        """\
bind: ["127.0.0.1:8443"]
certificates:
  - {cert: a.pem, key: a.key}
  - cert: b.pem
    key: b.key
    names: ["*b.test"]
""",
    )
    with pytest.raises(ConfigError) as info:
        Config.from_yaml(path)
    assert str(info.value) == (
        f"{path}:6: certificates[1].names: a wildcard is '*.' in front of a domain with a "
        "dot, like '*.example.com', got '*b.test'"
    )
    _write(path, "certificates:\n  - {cert: a.pem, key: a.key}\n  - {cert: b.pem, kye: b.key}\n")
    with pytest.raises(ConfigError) as info:
        Config.from_yaml(path)
    assert str(info.value) == (
        f"{path}:3: certificates[1].kye: unknown field; an entry takes cert, key, names"
    )
    _write(path, "certificates:\n  - {cert: a.pem, key: a.key, names: [a.test]}\n")
    config = Config.from_yaml(path)  # paths are relative to the file
    assert [(c.cert, c.key, c.names) for c in config.certificates] == [
        (str(tmp_path / "a.pem"), str(tmp_path / "a.key"), ("a.test",))
    ]
    assert config.ssl_enabled


def test_start_refuses_bad_certificates(server_factory: Any, ca: CA, tmp_path: Path) -> None:
    text = edge_yaml(ca).replace(f"{ca.folder}/wild.pem", f"{ca.folder}/missing.pem")
    server = server_factory.spawn(
        [
            "tests.apps.e2e:app",
            "--workers",
            "0",
            "--bind",
            "127.0.0.1:0",
            "-c",
            str(_write(tmp_path / "edge.yaml", text)),
        ]
    )
    assert server.proc.wait(30) == 1
    assert f"certificates[2]: cannot load '{ca.folder}/missing.pem'" in server.stderr()
    certfile = ca.leaf("solo", "entry-solo", ["solo.test"])
    server = server_factory.spawn(
        [
            "tests.apps.e2e:app",
            "--workers",
            "0",
            "--bind",
            "127.0.0.1:0",
            "--certfile",
            certfile[0],
            "--keyfile",
            certfile[1],
            "-c",
            str(_write(tmp_path / "e2.yaml", text)),
        ]
    )
    assert server.proc.wait(30) == 1
    assert "give either certificates or certfile/keyfile, not both" in server.stderr()


def test_edgecorn_check_reads_certificates(ca: CA, tmp_path: Path) -> None:
    good = _write(
        tmp_path / "good.yaml",
        edge_yaml(ca) + "routes:\n  - {host: a.test, respond: {status: 200, body: hi}}\n",
    )
    result = subprocess.run(
        [sys.executable, "-m", "edgecorn", "check", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"  a.test, a2.test -> {ca.folder}/a.pem (expires " in result.stdout
    assert f"  (default) -> {ca.folder}/default.pem (expires " in result.stdout
    # a2.test is named but not in a.pem's SAN: a warning; a missing file: an error
    assert "certificates[1].names: 'a2.test' is not among the certificate's names" in (
        result.stdout + result.stderr
    )
    bad = _write(tmp_path / "bad.yaml", edge_yaml(ca).replace("wild.pem", "gone.pem"))
    result = subprocess.run(
        [sys.executable, "-m", "edgecorn", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"certificates[2]: cannot load '{ca.folder}/gone.pem': No such file or directory" in (
        result.stdout + result.stderr
    )
