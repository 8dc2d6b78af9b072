"""H1Adapter's explicit states (issue 8), sans-IO: bytes in, then the request side
(`their`) and the response side (`our`) asserted, for both parsers.

Also the frozen `Request` event: built complete (the WebSocket flag included), never
changed after, with a fast __init__ that keeps the dataclass's signature."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from edgecorn.protocol.events import Body, EndBody, Event, Request, StreamReset
from edgecorn.protocol.h1 import (
    BODY,
    CLOSED,
    DONE,
    IDLE,
    SEND_RESPONSE,
    TUNNEL,
    H1Adapter,
    H11Adapter,
    HttptoolsAdapter,
    Parsing,
    State,
)

ADAPTERS: dict[str, type[H1Adapter]] = {"h11": H11Adapter, "httptools": HttptoolsAdapter}
OK = [(b"content-type", b"text/plain")]
WS_HEAD = (
    b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.fixture(params=sorted(ADAPTERS))
def h1(request: pytest.FixtureRequest) -> H1Adapter:
    return ADAPTERS[request.param](16384, 100, False)


def states(h1: H1Adapter) -> tuple[State, State]:
    assert h1.closing == (h1.our is CLOSED)  # the plain attribute the connection reads
    return h1.their, h1.our


def requests_in(events: list[Event]) -> list[Request]:
    return [e for e in events if isinstance(e, Request)]


def test_a_get_goes_round_the_cycle_and_back_to_idle(h1: H1Adapter) -> None:
    assert states(h1) == (IDLE, IDLE)
    events = h1.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert requests_in(events) and EndBody(1) in events
    assert states(h1) == (DONE, SEND_RESPONSE)
    h1.send_response(1, 200, OK, b"", False)
    assert states(h1) == (DONE, BODY)
    h1.send_data(1, b"hi", True)
    assert states(h1) == (IDLE, IDLE) and not h1.closing
    h1.receive_data(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert h1.active == 2 and states(h1) == (DONE, SEND_RESPONSE)


def test_a_body_keeps_their_side_in_body_until_its_end(h1: H1Adapter) -> None:
    h1.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc")
    assert states(h1) == (BODY, SEND_RESPONSE)
    events = h1.receive_data(b"def")
    assert Body(1, b"def") in events and EndBody(1) in events
    assert states(h1) == (DONE, SEND_RESPONSE)


def test_an_early_answer_skips_the_rest_of_the_body_then_goes_idle(h1: H1Adapter) -> None:
    h1.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc")
    h1.send_response(1, 200, OK, b"early", True)
    assert states(h1) == (BODY, IDLE) and h1.discarding == 1  # the rest is still coming
    assert h1.receive_data(b"def") == []  # skipped, not delivered
    assert states(h1) == (IDLE, IDLE) and not h1.closing
    assert requests_in(h1.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))


def test_connection_close_ends_in_closed(h1: H1Adapter) -> None:
    h1.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    h1.send_response(1, 200, OK, b"bye", True)
    assert h1.our is CLOSED and h1.closing
    assert b"connection: close" in h1.data_to_send().lower()


def test_closed_is_final(h1: H1Adapter) -> None:
    """After a broken request nothing more goes out, whatever a stream still asks."""
    events = h1.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert h1.our is CLOSED and not requests_in(events)
    assert h1.data_to_send().startswith(b"HTTP/1.1 400 ")
    h1.send_response(1, 200, OK, b"late", True)
    h1.goaway()
    assert h1.our is CLOSED and h1.data_to_send() == b""
    assert h1.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == []


def test_goaway_while_idle_closes(h1: H1Adapter) -> None:
    h1.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    h1.send_response(1, 204, [], b"", True)
    assert h1.our is IDLE
    h1.goaway()
    assert h1.our is CLOSED


def test_eof_mid_body_resets_the_stream_and_closes(h1: H1Adapter) -> None:
    h1.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc")
    events = h1.receive_data(b"")
    assert StreamReset(1) in events and states(h1) == (BODY, CLOSED)


def test_a_websocket_upgrade_opens_the_tunnel(h1: H1Adapter) -> None:
    (request,) = requests_in(h1.receive_data(WS_HEAD + b"\x81\x00"))
    assert request.protocol == "websocket"  # built complete: the event is never changed
    assert states(h1) == (TUNNEL, SEND_RESPONSE)
    assert h1.receive_data(b"frame") == [Body(1, b"frame")]
    h1.send_response(1, 101, [(b"upgrade", b"websocket")], b"", False)
    assert states(h1) == (TUNNEL, BODY)
    h1.send_data(1, b"\x81\x02hi", False)
    assert h1.data_to_send().endswith(b"\r\n\r\n\x81\x02hi")
    assert h1.receive_data(b"") == [StreamReset(1)] and h1.our is CLOSED


def test_llhttp_parsing_runs_ahead_of_the_cycle() -> None:
    """HttptoolsAdapter's own machine: where llhttp is, pipelined requests included."""
    h1 = HttptoolsAdapter(16384, 100, False)
    assert h1.parsing is Parsing.BETWEEN
    h1.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-")
    assert h1.parsing is Parsing.HEAD and h1.head_pending
    h1.receive_data(b"Length: 2\r\n\r\nx")
    assert h1.parsing is Parsing.BODY and not h1.head_pending
    h1.receive_data(b"yGET /next HTTP/1.1\r\nHost: a\r\n\r\nGET /third HTTP/1.1\r\n")
    assert h1.parsing is Parsing.HEAD and h1.active == 1  # the second is held, the third begun
    assert states(h1) == (DONE, SEND_RESPONSE)


def test_llhttp_ignores_what_follows_a_close_request() -> None:
    h1 = HttptoolsAdapter(16384, 100, False)
    h1.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert h1.receive_data(b"\x00garbage\r\n\r\n") == []
    assert h1.parsing is Parsing.IGNORING and h1.data_to_send() == b""  # no 400
    assert h1.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == []
    h1.send_response(1, 200, OK, b"ok", True)
    assert h1.closing and h1.data_to_send().startswith(b"HTTP/1.1 200 ")


def test_the_request_event_is_frozen_and_replace_builds_a_new_one() -> None:
    request = Request(3, "GET", b"/", [(b"host", b"a")], "1.1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.protocol = "websocket"  # type: ignore[misc]
    moved = dataclasses.replace(request, stream_id=1, http_version="2")
    assert (moved.stream_id, moved.http_version, request.stream_id) == (1, "2", 3)
    assert moved.headers is request.headers and moved.method == "GET"
    # the fast __init__ keeps the dataclass's fields, order and defaults
    names = [f.name for f in dataclasses.fields(Request)]
    assert names == [
        "stream_id",
        "method",
        "raw_path",
        "headers",
        "http_version",
        "scheme",
        "authority",
        "protocol",
        "early_data",
        "push",
    ]
    assert (request.scheme, request.authority, request.protocol) == (None, None, None)
    assert (request.early_data, request.push) == (False, False)
    full = Request(5, "CONNECT", b"/", [], "2", "https", b"a", "websocket", True, True)
    assert full == Request(
        stream_id=5,
        method="CONNECT",
        raw_path=b"/",
        headers=[],
        http_version="2",
        scheme="https",
        authority=b"a",
        protocol="websocket",
        early_data=True,
        push=True,
    )
    assert copy.copy(full) == full == pickle.loads(pickle.dumps(full))
    assert copy.deepcopy(full) == full and type(copy.copy(full)) is Request
