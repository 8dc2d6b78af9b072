"""Blocking work in a worker thread, on trio (the WSGI adapter's thread runner)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

CallInLoop = Callable[..., Any]  # see edgecorn.asyncio.threads


async def to_thread(work: Callable[[CallInLoop], None]) -> None:
    """Run `work(call)` in one of trio's worker threads; `call` is `trio.from_thread.run`."""
    await trio.to_thread.run_sync(work, trio.from_thread.run)
