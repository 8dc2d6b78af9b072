from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from edgecorn import demo
from edgecorn.asgi.wsgi import WSGIAdapter
from edgecorn.asyncio.lifespan import Lifespan, LifespanFailure
from edgecorn.config import Config


@pytest.fixture(autouse=True)
def _propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    # configure_logging() (run by other tests) stops "edgecorn" propagating; caplog needs it.
    monkeypatch.setattr(logging.getLogger("edgecorn"), "propagate", True)


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


class Recorder:
    """A lifespan app that does what it is told and records what it saw."""

    def __init__(
        self,
        startup: str = "complete",
        shutdown: str = "complete",
        delay: float = 0.0,
    ) -> None:
        self.startup = startup
        self.shutdown = shutdown
        self.delay = delay
        self.events: list[str] = []
        self.scope: dict[str, Any] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        message = await receive()
        self.events.append(message["type"])
        await asyncio.sleep(self.delay)
        if self.startup == "raise":
            raise RuntimeError("startup broke")
        if self.startup == "failed":
            await send({"type": "lifespan.startup.failed", "message": "no database"})
            raise RuntimeError("after failed")  # Starlette re-raises after sending failed
        scope["state"]["ready"] = True
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        self.events.append(message["type"])
        if self.shutdown == "failed":
            await send({"type": "lifespan.shutdown.failed", "message": "could not flush"})
        elif self.shutdown == "raise":
            raise RuntimeError("shutdown broke")
        else:
            await send({"type": "lifespan.shutdown.complete"})


async def cycle(app: Any, **options: Any) -> tuple[Lifespan, dict[str, Any]]:
    state: dict[str, Any] = {}
    lifespan = Lifespan(app, Config(**options), state)
    await lifespan.startup()
    await lifespan.shutdown()
    return lifespan, state


def test_startup_and_shutdown_with_state() -> None:
    app = Recorder()
    _, state = run(cycle(app))
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]
    assert state == {"ready": True}
    assert app.scope["type"] == "lifespan"
    assert app.scope["asgi"] == {"version": "3.0", "spec_version": "2.0"}
    assert app.scope["state"] is state


def test_off_never_calls_the_app() -> None:
    app = Recorder()
    run(cycle(app, lifespan="off"))
    assert app.events == []


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_failed_is_a_failure(mode: str) -> None:
    with pytest.raises(LifespanFailure, match="^no database$"):
        run(cycle(Recorder(startup="failed"), lifespan=mode))


def test_auto_tolerates_an_app_without_lifespan(caplog: pytest.LogCaptureFixture) -> None:
    async def http_only(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"

    caplog.set_level(logging.DEBUG, logger="edgecorn.error")
    lifespan, _ = run(cycle(http_only, lifespan="auto"))
    assert lifespan.supported is False
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_auto_tolerates_a_raise_while_starting() -> None:
    lifespan, _ = run(cycle(Recorder(startup="raise"), lifespan="auto"))
    assert lifespan.supported is False


def test_on_turns_a_raise_into_a_failure() -> None:
    with pytest.raises(LifespanFailure, match="startup broke"):
        run(cycle(Recorder(startup="raise"), lifespan="on"))


def test_wsgi_app_returns_at_once() -> None:
    lifespan, _ = run(cycle(WSGIAdapter(lambda e, s: [], 10), lifespan="auto"))
    assert lifespan.supported is False


def test_startup_timeout() -> None:
    with pytest.raises(LifespanFailure, match=r"^lifespan startup timed out after 0\.05s$"):
        run(cycle(Recorder(delay=5), startup_timeout=0.05))


def test_shutdown_timeout() -> None:
    async def stuck(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await asyncio.sleep(5)

    with pytest.raises(LifespanFailure, match=r"^lifespan shutdown timed out after 0\.05s$"):
        run(cycle(stuck, shutdown_timeout=0.05))


def test_shutdown_failed_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    run(cycle(Recorder(shutdown="failed")))
    assert any(
        "could not flush" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )


def test_shutdown_raise_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    run(cycle(Recorder(shutdown="raise")))
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


def test_raise_right_after_startup_complete_is_not_unsupported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        raise RuntimeError("later")

    lifespan, _ = run(cycle(app, lifespan="on"))
    assert lifespan.supported is True
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


def test_demo_app_supports_lifespan() -> None:
    lifespan, _ = run(cycle(demo.app, lifespan="on"))
    assert lifespan.supported is True
