"""The event-loop primitives the shared connection code asks of asyncio."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

# Eager start (Python 3.12+): the app runs at once, inside a Task, up to its first real
# suspension, so a response that needs no I/O goes out in this loop turn. On 3.11 the
# coroutine could only be stepped by hand outside any Task, and then current_task() is
# None in that part: sniffio/anyio (Starlette, FastAPI) and asyncio.timeout() fail there.
EAGER_TASKS = sys.version_info >= (3, 12)


class AsyncioRuntime:
    """Mixed into TCP connections and QUIC endpoints; needs `loop` and `tasks`."""

    loop: asyncio.AbstractEventLoop
    tasks: set[Any]  # app tasks, awaited (then cancelled) by the graceful drain
    eager = False  # an eager start is running on this connection (or endpoint)

    def defer(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, callback)

    def create_future(self) -> asyncio.Future[None]:
        return self.loop.create_future()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if EAGER_TASKS and not self.eager:
            # Not nested: an app that ends in its eager part lets the next pipelined
            # request start (stream_done) inside that part, which would start the next
            # one eagerly in turn - a deep pipeline would be a deep recursion.
            self.eager = True
            try:
                task = asyncio.Task(coro, loop=self.loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
            finally:
                self.eager = False
            if task.done():
                return  # finished in its eager part: nothing for the drain to wait for
        else:
            task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
