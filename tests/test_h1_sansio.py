"""Sans-IO tests for the HTTP/1.1 adapters: bytes in, events and bytes out.

Every test runs against both parsers (h11 and httptools) through the `make`
fixture; the adapters share one interface and must behave the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from edgecorn.headers import check_fields as check_headers
from edgecorn.protocol.events import (
    Body,
    EndBody,
    Event,
    H2CUpgrade,
    ProtocolError,
    Request,
    StreamReset,
)
from edgecorn.protocol.h1 import SWITCHING_TO_H2C, H1Adapter, H11Adapter, HttptoolsAdapter

ADAPTERS: dict[str, type[H1Adapter]] = {"h11": H11Adapter, "httptools": HttptoolsAdapter}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"AAMAAABkAAQAAP__"  # a valid base64url HTTP2-Settings value
GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"

Factory = Callable[..., H1Adapter]


@pytest.fixture(params=sorted(ADAPTERS))
def parser(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(parser: str) -> Factory:
    cls = ADAPTERS[parser]

    def factory(
        max_head: int = 16384, max_requests: int = 100, allow_h2c: bool = False
    ) -> H1Adapter:
        return cls(max_head, max_requests, allow_h2c)

    return factory


def xfail_for(request: pytest.FixtureRequest, parser: str, which: str, reason: str) -> None:
    """Mark the running test as a known product bug for one parser only."""
    if parser == which:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


# --- a strict parser for what the adapter writes --------------------------------------------

_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*")
_HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ?([^\r\n]*)")


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]  # names lowercased
    body: bytes = b""
    chunked: bool = False
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def get_all(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]

    def get(self, name: bytes) -> bytes | None:
        values = self.get_all(name)
        assert len(values) <= 1, f"header {name!r} sent {len(values)} times: {values}"
        return values[0] if values else None

    @property
    def closes(self) -> bool:
        return any(b"close" in v.lower() for v in self.get_all(b"connection"))


def _parse_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    fields = []
    for line in block.split(b"\r\n") if block else []:
        match = _HEADER_LINE.fullmatch(line)
        assert match, f"malformed header line {line!r}"
        fields.append((match[1].lower(), match[2].strip()))
    return fields


def parse_responses(data: bytes, head: bool = False) -> list[Response]:
    """Split `data` into responses, checking the framing strictly; 1xx are included.

    `head`: the final responses answer HEAD requests (no body whatever the headers say).
    A response without length or chunking takes the rest of `data` (close-delimited).
    """
    responses = []
    while data:
        end = data.find(b"\r\n\r\n")
        assert end >= 0, f"incomplete response head: {data!r}"
        status_line, _, block = data[:end].partition(b"\r\n")
        data = data[end + 4 :]
        match = _STATUS_LINE.fullmatch(status_line)
        assert match, f"malformed status line {status_line!r}"
        response = Response(int(match[1]), _parse_fields(block))
        responses.append(response)
        if response.status < 200 or response.status in (204, 304) or head:
            continue
        encoding = response.get(b"transfer-encoding")
        length = response.get(b"content-length")
        if encoding is not None:
            assert length is None, "both Content-Length and Transfer-Encoding sent"
            assert encoding.lower() == b"chunked"
            response.chunked = True
            body = []
            while True:
                line_end = data.find(b"\r\n")
                assert line_end > 0, f"missing chunk size line in {data!r}"
                size = int(data[:line_end], 16)
                data = data[line_end + 2 :]
                if size == 0:
                    end = data.find(b"\r\n\r\n") if not data.startswith(b"\r\n") else -2
                    assert data.startswith(b"\r\n") or end >= 0, f"bad last chunk {data!r}"
                    response.trailers = _parse_fields(data[: max(end, 0)])
                    data = data[end + 4 :]
                    break
                assert data[size : size + 2] == b"\r\n", f"chunk of {size} bytes not ended"
                body.append(data[:size])
                data = data[size + 2 :]
            response.body = b"".join(body)
        elif length is not None:
            size = int(length)
            assert len(data) >= size, f"body shorter than content-length {size}: {data!r}"
            response.body, data = data[:size], data[size:]
        else:
            response.body, data = data, b""
    return responses


def one_response(data: bytes, head: bool = False) -> Response:
    responses = parse_responses(data, head)
    assert len(responses) == 1, f"expected one response, got {responses}"
    return responses[0]


def requests_in(events: list[Event]) -> list[Request]:
    return [event for event in events if isinstance(event, Request)]


def body_of(events: list[Event], stream_id: int) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Body) and e.stream_id == stream_id)


# --- requests in ------------------------------------------------------------------------------


def test_simple_get_request_event(make: Factory) -> None:
    adapter = make()
    events = adapter.receive_data(
        b"GET /path/x?q=1&r=%20 HTTP/1.1\r\nHost: example.com\r\nX-Custom: Some Value\r\n\r\n"
    )
    assert len(events) == 2
    request, end = events
    assert isinstance(request, Request)
    assert request.stream_id == 1
    assert request.method == "GET"
    assert request.raw_path == b"/path/x?q=1&r=%20"
    assert request.http_version == "1.1"
    assert request.headers == [(b"host", b"example.com"), (b"x-custom", b"Some Value")]
    assert request.scheme is None  # h1 gets the scheme from the transport
    assert end == EndBody(1, None)
    assert adapter.data_to_send() == b""
    assert not adapter.idle
    assert not adapter.closing


def test_http10_request_reports_its_version(make: Factory) -> None:
    adapter = make()
    events = adapter.receive_data(b"GET /old HTTP/1.0\r\n\r\n")
    (request,) = requests_in(events)
    assert request.http_version == "1.0"
    assert request.raw_path == b"/old"
    assert request.headers == []


def test_post_with_content_length_body(make: Factory) -> None:
    adapter = make()
    events = adapter.receive_data(
        b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello"
    )
    assert [type(e) for e in events] == [Request, Body]
    assert adapter.backlog == 5
    events += adapter.receive_data(b" world")
    assert body_of(events, 1) == b"hello world"
    assert events[-1] == EndBody(1, None)
    assert adapter.backlog == 11
    adapter.ack_data(1, 11)
    assert adapter.backlog == 0


def test_chunked_request_body(make: Factory) -> None:
    adapter = make()
    events = adapter.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    )
    assert [type(e) for e in events] == [Request, Body]
    assert events[1] == Body(1, b"hello")
    more = adapter.receive_data(b"6\r\n world\r\n")
    assert more == [Body(1, b" world")]
    last = adapter.receive_data(b"0\r\n\r\n")
    assert last == [EndBody(1, None)]
    adapter.send_response(1, 200, [], b"ok", True)
    assert one_response(adapter.data_to_send()).body == b"ok"
    assert not adapter.closing


def test_request_trailers_do_not_leak_into_request_headers(
    make: Factory, parser: str, request: pytest.FixtureRequest
) -> None:
    adapter = make()
    events = adapter.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    )
    (req,) = requests_in(events)
    before = list(req.headers)
    adapter.receive_data(b"0\r\nX-Checksum: 42\r\n\r\n")
    assert req.headers == before


def test_request_trailers_reported_on_end_body(
    make: Factory, parser: str, request: pytest.FixtureRequest
) -> None:
    adapter = make()
    adapter.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    )
    events = adapter.receive_data(b"0\r\nX-Checksum: 42\r\n\r\n")
    assert events == [EndBody(1, [(b"x-checksum", b"42")])]


# --- response framing ------------------------------------------------------------------------


def test_response_with_end_gets_content_length(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(GET)
    adapter.send_response(1, 200, [(b"content-type", b"text/plain")], b"hello", True)
    response = one_response(adapter.data_to_send())
    assert response.status == 200
    assert response.get(b"content-length") == b"5"
    assert response.get(b"transfer-encoding") is None
    assert response.get(b"content-type") == b"text/plain"
    assert response.body == b"hello"
    assert not response.closes
    assert adapter.idle
    assert not adapter.closing


def test_empty_response_with_end_gets_zero_length(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(GET)
    adapter.send_response(1, 200, [], b"", True)
    response = one_response(adapter.data_to_send())
    assert response.get(b"content-length") == b"0"
    assert response.body == b""


def test_app_content_length_is_kept_once(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(GET)
    adapter.send_response(1, 200, [(b"Content-Length", b"6")], b"abc", False)
    adapter.send_data(1, b"def", True)
    response = one_response(adapter.data_to_send())
    assert response.get(b"content-length") == b"6"  # `get` asserts it was sent once
    assert not response.chunked
    assert response.body == b"abcdef"
    assert not adapter.closing


def test_streaming_http11_response_is_chunked(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(GET)
    assert adapter.sendable(1) > 0
    adapter.send_response(1, 200, [], b"ab", False)
    adapter.send_data(1, b"cd", False)
    adapter.send_data(1, b"", False)  # an empty chunk must not end the body early
    adapter.send_data(1, b"ef", False)
    adapter.send_data(1, b"", True)
    data = adapter.data_to_send()
    response = one_response(data)
    assert response.chunked
    assert response.get(b"content-length") is None
    assert response.body == b"abcdef"
    assert data.endswith(b"0\r\n\r\n")
    assert data.count(b"0\r\n\r\n") == 1
    assert not response.closes
    assert not adapter.closing
    assert adapter.idle


def test_streaming_http10_response_closes_the_connection(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    adapter.send_response(1, 200, [], b"ab", False)
    adapter.send_data(1, b"cd", True)
    response = one_response(adapter.data_to_send())
    assert response.get(b"transfer-encoding") is None  # HTTP/1.0 has no chunked coding
    assert response.get(b"content-length") is None
    assert response.closes
    assert response.body == b"abcd"
    assert adapter.closing


def test_response_trailers_on_chunked_response(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
    adapter.send_response(1, 200, [(b"trailer", b"x-checksum")], b"hello", False)
    adapter.send_data(1, b" world", False)
    adapter.send_trailers(1, [(b"x-checksum", b"abc123")])
    response = one_response(adapter.data_to_send())
    assert response.chunked
    assert response.body == b"hello world"
    assert response.trailers == [(b"x-checksum", b"abc123")]
    assert adapter.idle
    assert not adapter.closing


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_head_response_has_no_body(make: Factory, streamed: bool) -> None:
    adapter = make()
    adapter.receive_data(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    if streamed:
        adapter.send_response(1, 200, [(b"content-length", b"5")], b"", False)
        adapter.send_data(1, b"hello", True)
    else:
        adapter.send_response(1, 200, [], b"hello", True)
    data = adapter.data_to_send()
    assert data.endswith(b"\r\n\r\n")
    assert b"hello" not in data
    response = one_response(data, head=True)
    assert response.get(b"content-length") == b"5"
    assert not adapter.closing
    # The connection stays usable: the next response is framed right after the head.
    adapter.receive_data(GET)
    adapter.send_response(2, 200, [], b"next", True)
    assert one_response(adapter.data_to_send()).body == b"next"


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_no_body_statuses(make: Factory, status: int, streamed: bool) -> None:
    adapter = make()
    adapter.receive_data(GET)
    if streamed:
        adapter.send_response(1, status, [(b"etag", b'"x"')], b"", False)
        adapter.send_data(1, b"", True)
    else:
        adapter.send_response(1, status, [(b"etag", b'"x"')], b"", True)
    data = adapter.data_to_send()
    response = one_response(data)
    assert response.status == status
    assert data.endswith(b"\r\n\r\n")
    assert b"0\r\n\r\n" not in data  # no last-chunk
    assert response.get(b"content-length") is None
    assert response.get(b"transfer-encoding") is None
    assert not adapter.closing
    adapter.receive_data(GET)
    adapter.send_response(2, 200, [], b"after", True)
    assert one_response(adapter.data_to_send()).body == b"after"


def test_informational_response_before_final(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(GET)
    adapter.send_informational(1, 103, [(b"link", b"</s.css>; rel=preload")])
    adapter.send_response(1, 200, [], b"x", True)
    hints, final = parse_responses(adapter.data_to_send())
    assert hints.status == 103
    assert hints.get(b"link") == b"</s.css>; rel=preload"
    assert final.status == 200
    assert final.body == b"x"


# --- connection persistence ------------------------------------------------------------------


def test_keep_alive_two_sequential_requests(make: Factory) -> None:
    adapter = make()
    for stream_id, path in ((1, b"/one"), (2, b"/two")):
        events = adapter.receive_data(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
        (req,) = requests_in(events)
        assert (req.stream_id, req.raw_path) == (stream_id, path)
        assert events[-1] == EndBody(stream_id, None)
        adapter.send_response(stream_id, 200, [], path, True)
        response = one_response(adapter.data_to_send())
        assert response.body == path
        assert not response.closes
        assert not adapter.closing
        assert adapter.resume() == []


def test_request_connection_close_is_honoured(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    adapter.send_response(1, 200, [], b"bye", True)
    assert one_response(adapter.data_to_send()).closes
    assert adapter.closing


def test_pipelining_delivers_requests_one_at_a_time_in_order(make: Factory) -> None:
    adapter = make()
    events = adapter.receive_data(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert [r.raw_path for r in requests_in(events)] == [b"/1"]
    assert all(getattr(e, "stream_id", 1) == 1 for e in events)
    assert adapter.resume() == []  # still busy with /1
    out = []
    for stream_id, path in ((1, b"/1"), (2, b"/2"), (3, b"/3")):
        adapter.send_response(stream_id, 200, [], path, True)
        out.append(adapter.data_to_send())
        events = adapter.resume()
        if stream_id < 3:
            (req,) = requests_in(events)
            assert (req.stream_id, req.raw_path) == (stream_id + 1, b"/%d" % (stream_id + 1))
            assert events[-1] == EndBody(stream_id + 1, None)
        else:
            assert events == []
    assert [r.body for r in parse_responses(b"".join(out))] == [b"/1", b"/2", b"/3"]
    assert adapter.idle
    assert not adapter.closing


@pytest.mark.parametrize("more", [False, True], ids=["last", "more-after"])
def test_pipelined_connection_close_ends_the_pipeline(
    make: Factory, parser: str, more: bool, request: pytest.FixtureRequest
) -> None:
    adapter = make()
    adapter.receive_data(
        GET
        + b"GET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        + (b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n" if more else b"")
    )
    adapter.send_response(1, 200, [], b"1", True)
    assert [r.raw_path for r in requests_in(adapter.resume())] == [b"/2"]
    assert not adapter.closing
    adapter.send_response(2, 200, [], b"2", True)
    assert requests_in(adapter.resume()) == []
    responses = parse_responses(adapter.data_to_send())
    assert [(r.body, r.closes) for r in responses] == [(b"1", False), (b"2", True)]
    assert adapter.closing


def test_pipelined_bodies_are_held_with_their_request(make: Factory) -> None:
    adapter = make()
    events = adapter.receive_data(
        b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ndef"
    )
    assert [type(e) for e in events] == [Request, Body, EndBody]
    assert body_of(events, 1) == b"abc"
    adapter.ack_data(1, 3)
    adapter.send_response(1, 200, [], b"", True)
    events = adapter.resume()
    assert [type(e) for e in events] == [Request, Body, EndBody]
    assert events[0].raw_path == b"/2"  # type: ignore[union-attr]
    assert body_of(events, 2) == b"def"


def test_max_requests_closes_after_the_last_response(make: Factory) -> None:
    adapter = make(max_requests=2)
    adapter.receive_data(GET)
    adapter.send_response(1, 200, [], b"a", True)
    assert not one_response(adapter.data_to_send()).closes
    assert not adapter.closing
    adapter.receive_data(GET)
    assert not adapter.closing  # not before the response is out
    adapter.send_response(2, 200, [], b"b", True)
    response = one_response(adapter.data_to_send())
    assert response.closes
    assert response.body == b"b"
    assert adapter.closing


def test_max_requests_drops_pipelined_requests_beyond_the_limit(make: Factory) -> None:
    adapter = make(max_requests=2)
    adapter.receive_data(GET + GET + GET)
    adapter.send_response(1, 200, [], b"1", True)
    assert [r.stream_id for r in requests_in(adapter.resume())] == [2]
    adapter.send_response(2, 200, [], b"2", True)
    assert requests_in(adapter.resume()) == []
    responses = parse_responses(adapter.data_to_send())
    assert [r.closes for r in responses] == [False, True]
    assert adapter.closing


def test_goaway_while_idle_closes_at_once(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(GET)
    adapter.send_response(1, 200, [], b"", True)
    adapter.data_to_send()
    assert not adapter.closing
    adapter.goaway()
    assert adapter.closing
    assert adapter.data_to_send() == b""


def test_goaway_before_any_request_answers_the_first_one(make: Factory) -> None:
    """A connection accepted as a drain starts was accepted for a request: it gets that
    one answer, with `connection: close`, then the connection closes."""
    adapter = make()
    adapter.goaway()
    assert not adapter.closing
    requests = requests_in(adapter.receive_data(GET))
    assert len(requests) == 1
    adapter.send_response(requests[0].stream_id, 200, [], b"ok", True)
    response = one_response(adapter.data_to_send())
    assert response.closes and response.body == b"ok"
    assert adapter.closing


def test_goaway_after_a_request_closes_when_idle(make: Factory) -> None:
    adapter = make()
    (request,) = requests_in(adapter.receive_data(GET))
    adapter.send_response(request.stream_id, 200, [], b"ok", True)
    adapter.data_to_send()
    adapter.goaway()
    assert adapter.closing


def test_goaway_while_active_finishes_with_connection_close(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(GET + b"GET /pipelined HTTP/1.1\r\nHost: x\r\n\r\n")
    adapter.goaway()
    assert not adapter.closing  # the response in progress is finished first
    adapter.send_response(1, 200, [], b"last", True)
    response = one_response(adapter.data_to_send())
    assert response.closes
    assert response.body == b"last"
    assert adapter.closing
    assert requests_in(adapter.resume()) == []


def test_goaway_after_streaming_head_still_ends_cleanly(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(GET)
    adapter.send_response(1, 200, [], b"a", False)
    adapter.goaway()
    adapter.send_data(1, b"b", True)
    response = one_response(adapter.data_to_send())
    assert response.body == b"ab"
    assert adapter.closing


# --- Expect: 100-continue ------------------------------------------------------------------


def test_expect_100_continue_sent_on_want_body(make: Factory) -> None:
    adapter = make()
    events = adapter.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    assert [type(e) for e in events] == [Request]
    assert adapter.data_to_send() == b""  # not before the app asks for the body
    adapter.want_body(1)
    assert adapter.data_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n"
    adapter.want_body(1)
    assert adapter.data_to_send() == b""  # only once
    assert adapter.receive_data(b"hello") == [Body(1, b"hello"), EndBody(1, None)]
    adapter.send_response(1, 200, [], b"ok", True)
    response = one_response(adapter.data_to_send())
    assert (response.status, response.body) == (200, b"ok")
    assert not adapter.closing


def test_expect_100_continue_not_sent_after_final_response(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    adapter.send_response(1, 413, [], b"too big", True)
    adapter.want_body(1)
    response = one_response(adapter.data_to_send())
    assert response.status == 413
    assert adapter.closing  # the unread body leaves the framing unknown


def test_expect_100_continue_ignored_for_http10(
    make: Factory, parser: str, request: pytest.FixtureRequest
) -> None:
    adapter = make()
    adapter.receive_data(b"POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    adapter.want_body(1)
    assert adapter.data_to_send() == b""


# --- broken and hostile requests --------------------------------------------------------------

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

BAD_REQUESTS = {
    "cl-and-te": (
        400,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED,
    ),
    "te-and-cl": (
        400,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED,
    ),
    "duplicate-cl-same": (
        400,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"
        b"hello" + SMUGGLED,
    ),
    "duplicate-cl-different": (
        400,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n" + SMUGGLED,
    ),
    "invalid-chunk-size": (
        400,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
    ),
    "bare-lf-request-line": (400, b"GET / HTTP/1.1\nHost: x\r\n\r\n" + SMUGGLED),
    "bare-lf-header": (400, b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n" + SMUGGLED),
    "bare-lf-everywhere": (400, b"GET / HTTP/1.1\nHost: x\n\n" + SMUGGLED),
    "cl-not-a-number": (
        400,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello" + SMUGGLED,
    ),
    "cl-negative": (
        400,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello" + SMUGGLED,
    ),
    "cl-plus-sign": (
        400,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello" + SMUGGLED,
    ),
    "missing-host": (400, b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n" + SMUGGLED),
    "duplicate-host": (400, b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"),
    "head-too-big": (
        431,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n" + SMUGGLED,
    ),
    "head-too-big-unfinished": (431, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000),
}


def _check_rejected(
    adapter: H1Adapter, events: list[Event], status: int, first_ok: bool = False
) -> None:
    assert any(isinstance(e, ProtocolError) for e in events), events
    paths = [r.raw_path for r in requests_in(events)]
    assert b"/smuggled" not in paths
    assert len(paths) <= (1 if first_ok else 0), paths
    response = one_response(adapter.data_to_send())
    assert response.status == status
    assert response.closes
    assert response.get(b"content-length") == b"%d" % len(response.body)
    assert adapter.closing
    # Nothing more is parsed or answered on this connection.
    assert adapter.receive_data(SMUGGLED) == []
    assert requests_in(adapter.resume()) == []
    assert adapter.data_to_send() == b""


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_rejected_and_closes(
    make: Factory, parser: str, case: str, request: pytest.FixtureRequest
) -> None:
    status, data = BAD_REQUESTS[case]
    adapter = make(max_head=1024)
    events = adapter.receive_data(data)
    # A chunked body fails after its (valid) head has been delivered.
    _check_rejected(adapter, events, status, first_ok=case == "invalid-chunk-size")


def test_oversized_head_in_small_pieces_is_431(make: Factory) -> None:
    adapter = make(max_head=1024)
    data = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(300))
    events: list[Event] = []
    for start in range(0, len(data), 7):
        events += adapter.receive_data(data[start : start + 7])
        if adapter.closing:
            break
    assert adapter.closing, "an endless head was accepted piece by piece"
    _check_rejected(adapter, events, 431)


def test_oversized_single_header_in_small_pieces_is_431(make: Factory) -> None:
    adapter = make(max_head=1024)
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n"
    events: list[Event] = []
    for start in range(0, len(data), 10):
        events += adapter.receive_data(data[start : start + 10])
    _check_rejected(adapter, events, 431)


@pytest.mark.parametrize("pieces", [1, 9])
def test_head_under_the_limit_is_accepted(make: Factory, pieces: int) -> None:
    adapter = make(max_head=1024)
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 700 + b"\r\n\r\n"
    events: list[Event] = []
    step = -(-len(data) // pieces)
    for start in range(0, len(data), step):
        events += adapter.receive_data(data[start : start + step])
    assert not any(isinstance(e, ProtocolError) for e in events)
    assert len(requests_in(events)) == 1


def test_body_then_next_head_in_one_read_is_not_an_oversized_head(
    make: Factory, parser: str, request: pytest.FixtureRequest
) -> None:
    adapter = make(max_head=1024)
    events = adapter.receive_data(
        b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"
        + b"b" * 2000
        + b"GET /2 HTTP/1.1\r\nHo"
    )
    assert not any(isinstance(e, (ProtocolError, StreamReset)) for e in events), events
    assert body_of(events, 1) == b"b" * 2000
    assert adapter.data_to_send() == b""
    adapter.receive_data(b"st: x\r\n\r\n")
    adapter.ack_data(1, 2000)
    adapter.send_response(1, 200, [], b"", True)
    assert [r.raw_path for r in requests_in(adapter.resume())] == [b"/2"]


def test_pipelined_requests_held_count_as_read_backlog(
    make: Factory, request: pytest.FixtureRequest
) -> None:
    from edgecorn.connection import READ_BACKLOG

    adapter = make(max_requests=10**9)
    data = GET * (2 * READ_BACKLOG // len(GET))
    for start in range(0, len(data), 65536):
        adapter.receive_data(data[start : start + 65536])
    assert adapter.backlog > READ_BACKLOG


# --- end of input ------------------------------------------------------------------------------


def test_eof_mid_body_resets_the_stream(make: Factory) -> None:
    adapter = make()
    events = adapter.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel")
    assert [type(e) for e in events] == [Request, Body]
    events = adapter.receive_data(b"")
    assert StreamReset(1) in events
    assert not any(isinstance(e, (EndBody, Request)) for e in events)
    assert adapter.closing


def test_eof_mid_chunked_body_resets_the_stream(make: Factory) -> None:
    adapter = make()
    adapter.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe")
    events = adapter.receive_data(b"")
    assert StreamReset(1) in events
    assert adapter.closing


def test_eof_while_idle_closes_quietly(make: Factory) -> None:
    adapter = make()
    assert adapter.receive_data(b"") == []
    assert adapter.closing
    assert adapter.data_to_send() == b""


# --- h2c upgrade ------------------------------------------------------------------------------

H2C_HEADERS = (
    b"Host: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: " + SETTINGS + b"\r\n"
)


def _single_upgrade(events: list[Event]) -> H2CUpgrade:
    assert len(events) == 1, events
    (event,) = events
    assert isinstance(event, H2CUpgrade)
    return event


def test_h2c_upgrade_get(make: Factory) -> None:
    adapter = make(allow_h2c=True)
    events = adapter.receive_data(b"GET /up HTTP/1.1\r\n" + H2C_HEADERS + b"\r\n" + PREFACE)
    upgrade = _single_upgrade(events)
    assert upgrade.request.method == "GET"
    assert upgrade.request.raw_path == b"/up"
    assert upgrade.request.stream_id == 1
    assert (b"host", b"x") in upgrade.request.headers
    assert upgrade.settings == SETTINGS
    assert upgrade.body == b""
    assert upgrade.trailing == PREFACE
    assert adapter.closing  # HTTP/2 takes over
    # the adapter answers the upgrade itself; the HTTP/2 adapter's bytes follow
    assert adapter.data_to_send() == SWITCHING_TO_H2C


def test_h2c_upgrade_post_with_body_in_one_read(make: Factory) -> None:
    adapter = make(allow_h2c=True)
    events = adapter.receive_data(
        b"POST /up HTTP/1.1\r\nContent-Length: 5\r\n" + H2C_HEADERS + b"\r\nhello" + PREFACE
    )
    upgrade = _single_upgrade(events)
    assert upgrade.request.method == "POST"
    assert upgrade.body == b"hello"
    assert upgrade.trailing == PREFACE
    assert adapter.closing


@pytest.mark.parametrize(
    ("reads", "trailing"),
    [
        ([b"", b"hello" + PREFACE], PREFACE),
        ([b"he", b"llo" + PREFACE], PREFACE),
        ([b"h", b"el", b"lo" + PREFACE[:5]], PREFACE[:5]),
        ([b"hel", b"lo"], b""),
    ],
    ids=["body-later", "body-split", "body-in-three", "preface-not-yet"],
)
def test_h2c_upgrade_body_in_later_reads(
    make: Factory, reads: list[bytes], trailing: bytes
) -> None:
    adapter = make(allow_h2c=True)
    head = b"POST /up HTTP/1.1\r\nContent-Length: 5\r\n" + H2C_HEADERS + b"\r\n"
    events = adapter.receive_data(head + reads[0])
    for data in reads[1:]:
        assert events == []
        assert not adapter.closing
        events = adapter.receive_data(data)
    upgrade = _single_upgrade(events)
    assert upgrade.request.raw_path == b"/up"
    assert upgrade.body == b"hello"
    assert upgrade.trailing == trailing
    assert adapter.closing


def test_h2c_upgrade_not_offered_is_a_plain_request(make: Factory) -> None:
    adapter = make(allow_h2c=False)
    events = adapter.receive_data(b"GET /up HTTP/1.1\r\n" + H2C_HEADERS + b"\r\n")
    assert not any(isinstance(e, H2CUpgrade) for e in events)
    (req,) = requests_in(events)
    assert req.raw_path == b"/up"
    adapter.send_response(1, 200, [], b"h1", True)
    response = one_response(adapter.data_to_send())
    assert (response.status, response.body) == (200, b"h1")


# --- response header validation -------------------------------------------------------------

BAD_HEADERS = {
    "crlf-in-value": [(b"x-a", b"ok\r\nSet-Cookie: evil=1")],
    "lf-in-value": [(b"x-a", b"ok\nSet-Cookie: evil=1")],
    "cr-in-value": [(b"x-a", b"ok\rSet-Cookie: evil=1")],
    "nul-in-value": [(b"x-a", b"ok\x00")],
    "crlf-in-name": [(b"x-a\r\nSet-Cookie", b"evil=1")],
    "space-in-name": [(b"x a", b"1")],
    "empty-name": [(b"", b"1")],
}


# The connection checks an app's fields (headers and trailers) once, for every protocol;
# the adapters trust their caller, as h2's and h3's do (tests/test_perf_h1.py sends these
# from an app, end to end).
@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_response_header_injection_raises(case: str) -> None:
    with pytest.raises(ValueError):
        check_headers(BAD_HEADERS[case])
    check_headers([(b"x-a", b"ok; evil=1"), (b"x-b", b"")])  # what is fine stays fine
