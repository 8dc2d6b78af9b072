"""QUIC/HTTP/3 hardening (issue 14), sans-IO: an aioquic client in memory against the
HTTP/3 adapter. Each case here failed before its fix."""

from __future__ import annotations

import random
from typing import Any

import pytest
from aioquic.h3.connection import ErrorCode, Setting
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration

from edgecorn.protocol.events import Body, Event, StreamReset
from edgecorn.quic.configuration import quic_configuration
from tests.support.quic_peer import CLIENT, server_config
from tests.test_quic_adapter import OK, Pair, refusals, requests


@pytest.fixture(scope="module")
def configuration(certs: tuple[str, str, str]) -> QuicConfiguration:
    return quic_configuration(server_config(certs))


def stop_sending(pair: Pair) -> dict[int, int]:
    return {
        e.stream_id: e.error_code
        for e in pair.peer.quic_events
        if isinstance(e, quic_events.StopSendingReceived)
    }


# ------------------------------------------------ 1. early responses, malformed messages


def test_a_response_before_the_body_ends_asks_the_client_to_stop_sending(
    configuration: QuicConfiguration, cafile: str
) -> None:
    """RFC 9114 4.1: an app answering 413 to a large upload; the client gets the whole
    response and STOP_SENDING(H3_NO_ERROR), and its reset (which STOP_SENDING asks for)
    ends nothing else."""
    pair = Pair(configuration, cafile).start()
    length = [(b"content-length", b"17825792")]
    sid = pair.peer.request("POST", "/upload", b"x" * 5000, headers=length, end=False)
    events = pair.pump()
    assert [r.stream_id for r in requests(events)] == [sid]
    pair.h3.send_response(sid, 413, OK, b"too large", True)
    pair.pump()
    headers, body, ended = pair.peer.response(sid)
    assert (headers[b":status"], body, ended) == (b"413", b"too large", True)
    assert stop_sending(pair) == {sid: ErrorCode.H3_NO_ERROR}
    # the connection carries on
    other = pair.peer.request("GET", "/next")
    assert [r.stream_id for r in requests(pair.pump())] == [other]
    assert pair.peer.terminated() is None and not pair.h3.terminated


def test_a_client_ending_its_body_early_after_an_early_response_keeps_the_connection(
    configuration: QuicConfiguration, cafile: str
) -> None:
    """As curl does on a 413: it ends the body (FIN) short of its content-length before
    our STOP_SENDING reaches it. That used to close the whole connection with
    H3_MESSAGE_ERROR ("content-length does not match data size"), losing the 413."""
    pair = Pair(configuration, cafile).start()
    length = [(b"content-length", b"1000000")]
    sid = pair.peer.request("POST", "/upload", b"x" * 5000, headers=length, end=False)
    pair.pump()
    pair.h3.send_response(sid, 413, OK, b"too large", True)
    server_out = pair.h3.datagrams(pair.now)  # the 413 and STOP_SENDING, not delivered yet
    pair.peer.h3.send_data(sid, b"", end_stream=True)  # the client gives up on its body
    for data in pair.peer.datagrams(pair.now):
        pair.events += pair.h3.receive_datagram(data, CLIENT, pair.now)
    for data, _ in server_out:
        pair.peer.receive(data, pair.now)
    pair.pump()
    assert pair.peer.terminated() is None and not pair.h3.terminated
    headers, body, ended = pair.peer.response(sid)
    assert (headers[b":status"], body, ended) == (b"413", b"too large", True)
    other = pair.peer.request("GET", "/next")
    assert [r.stream_id for r in requests(pair.pump())] == [other]


def test_a_body_shorter_than_its_content_length_resets_only_that_stream(
    configuration: QuicConfiguration, cafile: str
) -> None:
    """RFC 9114 4.1.2: a malformed message is a stream error (H3_MESSAGE_ERROR); the
    connection and its other streams live on."""
    pair = Pair(configuration, cafile).start()
    keep = pair.peer.request("POST", "/keep", b"a" * 10, end=False)
    pair.pump()
    bad = pair.peer.request("POST", "/bad", b"b" * 10, headers=[(b"content-length", b"99")])
    events = pair.pump()
    assert StreamReset(bad) in events  # the app's stream learns it is gone
    assert pair.peer.resets().get(bad) == ErrorCode.H3_MESSAGE_ERROR
    assert pair.peer.terminated() is None and not pair.h3.terminated
    pair.peer.h3.send_data(keep, b"c" * 10, end_stream=True)
    events = pair.pump()
    assert b"".join(e.data for e in pair.events if isinstance(e, Body) and e.stream_id == keep)
    pair.h3.send_response(keep, 200, OK, b"kept", True)
    pair.pump()
    assert pair.peer.response(keep)[1:] == (b"kept", True)


GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost")]


@pytest.mark.parametrize(
    "fields",
    [
        GET,  # no :path (RFC 9114 4.3.1), refused by the engine
        # refused by fields.parse_request, the rules h2 and h3 share
        [(b":method", b"G\xc3\xa9T"), *GET[1:], (b":path", b"/")],  # a method that is no token
        [*GET, (b":path", b"/"), (b"connection", b"close")],  # RFC 9114 4.2
        [*GET, (b":path", b"/"), (b"host", b"elsewhere")],  # differs from :authority
    ],
)
def test_malformed_request_headers_reset_the_stream_not_the_connection(
    configuration: QuicConfiguration, cafile: str, fields: list[tuple[bytes, bytes]]
) -> None:
    pair = Pair(configuration, cafile).start()
    sid = pair.peer.quic.get_next_available_stream_id()
    pair.peer.h3.send_headers(sid, fields, end_stream=True)
    events = pair.pump()
    assert not requests(events)
    assert pair.peer.resets().get(sid) == ErrorCode.H3_MESSAGE_ERROR
    assert pair.peer.terminated() is None and not pair.h3.terminated
    other = pair.peer.request("GET", "/ok")
    assert [r.stream_id for r in requests(pair.pump())] == [other]


