"""HTTP/1.1 over raw sockets, once per HTTP/1 parser (`--http1-parser h11|httptools`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.apps.e2e import EARLY_HINT_LINK, HELLO, TRAILER_NAME, pattern
from tests.support.wait import wait_for_lines

pytestmark = [pytest.mark.timeout(60), pytest.mark.both_backends]


def read_all(conn: Any, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes; (data, closed_within_timeout)."""
    conn.sock.settimeout(timeout)
    try:
        data = conn.read_until_close()
        return data, True
    except TimeoutError:
        data, conn.buf = conn.buf, b""
        return data, False


def status_lines(data: bytes) -> list[bytes]:
    lines = [data.split(b"\r\n", 1)[0]] if data else []
    lines += [line for line in data.split(b"\r\n")[1:] if line.startswith(b"HTTP/1.")]
    return [line for line in lines if line.startswith(b"HTTP/1.")]


# --------------------------------------------------------------------------- basics


def test_keep_alive_several_requests_one_socket(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    client_ports = set()
    for i in range(5):
        conn.request("GET", f"/scope?i={i}")
        resp = conn.read_response()
        assert resp.status == 200, resp.raw_head
        info = resp.json()
        assert info["query_string"] == f"i={i}"
        client_ports.add(info["client"][1])
        assert (resp.header("connection") or "").lower() != "close"
    conn.request("GET", "/")
    resp = conn.read_response()
    assert (resp.status, resp.body) == (200, HELLO)
    # All requests really travelled on one TCP connection.
    assert client_ports == {conn.sock.getsockname()[1]}


def test_pipelining_answered_in_order(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    body = b"pipelined body " * 100
    conn.send(
        b"GET /scope?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        b"GET /scope?n=3 HTTP/1.1\r\nHost: x\r\n\r\n" % (len(body), body)
    )
    first, second, third = (conn.read_response() for _ in range(3))
    assert first.status == second.status == third.status == 200
    assert first.json()["query_string"] == "n=1"
    assert second.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert third.json()["query_string"] == "n=3"


def test_content_length_echo(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    body = pattern(100_000)
    conn.request("POST", "/echo", body=body)
    resp = conn.read_response()
    assert resp.status == 200
    assert resp.body == body
    conn.request("GET", "/")  # the connection is reusable after a streamed response
    assert conn.read_response().body == HELLO


def test_hello_has_content_length(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    conn.request("GET", "/")
    resp = conn.read_response()
    assert resp.header("content-length") == str(len(HELLO))
    assert resp.header("transfer-encoding") is None
    assert resp.version == "HTTP/1.1"


def test_chunked_request_upload(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    parts = [b"a" * 10, pattern(5000), b"last-chunk"]
    payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    conn.send(b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + payload)
    resp = conn.read_response()
    whole = b"".join(parts)
    assert resp.status == 200
    assert resp.json() == {"length": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}
    # And streamed back by /echo, chunk extensions and all.
    conn.send(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    resp = conn.read_response()
    assert (resp.status, resp.body) == (200, b"hello world")


def test_chunked_response(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    conn.request("GET", "/stream?n=5&size=1000")
    resp = conn.read_response()
    assert resp.status == 200
    assert resp.chunked, resp.raw_head
    assert resp.body == pattern(5000)
    conn.request("GET", "/")
    assert conn.read_response().body == HELLO


@pytest.mark.parametrize("path", ["/", "/stream?n=3&size=100"])
def test_head_has_no_body(h1_server: Any, h1: Any, path: str) -> None:
    conn = h1(h1_server.insecure_port)
    conn.request("HEAD", path)
    resp = conn.read_response(head=True)
    assert resp.status == 200
    # If any body bytes followed the HEAD response, the next status line would not parse.
    conn.request("GET", "/")
    resp = conn.read_response()
    assert (resp.status, resp.body) == (200, HELLO)


def test_expect_100_continue(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    body = b"continue-body"
    conn.send(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    interim = conn.read_head()  # nothing of the body has been sent yet
    assert interim.status == 100, interim.raw_head
    assert interim.raw_head.startswith(b"HTTP/1.1 100")
    conn.send(body)
    resp = conn.read_response()
    assert (resp.status, resp.body) == (200, body)


def test_http10_connection_closed_after_response(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    conn.send(b"GET / HTTP/1.0\r\n\r\n")
    resp = conn.read_response()
    assert (resp.status, resp.body) == (200, HELLO)
    assert resp.header("transfer-encoding") is None  # no chunked to an HTTP/1.0 client
    assert conn.closed_by_peer(5)


def test_http10_streamed_response_not_chunked(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    conn.send(b"GET /stream?n=4&size=500 HTTP/1.0\r\n\r\n")
    resp = conn.read_response()  # read until close: no length, no chunked
    assert resp.status == 200
    assert resp.header("transfer-encoding") is None
    assert resp.body == pattern(2000)


def test_http10_keep_alive_is_consistent(h1_server: Any, h1: Any) -> None:
    """HTTP/1.0 + `Connection: keep-alive`: the server may keep the connection, but then it
    must say so and answer the next request; otherwise it must close."""
    conn = h1(h1_server.insecure_port)
    conn.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    resp = conn.read_response()
    assert (resp.status, resp.body) == (200, HELLO)
    if (resp.header("connection") or "").lower() == "keep-alive":
        conn.send(b"GET /scope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        second = conn.read_response()
        assert second.status == 200
        assert second.json()["http_version"] == "1.0"
    else:
        assert conn.closed_by_peer(5)


def test_connection_close(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    conn.request("GET", "/", headers=[("Connection", "close")])
    resp = conn.read_response()
    assert (resp.status, resp.body) == (200, HELLO)
    assert (resp.header("connection") or "").lower() == "close"
    assert conn.closed_by_peer(5)


def test_scope_over_cleartext(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    conn.request("GET", "/scope/a%20b%2Fc?x=1&y=%20", headers=[("X-Test", "value")])
    info = conn.read_response().json()
    assert info["type"] == "http"
    assert info["http_version"] == "1.1"
    assert info["scheme"] == "http"
    assert info["method"] == "GET"
    assert info["path"] == "/scope/a b/c"
    assert info["raw_path"] == "/scope/a%20b%2Fc"
    assert info["query_string"] == "x=1&y=%20"
    assert info["root_path"] == ""
    assert ["x-test", "value"] in info["headers"]
    assert ["host", "localhost"] in info["headers"]
    assert info["client"] == ["127.0.0.1", conn.sock.getsockname()[1]]
    assert info["server"] == ["127.0.0.1", h1_server.insecure_port]
    assert info["has_state"] and info["has_extensions"]


def test_scope_over_tls_http11(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.port, tls=True)
    assert conn.sock.selected_alpn_protocol() == "http/1.1"
    conn.request("POST", "/scope", body=b"x")
    info = conn.read_response().json()
    assert (info["scheme"], info["http_version"], info["method"]) == ("https", "1.1", "POST")
    assert info["server"] == ["127.0.0.1", h1_server.port]


def test_early_hints_103_before_200(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    conn.request("GET", "/early-hints")
    informational: list[Any] = []
    resp = conn.read_response(informational=informational)
    assert [r.status for r in informational] == [103]
    assert informational[0].raw_head.startswith(b"HTTP/1.1 103")
    assert informational[0].header("link") == EARLY_HINT_LINK.decode()
    assert (resp.status, resp.body) == (200, b"after early hints")


def test_trailers_with_te_trailers(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    conn.request("GET", "/trailers", headers=[("TE", "trailers")])
    resp = conn.read_response()
    assert resp.status == 200
    assert resp.chunked, resp.raw_head  # trailers need the chunked framing
    assert resp.body == pattern(4096)
    assert resp.trailers == [(TRAILER_NAME.decode(), hashlib.sha256(resp.body).hexdigest())]
    conn.request("GET", "/")
    assert conn.read_response().body == HELLO


@pytest.mark.parametrize("size", [4000, 200_000])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_unread_request_body_is_skipped(h1_server: Any, h1: Any, chunked: bool, size: int) -> None:
    """The hello app never reads the body; the next request on the connection must still be
    framed right, or the response must announce `Connection: close` (RFC 9112 9.6)."""
    conn = h1(h1_server.insecure_port)
    body = pattern(size)
    if chunked:
        payload = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 1500]), body[i : i + 1500])
            for i in range(0, len(body), 1500)
        )
        conn.send(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + payload
            + b"0\r\n\r\n"
        )
    else:
        conn.request("POST", "/", body=body)
    resp = conn.read_response()
    assert (resp.status, resp.body) == (200, HELLO)
    if (resp.header("connection") or "").lower() == "close":
        assert conn.closed_by_peer(5)  # allowed: give up on the body and close
        return
    conn.request("GET", "/scope?after=body")
    resp = conn.read_response()
    assert resp.status == 200
    assert resp.json()["query_string"] == "after=body"


def test_app_error_before_response_is_500(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    conn.request("GET", "/error")
    resp = conn.read_response()
    assert resp.status == 500
    assert b"e2e: failure" not in resp.body  # no exception details to the client
    if (resp.header("connection") or "").lower() != "close":
        conn.request("GET", "/")
        assert conn.read_response().body == HELLO


def test_app_error_mid_body_truncates_and_closes(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    conn.request("GET", "/error?after=1")
    head = conn.read_head()
    assert head.status == 200
    data, closed = read_all(conn)
    assert closed, "connection kept open after a broken response"
    # A complete chunked body would end in the last-chunk; a broken one must not.
    assert b"partial" in data and not data.endswith(b"0\r\n\r\n"), data
    ok = h1(h1_server.insecure_port)  # the server itself is fine
    ok.request("GET", "/")
    assert ok.read_response().body == HELLO


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"THIS IS NOT HTTP AT ALL\r\n\r\n", id="garbage-request-line"),
        pytest.param(b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", id="extra-token"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", id="header-no-colon"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", id="space-in-name"),
    ],
)
def test_malformed_request_is_400_and_closed(h1_server: Any, h1: Any, raw: bytes) -> None:
    conn = h1(h1_server.insecure_port)
    conn.send(raw)
    data, closed = read_all(conn)
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert closed, "connection left open after a malformed request"


def test_plain_connect_is_501(h1_server: Any, h1: Any) -> None:
    # edgecorn is not a forward proxy. After a non-2xx answer the connection is not a
    # tunnel (RFC 9110 9.3.6): the next request is either answered or the connection ends.
    conn = h1(h1_server.insecure_port)
    conn.send(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    data, closed = read_all(conn)
    assert status_lines(data)[:1] == [b"HTTP/1.1 501 Not Implemented"], data[:300]
    assert status_lines(data)[1:] in ([], [b"HTTP/1.1 200 OK"]), data
    assert closed


def test_too_large_headers_is_431(h1_server: Any, h1: Any) -> None:
    conn = h1(h1_server.insecure_port)
    # 64 KiB of header line that never ends: far beyond any sane request-head limit.
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536)
    data, closed = read_all(conn)
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
    assert closed


def test_too_many_headers_in_complete_head_is_rejected(h1_server: Any, h1: Any) -> None:
    """A complete 200 KiB request head (many headers) is refused with 431, not served."""
    conn = h1(h1_server.insecure_port)
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 90) for i in range(2000))
    try:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may refuse before reading it all; its answer is still queued
    data, closed = read_all(conn)
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
    assert closed


SMUGGLING = {
    "cl-and-te": (
        b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "duplicate-cl": (
        b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 42\r\n\r\nhello"
    ),
    "invalid-chunk-size": (
        b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n"
    ),
    "bare-lf-header": (b"POST /body HTTP/1.1\r\nHost: x\nContent-Length: 5\r\n\r\nhello"),
    "bare-lf-head": b"GET / HTTP/1.1\nHost: x\nX-A: 1\n\n",
}


@pytest.mark.parametrize("case", list(SMUGGLING))
def test_smuggling_rejected_400_and_closed(h1_server: Any, h1: Any, case: str) -> None:
    conn = h1(h1_server.insecure_port)
    conn.send(SMUGGLING[case] + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    data, closed = read_all(conn)
    assert data.startswith(b"HTTP/1.1 400"), data[:300]
    assert status_lines(data) == [status_lines(data)[0]], f"second response: {data[:600]!r}"
    assert closed, "connection left open after a smuggling attempt"


# --------------------------------------------------------------------------- disconnect


def test_client_disconnect_reaches_app(h1_server: Any, h1: Any, tmp_path: Path) -> None:
    record = tmp_path / "disconnect.txt"
    conn = h1(h1_server.insecure_port)
    conn.request("GET", f"/disconnect?file={record}")
    assert "started" in wait_for_lines(record, "started")
    conn.close()
    assert wait_for_lines(record, "disconnect") == ["started", "disconnect"]


# --------------------------------------------------------------------------- keep-alive limits


@pytest.mark.timeout(90)
def test_idle_keep_alive_timeout(server_factory: Any, parser: str, h1: Any) -> None:
    srv = server_factory.start("--keep-alive", "1", parser=parser)
    busy = h1(srv.insecure_port)
    busy.request("GET", "/slow?s=2")  # a request in progress is not idle
    idle = h1(srv.insecure_port)
    idle.request("GET", "/")
    assert idle.read_response().status == 200
    assert idle.closed_by_peer(8), "idle keep-alive connection not closed"
    resp = busy.read_response()
    assert (resp.status, resp.body) == (200, b"slow done")


@pytest.mark.timeout(90)
def test_silent_connection_closed_after_keep_alive_timeout(
    server_factory: Any, parser: str, h1: Any
) -> None:
    srv = server_factory.start("--keep-alive", "1", parser=parser)
    silent = h1(srv.insecure_port)  # connects and never sends a byte
    assert silent.closed_by_peer(8)


@pytest.mark.timeout(90)
def test_keep_alive_max_requests_from_yaml(server_factory: Any, parser: str, h1: Any) -> None:
    srv = server_factory.start(parser=parser, config="keep_alive_max_requests: 3\n")
    conn = h1(srv.insecure_port)
    for i in range(1, 4):
        conn.request("GET", "/")
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, HELLO)
        connection = (resp.header("connection") or "").lower()
        if i < 3:
            assert connection != "close", f"request {i} already closed"
        else:
            assert connection == "close", resp.raw_head
    assert conn.closed_by_peer(5)
