"""Sans-IO tests for the HTTP/2 adapter, driven by an h2 client connection.

The server side runs on every HTTP/2 engine (h2, jh2): the `both_http2_engines` marker
parametrizes `http2_engine`; the client stays on h2, the reference.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest

from edgecorn.protocol.engines import H2Engine, h2_engine
from edgecorn.protocol.events import Body, EndBody, Event, ProtocolError, Request, StreamReset
from edgecorn.protocol.h2 import H2Adapter

pytestmark = pytest.mark.both_http2_engines

MAX_STREAMS = 64
MAX_HEADER_LIST = 32768
MAX_FRAME = 16384
ENGINE: H2Engine = h2_engine("h2")  # set per test by the autouse fixture below


@pytest.fixture(autouse=True)
def _engine(http2_engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(globals(), "ENGINE", h2_engine(http2_engine))


def get_headers(
    path: bytes = b"/", method: bytes = b"GET", authority: bytes = b"example.com"
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":path", path),
        (b":scheme", b"https"),
        (b":authority", authority),
    ]


def split_goaways(data: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    """Take the GOAWAY frames out of `data`: (other frames, [(last_stream_id, error_code)])."""
    rest = []
    found = []
    while data:
        assert len(data) >= 9, f"truncated frame header {data!r}"
        length = int.from_bytes(data[:3], "big")
        frame, data = data[: 9 + length], data[9 + length :]
        assert len(frame) == 9 + length, "truncated frame"
        if frame[3] == 0x7:
            last = int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF
            found.append((last, int.from_bytes(frame[13:17], "big")))
        else:
            rest.append(frame)
    return b"".join(rest), found


class Pair:
    """An H2Adapter and an h2 client wired back to back; bytes move only when asked.

    GOAWAY frames are kept from the client and collected in `goaways`: h2's client
    state machine refuses everything after a GOAWAY, even responses on streams the
    GOAWAY lets finish, so it could not check a graceful drain.
    """

    def __init__(
        self,
        max_requests: int = 100,
        client_settings: dict[int, int] | None = None,
        handshake: bool = True,
    ) -> None:
        self.server = H2Adapter(
            max_concurrent_streams=MAX_STREAMS,
            max_header_list_size=MAX_HEADER_LIST,
            max_inbound_frame_size=MAX_FRAME,
            max_requests=max_requests,
            engine=ENGINE,
        )
        self.server.initiate()
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.client.initiate_connection()
        self.goaways: list[tuple[int, int]] = []
        if client_settings:
            self.client.update_settings(client_settings)
        if handshake:
            assert self.to_server() == []
            self.to_client()
            assert self.to_server() == []
            self.to_client()

    def to_server(self) -> list[Event]:
        return self.server.receive_data(self.client.data_to_send())

    def to_client(self) -> list[Any]:
        data, goaways = split_goaways(self.server.data_to_send())
        self.goaways += goaways
        return list(self.client.receive_data(data))

    def request(self, stream_id: int, end: bool = True, **kw: Any) -> list[Event]:
        self.client.send_headers(stream_id, get_headers(**kw), end_stream=end)
        return self.to_server()


def of_type(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def response_body(events: list[Any], stream_id: int) -> bytes:
    frames = of_type(events, h2.events.DataReceived)
    return b"".join(e.data for e in frames if e.stream_id == stream_id)


# --- connection start ----------------------------------------------------------------------------


def test_preface_and_settings_exchange() -> None:
    pair = Pair(handshake=False)
    server_first = pair.server.data_to_send()
    assert server_first[3] == 0x4 and server_first[5:9] == b"\0\0\0\0"  # SETTINGS, stream 0
    client_events = list(pair.client.receive_data(server_first))
    (changed,) = of_type(client_events, h2.events.RemoteSettingsChanged)
    values = {code: s.new_value for code, s in changed.changed_settings.items()}
    assert values[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == MAX_STREAMS
    assert values[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == MAX_HEADER_LIST
    assert values[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1
    # The client's preface and SETTINGS: no stream events, but a SETTINGS ACK back.
    assert pair.to_server() == []
    assert of_type(pair.to_client(), h2.events.SettingsAcknowledged)
    assert pair.to_server() == []  # the client's ACK of our SETTINGS
    assert pair.server.http_version == "2"
    assert pair.server.idle
    assert not pair.server.closing


# --- requests in ---------------------------------------------------------------------------------


def test_get_request_event() -> None:
    pair = Pair()
    pair.client.send_headers(
        1,
        get_headers(b"/a/b?c=d", authority=b"example.com:8443")
        + [(b"x-custom", b"Value"), (b"accept", b"*/*")],
        end_stream=True,
    )
    events = pair.to_server()
    assert len(events) == 2
    request, end = events
    assert isinstance(request, Request)
    assert request.stream_id == 1
    assert request.method == "GET"
    assert request.raw_path == b"/a/b?c=d"
    assert request.http_version == "2"
    assert request.scheme == "https"
    assert request.authority == b"example.com:8443"
    assert request.headers == [
        (b"host", b"example.com:8443"),
        (b"x-custom", b"Value"),
        (b"accept", b"*/*"),
    ]
    assert not any(name.startswith(b":") for name, _ in request.headers)
    assert end == EndBody(1, None)
    assert not pair.server.idle


def test_explicit_host_header_is_not_duplicated() -> None:
    pair = Pair()
    pair.client.send_headers(
        1, get_headers(authority=b"a.example") + [(b"host", b"a.example")], end_stream=True
    )
    (request,) = of_type(pair.to_server(), Request)
    assert [v for n, v in request.headers if n == b"host"] == [b"a.example"]


def test_ordinary_connect_reaches_the_connection() -> None:
    # RFC 9113 8.5: only :method and :authority. jh2 alone would fail the connection
    # (it wants :scheme and :path on every request); the adapter gives it h2's rule.
    pair = Pair()
    pair.client.send_headers(
        1, [(b":method", b"CONNECT"), (b":authority", b"example.com:443")], end_stream=False
    )
    (request,) = pair.to_server()
    assert isinstance(request, Request)
    assert (request.method, request.protocol) == ("CONNECT", None)
    assert request.authority == b"example.com:443"
    assert not pair.server.closing


def lax_pair() -> Pair:
    """A Pair whose client sends what it is told, checked or not."""
    pair = Pair(handshake=False)
    pair.client = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
        )
    )
    pair.client.initiate_connection()
    assert pair.to_server() == []
    pair.to_client()
    return pair


GOOD = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a")]


@pytest.mark.parametrize(
    "fields",
    [
        # an ordinary CONNECT must not carry :path; any other request needs it
        [(b":method", b"CONNECT"), (b":authority", b"a"), (b":path", b"/")],
        [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a")],
        [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b""), (b":authority", b"a")],
        [(b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a")],  # no :method
        [(b":method", b"CONNECT"), (b":path", b"/")],  # CONNECT without :authority
        [(b":method", b"G\xc3\xa9T"), *GOOD[1:]],  # a method that is no token
        [(b":method", b"G T"), *GOOD[1:]],
        [GOOD[0], (b":scheme", b"ht tps"), *GOOD[2:]],  # a scheme that is no scheme
        [*GOOD, (b":protocol", b"web socket")],
        GOOD + [(b"X-Upper", b"1")],
        GOOD + [(b"", b"1")],
        GOOD + [(b"a b", b"1")],
        GOOD + [(b"x", b" leading")],
        GOOD + [(b"x", b"trailing\t")],
        GOOD + [(b"x", b"nul\x00")],
        GOOD + [(b"connection", b"close")],
        GOOD + [(b"transfer-encoding", b"chunked")],
        GOOD + [(b"te", b"gzip")],
        GOOD + [(b"host", b"b")],  # differs from :authority
        GOOD + [(b":method", b"GET")],  # a pseudo-header twice
        GOOD + [(b":status", b"200")],  # a response's pseudo-header
        GOOD + [(b":protocol", b"websocket")],  # :protocol is for CONNECT only
        [(b":method", b"GET"), (b"x", b"1"), (b":scheme", b"https"), (b":path", b"/")],
    ],
)
def test_malformed_requests_reset_their_stream_not_the_connection(fields: list[Any]) -> None:
    # RFC 9113 8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR.
    pair = lax_pair()
    pair.client.send_headers(1, fields, end_stream=True)
    events = pair.to_server()
    assert not of_type(events, Request) and not of_type(events, ProtocolError)
    (reset,) = of_type(pair.to_client(), h2.events.StreamReset)
    assert (reset.stream_id, reset.error_code) == (1, h2.errors.ErrorCodes.PROTOCOL_ERROR)
    assert not pair.server.closing and not pair.goaways
    pair.client.send_headers(3, GOOD, end_stream=True)  # the connection still serves
    (request,) = of_type(pair.to_server(), Request)
    assert request.stream_id == 3


@pytest.mark.parametrize(
    "extra",
    [
        [(b"te", b"trailers")],
        [(b"te", b"Trailers")],
        [(b"host", b"a")],  # the same as :authority
        [(b"x", b"")],  # an empty value
        [(b"x", b"in side")],  # whitespace inside a value
        [(b"x-!#$%&'*+-.^_`|~09", b"\x01\x7f\xff")],  # every token character; obs-text
    ],
)
def test_unusual_but_valid_requests_reach_the_app(extra: list[Any]) -> None:
    pair = Pair()
    pair.client.send_headers(1, GOOD + extra, end_stream=True)
    (request,) = of_type(pair.to_server(), Request)
    assert [h for h in request.headers if h[0] != b"host"] == [h for h in extra if h[0] != b"host"]


def test_request_without_authority_or_host_reaches_the_app() -> None:
    # RFC 9113 8.3.1 lets a request carry no authority at all.
    pair = lax_pair()
    pair.client.send_headers(1, GOOD[:3], end_stream=True)
    (request,) = of_type(pair.to_server(), Request)
    assert request.authority is None


def test_malformed_trailers_reset_the_stream() -> None:
    pair = lax_pair()
    pair.client.send_headers(1, get_headers(method=b"POST"))
    assert of_type(pair.to_server(), Request)
    pair.client.send_data(1, b"data")
    pair.client.send_headers(1, [(b"X-Bad", b"1")], end_stream=True)
    events = pair.to_server()
    assert events == [Body(1, b"data"), StreamReset(1)]
    (reset,) = of_type(pair.to_client(), h2.events.StreamReset)
    assert reset.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR


def test_post_body_events() -> None:
    pair = Pair()
    events = pair.request(1, end=False, method=b"POST")
    assert [type(e) for e in events] == [Request]
    pair.client.send_data(1, b"hello ")
    assert pair.to_server() == [Body(1, b"hello ")]
    pair.client.send_data(1, b"world", end_stream=True)
    assert pair.to_server() == [Body(1, b"world"), EndBody(1, None)]


def test_request_trailers_end_the_body() -> None:
    pair = Pair()
    pair.request(1, end=False, method=b"POST")
    pair.client.send_data(1, b"data")
    pair.client.send_headers(1, [(b"x-checksum", b"abc")], end_stream=True)
    events = pair.to_server()
    assert events == [Body(1, b"data"), EndBody(1, [(b"x-checksum", b"abc")])]


# --- responses out -------------------------------------------------------------------------------


def test_response_data_and_trailers_reach_the_client() -> None:
    pair = Pair()
    pair.request(1, method=b"POST")
    pair.server.send_response(1, 200, [(b"Content-Type", b"text/plain")], b"hello", False)
    pair.server.send_data(1, b" world", False)
    pair.server.send_trailers(1, [(b"X-Checksum", b"42")])
    events = pair.to_client()
    (response,) = of_type(events, h2.events.ResponseReceived)
    assert response.stream_id == 1
    assert response.headers == [(b":status", b"200"), (b"content-type", b"text/plain")]
    assert response_body(events, 1) == b"hello world"
    (trailers,) = of_type(events, h2.events.TrailersReceived)
    assert trailers.headers == [(b"x-checksum", b"42")]
    assert [e.stream_id for e in of_type(events, h2.events.StreamEnded)] == [1]
    assert isinstance(events[-1], h2.events.StreamEnded)
    assert pair.server.sendable(1) == -1
    assert pair.server.idle
    assert not pair.server.closing


def test_response_with_end_in_one_call() -> None:
    pair = Pair()
    pair.request(1)
    pair.server.send_response(1, 201, [], b"made", True)
    events = pair.to_client()
    assert [type(e) for e in events] == [
        h2.events.ResponseReceived,
        h2.events.DataReceived,
        h2.events.StreamEnded,
    ]
    assert events[0].headers == [(b":status", b"201")]
    assert response_body(events, 1) == b"made"
    assert pair.server.idle


def test_empty_response_ends_on_headers() -> None:
    pair = Pair()
    pair.request(1)
    pair.server.send_response(1, 204, [], b"", True)
    events = pair.to_client()
    assert [type(e) for e in events] == [h2.events.ResponseReceived, h2.events.StreamEnded]
    assert pair.server.idle


def test_streamed_response_ended_by_empty_data() -> None:
    pair = Pair()
    pair.request(1)
    pair.server.send_response(1, 200, [], b"", False)
    pair.server.send_data(1, b"part", False)
    pair.server.send_data(1, b"", True)
    events = pair.to_client()
    assert response_body(events, 1) == b"part"
    assert isinstance(events[-1], h2.events.StreamEnded)
    assert pair.server.idle


def test_large_body_is_cut_into_frames() -> None:
    pair = Pair()
    pair.request(1)
    body = bytes(range(256)) * 160  # 40960 bytes: more than two max-size frames
    pair.server.send_response(1, 200, [], body, True)
    events = pair.to_client()
    frames = of_type(events, h2.events.DataReceived)
    assert len(frames) == 3
    assert all(len(f.data) <= MAX_FRAME for f in frames)
    assert response_body(events, 1) == body
    assert isinstance(events[-1], h2.events.StreamEnded)


def test_informational_response() -> None:
    pair = Pair()
    pair.request(1)
    pair.server.send_informational(1, 103, [(b"link", b"</s.css>; rel=preload")])
    pair.server.send_response(1, 200, [], b"", True)
    events = pair.to_client()
    (info,) = of_type(events, h2.events.InformationalResponseReceived)
    assert info.headers == [(b":status", b"103"), (b"link", b"</s.css>; rel=preload")]
    assert of_type(events, h2.events.ResponseReceived)[0].headers == [(b":status", b"200")]


def test_hop_by_hop_response_headers_are_stripped() -> None:
    pair = Pair()
    pair.request(1)
    pair.server.send_response(
        1,
        200,
        [
            (b"Connection", b"keep-alive"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"Upgrade", b"h2c"),
            (b"X-Kept", b"yes"),
        ],
        b"ok",
        True,
    )
    events = pair.to_client()  # h2 itself refuses connection-specific fields
    (response,) = of_type(events, h2.events.ResponseReceived)
    assert response.headers == [(b":status", b"200"), (b"x-kept", b"yes")]
    assert response_body(events, 1) == b"ok"


# --- flow control --------------------------------------------------------------------------------


def test_sendable_follows_the_client_stream_window() -> None:
    pair = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    pair.request(1)
    assert pair.server.sendable(1) == 100
    pair.server.send_response(1, 200, [], b"", False)
    pair.server.send_data(1, b"a" * 60, False)
    assert pair.server.sendable(1) == 40
    pair.server.send_data(1, b"a" * 40, False)
    assert pair.server.sendable(1) == 0
    assert response_body(pair.to_client(), 1) == b"a" * 100
    pair.client.increment_flow_control_window(50, stream_id=1)
    assert pair.to_server() == []
    assert pair.server.sendable(1) == 50


def test_sendable_follows_the_connection_window() -> None:
    pair = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    pair.request(1)
    pair.request(3)
    window = pair.client.local_settings.initial_window_size
    assert window == 1 << 20
    connection_window = 65535  # the connection window is not changed by SETTINGS
    assert pair.server.sendable(1) == connection_window
    pair.server.send_response(1, 200, [], b"x" * connection_window, False)
    assert pair.server.sendable(1) == 0
    assert pair.server.sendable(3) == 0
    pair.to_client()
    pair.client.increment_flow_control_window(1000)  # connection level
    pair.to_server()
    assert pair.server.sendable(3) == 1000
    assert pair.server.sendable(1) == 1000


def test_ack_data_sends_window_update() -> None:
    pair = Pair()
    pair.request(1, end=False, method=b"POST")
    chunk = b"z" * 16000
    for _ in range(3):
        pair.client.send_data(1, chunk)
    events = pair.to_server()
    assert sum(len(e.data) for e in of_type(events, Body)) == 48000
    # The client's sending windows (stream and connection) are down by what it sent.
    assert pair.client.local_flow_control_window(1) == 65535 - 48000
    assert pair.client.outbound_flow_control_window == 65535 - 48000
    assert of_type(pair.to_client(), h2.events.WindowUpdated) == []  # not before the ack
    pair.server.ack_data(1, 48000)
    updates = of_type(pair.to_client(), h2.events.WindowUpdated)
    assert {(u.stream_id, u.delta) for u in updates} == {(0, 48000), (1, 48000)}
    assert pair.client.local_flow_control_window(1) == 65535
    assert pair.client.outbound_flow_control_window == 65535


def test_ack_data_is_capped_at_what_was_received() -> None:
    pair = Pair()
    pair.request(1, end=False, method=b"POST")
    for _ in range(3):
        pair.client.send_data(1, b"z" * 16000)
    pair.to_server()
    pair.server.ack_data(1, 10**6)
    updates = of_type(pair.to_client(), h2.events.WindowUpdated)
    assert {(u.stream_id, u.delta) for u in updates} == {(0, 48000), (1, 48000)}


# --- resets, limits, shutdown --------------------------------------------------------------------


def test_client_reset_stream() -> None:
    pair = Pair()
    pair.request(1, end=False, method=b"POST")
    assert pair.server.sendable(1) > 0
    pair.client.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    assert pair.to_server() == [StreamReset(1)]
    assert pair.server.sendable(1) == -1
    assert pair.server.idle
    pair.server.send_response(1, 200, [], b"late", True)  # ignored, no frames for a dead stream
    assert pair.server.data_to_send() == b""


def test_server_reset_sends_rst_stream() -> None:
    pair = Pair()
    pair.request(1)
    pair.server.reset(1)
    (reset,) = of_type(pair.to_client(), h2.events.StreamReset)
    assert reset.stream_id == 1
    assert reset.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert pair.server.sendable(1) == -1


NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
REFUSED = h2.errors.ErrorCodes.REFUSED_STREAM


def resets(events: list[Any]) -> list[tuple[int, int]]:
    return [(e.stream_id, e.error_code) for e in of_type(events, h2.events.StreamReset)]


def test_max_requests_sends_goaway_naming_the_last_stream() -> None:
    pair = Pair(max_requests=2)
    pair.client.send_headers(1, get_headers(b"/1"), end_stream=True)
    assert not pair.to_client() and pair.goaways == []  # below the limit: no GOAWAY
    pair.to_server()
    pair.client.send_headers(3, get_headers(b"/3"), end_stream=True)
    events = pair.to_server()
    assert [r.stream_id for r in of_type(events, Request)] == [3]
    pair.to_client()
    assert pair.goaways == [(3, NO_ERROR)]
    assert not pair.server.closing  # streams 1 and 3 are still to be answered


def test_max_requests_still_answers_streams_up_to_the_last() -> None:
    pair = Pair(max_requests=2)
    pair.client.send_headers(1, get_headers(b"/1"), end_stream=True)
    pair.client.send_headers(3, get_headers(b"/3"), end_stream=True)
    pair.to_server()
    pair.server.send_response(3, 200, [], b"three", True)
    assert not pair.server.closing
    pair.server.send_response(1, 200, [], b"one", True)
    assert pair.server.closing
    events = pair.to_client()
    assert pair.goaways == [(3, NO_ERROR)]
    assert response_body(events, 1) == b"one"
    assert response_body(events, 3) == b"three"


def test_max_requests_refuses_higher_streams_in_the_same_read() -> None:
    pair = Pair(max_requests=2)
    for stream_id in (1, 3, 5):
        pair.client.send_headers(stream_id, get_headers(b"/%d" % stream_id), end_stream=True)
    events = pair.to_server()
    assert [r.stream_id for r in of_type(events, Request)] == [1, 3]
    assert not of_type(events, ProtocolError)
    client_events = pair.to_client()
    assert pair.goaways == [(3, NO_ERROR)]
    assert resets(client_events) == [(5, REFUSED)]


def test_max_requests_refuses_higher_streams_sent_before_the_goaway_arrived() -> None:
    pair = Pair(max_requests=2)
    pair.client.send_headers(1, get_headers(b"/1"), end_stream=True)
    pair.client.send_headers(3, get_headers(b"/3"), end_stream=True)
    pair.to_server()
    pair.client.send_headers(5, get_headers(b"/5"), end_stream=True)  # crosses the GOAWAY
    assert pair.to_server() == []
    assert not pair.server.closing
    client_events = pair.to_client()
    assert pair.goaways == [(3, NO_ERROR)]
    assert resets(client_events) == [(5, REFUSED)]


def test_goaway_while_idle() -> None:
    pair = Pair()
    pair.server.goaway()
    pair.to_client()
    assert pair.goaways == [(0, NO_ERROR)]
    assert pair.server.closing


def test_goaway_names_the_highest_stream_and_waits_for_it() -> None:
    pair = Pair()
    pair.request(1)
    pair.request(3, end=False, method=b"POST")
    pair.server.goaway()
    pair.to_client()
    assert pair.goaways == [(3, NO_ERROR)]
    assert not pair.server.closing
    pair.server.goaway()  # a second call sends nothing more
    assert pair.server.data_to_send() == b""


def test_goaway_lets_open_streams_finish() -> None:
    pair = Pair()
    pair.request(1)
    pair.server.goaway()
    pair.to_client()
    pair.server.send_response(1, 200, [], b"done", True)
    assert response_body(pair.to_client(), 1) == b"done"
    assert pair.server.closing


def test_goaway_still_receives_bodies_of_open_streams() -> None:
    pair = Pair()
    pair.request(1, end=False, method=b"POST")
    pair.server.goaway()
    pair.to_client()
    pair.client.send_data(1, b"rest", end_stream=True)
    assert pair.to_server() == [Body(1, b"rest"), EndBody(1, None)]


def test_protocol_garbage_is_a_connection_error() -> None:
    pair = Pair()
    pair.request(1, end=False, method=b"POST")
    data_on_stream_0 = b"\x00\x00\x05\x00\x00\x00\x00\x00\x00hello"
    events = pair.server.receive_data(data_on_stream_0)
    assert len(of_type(events, ProtocolError)) == 1
    assert StreamReset(1) in events
    assert pair.server.closing
    pair.to_client()
    assert pair.goaways
    assert {code for _, code in pair.goaways} == {h2.errors.ErrorCodes.PROTOCOL_ERROR}
    assert pair.server.receive_data(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00") == []
    assert pair.server.sendable(1) == -1


def test_bad_preface_is_a_connection_error() -> None:
    pair = Pair(handshake=False)
    pair.server.data_to_send()
    events = pair.server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(e) for e in events] == [ProtocolError]
    assert pair.server.closing
    out = pair.server.data_to_send()
    assert out[3] == 0x7  # a GOAWAY frame
    assert int.from_bytes(out[-4:], "big") == h2.errors.ErrorCodes.PROTOCOL_ERROR


# --- h2c upgrade ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"uploaded"], ids=["get", "post"])
def test_upgrade_request_becomes_stream_1(body: bytes) -> None:
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    settings = client.initiate_upgrade_connection()
    server = H2Adapter(
        max_concurrent_streams=MAX_STREAMS,
        max_header_list_size=MAX_HEADER_LIST,
        max_inbound_frame_size=MAX_FRAME,
        max_requests=100,
        engine=ENGINE,
    )
    server.initiate(settings)
    h1_request = Request(
        7, "POST" if body else "GET", b"/up", [(b"host", b"x"), (b"upgrade", b"h2c")], "1.1"
    )
    events = server.upgrade_request(h1_request, body)
    request = events[0]
    assert isinstance(request, Request)
    assert (request.stream_id, request.http_version, request.raw_path) == (1, "2", b"/up")
    assert events[1:] == ([Body(1, body)] if body else []) + [EndBody(1, None)]
    assert server.sendable(1) > 0
    assert not server.idle
    # The client's preface (and SETTINGS) follow the 101 on the same connection.
    assert server.receive_data(client.data_to_send()) == []
    server.send_response(1, 200, [(b"content-type", b"text/plain")], b"via h2", True)
    client_events = list(client.receive_data(server.data_to_send()))
    assert of_type(client_events, h2.events.RemoteSettingsChanged)
    (response,) = of_type(client_events, h2.events.ResponseReceived)
    assert (response.stream_id, response.headers[0]) == (1, (b":status", b"200"))
    assert response_body(client_events, 1) == b"via h2"
    assert server.idle
    # The next request on the upgraded connection is stream 3.
    client.send_headers(3, get_headers(b"/next"), end_stream=True)
    (next_request,) = of_type(server.receive_data(client.data_to_send()), Request)
    assert (next_request.stream_id, next_request.raw_path) == (3, b"/next")