# ------------------------------------------------------------------------------ 2. QPACK


class LossyPair(Pair):
    """Server datagrams reordered and one in ten lost (seeded), so that header blocks can
    arrive before the encoder-stream instructions they might refer to."""

    def __init__(self, *args: Any, seed: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = random.Random(seed)
        self.most_blocked = 0  # client streams waiting on the encoder stream, at worst
        self.lossy = False  # a clean handshake first

    def pump(self, rounds: int = 50) -> list[Event]:
        new: list[Event] = []
        for _ in range(rounds):
            self.now += 0.001
            moved = False
            for data in self.peer.datagrams(self.now):
                new += self.h3.receive_datagram(data, CLIENT, self.now)
                moved = True
            out = [data for data, _ in self.h3.datagrams(self.now)]
            self.rng.shuffle(out)
            for data in out:
                moved = True
                if self.lossy and self.rng.random() < 0.1:
                    continue
                self.peer.receive(data, self.now)
                blocked = sum(1 for s in self.peer.h3._stream.values() if s.blocked)
                self.most_blocked = max(self.most_blocked, blocked)
            if not moved:
                break
        self.events += new
        return new


@pytest.mark.parametrize("seed", [1, 3])
def test_300_responses_with_a_client_dynamic_table_never_wait_on_the_encoder_stream(
    configuration: QuicConfiguration, cafile: str, seed: int
) -> None:
    """The client allows a QPACK dynamic table (aioquic: capacity 4096, 16 blocked
    streams). Every one of 300 responses on one connection must arrive; header blocks
    refer only to entries the client has, so none waits for the encoder stream."""
    pair = LossyPair(configuration, cafile, seed=seed).start()
    pair.lossy = True
    settings = pair.h3.h3.received_settings if pair.h3.h3 else None
    assert settings and settings[Setting.QPACK_MAX_TABLE_CAPACITY] == 4096
    assert settings[Setting.QPACK_BLOCKED_STREAMS] == 16
    ids: list[int] = []
    for wave in range(6):
        batch = [pair.peer.request("GET", f"/{wave}/{i}") for i in range(50)]
        ids += batch
        pair.pump()
        for sid in batch:
            fields = OK + [
                (b"server", b"edgecorn"),  # repeated fields: worth a dynamic-table entry
                (b"x-wave", b"wave-%d" % wave * 3),
                (b"x-id", b"%d" % sid),
            ]
            pair.h3.send_response(sid, 200, fields, b"ok", True)
            if sid % 7 == 0:
                pair.pump()
        pair.pump()
    pair.run_timers(lambda: all(pair.peer.response(sid)[2] for sid in ids), rounds=60)
    done = [sid for sid in ids if pair.peer.response(sid)[2]]
    assert len(done) == 300
    assert pair.h3.h3 is not None and pair.h3.h3._encoder_bytes_sent > 100  # entries inserted
    assert pair.most_blocked == 0
    assert pair.peer.terminated() is None


# --------------------------------------------------------- 3. request header size limits


def test_the_field_section_limit_is_advertised_like_h2s(
    configuration: QuicConfiguration, cafile: str
) -> None:
    """SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 7.2.4.1), as h2 sends
    SETTINGS_MAX_HEADER_LIST_SIZE: a client can keep to it instead of being refused."""
    pair = Pair(configuration, cafile, max_header_list_size=8000).start()
    settings = pair.peer.h3.received_settings
    assert settings is not None and settings[Setting.MAX_FIELD_SECTION_SIZE] == 8000


def test_a_headers_frame_over_the_limit_gets_431_without_being_buffered(
    configuration: QuicConfiguration, cafile: str
) -> None:
    """A HEADERS frame longer than the limit is answered 431 as soon as its length is
    known; aioquic used to hold the whole frame (up to the stream window) to decode it."""
    limit = 16384
    pair = Pair(configuration, cafile, max_header_list_size=limit).start()
    big = [(b"x-big-%d" % i, b"a" * 6000) for i in range(100)]  # 600 kB
    sid = pair.peer.request("GET", "/", headers=big)
    most = 0
    for _ in range(300):
        pair.pump(1)
        assert pair.h3.h3 is not None
        stream = pair.h3.h3._stream.get(sid)
        most = max(most, len(stream.buffer) if stream is not None else 0)
        if pair.peer.response(sid)[2]:
            break
    headers, _, ended = pair.peer.response(sid)
    assert headers.get(b":status") == b"431" and ended
    assert not requests(pair.events)  # no app ever saw it
    assert most <= limit
    assert stop_sending(pair).get(sid) == ErrorCode.H3_NO_ERROR
    pair.pump()
    other = pair.peer.request("GET", "/ok", headers=[(b"x-small", b"b" * 100)])
    assert [r.stream_id for r in requests(pair.pump())] == [other]
    assert pair.peer.terminated() is None and not pair.h3.terminated


def test_header_count_is_bounded_by_the_same_limit(
    configuration: QuicConfiguration, cafile: str
) -> None:
    """Each field costs its size plus 32 bytes (RFC 9114 4.2.2, as RFC 9113 6.5.2), so
    2000 empty fields are over a 16 KiB limit: 431 from the server, not the app."""
    pair = Pair(configuration, cafile, max_header_list_size=16384).start()
    pair.peer.request("GET", "/", headers=[(b"x-%d" % i, b"") for i in range(2000)])
    (refused,) = refusals(pair.pump())
    assert refused.status == 431
