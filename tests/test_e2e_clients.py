"""Independent clients against the server: curl (h1, h2 over ALPN, h2c both ways) and h2load."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgecorn.tcp import FLUSH_TIMEOUT
from tests.apps.e2e import HELLO
from tests.support.wait import wait_until

pytestmark = [pytest.mark.timeout(90), pytest.mark.both_backends]


def test_curl_http11_cleartext(h1_server: Any, curl: Any) -> None:
    result = curl("--http1.1", "-w", "\n%{http_version}", f"{h1_server.http}/")
    body, version = result.stdout.rsplit(b"\n", 1)
    assert (body, version) == (HELLO, b"1.1")


def test_curl_http11_over_tls(h1_server: Any, curl: Any) -> None:
    result = curl("-v", "--http1.1", "-w", "\n%{http_version}", f"{h1_server.https}/")
    body, version = result.stdout.rsplit(b"\n", 1)
    assert (body, version) == (HELLO, b"1.1")
    assert "ALPN: server accepted http/1.1" in result.stderr


def test_curl_http2_over_tls_alpn(server: Any, curl: Any) -> None:
    result = curl("-v", "--http2", "-w", "\n%{http_version}", f"{server.https}/")
    body, version = result.stdout.rsplit(b"\n", 1)
    assert (body, version) == (HELLO, b"2")
    assert "ALPN: server accepted h2" in result.stderr


def test_curl_tls_verifies_localhost_name(server: Any, curl: Any) -> None:
    result = curl(
        "--http2",
        "--resolve",
        f"localhost:{server.port}:127.0.0.1",
        "-w",
        "\n%{http_version}",
        f"https://localhost:{server.port}/scope",
    )
    body, version = result.stdout.rsplit(b"\n", 1)
    assert version == b"2"
    assert json.loads(body)["scheme"] == "https"


def test_curl_h2c_prior_knowledge(server: Any, curl: Any) -> None:
    result = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", f"{server.http}/scope")
    body, version = result.stdout.rsplit(b"\n", 1)
    assert version == b"2"
    info = json.loads(body)
    assert (info["http_version"], info["scheme"]) == ("2", "http")


def test_curl_h2c_upgrade_get(h1_server: Any, curl: Any) -> None:
    result = curl("-v", "--http2", "-w", "\n%{http_version}", f"{h1_server.http}/scope")
    body, version = result.stdout.rsplit(b"\n", 1)
    assert "HTTP/1.1 101" in result.stderr, result.stderr
    assert version == b"2"
    assert json.loads(body)["http_version"] == "2"


def _sockets(pid: int) -> int:
    """The server process's open sockets (listeners, loop wake-ups, connections)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fd_dir.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            pass  # closed while we looked
    return count


UPGRADES = 10  # curl runs; each used to leave a socket behind most of the time on trio


def test_curl_h2c_upgrade_connections_close_at_once(server_factory: Any, curl: Any) -> None:
    """After `curl --http2 http://...` (Upgrade: h2c) the server's socket closes at once.

    curl has its response before the server has read the client preface, so it closes
    while the server is still to acknowledge curl's SETTINGS: those 9 bytes meet a
    closed socket, which answers RST. On trio the lingering close then waited
    FLUSH_TIMEOUT for acks of bytes the kernel still counted as unacknowledged."""
    server = server_factory.start(tls=False)
    idle = _sockets(server.pid)
    for _ in range(UPGRADES):
        result = curl("--http2", "-w", "\n%{http_version}", f"{server.http}/")
        assert result.stdout.rsplit(b"\n", 1) == [HELLO, b"2"]
    # Closing takes milliseconds; the bug held each socket FLUSH_TIMEOUT.
    closed = wait_until(lambda: _sockets(server.pid) == idle, FLUSH_TIMEOUT / 2)
    assert closed, f"{_sockets(server.pid) - idle} of {UPGRADES} connections still open"


def test_curl_h2c_upgrade_post_body(h1_server: Any, curl: Any) -> None:
    payload = "upgrade-with-body-" * 500
    result = curl(
        "-v",
        "--http2",
        "--data-binary",
        payload,
        "-w",
        "\n%{http_version}",
        f"{h1_server.http}/echo",
    )
    body, version = result.stdout.rsplit(b"\n", 1)
    assert "HTTP/1.1 101" in result.stderr, result.stderr
    assert version == b"2"
    assert body == payload.encode()


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_curl_head(server: Any, curl: Any, flag: str) -> None:
    result = curl(flag, "-I", f"{server.https}/")
    assert re.match(rb"HTTP/(1\.1|2) 200", result.stdout), result.stdout
    assert re.search(rb"(?im)^content-length: 13\r?$", result.stdout), result.stdout


H2LOAD_LINE = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored"
)


def run_h2load(*args: str) -> tuple[dict[str, int], str]:
    exe = shutil.which("h2load")
    if exe is None:
        pytest.fail("h2load is not installed (scripts/test installs nghttp2-client)")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    match = H2LOAD_LINE.search(proc.stdout)
    assert match, f"no requests line in h2load output:\n{proc.stdout}\n{proc.stderr}"
    keys = ("total", "started", "done", "succeeded", "failed", "errored")
    return dict(zip(keys, map(int, match.groups()), strict=True)), proc.stdout


@pytest.mark.parametrize("scheme", ["https", "h2c"])
def test_h2load(server: Any, scheme: str) -> None:
    url = f"{server.https}/" if scheme == "https" else f"{server.http}/"
    counts, output = run_h2load("-n", "400", "-c", "4", "-m", "10", url)
    assert counts["succeeded"] == 400, output
    assert counts["failed"] == 0 and counts["errored"] == 0, output
    assert "400 2xx" in output, output
    if scheme == "https":
        assert "Application protocol: h2" in output, output


def test_h2load_post_bodies(server: Any, tmp_path: Any) -> None:
    data = tmp_path / "body.bin"
    data.write_bytes(b"z" * 100_000)
    counts, output = run_h2load(
        "-n", "100", "-c", "2", "-m", "5", "-d", str(data), f"{server.https}/body"
    )
    assert counts["succeeded"] == 100 and counts["failed"] == 0, output
