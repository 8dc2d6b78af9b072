"""HTTP/0.9 over QUIC (hq-interop) adapter, fed bytes: requests come out as the same
Request/EndBody events as h1/h2/h3; malformed ones are named for a stream reset."""

from __future__ import annotations

import pytest

from edgecorn.protocol.events import EndBody, Request
from edgecorn.protocol.hq import MAX_REQUEST_LINE, HqStreams, parse_request_line, sends_body


def test_request_in_one_piece() -> None:
    hq = HqStreams(b"server4:443")
    events = hq.receive(0, b"GET /file.bin\r\n", True)
    assert len(events) == 2
    request, end = events
    assert isinstance(request, Request) and isinstance(end, EndBody)
    assert (request.stream_id, request.method, request.raw_path) == (0, "GET", b"/file.bin")
    assert request.http_version == "0.9" and request.scheme == "https"
    assert request.authority == b"server4:443"
    assert (b"host", b"server4:443") in request.headers
    assert end.stream_id == 0 and hq.rejected == []


def test_request_split_over_stream_frames() -> None:
    hq = HqStreams()
    assert hq.receive(4, b"GE", False) == []
    assert hq.receive(4, b"T /a/b", False) == []
    events = hq.receive(4, b"c\r\n", False)
    assert isinstance(events[0], Request) and events[0].raw_path == b"/a/bc"
    assert hq.receive(4, b"more bytes after the line are ignored", True) == []


def test_fin_ends_a_request_without_crlf() -> None:
    events = HqStreams().receive(8, b"GET /x", True)
    assert isinstance(events[0], Request) and events[0].raw_path == b"/x"


@pytest.mark.parametrize(
    "line",
    [b"POST /x\r\n", b"GET\r\n", b"\r\n", b"GET /a b c d\r\n", b"GET /a\x00b\r\n"],
)
def test_malformed_request_is_rejected(line: bytes) -> None:
    hq = HqStreams()
    assert hq.receive(0, line, True) == []
    assert hq.rejected == [0]
    assert hq.receive(0, b"GET /late\r\n", True) == []  # nothing more from that stream


def test_endless_request_line_is_rejected() -> None:
    hq = HqStreams()
    assert hq.receive(0, b"GET /" + b"a" * MAX_REQUEST_LINE, False) == []
    assert hq.rejected == [0]


def test_only_client_bidi_streams_carry_requests() -> None:
    hq = HqStreams()
    for stream_id in (1, 2, 3, 6):
        assert hq.receive(stream_id, b"GET /x\r\n", True) == []
    assert hq.rejected == []


def test_forget_frees_stream_state() -> None:
    hq = HqStreams()
    hq.receive(0, b"GET /x\r\n", True)
    hq.receive(4, b"GET /y", False)
    hq.forget(0)
    hq.forget(4)
    assert hq.partial == {}
    assert hq.receive(0, b"GET /again\r\n", True) == []  # never a second request


def test_request_line_forms() -> None:
    assert parse_request_line(b"GET /a\r") == b"/a"
    assert parse_request_line(b"GET /a HTTP/0.9") == b"/a"
    assert parse_request_line(b"GET a") == b"/a"
    assert parse_request_line(b"get /a") is None


def test_only_2xx_carries_a_body() -> None:
    assert sends_body(200) and sends_body(206)
    assert not sends_body(304) and not sends_body(404) and not sends_body(500)
