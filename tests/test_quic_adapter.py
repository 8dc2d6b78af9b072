"""The HTTP/3 adapter (edgecorn.quic.h3) and the engine's aioquic hooks, sans-IO: an
aioquic client in memory sends datagrams, the adapter turns them into the common stream
events, and its commands come back to the client as HTTP/3 responses. No sockets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aioquic.h3.connection import ErrorCode
from aioquic.quic.configuration import QuicConfiguration

from edgecorn.protocol.events import Body, EndBody, Event, Refused, Request, StreamReset
from edgecorn.quic.configuration import quic_configuration
from edgecorn.quic.engine import EdgeQuicConnection
from edgecorn.quic.h3 import SEND_BUFFER, H3Adapter
from edgecorn.quic.routing import new_route
from edgecorn.quic.tickets import TicketStore
from tests.support.quic_peer import CLIENT, Peer, server_config

OK = [(b"content-type", b"text/plain")]


@pytest.fixture(scope="module")
def configuration(certs: tuple[str, str, str]) -> QuicConfiguration:
    return quic_configuration(server_config(certs))


class Pair:
    """One client Peer and one server H3Adapter, and a clock that both share."""

    def __init__(
        self,
        configuration: QuicConfiguration,
        cafile: str,
        *,
        early_data: bool = False,
        cid_tag: int | None = None,
        tickets: TicketStore | None = None,
        peer: Peer | None = None,
        **adapter: Any,
    ) -> None:
        self.now = 1.0
        self.peer = peer or Peer(cafile, self.now)
        self.tickets = tickets or TicketStore()
        self.first = self.peer.datagrams(self.now)
        route = new_route(self.first[0], CLIENT, None, False)
        assert route is not None and route.accept
        self.quic = EdgeQuicConnection(
            early_data=early_data,
            cid_tag=cid_tag,
            max_streams=adapter.pop("max_streams", 100),
            configuration=configuration,
            original_destination_connection_id=route.original_dcid,
            session_ticket_fetcher=self.tickets.pop,
            session_ticket_handler=self.tickets.add,
        )
        adapter.setdefault("max_requests", 1000)
        adapter.setdefault("max_header_list_size", 65536)
        self.h3 = H3Adapter(self.quic, **adapter)
        self.events: list[Event] = []

    def start(self) -> Pair:
        for data in self.first:
            self.events += self.h3.receive_datagram(data, CLIENT, self.now)
        self.pump()
        assert self.h3.handshake_done and self.peer.handshake_done()
        return self

    def pump(self, rounds: int = 50) -> list[Event]:
        """Move datagrams both ways until both sides are quiet (bounded)."""
        new: list[Event] = []
        for _ in range(rounds):
            self.now += 0.001
            moved = False
            for data in self.peer.datagrams(self.now):
                new += self.h3.receive_datagram(data, CLIENT, self.now)
                moved = True
            for data, _ in self.h3.datagrams(self.now):
                self.peer.receive(data, self.now)
                moved = True
            if not moved:
                break
        self.events += new
        return new

    def run_timers(self, done: Callable[[], bool], rounds: int = 20) -> list[Event]:
        """Jump the clock to the next timer of either side and fire it, until `done()`."""
        new: list[Event] = []
        for _ in range(rounds):
            if done():
                break
            timers = [t for t in (self.quic.get_timer(), self.peer.quic.get_timer()) if t]
            if not timers:
                break
            self.now = max(self.now, min(timers))
            if (self.quic.get_timer() or self.now + 1) <= self.now:
                new += self.h3.handle_timer(self.now)
            if (self.peer.quic.get_timer() or self.now + 1) <= self.now:
                self.peer.handle_timer(self.now)
            new += self.pump()
        self.events += new
        return new


def requests(events: list[Event]) -> list[Request]:
    return [e for e in events if isinstance(e, Request)]


def refusals(events: list[Event]) -> list[Refused]:
    return [e for e in events if isinstance(e, Refused)]


def test_a_get_becomes_a_request_and_the_response_reaches_the_client(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile).start()
    sid = pair.peer.request("GET", "/path?q=1", headers=[(b"x-test", b"yes")])
    events = pair.pump()
    (request,) = requests(events)
    assert (request.stream_id, request.method, request.raw_path) == (sid, "GET", b"/path?q=1")
    assert request.http_version == "3" and request.scheme == "https"
    assert (b"x-test", b"yes") in request.headers
    assert not request.early_data and not refusals(events)
    assert EndBody(sid) in events
    assert not pair.h3.idle

    pair.h3.send_response(sid, 200, OK, b"hello", True)
    pair.pump()
    headers, body, ended = pair.peer.response(sid)
    assert headers[b":status"] == b"200" and headers[b"content-type"] == b"text/plain"
    assert (body, ended) == (b"hello", True)
    assert pair.h3.idle and pair.h3.all_delivered()


def test_request_body_arrives_in_order_and_acks_are_counted(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile).start()
    payload = bytes(range(256)) * 1000  # 256000 bytes, over several windows' worth of packets
    sid = pair.peer.request("POST", "/upload", body=payload)
    received = b""
    for _ in range(20):
        events = pair.pump()
        chunks = [e.data for e in events if isinstance(e, Body)]
        received += b"".join(chunks)
        pair.h3.ack_data(sid, sum(map(len, chunks)))
        if EndBody(sid) in pair.events:
            break
    assert received == payload
    assert pair.h3.unread_total == 0


def test_head_responses_carry_no_body(configuration: QuicConfiguration, cafile: str) -> None:
    pair = Pair(configuration, cafile).start()
    sid = pair.peer.request("HEAD", "/")
    pair.pump()
    # (no content-length: aioquic's client, not knowing the request was HEAD, would check it)
    pair.h3.send_response(sid, 200, OK, b"hello", True)
    pair.pump()
    headers, body, ended = pair.peer.response(sid)
    assert headers[b":status"] == b"200" and body == b"" and ended


def test_oversized_header_list_is_refused_by_the_server_not_the_app(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile, max_header_list_size=1000).start()
    # small on the wire, over the limit as counted (32 bytes per field): a HEADERS frame
    # itself longer than the limit is answered 431 unread (test_quic_hardening.py)
    pair.peer.request("GET", "/", headers=[(b"x-%d" % i, b"") for i in range(40)])
    events = pair.pump()
    (refused,) = refusals(events)
    assert refused.status == 431 and refused.request.method == "GET"
    assert not requests(events)  # the app never sees it


def test_after_goaway_a_later_request_is_rejected(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile).start()
    first = pair.peer.request("GET", "/")
    pair.pump()
    pair.h3.goaway()
    assert pair.h3.last_stream_id == first
    pair.pump()
    later = pair.peer.request("GET", "/late")
    assert not requests(pair.pump())
    assert pair.peer.resets().get(later) == ErrorCode.H3_REQUEST_REJECTED
    # the request before GOAWAY is still answered
    pair.h3.send_response(first, 200, OK, b"kept", True)
    pair.pump()
    assert pair.peer.response(first)[1:] == (b"kept", True)


def test_max_requests_sends_goaway_after_the_last_one(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile, max_requests=2).start()
    ids = [pair.peer.request("GET", f"/{i}") for i in range(2)]
    pair.pump()
    assert pair.h3.last_stream_id == ids[1]
    third = pair.peer.request("GET", "/2")
    pair.pump()
    assert [r.stream_id for r in requests(pair.events)] == ids
    assert pair.peer.resets().get(third) == ErrorCode.H3_REQUEST_REJECTED


def test_sendable_bounds_what_aioquic_holds_per_stream(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile).start()
    sid = pair.peer.request("GET", "/big")
    pair.pump()
    assert pair.h3.sendable(sid + 4) == -1  # no such stream
    assert pair.h3.sendable(sid) == SEND_BUFFER
    pair.h3.send_response(sid, 200, OK, b"", False)
    pair.h3.send_data(sid, b"x" * SEND_BUFFER, False)
    assert pair.h3.sendable(sid) == 0  # nothing sent or acknowledged yet: the app waits
    pair.pump()
    assert pair.h3.sendable(sid) > 0  # delivered and acknowledged: room again
    pair.h3.send_data(sid, b"", True)
    pair.pump()
    assert pair.h3.sendable(sid) == -1  # finished
    assert len(pair.peer.response(sid)[1]) == SEND_BUFFER


def test_reset_reaches_the_client_and_a_client_reset_reaches_the_stream(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile).start()
    ours = pair.peer.request("GET", "/a")
    theirs = pair.peer.request("POST", "/b", body=b"partial", end=False)
    pair.pump()
    pair.h3.reset(ours)
    pair.peer.quic.reset_stream(theirs, ErrorCode.H3_REQUEST_CANCELLED)
    events = pair.pump()
    assert pair.peer.resets().get(ours) == ErrorCode.H3_INTERNAL_ERROR
    assert StreamReset(theirs) in events
    assert pair.h3.idle
    pair.h3.send_response(ours, 200, OK, b"late", True)  # gone: ignored, not an error
    pair.pump()
    assert pair.peer.response(ours)[1] == b""


def test_a_closing_peer_resets_the_open_streams(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile).start()
    sid = pair.peer.request("GET", "/")
    pair.pump()
    pair.peer.quic.close(error_code=ErrorCode.H3_NO_ERROR)
    pair.pump()
    assert not pair.h3.terminated  # aioquic reports the end after its draining period
    events = pair.run_timers(lambda: pair.h3.terminated)
    assert StreamReset(sid) in events
    assert pair.h3.terminated and pair.h3.closing


def test_close_sends_connection_close(configuration: QuicConfiguration, cafile: str) -> None:
    pair = Pair(configuration, cafile).start()
    pair.h3.close()
    pair.pump()
    pair.run_timers(lambda: pair.peer.terminated() is not None)
    terminated = pair.peer.terminated()
    assert terminated is not None and terminated.error_code == ErrorCode.H3_NO_ERROR


# --------------------------------------------------------------------------- engine hooks


def test_concurrent_stream_limit_is_the_configured_one(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile, max_streams=3).start()
    ids = [pair.peer.request("GET", f"/{i}") for i in range(4)]
    pair.pump()
    assert [r.stream_id for r in requests(pair.events)] == ids[:3]  # the 4th waits
    pair.h3.send_response(ids[0], 200, OK, b"", True)
    pair.pump()  # a finished stream raises the limit by one: the 4th goes out
    assert [r.stream_id for r in requests(pair.events)] == ids


def test_tagged_connection_ids_all_start_with_the_worker_tag(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile, cid_tag=7).start()
    assert pair.quic.host_cid[0] == 7
    issued = [cid for issued, cid in pair.h3.cid_changes if issued]
    assert len(issued) >= 2  # the spare IDs handed to the client after the handshake
    assert all(cid[0] == 7 for cid in issued), issued


def resumed(
    configuration: QuicConfiguration,
    cafile: str,
    first_early: bool,
    second_early: bool,
    method: str = "GET",
) -> tuple[Pair, Pair, int]:
    """A first connection hands out a ticket; a second resumes with it and sends a GET
    (or `method`) in 0-RTT before the handshake finishes."""
    tickets = TicketStore()
    first = Pair(configuration, cafile, early_data=first_early, tickets=tickets).start()
    sid = first.peer.request("GET", "/")
    first.pump()
    first.h3.send_response(sid, 200, OK, b"", True)
    first.pump()
    (ticket,) = first.peer.tickets
    peer = Peer(cafile, first.now, ticket=ticket)
    early_sid = peer.request(method, "/early")  # 0-RTT when the ticket allows it
    second = Pair(configuration, cafile, early_data=second_early, tickets=tickets, peer=peer)
    second.start()
    return first, second, early_sid


def test_early_data_off_tickets_offer_no_0rtt(
    configuration: QuicConfiguration, cafile: str
) -> None:
    first, second, early_sid = resumed(configuration, cafile, False, False)
    assert first.peer.tickets[0].max_early_data_size is None
    assert not any(r.early_data for r in requests(second.events))


def test_early_data_on_accepts_an_idempotent_0rtt_request(
    configuration: QuicConfiguration, cafile: str
) -> None:
    first, second, early_sid = resumed(configuration, cafile, True, True)
    assert first.peer.tickets[0].max_early_data_size
    (request,) = requests(second.events)
    assert request.stream_id == early_sid and request.early_data
    assert (b"early-data", b"1") in request.headers and not refusals(second.events)


def test_a_non_idempotent_0rtt_request_is_refused_with_425_not_given_to_the_app(
    configuration: QuicConfiguration, cafile: str
) -> None:
    first, second, early_sid = resumed(configuration, cafile, True, True, method="POST")
    (refused,) = refusals(second.events)
    assert refused.status == 425 and refused.request.stream_id == early_sid
    assert refused.request.early_data and (b"early-data", b"1") in refused.request.headers
    assert not requests(second.events)


def test_early_data_off_refuses_the_0rtt_key_even_for_a_ticket_that_offered_it(
    configuration: QuicConfiguration, cafile: str
) -> None:
    """A ticket issued with 0-RTT (say, before a restart with early data switched off):
    the server must reject the early data, so no request is taken before the handshake."""
    first, second, early_sid = resumed(configuration, cafile, True, False)
    assert first.peer.tickets[0].max_early_data_size
    assert second.peer.quic.tls.early_data_accepted is False
    assert not any(r.early_data for r in requests(second.events))
