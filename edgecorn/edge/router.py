"""The edge's router: one ASGI app that sends each request to the first matching route.

A route is itself an ASGI app (an in-process app, a WSGI app in the thread pool, a static
directory, an upstream proxy, a fixed answer or a redirect), so every protocol reaches every
route through the same HTTPStream. The router also runs each in-process app's lifespan, each
with its own `state`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import anyio

from .. import metrics
from ..asgi.types import ASGIApp, Message, Receive, Scope, Send
from ..config import Config
from .answers import Redirect, Respond, not_found
from .spec import Route, host_matches, path_matches

log = logging.getLogger("edgecorn.error")
Loader = Callable[[str, Config, bool, str], ASGIApp]


def build_router(config: Config, last: ASGIApp | None, load_path: Loader) -> Router:
    """The routes of `config` as apps; `last` (the command-line app) is the final route.
    `load_path` is the app loader (passed in: the loader is what calls us)."""
    entries: list[tuple[Route, ASGIApp]] = []
    lifespans: list[ASGIApp] = []
    for route in config.routes:
        app: ASGIApp
        if route.action == "app":
            app = _load_app(route, config, load_path)
            lifespans.append(app)
        elif route.action == "wsgi":
            from ..asgi.wsgi import WSGIAdapter

            wsgi = load_path("wsgi:" + route.target, config, route.factory, route.base_dir)
            assert isinstance(wsgi, WSGIAdapter)
            if route.max_body_size is not None:
                wsgi.max_body_size = route.max_body_size
            app = wsgi
        elif route.action == "static":
            from .static import StaticFiles

            app = StaticFiles(route)
        elif route.action == "proxy":
            from .proxy import Proxy

            app = Proxy(route, config)
        elif route.action == "respond":
            app = Respond(route)
        else:
            app = Redirect(route)
        entries.append((route, app))
    if last is not None:
        entries.append((Route(index=len(entries), action="app", target="(command line)"), last))
        lifespans.append(last)
    return Router(entries, lifespans)


def _load_app(route: Route, config: Config, load_path: Loader) -> ASGIApp:
    # `demo:app` is the built-in demo unless a `demo` module sits next to the config file.
    if route.target in ("demo", "demo:app") and not any(
        os.path.exists(os.path.join(route.base_dir, name)) for name in ("demo.py", "demo")
    ):
        from .. import demo

        return demo.app
    app: ASGIApp = load_path(route.target, config, route.factory, route.base_dir)
    return app


class Router:
    def __init__(self, entries: list[tuple[Route, ASGIApp]], lifespans: list[ASGIApp]) -> None:
        self.entries = entries
        self.any_host = all(route.host is None for route, _ in entries)
        self.children = [ChildLifespan(app) for app in lifespans]
        self.states = {id(child.app): child.state for child in self.children}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        path = scope["path"]
        host = "" if self.any_host else request_host(scope)
        for route, app in self.entries:
            if (route.host is None or host_matches(route.host, host)) and (
                route.path is None or path_matches(route, path)
            ):
                if metrics.recorder is not None:  # the route label of edgecorn_requests
                    scope[metrics.ROUTE_KEY] = metrics.route_label(route)
                state = self.states.get(id(app))
                if state is not None or route.strip_prefix:
                    scope = dict(scope)
                    if state is not None:
                        scope["state"] = dict(state)
                    if route.strip_prefix and route.action in ("app", "wsgi"):
                        # ASGI: `path` stays whole and `root_path` names the mount point
                        # (what Starlette, Django and our WSGI adapter expect).
                        scope["root_path"] = scope.get("root_path", "") + route.prefix
                await app(scope, receive, send)
                return
        if metrics.recorder is not None:
            scope[metrics.ROUTE_KEY] = "none"
        await not_found(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """Start every in-process app's lifespan, and stop them all at shutdown."""
        await receive()  # lifespan.startup
        async with anyio.create_task_group() as group:
            for child in self.children:
                group.start_soon(child.run)
                await child.started.wait()
            failed = [child.failed for child in self.children if child.failed is not None]
            if failed:
                for child in self.children:
                    await child.stop()
                await send({"type": "lifespan.startup.failed", "message": "; ".join(failed)})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            for child in reversed(self.children):
                await child.stop()
        failed = [child.failed for child in self.children if child.failed is not None]
        if failed:
            await send({"type": "lifespan.shutdown.failed", "message": "; ".join(failed)})
        else:
            await send({"type": "lifespan.shutdown.complete"})


class ChildLifespan:
    """One route app's lifespan, run by the router (an app without support is skipped)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.inbox, self.outbox = anyio.create_memory_object_stream[Message](2)
        self.started = anyio.Event()
        self.stopped = anyio.Event()
        self.running = False
        self.failed: str | None = None

    async def run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        await self.inbox.send({"type": "lifespan.startup"})
        self.running = True
        try:
            await self.app(scope, self.outbox.receive, self.send)
        except Exception as error:
            if self.started.is_set():
                log.error("Exception in a route app's lifespan", exc_info=error)
            else:
                log.debug("route app has no lifespan support (it raised %r)", error)
        finally:
            self.running = False
            self.started.set()
            self.stopped.set()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self.failed = message.get("message") or "application startup failed"
            self.started.set()
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if kind == "lifespan.shutdown.failed":
                self.failed = message.get("message") or "application shutdown failed"
            self.stopped.set()

    async def stop(self) -> None:
        if self.running and not self.stopped.is_set():
            await self.inbox.send({"type": "lifespan.shutdown"})
            await self.stopped.wait()


def request_host(scope: Scope) -> str:
    """The Host (h1) or :authority (h2/h3, given to apps as Host) without the port."""
    for name, value in scope["headers"]:
        if name == b"host":
            host: str = value.decode("latin-1").lower()
            if host.startswith("["):
                return host[: host.find("]") + 1]
            return host.rpartition(":")[0] if ":" in host else host.rstrip(".")
    return ""
