"""The event-loop primitives the shared connection code asks of asyncio (the `Runtime`
of edgecorn/runtime.py): one per worker, shared by its connections and QUIC endpoints."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

# Eager start (Python 3.12+): the app runs at once, inside a Task, up to its first real
# suspension, so a response that needs no I/O goes out in this loop turn. On 3.11 the
# coroutine could only be stepped by hand outside any Task, and then current_task() is
# None in that part: sniffio/anyio (Starlette, FastAPI) and asyncio.timeout() fail there.
EAGER_TASKS = sys.version_info >= (3, 12)


class AsyncioRuntime:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # App tasks (and the listeners' connection starts), awaited (then cancelled) by
        # the graceful drain.
        self.tasks: set[asyncio.Task[Any]] = set()
        # An eager start is running: per call stack, and a worker has one thread, so one
        # flag per worker guards the nesting (see spawn).
        self.eager = False
        # The loop's own methods: no call of ours in between.
        self.defer = loop.call_soon
        self.call_later = loop.call_later
        self.call_at = loop.call_at
        self.create_future = loop.create_future
        self.now = loop.time

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
