"""The ASGI lifespan protocol on asyncio: `LifespanBase`'s rules with asyncio's events,
queue and task (the trio twin is `edgecorn.trio.lifespan`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..asgi.lifespan import LifespanBase, LifespanFailure
from ..config import Config

if TYPE_CHECKING:
    from ..asgi.types import ASGIApp, Message

__all__ = ["Lifespan", "LifespanFailure"]


class Lifespan(LifespanBase):
    def __init__(self, app: ASGIApp, config: Config, state: dict[str, Any]) -> None:
        super().__init__(app, config, state)
        self._task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._startup = asyncio.Event()  # startup.complete/failed, or the app ended
        self._shutdown = asyncio.Event()

    async def startup(self) -> None:
        if not self.supported:
            return
        self._task = asyncio.create_task(self._run_app(), name="edgecorn lifespan")
        await self._inbox.put({"type": "lifespan.startup"})
        try:
            await self._wait(self._startup, self.config.startup_timeout, "startup")
        except LifespanFailure:
            self._task.cancel()
            raise

        self._check_startup()

    async def shutdown(self) -> None:
        task = self._task
        if not self.supported or task is None or task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            await self._wait(self._shutdown, self.config.shutdown_timeout, "shutdown")
            # The app normally returns right after shutdown.complete; give it a moment.
            await asyncio.wait({task}, timeout=1.0)
        finally:
            if not task.done():
                task.cancel()

    async def _wait(self, event: asyncio.Event, timeout: float, phase: str) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            raise LifespanFailure(f"lifespan {phase} timed out after {timeout:g}s") from None

    async def _receive(self) -> Message:
        return await self._inbox.get()
