from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from edgecorn.asgi.wsgi import WSGIAdapter, build_environ

StartResponse = Callable[..., Any]


def http_scope(**overrides: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(overrides)
    return scope


def call(
    app: Any,
    scope: dict[str, Any] | None = None,
    body: list[bytes] | None = None,
    max_body_size: int = 1024,
) -> list[dict[str, Any]]:
    """Run the adapter over `body` chunks; return what it sent."""
    adapter = WSGIAdapter(app, max_body_size)
    chunks = list(body or [b""])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            data = chunks.pop(0)
            return {"type": "http.request", "body": data, "more_body": bool(chunks)}
        await asyncio.Event().wait()  # nothing more until disconnect
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(adapter(scope or http_scope(), receive, send))
    return sent


def body_of(sent: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def hello(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Thing", "1")])
    return [b"hello"]


def test_simple_response() -> None:
    sent = call(hello)
    assert sent[0] == {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"x-thing", b"1")],
    }
    assert body_of(sent) == b"hello"
    assert sent[-1]["more_body"] is False


def test_environ() -> None:
    scope = http_scope(
        method="POST",
        scheme="https",
        http_version="2",
        root_path="/mount",
        path="/mount/caf\u00e9",
        query_string=b"a=1&b=2",
        headers=[
            (b"content-type", b"text/plain"),
            (b"x-many", b"a"),
            (b"x-many", b"b"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
            (b"x_sneaky", b"1"),
        ],
    )
    environ = build_environ(scope, b"data")
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == "/mount"
    assert environ["PATH_INFO"] == "/caf\u00e9".encode().decode("latin-1")
    assert environ["QUERY_STRING"] == "a=1&b=2"
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "4"
    assert environ["HTTP_X_MANY"] == "a,b"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_SNEAKY" not in environ
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("127.0.0.1", "5000")
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["wsgi.input"].read() == b"data"
    assert environ["wsgi.errors"] is sys.stderr
    assert environ["wsgi.version"] == (1, 0)


def test_environ_without_server_uses_host() -> None:
    scope = http_scope(server=None, headers=[(b"host", b"example.com:8443")])
    environ = build_environ(scope, b"")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "8443")
    assert "CONTENT_LENGTH" not in environ


def test_body_is_read_whole() -> None:
    seen: list[bytes] = []

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        seen.append(environ["wsgi.input"].read())
        start_response("204 No Content", [])
        return []

    sent = call(app, http_scope(method="POST"), [b"ab", b"cd", b"ef"])
    assert seen == [b"abcdef"]
    assert sent[0]["status"] == 204


def test_body_too_large_is_413() -> None:
    sent = call(hello, http_scope(method="POST"), [b"x" * 600, b"x" * 600], max_body_size=1000)
    assert sent[0]["status"] == 413


def test_response_is_streamed_from_the_app_thread() -> None:
    threads: set[int] = set()
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            for chunk in (b"one", b"", b"two", b"three"):
                threads.add(threading.get_ident())
                yield chunk

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return Body()

    sent = call(app)
    chunks = [m["body"] for m in sent if m["type"] == "http.response.body" and m["body"]]
    assert chunks == [b"one", b"two", b"three"]  # one message per chunk, empty ones skipped
    assert threading.get_ident() not in threads
    assert closed == [True]


def test_write_callable() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("200 OK", [])
        write(b"early ")
        return [b"late"]

    assert body_of(call(app)) == b"early late"


def test_error_before_start_is_500() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("boom")

    sent = call(app)
    assert sent[0]["status"] == 500


def test_error_in_body_before_first_chunk_is_500() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b""
        raise RuntimeError("boom")

    assert call(app)[0]["status"] == 500


def test_error_after_start_propagates() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        call(app)


def test_exc_info_replaces_the_status_before_start() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("X-A", "1")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("503 Service Unavailable", [], sys.exc_info())
        return [b"sorry"]

    sent = call(app)
    assert sent[0]["status"] == 503
    assert sent[0]["headers"] == []
    assert body_of(sent) == b"sorry"


def test_exc_info_after_start_reraises() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        write = start_response("200 OK", [])
        write(b"sent")
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        yield b""

    with pytest.raises(ValueError, match="oops"):
        call(app)


def test_second_start_response_without_exc_info_is_an_error() -> None:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        start_response("201 Created", [])
        return []

    assert call(app)[0]["status"] == 500


def test_disconnect_before_body_sends_nothing() -> None:
    adapter = WSGIAdapter(hello, 1024)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(adapter(http_scope(), receive, send))
    assert sent == []


def test_lifespan_returns_and_websocket_is_closed() -> None:
    adapter = WSGIAdapter(hello, 1024)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("lifespan must not receive")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(adapter({"type": "lifespan"}, receive, send))
    assert sent == []
    asyncio.run(adapter({"type": "websocket"}, receive, send))
    assert sent == [{"type": "websocket.close"}]


def test_flask_app() -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask("edgecorn_test")

    @app.post("/items/<name>")  # type: ignore[untyped-decorator]
    def item(name: str) -> Any:
        return {"name": name, "data": flask.request.get_data(as_text=True)}

    sent = call(
        app,
        http_scope(method="POST", path="/items/x", headers=[(b"host", b"localhost")]),
        [b"payload"],
    )
    assert sent[0]["status"] == 200
    assert body_of(sent).strip() == b'{"data":"payload","name":"x"}'
