"""DispatcherMiddleware({"/api": api_app, "/": site_app}): one app per path prefix.

As in Hypercorn the request keeps its `path` and the mount point is added to `root_path`
(the ASGI rule: `path` includes `root_path`). Unlike a plain `startswith`, "/api" does not
catch "/apiary", and the longest mount wins whatever the dict's order. Lifespan events go
to every mounted app at once; an app that does not speak lifespan is left out of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..asgi.types import ASGIApp, Message, Receive, Scope, Send


class DispatcherMiddleware:
    def __init__(self, mounts: Mapping[str, ASGIApp]) -> None:
        self.mounts = dict(mounts)
        # Longest first: "/api/v2" before "/api" before "/".
        self._ordered = sorted(self.mounts.items(), key=lambda item: len(item[0]), reverse=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        path = scope["path"]
        for mount, app in self._ordered:
            if _under(path, mount):
                local = dict(scope)
                local["root_path"] = scope.get("root_path", "") + mount.rstrip("/")
                await app(local, receive, send)
                return
        if scope["type"] == "http":
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "websocket.close"})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        apps = list(self.mounts.values())
        # Each app gets its own queue of server events and reports into one shared queue.
        inboxes = [anyio.create_memory_object_stream[Message](math.inf) for _ in apps]
        report_send, report_receive = anyio.create_memory_object_stream[tuple[int, Message]](
            math.inf
        )
        try:
            async with anyio.create_task_group() as tasks:
                for index, app in enumerate(apps):
                    tasks.start_soon(
                        _run_lifespan, app, scope, inboxes[index][1], report_send, index
                    )
                live = set(range(len(apps)))
                for phase in ("startup", "shutdown"):
                    message = await receive()
                    for index in live:
                        inboxes[index][0].send_nowait(message)
                    failed = await _collect(report_receive, live, phase)
                    if failed is not None:
                        await send({"type": f"lifespan.{phase}.failed", "message": failed})
                        break
                    await send({"type": f"lifespan.{phase}.complete"})
                tasks.cancel_scope.cancel()  # nothing more to say to apps that linger
        finally:
            for stream in [report_send, report_receive, *(s for pair in inboxes for s in pair)]:
                stream.close()


async def _run_lifespan(
    app: ASGIApp,
    scope: Scope,
    inbox: MemoryObjectReceiveStream[Message],
    report: MemoryObjectSendStream[tuple[int, Message]],
    index: int,
) -> None:
    async def app_send(message: Message) -> None:
        report.send_nowait((index, message))

    try:
        await app(dict(scope), inbox.receive, app_send)
    except Exception:  # noqa: BLE001 - an app without lifespan support raises, as in ASGI
        pass
    report.send_nowait((index, {"type": "lifespan.unsupported"}))


async def _collect(
    reports: MemoryObjectReceiveStream[tuple[int, Message]], live: set[int], phase: str
) -> str | None:
    """Wait until every live app answered this phase; None, or the first failure's message."""
    waiting = set(live)
    while waiting:
        index, message = await reports.receive()
        kind = message.get("type", "")
        if kind == f"lifespan.{phase}.failed":
            return str(message.get("message", ""))
        if kind == "lifespan.unsupported":
            live.discard(index)  # it returned (or raised): it takes no further part
            waiting.discard(index)
        elif kind == f"lifespan.{phase}.complete":
            waiting.discard(index)
    return None


def _under(path: str, mount: str) -> bool:
    if mount in ("", "/"):
        return True
    mount = mount.rstrip("/")
    return path == mount or path.startswith(mount + "/")


# Hypercorn's names for the two event loops: one class serves both here.
AsyncioDispatcherMiddleware = DispatcherMiddleware
TrioDispatcherMiddleware = DispatcherMiddleware

__all__ = ["AsyncioDispatcherMiddleware", "DispatcherMiddleware", "TrioDispatcherMiddleware"]
