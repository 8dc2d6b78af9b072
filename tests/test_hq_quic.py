"""hq-interop through the QUIC adapter, sans-IO: an aioquic client and edgecorn's
H3Adapter exchange datagrams in memory. The request comes out as the same
Request/EndBody events as HTTP/3; a 2xx body goes back as the stream's bytes and FIN;
anything else resets the stream; h3 still works beside it."""

from __future__ import annotations

from typing import Any

import pytest
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from edgecorn.protocol.events import EndBody, Request
from edgecorn.quic.h3 import H3Adapter

ADDR = ("127.0.0.1", 4433)
CLIENT = ("127.0.0.1", 50000)


class Pair:
    def __init__(self, certs: tuple[str, str, str], alpn: str) -> None:
        server_conf = QuicConfiguration(is_client=False, alpn_protocols=["hq-interop", "h3"])
        server_conf.load_cert_chain(certs[0], certs[1])
        client_conf = QuicConfiguration(is_client=True, alpn_protocols=[alpn])
        client_conf.load_verify_locations(cafile=certs[2])
        client_conf.server_name = "localhost"
        self.client = QuicConnection(configuration=client_conf)
        self.now = 1.0
        self.client.connect(ADDR, now=self.now)
        self.server: QuicConnection | None = None
        self.adapter: H3Adapter | None = None
        self.server_conf = server_conf
        self.client_events: list[Any] = []

    def pump(self) -> list[Any]:
        """Move datagrams both ways until quiet; the adapter's events in order."""
        out: list[Any] = []
        for _ in range(50):
            moved = False
            for data, _ in self.client.datagrams_to_send(now=self.now):
                if self.server is None:
                    header_dcid = data[6 : 6 + data[5]]
                    self.server = QuicConnection(
                        configuration=self.server_conf,
                        original_destination_connection_id=header_dcid,
                    )
                    self.adapter = H3Adapter(
                        self.server, max_requests=100, max_header_list_size=65536
                    )
                assert self.adapter is not None
                out += self.adapter.receive_datagram(data, CLIENT, self.now)
                moved = True
            if self.server is not None:
                for data, _ in self.server.datagrams_to_send(now=self.now):
                    self.client.receive_datagram(data, ADDR, now=self.now)
                    moved = True
            while (event := self.client.next_event()) is not None:
                self.client_events.append(event)
            self.now += 0.001
            if not moved:
                break
        return out

    def received(self, stream_id: int) -> tuple[bytes, bool, bool]:
        """(bytes, FIN seen, reset seen) the client got on a stream."""
        data, fin, reset = b"", False, False
        for event in self.client_events:
            if isinstance(event, events.StreamDataReceived) and event.stream_id == stream_id:
                data += event.data
                fin = fin or event.end_stream
            if isinstance(event, events.StreamReset) and event.stream_id == stream_id:
                reset = True
        return data, fin, reset


@pytest.fixture
def pair(certs: tuple[str, str, str]) -> Pair:
    pair = Pair(certs, "hq-interop")
    pair.pump()
    assert pair.adapter is not None and pair.adapter.hq is not None and pair.adapter.h3 is None
    return pair


def test_request_becomes_the_same_events_as_h3(pair: Pair) -> None:
    pair.client.send_stream_data(0, b"GET /file.bin\r\n", end_stream=True)
    got = pair.pump()
    assert [type(e) for e in got] == [Request, EndBody]
    request = got[0]
    assert (request.stream_id, request.method, request.raw_path) == (0, "GET", b"/file.bin")
    assert request.http_version == "0.9"


def test_2xx_body_is_the_stream_bytes_then_fin(pair: Pair) -> None:
    pair.client.send_stream_data(0, b"GET /a\r\n", end_stream=True)
    pair.pump()
    adapter = pair.adapter
    assert adapter is not None
    adapter.send_response(0, 200, [(b"content-length", b"10")], b"hello", False)
    adapter.send_data(0, b" world", True)
    pair.pump()
    assert pair.received(0) == (b"hello world", True, False)
    assert adapter.idle


def test_non_2xx_resets_the_stream(pair: Pair) -> None:
    pair.client.send_stream_data(0, b"GET /missing\r\n", end_stream=True)
    pair.pump()
    assert pair.adapter is not None
    pair.adapter.send_response(0, 404, [], b"not found", True)
    pair.adapter.send_data(0, b"more", True)  # the stream is gone: ignored
    pair.pump()
    data, _, reset = pair.received(0)
    assert data == b"" and reset


def test_malformed_request_resets_only_its_stream(pair: Pair) -> None:
    pair.client.send_stream_data(0, b"POST /a\r\n", end_stream=True)
    pair.client.send_stream_data(4, b"GET /b\r\n", end_stream=True)
    got = pair.pump()
    assert [(type(e), e.stream_id) for e in got] == [(Request, 4), (EndBody, 4)]
    assert pair.received(0)[2]


def test_goaway_refuses_later_streams_without_a_frame(pair: Pair) -> None:
    adapter = pair.adapter
    assert adapter is not None
    pair.client.send_stream_data(0, b"GET /a\r\n", end_stream=True)
    pair.pump()
    adapter.goaway()
    assert adapter.last_stream_id == 0
    pair.client.send_stream_data(4, b"GET /b\r\n", end_stream=True)
    assert pair.pump() == []
    adapter.send_response(0, 200, [], b"ok", True)
    pair.pump()
    assert pair.received(0) == (b"ok", True, False)
    assert pair.received(4)[2]


def test_h3_still_negotiated_beside_it(certs: tuple[str, str, str]) -> None:
    pair = Pair(certs, "h3")
    pair.pump()
    assert pair.adapter is not None and pair.adapter.h3 is not None
    assert pair.adapter.hq is None
