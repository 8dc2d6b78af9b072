"""An HTTP/3 client in memory (aioquic's QuicConnection + H3Connection), for feeding
datagrams to edgecorn's QUIC adapter or endpoint without any socket."""

from __future__ import annotations

from typing import Any

from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import SessionTicket

from edgecorn.config import Config

SERVER = ("127.0.0.1", 4433)
CLIENT = ("127.0.0.1", 50000)


def server_config(certs: tuple[str, str, str], **options: Any) -> Config:
    config = Config()
    config.certfile, config.keyfile = certs[0], certs[1]
    for key, value in options.items():
        setattr(config, key, value)
    return config


class Peer:
    def __init__(self, cafile: str, now: float = 0.0, ticket: SessionTicket | None = None) -> None:
        configuration = QuicConfiguration(
            is_client=True, alpn_protocols=H3_ALPN, server_name="localhost"
        )
        configuration.load_verify_locations(cafile)
        configuration.session_ticket = ticket
        self.tickets: list[SessionTicket] = []
        self.quic = QuicConnection(
            configuration=configuration, session_ticket_handler=self.tickets.append
        )
        self.h3 = H3Connection(self.quic)
        self.quic_events: list[quic_events.QuicEvent] = []
        self.h3_events: list[H3Event] = []
        self.quic.connect(SERVER, now)

    def datagrams(self, now: float) -> list[bytes]:
        return [data for data, _ in self.quic.datagrams_to_send(now)]

    def receive(self, data: bytes, now: float) -> None:
        self.quic.receive_datagram(data, SERVER, now)
        self._events()

    def handle_timer(self, now: float) -> None:
        self.quic.handle_timer(now)
        self._events()

    def _events(self) -> None:
        while (event := self.quic.next_event()) is not None:
            self.quic_events.append(event)
            self.h3_events.extend(self.h3.handle_event(event))

    # --- requests -------------------------------------------------------------------

    def request(
        self,
        method: str = "GET",
        path: str = "/",
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        end: bool = True,
    ) -> int:
        stream_id = self.quic.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
        ] + (headers or [])
        self.h3.send_headers(stream_id, fields, end_stream=end and not body)
        if body:
            self.h3.send_data(stream_id, body, end_stream=end)
        return stream_id

    def response(self, stream_id: int) -> tuple[dict[bytes, bytes], bytes, bool]:
        """(headers of the final response, body so far, whether the stream ended)."""
        headers: dict[bytes, bytes] = {}
        body = b""
        ended = False
        for event in self.h3_events:
            if isinstance(event, HeadersReceived) and event.stream_id == stream_id:
                fields = dict(event.headers)
                if not fields.get(b":status", b"200").startswith(b"1"):
                    headers = headers or fields
                ended = ended or event.stream_ended
            elif isinstance(event, DataReceived) and event.stream_id == stream_id:
                body += event.data
                ended = ended or event.stream_ended
        return headers, body, ended

    def resets(self) -> dict[int, int]:
        return {
            e.stream_id: e.error_code
            for e in self.quic_events
            if isinstance(e, quic_events.StreamReset)
        }

    def terminated(self) -> quic_events.ConnectionTerminated | None:
        for event in self.quic_events:
            if isinstance(event, quic_events.ConnectionTerminated):
                return event
        return None

    def handshake_done(self) -> bool:
        return any(isinstance(e, quic_events.HandshakeCompleted) for e in self.quic_events)
