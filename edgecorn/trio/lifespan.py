"""The ASGI lifespan protocol on trio: `LifespanBase`'s rules with trio's events, channel
and cancel scope (the asyncio twin is `edgecorn.asyncio.lifespan`).

The rules ("auto", "on", "off", timeouts, failure messages) are shared, and failures raise
the same `LifespanFailure`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio

from ..asgi.lifespan import LifespanBase, LifespanFailure
from ..config import Config

if TYPE_CHECKING:
    from ..asgi.types import ASGIApp, Message

__all__ = ["Lifespan", "LifespanFailure"]


class Lifespan(LifespanBase):
    def __init__(
        self,
        app: ASGIApp,
        config: Config,
        state: dict[str, Any],
        nursery: trio.Nursery | None = None,
    ) -> None:
        """`nursery` runs the app's lifespan task; without one it is a trio system task."""
        super().__init__(app, config, state)
        self.nursery = nursery
        self._running = False
        self._done = trio.Event()  # the app's lifespan call returned
        self._scope = trio.CancelScope()
        self._inbox_send, self._inbox = trio.open_memory_channel[Any](math.inf)
        self._startup = trio.Event()  # startup.complete/failed, or the app ended
        self._shutdown = trio.Event()

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

        self._check_startup()

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
        try:
            with self._scope:
                await self._run_app()
        finally:
            self._done.set()

    async def _receive(self) -> Message:
        message: Message = await self._inbox.receive()
        return message
