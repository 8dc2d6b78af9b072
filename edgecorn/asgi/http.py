"""HTTPStream: one request/response, protocol-blind, as ASGI `http` messages.

It sees only the common stream events, reads its connection's facts from the
frozen `host.context` and talks to the connection through a few commands
(`respond`, `send_body`, ...), so h1, h2 and h3 share it.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import unquote

from .. import metrics
from ..forwarded import apply as apply_forwarded
from ..protocol.events import Headers, Request
from .extensions import push_fields, send_path, with_push
from .host import StreamHost
from .types import ASGIApp, Message, StreamAborted

log = logging.getLogger("edgecorn.error")

_ASGI = {"version": "3.0", "spec_version": "2.4"}
_INTERNAL_ERROR = b"500 Internal Server Error\n"


class HTTPStream:
    __slots__ = (
        "conn",
        "stream_id",
        "scope",
        "body",
        "complete",
        "final_sent",
        "disconnected",
        "waiter",
        "status",
        "headers",
        "started",
        "head_sent",
        "trailers",
        "done",
        "sent",
        "start_time",
        "logged",
    )

    def __init__(self, conn: StreamHost, request: Request) -> None:
        self.conn = conn
        self.stream_id = request.stream_id
        self.scope = build_scope(conn, request)
        self.body: list[bytes] = []
        self.complete = False  # the whole request body has arrived
        self.final_sent = False  # the app has been told more_body=False
        self.disconnected = False
        self.waiter: Any = None
        self.status = 200
        self.headers: Headers = []
        self.started = False
        self.head_sent = False
        self.trailers = False
        self.done = False
        self.sent = 0
        access_log = conn.context.access_log
        self.start_time = time.time() if access_log.enabled or metrics.recorder else 0.0
        self.logged = False

    # --- stream events from the connection -----------------------------------

    def on_body(self, data: bytes) -> None:
        self.body.append(data)
        if self.waiter is not None:
            self._wake()

    def on_end(self) -> None:
        self.complete = True
        if self.waiter is not None:  # most apps have not asked for the body yet
            self._wake()

    def on_reset(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        self.waiter = self.conn.create_future()
        await self.waiter

    # --- the ASGI side -----------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except StreamAborted:
            self.done = True  # the finally below resets the stream; the app logged why
            self.conn.abort(self.stream_id)
        except Exception:
            log.exception("error in ASGI app for %s %s", self.scope["method"], self.scope["path"])
            await self._fail()
        else:
            if not self.done and not self.disconnected:
                if self.started:
                    log.error(
                        "ASGI app returned without completing its response to %s %s",
                        self.scope["method"],
                        self.scope["path"],
                    )
                else:
                    log.error(
                        "ASGI app returned without starting a response to %s %s",
                        self.scope["method"],
                        self.scope["path"],
                    )
                await self._fail()
        finally:
            if not self.done:
                self.done = True
                self.conn.abort(self.stream_id)
            if self.started and not self.logged:
                self._log(complete=False)  # cut short: still a line, with what was sent
            self.conn.stream_done(self)

    async def _fail(self) -> None:
        if self.done or self.disconnected:
            return
        if self.head_sent:
            self.done = True
            self.conn.abort(self.stream_id)
            return
        self.status = 500
        self.headers = self.conn.response_headers(
            [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(_INTERNAL_ERROR)),
            ]
        )
        self.trailers = False
        self.started = True
        await self.send({"type": "http.response.body", "body": _INTERNAL_ERROR})

    async def receive(self) -> Message:
        if not self.body and not self.complete and not self.disconnected and not self.done:
            self.conn.want_body(self.stream_id)
            while not self.body and not self.complete and not self.disconnected:
                await self._wait()
        if self.body and not self.disconnected:
            data = b"".join(self.body) if len(self.body) > 1 else self.body[0]
            self.body.clear()
            self.conn.ack(self.stream_id, len(data))
            self.final_sent = self.complete
            return {"type": "http.request", "body": data, "more_body": not self.complete}
        if self.complete and not self.final_sent and not self.disconnected:
            self.final_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        while not self.disconnected and not self.done:
            await self._wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body sent before http.response.start")
            if self.done or self.disconnected:
                return
            body = message.get("body", b"")
            end = not message.get("more_body", False) and not self.trailers
            self.sent += len(body)
            if self.head_sent:
                await self.conn.send_body(self.stream_id, body, end)
            else:
                self.head_sent = True
                await self.conn.respond(self.stream_id, self.status, self.headers, body, end)
            if end:
                self.done = True
                # Inlined checks: with no access log, no metrics and no task waiting in
                # `receive` (the common case) the end of a response costs no calls.
                if self.start_time:
                    self._log()
                else:
                    self.logged = True
                if self.waiter is not None:
                    self._wake()
        elif kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = int(message["status"])
            self.headers = self.conn.response_headers(message.get("headers", ()))
            self.trailers = bool(message.get("trailers", False))
        elif kind == "http.response.trailers":
            if not self.trailers or not self.head_sent:
                raise RuntimeError("http.response.trailers needs trailers=True and a sent body")
            if message.get("more_trailers", False) or self.done or self.disconnected:
                return
            # Done only once sent: trailers the connection refuses (a CR or LF in a field)
            # must still reset the stream, or an HTTP/1 peer waits for the chunked end.
            self.conn.send_trailers(self.stream_id, list(message.get("headers", ())))
            self.done = True
            self._log()
            self._wake()
        elif kind == "http.response.early_hint":
            if not self.started and not self.disconnected:
                links = [(b"link", link) for link in message.get("links", ())]
                self.conn.send_informational(self.stream_id, 103, links)
        elif kind == "http.response.pathsend":
            await send_path(self, message)
        elif kind == "http.response.push":
            if not self.done and not self.disconnected:
                fields = push_fields(self.conn.context.scheme, self.scope["headers"], message)
                self.conn.push(self.stream_id, fields)
        else:
            raise ValueError(f"unexpected ASGI message type {kind!r} on an http stream")

    def _log(self, complete: bool = True) -> None:
        self.logged = True
        access_log = self.conn.context.access_log
        recorder = metrics.recorder
        if access_log.enabled or recorder is not None:
            duration = time.time() - self.start_time
            if access_log.enabled:
                access_log.log(self.scope, self.status, self.headers, self.sent, duration, complete)
            if recorder is not None:
                recorder.request(self.scope, self.status, self.sent, duration)


def build_scope(conn: StreamHost, request: Request) -> dict[str, Any]:
    target = request.raw_path
    if target[:1] != b"/" and b"://" in target[:10]:
        # absolute-form (RFC 9112 3.2.2): keep the path part
        target = b"/" + target.split(b"/", 3)[3] if target.count(b"/") >= 3 else b"/"
    raw_path, _, query = target.partition(b"?")
    context = conn.context
    scope = {
        "type": "http",
        "asgi": _ASGI,
        "http_version": request.http_version,
        "method": request.method,
        "scheme": request.scheme or context.scheme,
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": context.root_path,
        "headers": request.headers,
        "client": context.client,
        "server": context.server,
        "state": context.state.copy(),
        # h2 marks the requests whose client allows push: only theirs list it
        "extensions": with_push(context.extensions) if request.push else context.extensions,
    }
    proxies = context.trusted_proxies
    if proxies:  # no work at all unless some peer is trusted
        apply_forwarded(scope, proxies)
    return scope
