"""What the shared connection code asks of an event loop, as one object.

Each backend has one `Runtime` per worker (asyncio/runtime.py, trio/runtime.py): it
owns the app tasks the graceful drain waits for. Connections and QUIC endpoints get it
at construction and bind its methods onto themselves (`Connection.__init__`,
`QUICEndpoint.__init__`), so a stream's `conn.spawn(...)` is the runtime's own call,
with no forwarding method in between.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol


class Runtime(Protocol):
    def defer(self, callback: Callable[[], None]) -> object:
        """Run `callback` soon, after the event loop's current callbacks."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        """Run `callback` after `delay` seconds; the result has `cancel()`."""

    def create_future(self) -> Any:
        """A waiter with `done()`, `set_result(None)` and `await`."""

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as a task that the graceful drain waits for."""

    # The clock and absolute timers, for QUIC (aioquic's timers are absolute times).
    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Any: ...
