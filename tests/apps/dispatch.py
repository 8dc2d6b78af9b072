"""Apps of every shape, for tests/test_loader.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any


async def app(scope: Any, receive: Any, send: Any) -> None:
    """ASGI3; marks the scope so tests can tell which app ran."""
    scope["ran"] = "app"


async def other(scope: Any, receive: Any, send: Any) -> None:
    scope["ran"] = "other"


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi"]


class ASGI3Instance:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["ran"] = "instance"


class WSGIInstance:
    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b"instance"]


class ASGI2App:
    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        pass


def asgi2_function(scope: Any) -> Callable[[Any, Any], Awaitable[None]]:
    async def inner(receive: Any, send: Any) -> None:
        pass

    return inner


class Container:
    class Inner:
        app = ASGI3Instance()


instance = ASGI3Instance()
wsgi_instance = WSGIInstance()
not_callable = 42


def create_app() -> Any:
    return other


async def async_factory() -> Any:
    return other


async def bad_arity(scope: Any) -> None:
    pass
