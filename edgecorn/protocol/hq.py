"""HTTP/0.9 over QUIC (ALPN `hq-interop`), the QUIC interop runner's file protocol.

Sans-IO and QUIC-blind: stream bytes in, the same stream events as h1/h2/h3 out
(a `Request` and its `EndBody`), so the protocol-blind HTTPStream and the edge's
routes serve it like any other request. A request is `GET /path` ended by CRLF
(or by the stream's FIN); the response is the body's bytes and the stream's FIN.
HTTP/0.9 has no status line, so only a 2xx answer can be sent: anything else
resets the stream, since a 404 page saved as the requested file would be a
wrong file rather than a missing one.
"""

from __future__ import annotations

from .events import EndBody, Event
from .fields import request_from_fields

ALPN = "hq-interop"
HTTP_VERSION = "0.9"
MAX_REQUEST_LINE = 8 * 1024  # the runner's longest paths are a few hundred bytes


class HqStreams:
    """The request side of one hq-interop connection.

    `receive` returns the events of complete requests; streams whose request was
    malformed (or too long) land in `rejected` for the caller to reset.
    """

    def __init__(self, authority: bytes | None = None) -> None:
        self.authority = authority
        self.partial: dict[int, bytes] = {}
        self.done: set[int] = set()  # streams whose request has been read
        self.rejected: list[int] = []

    def receive(self, stream_id: int, data: bytes, ended: bool) -> list[Event]:
        if stream_id % 4 != 0 or stream_id in self.done:
            return []  # not a client request stream, or bytes after the request line
        buffer = self.partial.pop(stream_id, b"") + data
        end = buffer.find(b"\n")
        if end < 0 and not ended:
            if len(buffer) > MAX_REQUEST_LINE:
                return self._reject(stream_id)
            self.partial[stream_id] = buffer
            return []
        self.done.add(stream_id)
        line = buffer if end < 0 else buffer[:end]
        target = parse_request_line(line)
        if target is None:
            return self._reject(stream_id)
        fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", target)]
        if self.authority:
            fields.append((b":authority", self.authority))
        request, _ = request_from_fields(stream_id, fields, HTTP_VERSION)
        return [request, EndBody(stream_id)]

    def forget(self, stream_id: int) -> None:
        """The stream is gone (answered or reset): drop its partial request line. It
        stays in `done` (one int per request, and connections are bounded by
        keep_alive_max_requests) so late bytes on it never start a second request."""
        self.partial.pop(stream_id, None)

    def _reject(self, stream_id: int) -> list[Event]:
        self.partial.pop(stream_id, None)
        self.done.add(stream_id)
        self.rejected.append(stream_id)
        return []


def parse_request_line(line: bytes) -> bytes | None:
    """The request target of `GET /path` (CR and a trailing version tolerated), or None."""
    parts = line.rstrip(b"\r").split()
    if len(parts) not in (2, 3) or parts[0] != b"GET":
        return None
    target = parts[1]
    if len(target) > MAX_REQUEST_LINE or any(c < 0x21 or c == 0x7F for c in target):
        return None
    if not target.startswith(b"/"):
        target = b"/" + target  # some clients send the bare file name
    return target


def sends_body(status: int) -> bool:
    """Whether a response with this status can be carried at all (see the module's doc)."""
    return 200 <= status < 300
