"""HTTP/2 with the `h2` package as client, over TLS (ALPN h2) and h2c prior knowledge."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.apps.e2e import EARLY_HINT_LINK, HELLO, MIB, TRAILER_NAME, big_chunk, pattern
from tests.support.wait import wait_for_lines

pytestmark = [pytest.mark.timeout(60), pytest.mark.both_backends, pytest.mark.both_http2_engines]


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_hello_and_scope(server: Any, h2conn: Any, tls: bool) -> None:
    conn = h2conn(server.port if tls else server.insecure_port, tls=tls)
    resp = conn.get("/")
    assert (resp.status, resp.body) == (200, HELLO)
    resp = conn.get("/scope/a%20b%2Fc?q=1", headers=[("x-test", "v")])
    assert resp.status == 200
    info = json.loads(resp.body)
    assert info["http_version"] == "2"
    assert info["scheme"] == ("https" if tls else "http")
    assert (info["method"], info["path"]) == ("GET", "/scope/a b/c")
    assert (info["raw_path"], info["query_string"]) == ("/scope/a%20b%2Fc", "q=1")
    assert ["x-test", "v"] in info["headers"]
    assert not any(name.startswith(":") for name, _ in info["headers"])
    assert info["server"] == ["127.0.0.1", server.port if tls else server.insecure_port]
    assert info["client"][0] == "127.0.0.1"
    assert info["has_state"] and info["has_extensions"]


def test_streams_are_multiplexed(server: Any, h2conn: Any) -> None:
    conn = h2conn(server.port)
    slow = conn.request("GET", "/slow?s=2")
    fast = [conn.request("GET", f"/scope?i={i}") for i in range(10)]
    for i, stream_id in enumerate(fast):
        resp = conn.response(stream_id)
        assert resp.status == 200
        assert json.loads(resp.body)["query_string"] == f"i={i}"
    # The fast streams finished while the slow one, opened first, was still running.
    assert not conn.responses[slow].ended
    assert conn.response(slow).body == b"slow done"


def test_post_echo_with_flow_control(server: Any, h2conn: Any) -> None:
    conn = h2conn(server.port)
    body = pattern(3 * MIB + 17)  # well past the 64 KiB initial windows: needs WINDOW_UPDATEs
    resp = conn.response(conn.request("POST", "/echo", body=body))
    assert resp.status == 200
    assert hashlib.sha256(resp.body).hexdigest() == hashlib.sha256(body).hexdigest()


def test_big_download(server: Any, h2conn: Any) -> None:
    conn = h2conn(server.port)
    resp = conn.get("/big?mb=4")
    assert resp.status == 200
    assert resp.header(b"content-length") == str(4 * MIB).encode()
    assert resp.body == big_chunk() * 4


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_response_trailers(server: Any, h2conn: Any, tls: bool) -> None:
    conn = h2conn(server.port if tls else server.insecure_port, tls=tls)
    resp = conn.get("/trailers", headers=[("te", "trailers")])
    assert resp.status == 200
    assert resp.body == pattern(4096)
    assert resp.trailers == [(TRAILER_NAME, hashlib.sha256(resp.body).hexdigest().encode())]


def test_early_hints(server: Any, h2conn: Any) -> None:
    conn = h2conn(server.port)
    resp = conn.get("/early-hints")
    assert len(resp.informational) == 1, resp.informational
    hint = dict(resp.informational[0])
    assert hint[b":status"] == b"103"
    assert hint[b"link"] == EARLY_HINT_LINK
    assert (resp.status, resp.body) == (200, b"after early hints")


def test_disconnect_on_connection_close(server: Any, h2conn: Any, tmp_path: Path) -> None:
    record = tmp_path / "h2-close.txt"
    conn = h2conn(server.port)
    conn.request("GET", f"/disconnect?file={record}")
    assert "started" in wait_for_lines(record, "started")
    conn.close()
    assert wait_for_lines(record, "disconnect") == ["started", "disconnect"]


def test_disconnect_on_stream_reset(server: Any, h2conn: Any, tmp_path: Path) -> None:
    record = tmp_path / "h2-reset.txt"
    conn = h2conn(server.port)
    stream_id = conn.request("GET", f"/disconnect?file={record}")
    assert "started" in wait_for_lines(record, "started")
    conn.conn.reset_stream(stream_id, error_code=8)  # CANCEL
    conn.flush()
    assert wait_for_lines(record, "disconnect") == ["started", "disconnect"]
    # The connection itself lives on.
    assert conn.get("/").body == HELLO


def test_many_requests_on_one_connection(server: Any, h2conn: Any) -> None:
    conn = h2conn(server.insecure_port, tls=False)
    ids = [conn.request("POST", "/body", body=b"x" * i) for i in range(1, 60)]
    for i, stream_id in enumerate(ids, start=1):
        resp = conn.response(stream_id)
        assert resp.status == 200
        assert json.loads(resp.body)["length"] == i


@pytest.mark.parametrize("path", ["/", "/stream?n=3&size=100"])
def test_head_has_no_body(server: Any, h2conn: Any, path: str) -> None:
    import h2.exceptions

    conn = h2conn(server.port)
    try:
        resp = conn.response(conn.request("HEAD", path))
    except h2.exceptions.ProtocolError as exc:
        pytest.fail(f"invalid HEAD response (DATA sent for HEAD?): {exc!r}")
    assert resp.status == 200
    assert resp.body == b""
    assert conn.get("/").body == HELLO


def test_app_error_resets_only_its_stream(server: Any, h2conn: Any) -> None:
    conn = h2conn(server.port)
    before = conn.request("GET", "/error")
    broken = conn.request("GET", "/error?after=1")
    slow = conn.request("GET", "/slow?s=1")
    resp = conn.response(before)
    assert resp.status == 500
    resp = conn.response(broken)
    assert resp.reset is not None, "a broken response must end in RST_STREAM, not END_STREAM"
    assert conn.response(slow).body == b"slow done"
    assert conn.get("/").body == HELLO
