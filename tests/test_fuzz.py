"""Property-based fuzzing (hypothesis) of the sans-IO adapters (issue 14): random and
mutated byte streams never raise out of an adapter, never make two requests of one
framed request, and never make an adapter hold more than its limits.

A few dozen examples per property run in the normal suite; `EDGECORN_FUZZ=1` runs
thousands (see README.md, "Fuzzing"). Not covered here yet: WebSocket framing.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecorn.protocol.events import Body, EndBody, Event, Request
from edgecorn.protocol.h1 import H1Adapter, H11Adapter, HttptoolsAdapter
from edgecorn.protocol.h2 import H2Adapter
from tests.support.fuzz import chunks, mutate

LONG = os.environ.get("EDGECORN_FUZZ") == "1"
settings.register_profile(
    "edgecorn",
    max_examples=3000 if LONG else 40,
    deadline=None,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("edgecorn")

MAX_HEAD = 4096
H1 = {"h11": H11Adapter, "httptools": HttptoolsAdapter}
REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /x HTTP/1.0\r\n\r\n",
]


edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)))
cuts = st.lists(st.integers(0, 10**6), max_size=8)


def feed_h1(adapter: H1Adapter, pieces: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for piece in pieces:
        events += adapter.receive_data(piece)
        # no request is served: whatever the adapter holds stays within its limits
        assert adapter.backlog <= MAX_HEAD + 65536 + len(piece)
        adapter.data_to_send()
    return events


@pytest.mark.parametrize("parser", sorted(H1))
@given(data=st.binary(max_size=2048), cut=cuts)
def test_h1_random_bytes_never_raise(parser: str, data: bytes, cut: list[int]) -> None:
    feed_h1(H1[parser](MAX_HEAD, 100, False), chunks(data, cut))


@pytest.mark.parametrize("parser", sorted(H1))
@given(base=st.sampled_from(REQUESTS), edit=edits, cut=cuts)
def test_h1_mutated_requests_never_raise(
    parser: str, base: bytes, edit: list[tuple[int, int, int]], cut: list[int]
) -> None:
    feed_h1(H1[parser](MAX_HEAD, 100, False), chunks(mutate(base, edit), cut))


@pytest.mark.parametrize("parser", sorted(H1))
@given(body=st.binary(max_size=512), inner=st.sampled_from(REQUESTS), cut=cuts)
def test_h1_a_body_is_never_a_second_request(
    parser: str, body: bytes, inner: bytes, cut: list[int]
) -> None:
    """A request body that holds a whole request (smuggling's raw material) is a body."""
    payload = body + inner
    head = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(payload)
    events = feed_h1(H1[parser](MAX_HEAD, 100, False), chunks(head + payload, cut))
    assert [type(e) for e in events if isinstance(e, Request)] == [Request]
    assert b"".join(e.data for e in events if isinstance(e, Body)) == payload
    assert any(isinstance(e, EndBody) for e in events)


# ---------------------------------------------------------------------------------- h2

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
# HEADERS (END_STREAM|END_HEADERS) on stream 1: :method GET, :scheme https, :path /,
# :authority a (HPACK static indexes and one literal)
GET = b"\x00\x00\x06\x01\x05\x00\x00\x00\x01\x82\x87\x84\x41\x01\x61"


def h2_adapter() -> H2Adapter:
    adapter = H2Adapter(
        max_concurrent_streams=100,
        max_header_list_size=65536,
        max_inbound_frame_size=16384,
        max_requests=1000,
    )
    adapter.initiate()
    adapter.data_to_send()
    return adapter


def feed_h2(adapter: H2Adapter, pieces: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for piece in pieces:
        events += adapter.receive_data(piece)
        adapter.data_to_send()
    return events


def test_h2_the_fuzz_seed_is_a_request() -> None:
    events = feed_h2(h2_adapter(), [PREFACE + SETTINGS + GET])
    assert [r.method for r in events if isinstance(r, Request)] == ["GET"]


@given(data=st.binary(max_size=2048), cut=cuts)
def test_h2_random_frames_after_the_preface_never_raise(data: bytes, cut: list[int]) -> None:
    feed_h2(h2_adapter(), chunks(PREFACE + SETTINGS + data, cut))


@given(edit=edits, cut=cuts)
def test_h2_mutated_request_never_raises_nor_doubles(
    edit: list[tuple[int, int, int]], cut: list[int]
) -> None:
    frames = mutate(SETTINGS + GET, edit)
    events = feed_h2(h2_adapter(), chunks(PREFACE + frames, cut))
    assert len([e for e in events if isinstance(e, Request)]) <= 1


# ---------------------------------------------------------------------------------- h3


@pytest.fixture(scope="module")
def h3_configuration(certs: tuple[str, str, str]) -> Any:
    from edgecorn.quic.configuration import quic_configuration
    from tests.support.quic_peer import server_config

    return quic_configuration(server_config(certs))


@given(data=st.binary(max_size=4096), end=st.booleans())
def test_h3_random_request_stream_bytes_never_raise_nor_double(
    h3_configuration: Any, cafile: str, data: bytes, end: bool
) -> None:
    """Raw bytes on a request stream, under HTTP/3 framing: a frame error may close the
    connection (RFC 9114 makes most of them connection errors), but the adapter never
    raises and a stream carries at most one request."""
    from tests.test_quic_adapter import Pair

    pair = Pair(h3_configuration, cafile).start()
    sid = pair.peer.quic.get_next_available_stream_id()
    pair.peer.quic.send_stream_data(sid, data, end)
    pair.pump()
    assert len([e for e in pair.events if isinstance(e, Request)]) <= 1
    assert pair.h3.unread_total <= 32 * 1024 * 1024


@given(edit=edits)
def test_h3_mutated_headers_frame_never_raises(
    h3_configuration: Any, cafile: str, edit: list[tuple[int, int, int]]
) -> None:
    from aioquic.h3.connection import FrameType, encode_frame

    from tests.test_quic_adapter import Pair

    pair = Pair(h3_configuration, cafile).start()
    # a valid request's HEADERS frame as the client's own encoder made it, then mutated
    sid = pair.peer.quic.get_next_available_stream_id()
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
    _, block = pylsqpack_encode(fields)
    frame = mutate(encode_frame(FrameType.HEADERS, block), edit)
    pair.peer.quic.send_stream_data(sid, frame, True)
    pair.pump()
    assert len([e for e in pair.events if isinstance(e, Request)]) <= 1


def pylsqpack_encode(fields: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """A header block with no dynamic-table references (an encoder with no table)."""
    import pylsqpack

    encoder = pylsqpack.Encoder()
    result: tuple[bytes, bytes] = encoder.encode(0, fields)
    return result
