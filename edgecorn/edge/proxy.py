"""`proxy: URL | [URL, ...]`: a reverse proxy route to HTTP/1.1 upstreams, or HTTP/2 ones
(`upstream_protocol: h2c`, h2upstream.py) whose streams look the same from here.

Bodies stream both ways with back-pressure (the client's reads pace the upstream's, and the
upstream's pace the client's upload); nothing is buffered whole. Errors answer 502 (refused,
broken) or 504 (timed out) with an error-log line naming the upstream; once a response has
started, a broken upstream resets the client's stream, so a cut response never looks complete.
"""

from __future__ import annotations

import ipaddress
import logging
from itertools import count

import anyio

from .. import metrics
from ..asgi.types import Receive, Scope, Send, StreamAborted
from ..config import Config
from .answers import plain
from .errors import UpstreamError
from .h2upstream import H2Stream
from .headers import HOP_BY_HOP, response_headers
from .spec import Route
from .upstream import Connection, Upstream

log = logging.getLogger("edgecorn.error")

FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"})
NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
EXPECT_WAIT = 1.0  # RFC 9110 10.1.1: send the body anyway if no 100 comes this soon
Headers = list[tuple[bytes, bytes]]


class Proxy:
    def __init__(self, route: Route, config: Config) -> None:
        self.route = route
        self.upstreams = [
            Upstream(url, protocol=route.upstream_protocol) for url in route.upstreams
        ]
        self.turn = count()
        self.trusted = [ipaddress.ip_network(cidr, strict=False) for cidr in config.trusted_proxies]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "websocket":
            from .wsproxy import proxy_websocket

            await proxy_websocket(self, scope, receive, send)

    def candidates(self) -> list[Upstream]:
        """Round robin over the healthy upstreams; the unhealthy ones only as a last resort."""
        if len(self.upstreams) == 1:
            return self.upstreams
        start = next(self.turn) % len(self.upstreams)
        ordered = self.upstreams[start:] + self.upstreams[:start]
        return [u for u in ordered if u.healthy] + [u for u in ordered if not u.healthy]

    # --- the request head ------------------------------------------------------------------

    def target(self, scope: Scope, upstream: Upstream) -> bytes:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        if self.route.strip_prefix:
            prefix = self.route.prefix.encode()
            raw = raw[len(prefix) :] if raw.startswith(prefix) else raw
            raw = raw if raw.startswith(b"/") else b"/" + raw
        target = upstream.base_path.encode() + raw
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        return target

    def request_headers(
        self, scope: Scope, upstream: Upstream
    ) -> tuple[Headers, dict[bytes, bytes]]:
        """What the upstream sees: the client's end-to-end fields plus forwarding fields."""
        incoming: Headers = scope["headers"]
        named: dict[bytes, bytes] = {}
        dropped = set(HOP_BY_HOP)
        for name, value in incoming:
            named.setdefault(name, value)
            if name == b"connection":
                dropped.update(token.strip().lower() for token in value.split(b","))
        # The peer that sent the request: a trusted proxy's own address when forwarded.py
        # took the client from its headers, so the chain we pass on names every hop.
        peer = (scope.get("extensions") or {}).get("edgecorn.peer")
        client = peer["client"] if peer else scope.get("client")
        ip = client[0] if client else ""
        trusted = bool(ip) and self._trusted(ip)
        out: Headers = []
        for name, value in incoming:
            if (
                name in dropped
                or (name in FORWARDED and not trusted)
                or name == b"host"
                or name == b"via"
            ):
                continue
            out.append((name, value))
        host = named.get(b"host", f"{upstream.host}:{upstream.port}".encode())
        out.insert(
            0, (b"host", self.route.host_header.encode() if self.route.host_header else host)
        )
        scheme = scope.get("scheme", "http").encode()
        _append(out, b"x-forwarded-for", ip.encode(), trusted)
        if not (trusted and b"x-forwarded-proto" in named):
            out.append((b"x-forwarded-proto", scheme))
        if not (trusted and b"x-forwarded-host" in named):
            out.append((b"x-forwarded-host", host))
        node = f'"[{ip}]"' if ":" in ip else ip or "unknown"
        forwarded = f'for={node};proto={scheme.decode()};host="{host.decode("latin-1")}"'
        _append(out, b"forwarded", forwarded.encode("latin-1"), trusted)
        via = named.get(b"via")
        ours = f"{scope.get('http_version', '1.1')} edgecorn".encode()
        out.append((b"via", via + b", " + ours if via else ours))
        if b"trailers" in named.get(b"te", b"").lower():
            out.append((b"te", b"trailers"))
        return out, named

    def _trusted(self, ip: str) -> bool:
        if not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    # --- one exchange ------------------------------------------------------------------------

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.route
        method = scope["method"]
        headers, named = self.request_headers(scope, self.upstreams[0])
        length = named.get(b"content-length")
        if (
            route.max_body_size is not None
            and length is not None
            and length.isdigit()
            and int(length) > route.max_body_size
        ):
            await plain(send, 413, head=method == "HEAD")
            return
        if length is not None:
            framing = "length"
        elif b"transfer-encoding" in named or (
            scope.get("http_version") in ("2", "3") and method not in NO_BODY_METHODS
        ):
            framing = "chunked"
            headers.append((b"transfer-encoding", b"chunked"))
        else:
            framing = "none"
        expect = b"100-continue" in named.get(b"expect", b"").lower()
        last: UpstreamError | None = None
        for upstream in self.candidates():
            exchange = Exchange(self, upstream, scope, receive, send, framing, expect)
            try:
                await exchange.run(self.target(scope, upstream), headers)
            except UpstreamError as error:
                last = error
                if metrics.recorder is not None:
                    metrics.recorder.upstream_error(route, upstream.url, error.status)
                if exchange.started:
                    log.error(
                        "upstream %s: %s (%s %s); resetting the client's stream",
                        upstream.url,
                        error,
                        method,
                        scope["path"],
                    )
                    raise StreamAborted(str(error)) from None
                if exchange.body_used or (exchange.sent_head and method not in IDEMPOTENT):
                    break  # the request may have had effects, or its body is gone
                if len(self.upstreams) > 1:
                    log.warning(
                        "upstream %s: %s (%s %s); trying the next one",
                        upstream.url,
                        error,
                        method,
                        scope["path"],
                    )
                continue
            return
        assert last is not None
        log.error(
            "upstream %s: %s (%s %s): answering %d",
            ", ".join(route.upstreams),
            last,
            method,
            scope["path"],
            last.status,
        )
        await plain(
            send,
            last.status,
            f"{last.status} {_phrase(last.status)}: {last}\n",
            head=method == "HEAD",
        )


