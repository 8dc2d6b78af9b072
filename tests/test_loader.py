from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from edgecorn import demo
from edgecorn.asgi.loader import AppLoadError, load_app
from edgecorn.asgi.wsgi import WSGIAdapter
from edgecorn.config import Config

ROOT = Path(__file__).resolve().parent.parent
APPS = "tests.apps.dispatch"


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))


def load(path: str | None, **options: Any) -> Any:
    return load_app(Config(application_path=path, **options))


def ran(app: Any) -> str:
    scope: dict[str, Any] = {"type": "http"}
    asyncio.run(app(scope, None, None))
    return str(scope["ran"])


def test_none_is_the_demo_app() -> None:
    assert load(None) is demo.app


def test_module_attr() -> None:
    assert ran(load(f"{APPS}:other")) == "other"


def test_module_alone_means_app() -> None:
    assert ran(load(APPS)) == "app"


def test_dotted_attribute() -> None:
    assert ran(load(f"{APPS}:Container.Inner.app")) == "instance"


def test_instance_with_async_call() -> None:
    assert ran(load(f"{APPS}:instance")) == "instance"


def test_factory_flag_and_call_syntax() -> None:
    assert ran(load(f"{APPS}:create_app", factory=True)) == "other"
    assert ran(load(f"{APPS}:create_app()")) == "other"


def test_factory_without_flag_gets_a_hint() -> None:
    with pytest.raises(AppLoadError, match="--factory"):
        load(f"{APPS}:create_app")


def test_async_factory_is_refused() -> None:
    with pytest.raises(AppLoadError, match="awaitable"):
        load(f"{APPS}:async_factory", factory=True)


@pytest.mark.parametrize("attr", ["wsgi_app", "wsgi_instance"])
def test_wsgi_detected(attr: str) -> None:
    app = load(f"{APPS}:{attr}")
    assert isinstance(app, WSGIAdapter)
    assert app.max_body_size == Config.wsgi_max_body_size


def test_wsgi_prefix_forces_wsgi() -> None:
    app = load(f"wsgi:{APPS}:other", wsgi_max_body_size=10)
    assert isinstance(app, WSGIAdapter)
    assert app.max_body_size == 10


@pytest.mark.parametrize("attr", ["ASGI2App", "asgi2_function"])
def test_asgi2_refused_with_a_fix(attr: str) -> None:
    with pytest.raises(AppLoadError) as info:
        load(f"{APPS}:{attr}")
    message = str(info.value)
    assert "ASGI2" in message
    assert "guarantee_single_callable" in message
    assert "\n" not in message


def test_missing_module() -> None:
    with pytest.raises(AppLoadError) as info:
        load("edgecorn_no_such_module:app")
    assert str(info.value) == (
        "cannot import module 'edgecorn_no_such_module': No module named 'edgecorn_no_such_module'"
    )


def test_missing_submodule() -> None:
    with pytest.raises(AppLoadError, match="cannot import module 'tests.apps.nope'"):
        load("tests.apps.nope:app")


def test_import_error_inside_module_keeps_its_message() -> None:
    with pytest.raises(AppLoadError) as info:
        load("tests.apps.dispatch_broken:app")
    message = str(info.value)
    assert "tests.apps.dispatch_broken" in message
    assert "No module named 'edgecorn_no_such_dependency'" in message


def test_missing_attribute() -> None:
    with pytest.raises(AppLoadError) as info:
        load(f"{APPS}:nope")
    assert str(info.value) == f"module '{APPS}' has no attribute 'nope'"


def test_missing_nested_attribute() -> None:
    with pytest.raises(AppLoadError, match=f"'{APPS}:Container' has no attribute 'Nope'"):
        load(f"{APPS}:Container.Nope.app")


def test_not_callable_and_wrong_arity() -> None:
    with pytest.raises(AppLoadError, match="not callable"):
        load(f"{APPS}:not_callable")
    with pytest.raises(AppLoadError, match="scope, receive, send"):
        load(f"{APPS}:bad_arity")


def test_file_path(tmp_path: Path) -> None:
    (tmp_path / "edgecorn_file_app.py").write_text(
        "async def app(scope, receive, send):\n    scope['ran'] = 'file'\n"
    )
    assert ran(load(f"{tmp_path}/edgecorn_file_app.py:app")) == "file"
    sys.modules.pop("edgecorn_file_app", None)


def test_cwd_is_importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "edgecorn_cwd_app.py").write_text(
        "async def app(scope, receive, send):\n    scope['ran'] = 'cwd'\n"
    )
    monkeypatch.chdir(tmp_path)
    assert ran(load("edgecorn_cwd_app")) == "cwd"
    sys.modules.pop("edgecorn_cwd_app", None)


# The demo app, which `load_app` serves when no app is named.


def demo_request(
    path: str, method: str = "GET", body: bytes = b"", **scope: Any
) -> tuple[int, dict[bytes, bytes], bytes]:
    full: dict[str, Any] = {
        "type": "http",
        "http_version": "3",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"localhost:8443"), (b"content-type", b"text/x-test")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8443),
        "state": {"db": object()},
    }
    full.update(scope)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(demo.app(full, receive, send))
    start, *rest = sent
    return start["status"], dict(start["headers"]), b"".join(m["body"] for m in rest)


def test_demo_index() -> None:
    status, headers, body = demo_request("/")
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/html")
    assert int(headers[b"content-length"]) == len(body)
    page = body.decode()
    assert "edgecorn works" in page
    assert "HTTP/3" in page
    assert "127.0.0.1:5000" in page
    assert 'href="/json"' in page


def test_demo_json_leaves_out_what_json_cannot_hold() -> None:
    status, headers, body = demo_request("/json")
    assert status == 200
    assert headers[b"content-type"] == b"application/json"
    data = json.loads(body)
    assert data["http_version"] == "3"
    assert data["client"] == ["127.0.0.1", 5000]
    assert data["headers"][0] == ["host", "localhost:8443"]
    assert data["state"] == {}


def test_demo_echo() -> None:
    status, headers, body = demo_request("/echo", "POST", b"hello")
    assert (status, body) == (200, b"hello")
    assert headers[b"content-type"] == b"text/x-test"
    assert demo_request("/echo")[0] == 405


def test_demo_not_found() -> None:
    assert demo_request("/nope")[0] == 404


def test_demo_websocket_echo() -> None:
    incoming: list[dict[str, Any]] = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hi"},
        {"type": "websocket.receive", "bytes": b"\x00"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(demo.app({"type": "websocket", "path": "/"}, receive, send))
    assert sent == [
        {"type": "websocket.accept"},
        {"type": "websocket.send", "text": "hi"},
        {"type": "websocket.send", "bytes": b"\x00"},
    ]
