"""Run a PEP 3333 WSGI app behind the ASGI dispatcher.

The request body is read whole (WSGI's `wsgi.input` is a blocking file), the
app runs in the default thread pool, and each chunk of its response is handed
to the event loop as it is produced, so a large response never sits in memory
and a slow client slows the app thread down instead of filling a buffer.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgecorn.asgi.types import Message, Receive, Scope, Send

log = logging.getLogger("edgecorn.error")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class WSGIAdapter:
    """An ASGI3 app that runs `wsgi_app`; bodies over `max_body_size` get a 413."""

    def __init__(self, wsgi_app: WSGIApp, max_body_size: int) -> None:
        self.wsgi_app = wsgi_app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close"})  # WSGI has no WebSockets: refuse
        # lifespan (and anything newer): nothing to do, returning says "unsupported"

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body_size:
                await _plain(send, 413, b"Payload Too Large")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break

        environ = build_environ(scope, b"".join(chunks))
        response = _Response()
        try:
            await _in_thread(send, response, self.wsgi_app, environ)
        except Exception:
            if response.started:
                raise  # too late for a 500: let the server reset the stream
            log.exception("Error in WSGI application")
            await _plain(send, 500, b"Internal Server Error")


def build_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The PEP 3333 environ for an ASGI http scope (strings are bytes-as-latin-1)."""
    root_path = scope.get("root_path", "").encode("utf-8").decode("latin-1")
    path = scope["path"].encode("utf-8").decode("latin-1")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    server = scope.get("server") or (None, None)
    client = scope.get("client")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path,
        "PATH_INFO": path,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,  # the whole body is there: read to EOF is fine
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if client:
        environ["REMOTE_ADDR"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])

    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        if "_" in name:
            # `X_Forwarded_For` would become HTTP_X_FORWARDED_FOR like the dashed
            # header a proxy vouches for; drop it, as Gunicorn and nginx do.
            continue
        value = raw_value.decode("latin-1")
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        if key in environ:
            # Cookies crumbs (split by HTTP/2 and 3) rejoin with "; " (RFC 9113 8.2.3).
            environ[key] += ("; " if name == "cookie" else ",") + value
        else:
            environ[key] = value

    if body or "CONTENT_LENGTH" in environ:
        # The body was read whole, so its real length is known (h2/h3 may omit the header).
        environ["CONTENT_LENGTH"] = str(len(body))
    host, port = server
    if host is None:
        host, _, port_text = environ.get("HTTP_HOST", "localhost").rpartition(":")
        if not host or not port_text.isdigit():
            host, port_text = environ.get("HTTP_HOST", "localhost"), ""
        port = port_text or ("443" if environ["wsgi.url_scheme"] == "https" else "80")
    environ["SERVER_NAME"] = str(host)
    environ["SERVER_PORT"] = str(port)
    return environ


async def _in_thread(
    send: Send, response: _Response, app: WSGIApp, environ: dict[str, Any]
) -> None:
    """Run the app in a worker thread of whichever event loop serves us."""

    def work(call_in_loop: Callable[..., Any]) -> None:
        response.deliver = lambda message: call_in_loop(send, message)
        response.run(app, environ)

    await _to_thread()(work)


def _to_thread() -> Callable[[Callable[[Callable[..., Any]], None]], Awaitable[None]]:
    """The running event loop's thread runner: each backend provides one (`to_thread`)."""
    from edgecorn.asyncio import threads

    if threads.running():
        return threads.to_thread
    from edgecorn.trio.threads import to_thread  # no asyncio loop: the trio backend

    return to_thread


class _Response:
    """start_response, write() and the body iteration; runs in the worker thread."""

    deliver: Callable[[Message], None]  # hands a message to the loop and waits

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = False  # the response head has gone to the server

    def run(self, app: WSGIApp, environ: dict[str, Any]) -> None:
        result = app(environ, self.start_response)
        try:
            for chunk in result:
                if chunk:  # PEP 3333: no head before the first non-empty chunk
                    self.write(chunk)
            self._start()
            self._send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.started:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the frame <-> traceback cycle (PEP 3333)
        elif self.status is not None:
            raise RuntimeError("start_response called a second time without exc_info")
        code = status.split(" ", 1)[0]
        if len(code) != 3 or not code.isdigit():
            raise ValueError(f"invalid WSGI status {status!r}")
        self.status = int(code)
        self.headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ]
        return self.write

    def write(self, data: bytes) -> None:
        self._start()
        self._send({"type": "http.response.body", "body": bytes(data), "more_body": True})

    def _start(self) -> None:
        if self.started:
            return
        if self.status is None:
            raise RuntimeError("WSGI app sent a body before calling start_response")
        self.started = True  # even if the send fails: the server may have the head already
        self._send({"type": "http.response.start", "status": self.status, "headers": self.headers})

    def _send(self, message: Message) -> None:
        # Block the app thread until the loop has taken the message: back-pressure.
        self.deliver(message)


async def _plain(send: Send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
