"""The `routes:` option: validation with file lines, matching, and the router without sockets."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from edgecorn.config import Config, ConfigError
from edgecorn.edge.router import build_router, request_host
from edgecorn.edge.spec import path_matches
from edgecorn.edge.static import parse_range


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "edge.yaml"
    path.write_text(textwrap.dedent(text))
    return Config.from_yaml(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


BAD = [
    (
        """\
     routes:
       - path: /a/
         respond: {status: 200}
       - path: /b/
         proxy: ftp://example.com
     """,
        "edge.yaml:5: routes[1].proxy: bad upstream URL 'ftp://example.com': the scheme "
        "must be http or https",
    ),
    (
        """\
     routes:
       - app: demo:app
       - path: /x/
         respond: 200
     """,
        "edge.yaml:3: routes[1]: unreachable: every request it matches is taken by routes[0]",
    ),
    (
        """\
     routes:
       - path: /x/
         statik: ./public
     """,
        "edge.yaml:3: routes[0].statik: unknown key (did you mean 'static'?)",
    ),
    (
        """\
     routes:
       - path: /x/
         respond: 200
         listing: true
     """,
        "edge.yaml:4: routes[0].listing: not an option of a 'respond' route",
    ),
    (
        """\
     routes:
       - path: /x/
     """,
        "edge.yaml:2: routes[0]: a route needs exactly one action of app, wsgi, static, "
        "proxy, respond, redirect (found none)",
    ),
    (
        """\
     routes:
       - path: /x/
         static: ./missing
     """,
        "edge.yaml:3: routes[0].static: no such directory: ",
    ),
    (
        """\
     routes:
       - path: x/
         respond: 200
     """,
        "edge.yaml:2: routes[0].path: a path starts with '/'",
    ),
    (
        """\
     routes:
       - path: /old/
         redirect: {to: "https://example.com/", status: 200}
     """,
        "edge.yaml:3: routes[0].redirect: status: expected one of 301, 302, 303, 307, 308",
    ),
    (
        """\
     routes:
       - path: /p/
         proxy: http://127.0.0.1:9000
         read_timeout: -1
     """,
        "edge.yaml:4: routes[0].read_timeout: expected a number of seconds > 0, got -1",
    ),
    (
        """\
     routes: 5
     """,
        "edge.yaml:1: routes: expected a list of routes",
    ),
    (
        """\
     routes:
       - path: /a/
         respond: 200
         proxy: http://127.0.0.1:1
     """,
        "edge.yaml:2: routes[0]: a route needs exactly one action of app, wsgi, static, "
        "proxy, respond, redirect (found respond and proxy)",
    ),
    (
        """\
     routes:
       - host: "a.*.com"
         respond: 200
     """,
        "edge.yaml:2: routes[0].host: a wildcard host is '*.example.com'",
    ),
    (
        """\
     routes:
       - path: =/healthz
         strip_prefix: true
         respond: 200
     """,
        "edge.yaml:3: routes[0].strip_prefix: strip_prefix needs a prefix `path`",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=range(len(BAD)))
def test_bad_routes_name_their_line(tmp_path: Path, text: str, expected: str) -> None:
    message = error(tmp_path, text)
    assert expected in message, message
    assert message.startswith(str(tmp_path / "edge.yaml"))


def test_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    config = load(
        tmp_path,
        """\
        certfile: certs/localhost.pem
        keyfile: certs/localhost.key
        routes:
          - path: /static/
            static: ./public
        """,
    )
    assert config.certfile == str(tmp_path / "certs/localhost.pem")
    assert config.routes[0].target == str((tmp_path / "public").resolve())


def test_matching_is_by_whole_segments() -> None:
    config = Config(routes=[{"path": "/api/", "respond": 200}, {"path": "=/h", "respond": 200}])
    api, exact = config.routes
    assert path_matches(api, "/api") and path_matches(api, "/api/x")
    assert not path_matches(api, "/apix")
    assert path_matches(exact, "/h") and not path_matches(exact, "/h/")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"bytes=0-1", (0, 2)),
        (b"bytes=5-", (5, 10)),
        (b"bytes=-3", (7, 10)),
        (b"bytes=8-100", (8, 10)),
        (b"bytes=10-", "unsatisfiable"),
        (b"bytes=0-1,3-4", None),
        (b"items=0-1", None),
        (b"bytes=3-1", None),
    ],
)
def test_parse_range(header: bytes, expected: Any) -> None:
    assert parse_range(header, 10) == expected


def test_request_host_strips_the_port() -> None:
    assert request_host({"headers": [(b"host", b"API.Example.com:8443")]}) == "api.example.com"
    assert request_host({"headers": [(b"host", b"[::1]:8443")]}) == "[::1]"


async def _call(app: Any, path: str, host: bytes = b"localhost") -> tuple[int, bytes, dict]:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"q=1",
        "headers": [(b"host", host)],
        "root_path": "",
        "state": {},
        "http_version": "1.1",
        "scheme": "https",
    }
    await app(scope, receive, send)
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return start["status"], body, dict(start["headers"])


def test_router_first_match_wins_and_404s() -> None:
    config = Config(
        routes=[
            {"host": "*.example.com", "respond": {"status": 200, "body": "wild"}},
            {"path": "=/healthz", "respond": {"status": 200, "body": "ok"}},
            {"path": "/old/", "redirect": {"to": "https://new.example/", "status": 301}},
        ]
    )

    def loader(*args: Any) -> Any:
        raise AssertionError("no app routes here")

    router = build_router(config, None, loader)

    async def main() -> None:
        assert (await _call(router, "/x", b"a.example.com:443"))[:2] == (200, b"wild")
        assert (await _call(router, "/healthz"))[:2] == (200, b"ok")
        status, _, headers = await _call(router, "/old/a/b")
        assert status == 301 and headers[b"location"] == b"https://new.example/a/b?q=1"
        assert (await _call(router, "/nothing"))[0] == 404
        assert (await _call(router, "/x", b"example.com"))[0] == 404  # *. needs a subdomain

    anyio.run(main)


def test_router_runs_each_app_lifespan_with_its_own_state() -> None:
    started: list[str] = []

    def make(name: str) -> Any:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await receive()
                scope["state"]["name"] = name
                started.append(name)
                await send({"type": "lifespan.startup.complete"})
                await receive()
                started.append("stop " + name)
                await send({"type": "lifespan.shutdown.complete"})
                return
            body = scope["state"]["name"].encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

        return app

    apps = {"one:app": make("one"), "two:app": make("two")}
    config = Config(
        routes=[{"path": "/one/", "app": "one:app", "strip_prefix": True}, {"app": "two:app"}]
    )
    router = build_router(config, None, lambda target, *rest: apps[target])

    async def main() -> None:
        inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])
            if message["type"] == "lifespan.startup.complete":
                assert (await _call(router, "/one/x"))[1] == b"one"
                assert (await _call(router, "/y"))[1] == b"two"

        await router({"type": "lifespan", "state": {}}, receive, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    anyio.run(main)
    assert started == ["one", "two", "stop two", "stop one"]
