"""server_names as in Hypercorn: a request whose Host is not listed gets the server's own 404,
on h1, h2 and h3 (and for WebSocket handshakes), with real clients over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.apps.e2e import HELLO
from tests.support.h3 import cffi_h3, wait_quic

pytestmark = pytest.mark.timeout(90)

REFUSED = b"404 Not Found\n"  # the server's answer; the test app's own 404 says "not found"


@pytest.fixture(scope="module")
def named(session_factory: Any) -> Iterator[Any]:
    server = session_factory.start(
        "--server-name", "localhost", "--server-name", "api.example:8443"
    )
    wait_quic(server)
    yield server
    server.stop()


@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
def test_tls_host_not_listed(named: Any, curl: Any, http: str) -> None:
    url = f"https://localhost:{named.port}/"
    ok = curl(http, "-w", "\n%{http_code} %{http_version}", url)
    assert ok.stdout == HELLO + b"\n200 " + (b"1.1" if http == "--http1.1" else b"2")
    refused = curl(http, "-w", "\n%{http_code}", "-H", "Host: other.example", url)
    assert refused.stdout == REFUSED + b"\n404"
    # listed with its port: only that port matches, as the Host header carries it
    listed = curl(http, "-w", "\n%{http_code}", "-H", "Host: api.example:8443", url)
    assert listed.stdout.endswith(b"\n200"), listed.stdout
    other_port = curl(http, "-w", "\n%{http_code}", "-H", "Host: api.example:9", url)
    assert other_port.stdout == REFUSED + b"\n404"


def test_cleartext_and_h2c(named: Any, curl: Any) -> None:
    url = f"http://localhost:{named.insecure_port}/"
    assert curl("-w", "\n%{http_code}", url).stdout == HELLO + b"\n200"
    for flags in ([], ["--http2-prior-knowledge"]):
        refused = curl(*flags, "-w", "\n%{http_code}", "-H", "Host: evil.example", url)
        assert refused.stdout == REFUSED + b"\n404", flags
    # the name, not the address: 127.0.0.1 is not in the list
    refused = curl("-w", "\n%{http_code}", f"http://127.0.0.1:{named.insecure_port}/")
    assert refused.stdout == REFUSED + b"\n404"


def test_h3(named: Any, cafile: str) -> None:
    ok = cffi_h3("GET", f"https://localhost:{named.port}/", cafile)
    assert (ok.status_code, ok.content) == (200, HELLO)
    refused = cffi_h3("GET", f"https://127.0.0.1:{named.port}/", cafile)
    assert (refused.status_code, refused.content) == (404, REFUSED)
    assert refused.http_version == ok.http_version


def test_access_log_shows_the_404(named: Any, curl: Any) -> None:
    curl("-H", "Host: logged.example", f"http://localhost:{named.insecure_port}/?logme=1")
    named.wait_stdout("logme=1")
    line = next(line for line in named.stdout().splitlines() if "logme=1" in line)
    assert '"GET /?logme=1 HTTP/1.1" 404 ' in line  # the app would have said 200


def test_websocket_handshake_refused(named: Any) -> None:
    websockets = pytest.importorskip("websockets.sync.client")
    from websockets.exceptions import InvalidStatus

    uri = f"ws://127.0.0.1:{named.insecure_port}/ws"
    with pytest.raises(InvalidStatus) as info:
        websockets.connect(uri, open_timeout=10)
    assert info.value.response.status_code == 404


def test_no_names_serves_any_host(server: Any, curl: Any) -> None:
    result = curl(
        "-w",
        "\n%{http_code}",
        "-H",
        "Host: anything.example",
        f"http://127.0.0.1:{server.insecure_port}/",
    )
    assert result.stdout == HELLO + b"\n200"
