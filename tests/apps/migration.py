"""Apps for the migration tests, importable by any user (the privilege-drop test runs its
workers as nobody)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from tests.apps.common import lifespan


async def whoami(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The worker's uid, gid and pid, as JSON."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    body = json.dumps({"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid()}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def blocking(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Blocks the event loop for 0.3 s per request (what asyncio's debug mode reports)."""
    if scope["type"] != "http":
        return
    time.sleep(0.3)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"slow"})


async def silent(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Returns without a response: the server answers 500 and logs which request it was."""
