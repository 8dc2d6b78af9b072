"""What `Connection` asks of an event loop, on trio: soon-callbacks, timers, tasks, waiters.

`Connection` is synchronous where it reacts to bytes (`defer`, `call_later`,
`spawn`), so one scheduler task per worker runs those callbacks the way
asyncio's loop would: after the tasks that are already runnable, in order,
each one guarded so a failing callback ends only itself.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import trio

log = logging.getLogger("edgecorn.error")


class Waiter:
    """The piece of an asyncio future that streams use: `done`, `set_result`, `await`."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = trio.Event()

    def done(self) -> bool:
        done: bool = self.event.is_set()
        return done

    def set_result(self, result: None) -> None:
        self.event.set()

    def __await__(self) -> Generator[Any, None, None]:
        wait: Generator[Any, None, None] = self.event.wait().__await__()
        return wait


class TimerHandle:
    __slots__ = ("callback", "cancelled", "runtime")

    def __init__(self, callback: Callable[[], None], runtime: Runtime) -> None:
        self.callback = callback
        self.cancelled = False
        self.runtime: Runtime | None = runtime  # None once out of the heap

    def run(self) -> None:
        if not self.cancelled:  # it may be cancelled after it fell due, in the same batch
            self.callback()

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self.runtime is not None:
                self.runtime.cancelled += 1


class Runtime:
    """Per worker: the deferred callbacks, the timer heap and the nursery for app tasks
    (the `Runtime` of edgecorn/runtime.py, shared by the worker's connections)."""

    def __init__(self) -> None:
        self.ready: list[Callable[[], None]] = []
        self.timers: list[tuple[float, int, TimerHandle]] = []
        self.cancelled = 0  # cancelled handles still in the heap
        self.seq = itertools.count()
        self.wakeup = trio.Event()
        self.sleeping = False
        self.nursery: trio.Nursery | None = None
        self.tasks = 0  # app tasks still running, for the graceful drain

    # --- the primitives connections and QUIC endpoints bind -------------------------

    def defer(self, callback: Callable[[], None]) -> None:
        self.ready.append(callback)
        if self.sleeping:
            self.sleeping = False
            self.wakeup.set()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(callback, self)
        timers = self.timers
        if self.cancelled > 128 and 2 * self.cancelled > len(timers):
            # QUIC moves its timer often: drop cancelled entries before they pile up.
            for entry in timers:
                if entry[2].cancelled:
                    entry[2].runtime = None
            self.timers = timers = [entry for entry in timers if not entry[2].cancelled]
            heapq.heapify(timers)
            self.cancelled = 0
        heapq.heappush(timers, (when, next(self.seq), handle))
        if self.sleeping and timers[0][2] is handle:
            self.sleeping = False
            self.wakeup.set()  # earlier than what the scheduler sleeps until
        return handle

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self.call_at(trio.current_time() + delay, callback)

    def create_future(self) -> Waiter:
        return Waiter()

    def now(self) -> float:
        now: float = trio.current_time()
        return now

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        nursery = self.nursery
        try:
            if nursery is None:
                raise RuntimeError("no task nursery")
            nursery.start_soon(self._run_task, coro)
        except RuntimeError:  # shutting down: the nursery takes no new tasks
            coro.close()
            return
        self.tasks += 1

    async def _run_task(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception:  # a stream's failure must not take the nursery down
            log.exception("error in a connection task")
        finally:
            self.tasks -= 1

    # --- the scheduler task ---------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            if self.ready or self._due():
                await trio.lowlevel.checkpoint()
            else:
                self.wakeup = trio.Event()
                self.sleeping = True
                deadline = self.timers[0][0] if self.timers else math.inf
                with trio.move_on_at(deadline):
                    await self.wakeup.wait()
                self.sleeping = False
            self._run_due()

    def _run_due(self) -> None:
        # A method of its own: its locals (the last handle, batch and callback) go when it
        # returns, instead of keeping a closed connection alive while the scheduler sleeps.
        timers = self.timers
        now = trio.current_time()
        while timers and timers[0][0] <= now:
            handle = heapq.heappop(timers)[2]
            handle.runtime = None
            if handle.cancelled:
                self.cancelled -= 1
            else:
                self.ready.append(handle.run)
        batch, self.ready = self.ready, []
        for callback in batch:
            try:
                callback()
            except Exception:
                log.exception("error in a deferred callback")

    def _due(self) -> bool:
        timers = self.timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)[2].runtime = None
            self.cancelled -= 1
        return bool(timers) and timers[0][0] <= trio.current_time()


async def hold_nursery(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """A nursery that lives until cancelled: `await parent.start(hold_nursery)` returns it."""
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()
