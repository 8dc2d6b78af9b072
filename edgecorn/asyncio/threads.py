"""Blocking work in a worker thread, on asyncio (the WSGI adapter's thread runner)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

# What the worker thread gets: `call(fn, *args)` runs the coroutine function `fn(*args)` on
# the event loop and blocks the thread until it returns (so the loop sets the pace).
CallInLoop = Callable[..., None]


def running() -> bool:
    """True when an asyncio (or uvloop) event loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def to_thread(work: Callable[[CallInLoop], None]) -> None:
    """Run `work(call)` in the loop's default executor, as a WSGI server does."""
    loop = asyncio.get_running_loop()

    def call(fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        asyncio.run_coroutine_threadsafe(_await(fn, *args), loop).result()

    await loop.run_in_executor(None, work, call)


async def _await(fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    # run_coroutine_threadsafe wants a coroutine; `fn` may return any awaitable.
    await fn(*args)
