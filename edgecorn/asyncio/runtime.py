"""The event-loop primitives the shared connection code asks of asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class AsyncioRuntime:
    """Mixed into TCP connections and QUIC endpoints; needs `loop` and `tasks`."""

    loop: asyncio.AbstractEventLoop
    tasks: set[Any]  # app tasks, awaited (then cancelled) by the graceful drain

    def defer(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, callback)

    def create_future(self) -> asyncio.Future[None]:
        return self.loop.create_future()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
