"""WebSocket handshake edge cases (issue 14).

- An unsupported Sec-WebSocket-Version gets 426 naming version 13 (RFC 6455 4.4), over
  HTTP/1.1 (raw socket, both parsers) and over extended CONNECT on HTTP/2.
- Extended CONNECT (RFC 8441) that carries a Sec-WebSocket-Key is answered with the
  matching Sec-WebSocket-Accept, and one without a key is answered as before.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from typing import Any

import pytest

from tests.support.ws import H2WS, H2Stream

APP = "tests.apps.ws:app"


def _h1_handshake(port: int, version: str | None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
    ]
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            part = sock.recv(4096)
            if not part:
                break
            head += part
    return head.partition(b"\r\n\r\n")[0].lower()


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_h1_unsupported_version_gets_426(server_factory: Any, parser: str) -> None:
    server = server_factory.start(app=APP, parser=parser)
    for version in ("12", "8", None):
        head = _h1_handshake(server.insecure_port, version)
        assert head.startswith(b"http/1.1 426 "), (version, head)
        assert b"\r\nsec-websocket-version: 13" in head, (version, head)
    assert _h1_handshake(server.insecure_port, "13").startswith(b"http/1.1 101 ")


def _h2_connect(client: H2WS, headers: list[tuple[str, str]]) -> H2Stream:
    stream_id = client.conn.get_next_available_stream_id()
    stream = H2Stream(stream_id)
    client.streams[stream_id] = stream
    base = client._base_headers("CONNECT", "/ws")
    base.insert(1, (":protocol", "websocket"))
    client.conn.send_headers(stream_id, base + headers, end_stream=False)
    client.flush()
    client.until(lambda: stream.status is not None or stream.ended)
    return stream


def test_h2_extended_connect_version_and_key(server_factory: Any, cafile: str) -> None:
    server = server_factory.start(app=APP)
    client = H2WS(server.port, cafile)
    try:
        old = _h2_connect(client, [("sec-websocket-version", "12")])
        assert old.status == 426, old
        assert (b"sec-websocket-version", b"13") in old.headers, old.headers

        key = base64.b64encode(os.urandom(16))
        keyed = _h2_connect(
            client, [("sec-websocket-version", "13"), ("sec-websocket-key", key.decode())]
        )
        expected = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        assert keyed.status == 200 and (b"sec-websocket-accept", expected) in keyed.headers

        plain = _h2_connect(client, [("sec-websocket-version", "13")])
        assert plain.status == 200
        assert not [v for k, v in plain.headers if k == b"sec-websocket-accept"]
    finally:
        client.close()
