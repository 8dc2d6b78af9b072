"""The ASGI types, defined once; every module imports them from here.

Plain aliases (not TypedDicts): the servers' hot path builds and reads these
dicts directly, and apps are free to send keys we do not know.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class StreamAborted(Exception):
    """Raised by an app (the edge's proxy) whose response cannot be completed: the stream
    is reset without a traceback, because the app has logged why."""
