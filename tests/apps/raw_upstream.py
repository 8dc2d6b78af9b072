"""An HTTP/1.1 upstream on the standard library's http.server, for what Uvicorn cannot send:
103 Early Hints, chunked responses with trailers, and an answer to `Expect: 100-continue`
either way (100 then the body, or a refusal before the body is sent).

`python -m tests.apps.raw_upstream PORT`.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle_expect_100(self) -> bool:
        if self.path.startswith("/refuse"):
            # Refused before the body: the client must see this without sending it.
            self.send_response(413)
            self.send_header("content-length", "7")
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(b"refused")
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        if self.path == "/hints":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n")
            self.wfile.flush()
            self._answer(b"hinted")
        elif self.path == "/trailers":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.send_header("trailer", "x-checksum")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n0\r\nx-checksum: abc123\r\n\r\n")
        else:
            self._answer(b"ok")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        self._answer(b"got %d" % len(body))

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print(f"raw upstream on {sys.argv[1]}", flush=True)
    server.serve_forever()
