"""The ASGI lifespan protocol: run the app's startup before serving, shutdown after.

`config.lifespan` is "auto" (an app that fails before startup simply has no
lifespan support), "on" (it must support it) or "off" (never ask).

The rules live here, for any event loop; each backend's `lifespan` module
(`edgecorn.asyncio.lifespan`, `edgecorn.trio.lifespan`) adds its events, task and timeouts.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from edgecorn.config import Config

if TYPE_CHECKING:
    from edgecorn.asgi.types import ASGIApp, Message

log = logging.getLogger("edgecorn.error")


class LifespanFailure(Exception):
    """Startup failed (or timed out); the message is the app's own when it gave one."""


class LifespanBase(ABC):
    """The protocol's rules, for any event loop: a backend makes `_startup` and
    `_shutdown` (events with set/is_set), runs `_run_app` and waits."""

    _startup: Any
    _shutdown: Any

    def __init__(self, app: ASGIApp, config: Config, state: dict[str, Any]) -> None:
        self.app = app
        self.config = config
        self.state = state
        self._startup_failed: str | None = None
        self._started = False  # the app sent lifespan.startup.complete
        self._error: BaseException | None = None  # what the app raised, if it did
        self.supported = config.lifespan != "off"

    def _check_startup(self) -> None:
        """After startup was waited for: raise LifespanFailure, or note no support."""
        if self._startup_failed is not None:
            raise LifespanFailure(self._startup_failed or "application startup failed")
        if not self._started:
            # The app ended without completing startup: no lifespan support.
            self.supported = False
            error = self._error
            if error is not None and self.config.lifespan == "on":
                raise LifespanFailure(
                    f"lifespan startup raised {type(error).__name__}: {error}"
                ) from error
            if error is not None:
                log.info("ASGI lifespan unsupported by the app (it raised %r); continuing", error)
            elif self.config.lifespan == "on":
                log.warning("the app returned without completing lifespan startup")
            else:
                log.debug("ASGI lifespan unsupported by the app; continuing")

    async def _run_app(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as error:  # the app's failure is reported here, not raised
            self._error = error
            if self._startup.is_set() and self._startup_failed is None:
                # It had lifespan support, so this is a real error, not "unsupported".
                log.error("Exception in ASGI lifespan", exc_info=error)
            elif self.config.lifespan == "auto" and self._startup_failed is None:
                log.debug("lifespan startup raised", exc_info=error)
            elif self.config.lifespan == "on" and self._startup_failed is None:
                log.error("Exception in ASGI lifespan startup", exc_info=error)
        finally:
            self._startup.set()
            self._shutdown.set()

    @abstractmethod
    async def _receive(self) -> Message:
        """The next message for the app."""

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._started = True
            self._startup.set()
        elif kind == "lifespan.startup.failed":
            self._startup_failed = str(message.get("message", ""))
            self._startup.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown.set()
        elif kind == "lifespan.shutdown.failed":
            log.error("ASGI lifespan shutdown failed: %s", message.get("message", ""))
            self._shutdown.set()
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")
