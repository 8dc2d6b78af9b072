"""What every worker does around its listeners, whatever its event loop.

asyncio/serve.py and trio/serve.py keep only what differs between the loops
(starting listeners, waiting, cancelling); the announcements, the request
limit, the once-a-second tick and the graceful drain are here, once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from . import metrics
from .sockets import Sockets, describe

if TYPE_CHECKING:
    from .config import Config
    from .manager import ConnectionManager
    from .runtime import Runtime

log = logging.getLogger("edgecorn.error")

DRAIN_POLL = 0.05  # how often the drain looks whether everything has finished


def announce_tcp(sockets: Sockets) -> None:
    for sock in sockets.secure:
        log.info("Running on %s (h2, http/1.1; CTRL + C to quit)", describe(sock, True))
    for sock in sockets.insecure:
        log.info("Running on %s (http/1.1, h2c; CTRL + C to quit)", describe(sock, False))


def arm_request_limit(
    manager: ConnectionManager,
    limit: int | None,
    on_retire: Callable[[], None] | None,
    stop: Callable[[], None],
) -> None:
    """After `limit` requests (max_requests): tell the supervisor, then stop gracefully."""
    if limit is None:
        return

    def retire() -> None:
        if on_retire is not None:
            on_retire()
        stop()

    manager.request_limit = limit
    manager.on_request_limit = retire


def tick(manager: ConnectionManager) -> None:
    """The once-a-second work; a failure is logged and the next second ticks again."""
    try:
        manager.tick()
        if metrics.recorder is not None:
            metrics.recorder.sample(manager.connections)  # the open connections/streams gauges
    except Exception:
        log.exception("error in the connection manager's tick")


class Ticker:
    """One timer per worker drives every connection's timeouts and the Date header. It
    ticks at whole seconds from the start (absolute times, so it does not drift); after
    a stall the missed ticks run back to back, as the timeouts count elapsed seconds."""

    def __init__(self, runtime: Runtime, manager: ConnectionManager) -> None:
        self.runtime = runtime
        self.manager = manager
        self.deadline = runtime.now() + 1.0
        self.handle = runtime.call_at(self.deadline, self._tick)

    def _tick(self) -> None:
        tick(self.manager)
        self.deadline += 1.0
        self.handle = self.runtime.call_at(self.deadline, self._tick)

    def stop(self) -> None:
        self.handle.cancel()


def shutting_down(config: Config) -> None:
    log.info("Shutting down: finishing open requests (up to %ss)", config.graceful_timeout)


async def drain(
    manager: ConnectionManager,
    tasks: Callable[[], int],
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[object]],
) -> bool:
    """Wait until every connection and app task (`tasks()` counts those running) has
    finished, up to `timeout` seconds. True when all finished; False (logged) when the
    graceful timeout cut it short."""
    deadline = clock() + timeout
    while manager.connections or tasks():
        if clock() >= deadline:
            log.info("Graceful timeout reached: closing %d connections", len(manager.connections))
            return False
        await sleep(DRAIN_POLL)
    return True
