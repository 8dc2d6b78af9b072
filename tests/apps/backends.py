"""Apps for the tests that run one server on either worker class.

- `loop_app`: answers every request with the event loop it ran on ('trio', 'asyncio' or
  'uvloop'); tests/test_engines.py serves it alone.
- `app`: `/backend` is `loop_app`; other HTTP paths are the e2e routes (`tests.apps.e2e`,
  written with anyio so they run on asyncio and trio alike); WebSockets go to
  `tests.apps.ws`. tests/test_trio_backend.py serves it with `-k trio`.
"""

from __future__ import annotations

from typing import Any

import sniffio

from tests.apps import e2e, ws
from tests.apps.common import lifespan


async def loop_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    name = sniffio.current_async_library()
    if name == "asyncio":
        import asyncio

        name = type(asyncio.get_running_loop()).__module__.partition(".")[0]
    body = name.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await ws.app(scope, receive, send)
    elif scope["type"] == "http" and scope["path"] == "/backend":
        await loop_app(scope, receive, send)
    else:
        await e2e.app(scope, receive, send)
