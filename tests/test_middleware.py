"""edgecorn.middleware: Hypercorn's documented middleware examples (tests/apps/middleware.py)
run under a real edgecorn, on the asyncio and the trio workers, driven by curl and websockets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)

LOOPS = ["asyncio", "trio"]


def start(factory: Any, app: str, loop: str, *extra: str) -> Any:
    return factory.start("-k", loop, *extra, app=f"tests.apps.middleware:{app}")


def get(curl: Any, url: str, *args: str) -> Any:
    return json.loads(curl(*args, url).stdout)


@pytest.mark.parametrize("loop", LOOPS)
def test_dispatcher_mounts_and_lifespan(server_factory: Any, curl: Any, loop: str) -> None:
    server = start(server_factory, "dispatcher_app", loop)
    base = server.http
    api = get(curl, f"{base}/api/users?x=1")
    assert (api["app"], api["path"], api["root_path"]) == ("api", "/api/users", "/api")
    # every mounted app that speaks lifespan was started once; "plain" raised and is left out
    assert api["started"] == ["api", "other"]
    assert get(curl, f"{base}/api")["app"] == "api"
    other = get(curl, f"{base}/apiary")  # not under /api: a path segment must match
    assert (other["app"], other["root_path"]) == ("other", "")
    assert get(curl, f"{base}/plain/x")["app"] == "plain"
    assert get(curl, f"{server.https}/api/x", "--http2")["app"] == "api"
    server.stop()
    assert "Traceback" not in server.stderr()


def test_dispatcher_without_a_root_mount_404s(server_factory: Any, curl: Any) -> None:
    server = server_factory.start(app="tests.apps.middleware:dispatcher_api_only")
    result = curl("-w", "%{http_code}", f"{server.http}/elsewhere")
    assert result.stdout == b"404"
    assert get(curl, f"{server.http}/api/")["app"] == "api"


def test_dispatcher_startup_failure_stops_the_server(server_factory: Any) -> None:
    server = server_factory.spawn(
        ["tests.apps.middleware:dispatcher_failing", "-w", "0", "-b", "127.0.0.1:0"]
    )
    assert server.proc.wait(30) == 3
    assert "edgecorn: error: application startup failed: db down" in server.stderr()


@pytest.mark.parametrize("loop", LOOPS)
def test_http_to_https_redirect(server_factory: Any, curl: Any, loop: str) -> None:
    server = start(server_factory, "redirected_app", loop)
    head = curl(
        "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"{server.http}/a%20b/c?q=1"
    )
    assert head.text == "307 https://example.com/a%20b/c?q=1"
    # over TLS the app answers
    assert get(curl, f"{server.https}/a")["app"] == "secure"
    same = start(server_factory, "redirected_same_host", loop)
    head = curl(
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        "Host: shop.example:8080",
        f"{same.http}/cart",
    )
    assert head.text == "307 https://shop.example:8080/cart"


def test_http_to_https_websocket_redirect(server_factory: Any, h1: Any) -> None:
    """A raw handshake (a WebSocket client would follow the redirect off this machine)."""
    server = server_factory.start(app="tests.apps.middleware:redirected_app")
    conn = h1(server.insecure_port)
    conn.request(
        "GET",
        "/chat?room=1",
        headers=[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    response = conn.read_response()
    assert response.status == 307
    assert response.header("location") == "wss://example.com/chat?room=1"


@pytest.mark.parametrize("loop", LOOPS)
def test_proxy_fix_legacy(server_factory: Any, curl: Any, loop: str) -> None:
    server = start(server_factory, "fixed_app", loop)
    seen = get(
        curl,
        f"{server.http}/",
        "-H",
        "X-Forwarded-For: 203.0.113.9, 198.51.100.7",
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Forwarded-Host: shop.example",
    )
    # trusted_hops=1: the rightmost entry is the one our proxy wrote
    assert seen["client"] == ["198.51.100.7", 0]
    assert (seen["scheme"], seen["host"]) == ("https", "shop.example")
    plain = get(curl, f"{server.http}/")
    assert plain["client"][0] == "127.0.0.1" and plain["scheme"] == "http"


def test_proxy_fix_modern_two_hops(server_factory: Any, curl: Any) -> None:
    server = server_factory.start(app="tests.apps.middleware:fixed_modern")
    seen = get(
        curl,
        f"{server.http}/",
        "-H",
        'Forwarded: for=192.0.2.60;proto=https;host="a.example", for=198.51.100.17',
    )
    assert seen["client"] == ["192.0.2.60", 0]
    assert (seen["scheme"], seen["host"]) == ("https", "a.example")
    one_hop = get(curl, f"{server.http}/", "-H", "Forwarded: for=192.0.2.60")
    assert one_hop["client"][0] == "127.0.0.1"  # fewer entries than hops: not believed


def test_proxy_fix_trusted_proxies(server_factory: Any, curl: Any) -> None:
    """Only a peer inside trusted_proxies may set the client address; 127.0.0.1 is not."""
    server = server_factory.start(app="tests.apps.middleware:fixed_cidr")
    seen = get(curl, f"{server.http}/", "-H", "X-Forwarded-For: 203.0.113.9")
    assert seen["client"][0] == "127.0.0.1"


@pytest.mark.parametrize("app, loop", [("asyncio_app", "asyncio"), ("trio_app", "trio")])
def test_wsgi_middleware(
    server_factory: Any, curl: Any, tmp_path: Path, app: str, loop: str
) -> None:
    server = start(server_factory, app, loop)
    assert curl(f"{server.http}/hello").stdout == b"wsgi /hello 0"
    assert (
        curl("--data-binary", "x" * 1000, f"{server.https}/up", "--http2").stdout
        == b"wsgi /up 1000"
    )
    # Hypercorn's default max_body_size (64 KiB): a bigger body gets 413
    body = tmp_path / "big.bin"
    body.write_bytes(b"x" * (100 * 1024))
    big = curl(
        "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", f"@{body}", f"{server.http}/up"
    )
    assert big.stdout == b"413"