class Exchange:
    """One request to one upstream, and its response relayed to the client.

    A request without a body is one write and a read loop. With a body (or `Expect`), the
    upload runs beside the relay, because an upstream may answer before it has read it all.
    """

    def __init__(
        self,
        proxy: Proxy,
        upstream: Upstream,
        scope: Scope,
        receive: Receive,
        send: Send,
        framing: str,
        expect: bool,
    ) -> None:
        self.proxy, self.upstream, self.scope = proxy, upstream, scope
        self.receive, self.send = receive, send
        self.framing = framing
        self.expect = expect
        self.go: anyio.Event | None = None  # the body may go up (100 Continue, or a wait)
        self.final = False  # a final response arrived: stop uploading
        self.sent_head = False
        self.body_used = False  # some of the client's body was read (no retry then)
        self.started = False  # the client's response has started
        self.gone = False  # the client went away
        self.finished = False  # the response's last message is being sent

    async def run(self, target: bytes, headers: Headers) -> None:
        route = self.proxy.route
        for attempt in (1, 2):
            try:
                conn, reused = await self.upstream.request(
                    route.connect_timeout, route.max_response_header_size
                )
            except UpstreamError as error:
                self.upstream.failed(str(error))
                raise
            try:
                await self._exchange(conn, target, headers)
            except UpstreamError as error:
                await conn.aclose()
                # A kept-alive connection the upstream had just closed, or an HTTP/2 stream
                # it refused (GOAWAY, REFUSED_STREAM): it never saw the request.
                stale = (reused or getattr(conn, "refused", False)) and not conn.received
                stale = stale and not self.body_used
                if stale and attempt == 1 and self.scope["method"] in IDEMPOTENT:
                    continue
                if not isinstance(conn, H2Stream) or conn.counts_as_failure():
                    self.upstream.failed(str(error))
                raise
            except BaseException:
                await conn.aclose()
                raise
            self.upstream.succeeded()
            await self.upstream.release(conn)
            return

    async def _exchange(self, conn: Connection | H2Stream, target: bytes, headers: Headers) -> None:
        method = self.scope["method"]
        try:
            if isinstance(conn, H2Stream):
                bodiless = self.framing == "none" and not self.expect
                await conn.send_head(method, target, headers, end=bodiless)
            else:
                await conn.send_head(method, target, headers)
        except (OSError, anyio.BrokenResourceError) as exc:
            raise UpstreamError(502, f"connection lost while sending the request: {exc}") from None
        self.sent_head = True
        if self.framing == "none" and not self.expect:
            conn.sent_all = True
            await self._relay(conn)
            return
        self.go = anyio.Event()
        if not self.expect:
            self.go.set()
        failure: UpstreamError | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self._upload, conn, group.cancel_scope)
            try:
                await self._relay(conn)
            except UpstreamError as error:  # raised below, not as an exception group
                failure = error
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if self.gone:
            raise StreamAborted("client went away")

    async def _upload(self, conn: Connection | H2Stream, scope: anyio.CancelScope) -> None:
        """The client's body to the upstream, then wait for the client to go away."""
        assert self.go is not None
        if self.framing != "none":
            with anyio.move_on_after(EXPECT_WAIT):
                await self.go.wait()
            if self.final:
                return
            limit = self.proxy.route.max_body_size
            chunked = self.framing == "chunked"
            size = 0
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    self.gone = True
                    scope.cancel()
                    return
                self.body_used = True
                body = message.get("body", b"")
                size += len(body)
                if limit is not None and size > limit:
                    self.final = True
                    if not self.started:
                        self.started = True
                        await plain(self.send, 413)
                    self.gone = True
                    scope.cancel()
                    return
                more = message.get("more_body", False)
                try:
                    if isinstance(conn, H2Stream):  # HTTP/2 frames the body itself
                        await conn.send(body, end=not more)
                    elif chunked:
                        data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
                        await conn.send(data if more else data + b"0\r\n\r\n")
                    else:
                        await conn.send(body)
                except (OSError, anyio.BrokenResourceError):
                    return  # the upstream stopped reading: its response (or error) tells why
                if not more:
                    conn.sent_all = True
                    break
        elif isinstance(conn, H2Stream):
            try:
                await conn.send(b"", end=True)  # an `Expect` without a body
            except anyio.BrokenResourceError:
                return
        else:
            conn.sent_all = True
        while True:  # body done: a disconnect is the only thing left to hear
            message = await self.receive()
            if message["type"] == "http.disconnect":
                # After the last byte of the response the stream reports a disconnect too:
                # that one is the normal end, not a client that went away.
                self.gone = not self.finished
                scope.cancel()
                return

    async def _relay(self, conn: Connection | H2Stream) -> None:
        timeout = self.proxy.route.read_timeout
        scope = self.scope
        send = self.send
        waiting = "no response"
        trailers = False
        while True:
            # The timeout covers waiting for the upstream only, never a slow client.
            try:
                events = await conn.read(timeout)
            except TimeoutError:
                raise UpstreamError(504, f"{waiting} within {timeout:g} s") from None
            last = len(events) - 1
            for index, event in enumerate(events):
                kind = event[0]
                if kind == "data":
                    if index < last and events[index + 1][0] == "end" and not trailers:
                        # The body's last piece and its end arrived together: one message.
                        self.finished = True
                        await send({"type": "http.response.body", "body": event[1]})
                        return
                    await send({"type": "http.response.body", "body": event[1], "more_body": True})
                elif kind == "head":
                    self._final()
                    waiting = "response body stalled"
                    trailers = self._trailers(event[2], conn)
                    self.started = True
                    version = scope.get("http_version", "1.1")
                    await send(
                        {
                            "type": "http.response.start",
                            "status": event[1],
                            "headers": response_headers(event[2], version),
                            "trailers": trailers,
                        }
                    )
                elif kind == "end":
                    self.finished = True
                    if trailers:
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                        await send({"type": "http.response.trailers", "headers": event[1]})
                    else:
                        await send({"type": "http.response.body", "body": b""})
                    return
                else:
                    await self._informational(event[1], event[2])

    def _final(self) -> None:
        self.final = True
        if self.go is not None:
            self.go.set()

    def _trailers(self, fields: Headers, conn: Connection | H2Stream) -> bool:
        scope = self.scope
        if isinstance(conn, H2Stream):
            possible = conn.may_have_trailers(fields)
        else:
            possible = any(name == b"transfer-encoding" for name, _ in fields)
        return (
            possible
            and any(
                name == b"te" and b"trailers" in value.lower() for name, value in scope["headers"]
            )
            and "http.response.trailers" in scope.get("extensions", {})
        )

    async def _informational(self, status: int, fields: Headers) -> None:
        if status == 100:
            if self.go is not None:
                self.go.set()
        elif status == 103 and "http.response.early_hint" in self.scope.get("extensions", {}):
            links = [value for name, value in fields if name == b"link"]
            if links:
                await self.send({"type": "http.response.early_hint", "links": links})


def _append(headers: Headers, name: bytes, value: bytes, trusted: bool) -> None:
    """Add our hop to a list field, after the earlier hops when the peer is trusted."""
    if not trusted:
        headers.append((name, value))  # the client's own value was dropped
        return
    for index, (field, existing) in enumerate(headers):
        if field == name and trusted:
            headers[index] = (name, existing + b", " + value)
            return
    headers.append((name, value))


def _phrase(status: int) -> str:
    return {502: "Bad Gateway", 504: "Gateway Timeout"}.get(status, "Error")
