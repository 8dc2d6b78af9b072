"""The ASGI lifespan protocol on trio: the same behaviour as `edgecorn.asgi.lifespan`.

The asyncio class builds asyncio queues, events and tasks, so trio has its own;
the rules ("auto", "on", "off", timeouts, failure messages) are the same and
failures raise the same `LifespanFailure`.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import trio

from ..asgi.lifespan import LifespanFailure
from ..config import Config

if TYPE_CHECKING:
    from ..asgi.dispatch import ASGIApp, Message

log = logging.getLogger("edgecorn.error")

__all__ = ["Lifespan", "LifespanFailure"]


class Lifespan:
    def __init__(
        self,
        app: ASGIApp,
        config: Config,
        state: dict[str, Any],
        nursery: trio.Nursery | None = None,
    ) -> None:
        """`nursery` runs the app's lifespan task; without one it is a trio system task."""
        self.app = app
        self.config = config
        self.state = state
        self.nursery = nursery
        self._running = False
        self._done = trio.Event()  # the app's lifespan call returned
        self._scope = trio.CancelScope()
        self._inbox_send, self._inbox = trio.open_memory_channel[Any](math.inf)
        self._startup = trio.Event()  # startup.complete/failed, or the app ended
        self._shutdown = trio.Event()
        self._startup_failed: str | None = None
        self._started = False  # the app sent lifespan.startup.complete
        self._error: BaseException | None = None  # what the app raised, if it did
        self.supported = config.lifespan != "off"

    async def startup(self) -> None:
        if not self.supported:
            return
        self._running = True
        if self.nursery is not None:
            self.nursery.start_soon(self._run, name="edgecorn lifespan")
        else:
            trio.lowlevel.spawn_system_task(self._run, name="edgecorn lifespan")
        self._inbox_send.send_nowait({"type": "lifespan.startup"})
        try:
            await self._wait(self._startup, self.config.startup_timeout, "startup")
        except LifespanFailure:
            self._scope.cancel()
            raise

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

    async def shutdown(self) -> None:
        if not self.supported or not self._running or self._done.is_set():
            return
        self._inbox_send.send_nowait({"type": "lifespan.shutdown"})
        try:
            await self._wait(self._shutdown, self.config.shutdown_timeout, "shutdown")
            # The app normally returns right after shutdown.complete; give it a moment.
            with trio.move_on_after(1.0):
                await self._done.wait()
        finally:
            if not self._done.is_set():
                self._scope.cancel()

    async def _wait(self, event: trio.Event, timeout: float, phase: str) -> None:
        with trio.move_on_after(timeout) as scope:
            await event.wait()
        if scope.cancelled_caught:
            raise LifespanFailure(f"lifespan {phase} timed out after {timeout:g}s")

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            with self._scope:
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
            self._done.set()

    async def _receive(self) -> Message:
        message: Message = await self._inbox.receive()
        return message

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
