"""`redirect_https` listeners answer 308 to https (curl), and a TLS port answers a cleartext
HTTP request with a 400 that says it speaks HTTPS, on both worker classes."""

from __future__ import annotations

import socket
import subprocess
from typing import Any

import pytest

from edgecorn.config import Config, ConfigError
from edgecorn.redirect import is_plain_http, location
from tests.support.net import free_port


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "15", *args], capture_output=True, timeout=30
    )


def head(result: subprocess.CompletedProcess[bytes]) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the last response `curl -i` printed."""
    text = result.stdout
    head_text, _, body = text[text.rfind(b"HTTP/") :].partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def start(server_factory: Any, *extra: str) -> tuple[Any, int]:
    port = free_port()
    server = server_factory.start(
        *extra,
        insecure=False,
        config=f'redirect_https: ["127.0.0.1:{port}"]\n',
        wait_ports=[port],
    )
    return server, port


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"], indirect=True)
def test_redirects_to_https(server_factory: Any, cafile: str) -> None:
    server, port = start(server_factory)
    tls = server.port
    status, headers, body = head(curl("-i", f"http://127.0.0.1:{port}/a/b%20c?x=1&y=%2F"))
    assert status == 308
    assert headers["location"] == f"https://127.0.0.1:{tls}/a/b%20c?x=1&y=%2F"
    assert body == f"Moved to https://127.0.0.1:{tls}/a/b%20c?x=1&y=%2F\n".encode()
    status, headers, _ = head(
        curl("-i", "-H", "Host: Example.TEST:8080", f"http://127.0.0.1:{port}/")
    )
    assert (status, headers["location"]) == (308, f"https://example.test:{tls}/")
    status, headers, _ = head(curl("-i", "-H", "Host: [::1]:80", f"http://127.0.0.1:{port}/x"))
    assert (status, headers["location"]) == (308, f"https://[::1]:{tls}/x")
    # h2c prior knowledge is HTTP/2 on the same listener: redirected all the same
    status, headers, _ = head(curl("-i", "--http2-prior-knowledge", f"http://127.0.0.1:{port}/"))
    assert (status, headers["location"]) == (308, f"https://127.0.0.1:{tls}/")
    # a client that follows: the POST (308 keeps method and body) reaches the app over TLS
    result = curl(
        "-L", "--cacert", cafile, "--data-binary", "payload", f"http://localhost:{port}/echo"
    )
    assert result.returncode == 0 and result.stdout == b"payload", result
    # one access-log line per answer: the redirect's (h1), then the app's over TLS (h2)
    log = server.stdout()
    assert '"POST /echo HTTP/1.1" 308' in log and '"POST /echo HTTP/2" 200' in log, log


def test_redirects_with_a_supervisor(server_factory: Any) -> None:
    """Workers get the redirect sockets from the supervisor too."""
    server, port = start(server_factory, "--workers", "1")
    status, headers, _ = head(curl("-i", f"http://127.0.0.1:{port}/w"))
    assert (status, headers["location"]) == (308, f"https://127.0.0.1:{server.port}/w")


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"], indirect=True)
def test_plain_http_on_tls_port_gets_400(server_factory: Any, cafile: str) -> None:
    server = server_factory.start(insecure=False)
    tls = server.port
    status, headers, body = head(curl("-i", f"http://127.0.0.1:{tls}/"))
    assert status == 400 and headers["connection"] == "close"
    assert b"This port speaks HTTPS" in body
    # a request with a body the server never reads: the answer still arrives whole
    with socket.create_connection(("127.0.0.1", tls), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        sock.sendall(b"x" * 100000)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and data.endswith(b"not http://.\n")
    # TLS on the same port is untouched
    result = curl("--cacert", cafile, f"https://localhost:{tls}/")
    assert result.returncode == 0 and result.stdout == b"Hello, world!", result


def test_location_and_peek_rules() -> None:
    scope = {
        "type": "http",
        "path": "/p",
        "raw_path": b"/p",
        "query_string": b"",
        "headers": [(b"host", b"example.com")],
        "server": ("10.0.0.1", 80),
    }
    assert location(scope, 443) == "https://example.com/p"
    assert location(scope, None) == "https://example.com/p"
    assert location({**scope, "headers": []}, 8443) == "https://10.0.0.1:8443/p"
    assert location({**scope, "headers": [], "server": ("::1", 80)}, 443) == "https://[::1]/p"
    assert location({**scope, "headers": [(b"host", b"evil.com/x")]}, 443) is None
    assert location({**scope, "headers": [], "server": ("/tmp/s", None)}, 443) is None
    assert is_plain_http(b"GET / HTTP/1.1") and is_plain_http(b"PRI * HTTP/2.0")
    assert not is_plain_http(b"\x16\x03\x01\x02\x00") and not is_plain_http(b"")
    assert not is_plain_http(b"\x80\x2e\x01")  # an SSLv2-style hello


def test_redirect_https_config() -> None:
    assert Config(redirect_https="0.0.0.0:8080").redirect_https == ["0.0.0.0:8080"]
    with pytest.raises(ConfigError) as info:
        Config(redirect_https=["0.0.0.0:99999"])
    assert str(info.value).startswith("redirect_https: expected ")
