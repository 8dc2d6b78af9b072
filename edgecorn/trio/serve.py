"""serve(): listeners, lifespan, the manager's tick and graceful shutdown on trio."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from ..asgi.lifespan import LifespanFailure
from ..asgi.loader import wrap_app
from ..certificates import create_ssl_context
from ..config import Config
from ..logging import AccessLogger, configure_logging
from ..manager import ConnectionManager
from ..quic.worker import announce, quic_setup
from ..redirect import announce as announce_redirects
from ..redirect import https_port, redirect_app
from ..sockets import Sockets, create_sockets
from ..worker import Ticker, announce_tcp, arm_request_limit, drain, shutting_down
from .lifespan import Lifespan
from .runtime import Runtime, hold_nursery
from .tcp import serve_tcp
from .udp import QUICListener

log = logging.getLogger("edgecorn.error")

CLOSE_GRACE = 1.0  # after the graceful timeout: time for closes to reach the peers


async def serve(
    app: Any,
    config: Config,
    *,
    shutdown_trigger: Callable[..., Awaitable[Any]] | None = None,
    sockets: Sockets | None = None,
    on_ready: Callable[[], None] | None = None,
    request_limit: int | None = None,
    on_retire: Callable[[], None] | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until `shutdown_trigger` returns (or SIGINT/SIGTERM without one).

    With `await nursery.start(serve, ...)` the start returns once every listener is up.
    The supervisor's extras: `on_ready` once listening; after `request_limit`
    requests, `on_retire` is called and the server stops gracefully.
    """
    if not logging.getLogger("edgecorn").handlers:
        configure_logging(config)  # API use; run() has configured it already
    asgi_app = wrap_app(app, config)
    state: dict[str, Any] = {}
    failure: LifespanFailure | None = None
    async with trio.open_nursery() as lifespan_nursery:
        lifespan = Lifespan(asgi_app, config, state, nursery=lifespan_nursery)
        try:
            await lifespan.startup()
        except LifespanFailure as exc:
            # Raised outside the nursery, so that it is never wrapped in an exception group.
            failure = exc
        else:
            await _serve(
                asgi_app,
                config,
                state,
                shutdown_trigger,
                sockets,
                _Extras(on_ready, request_limit, on_retire, task_status),
            )
            await lifespan.shutdown()
        lifespan_nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


async def _serve(
    asgi_app: Any,
    config: Config,
    state: dict[str, Any],
    shutdown_trigger: Callable[..., Awaitable[Any]] | None,
    sockets: Sockets | None,
    extras: _Extras,
) -> None:
    own_sockets = sockets is None
    if sockets is None:
        sockets = create_sockets(config)
    try:
        manager = ConnectionManager(config, asgi_app, state, AccessLogger(config))
        ssl_context = create_ssl_context(config) if sockets.secure else None
        runtime = Runtime()
        async with trio.open_nursery() as nursery:
            runtime.nursery = await nursery.start(hold_nursery)  # app tasks
            await nursery.start(runtime.run)
            connections: trio.Nursery = await nursery.start(hold_nursery)
            accepting: trio.Nursery = await nursery.start(hold_nursery)
            for sock in sockets.secure:
                accepting.start_soon(serve_tcp, sock, manager, runtime, ssl_context, connections)
            for sock in sockets.insecure:
                accepting.start_soon(serve_tcp, sock, manager, runtime, None, connections)
            redirect = redirect_app(https_port(sockets))
            for sock in sockets.redirect:  # cleartext listeners whose every answer is a 308
                accepting.start_soon(
                    partial(serve_tcp, sock, manager, runtime, None, connections, app=redirect)
                )
            announce_tcp(sockets)
            announce_redirects(sockets)
            quic_listeners = _start_quic(nursery, manager, sockets, runtime)
            ticker = Ticker(runtime, manager)
            stop = trio.Event()
            arm_request_limit(manager, extras.request_limit, extras.on_retire, stop.set)
            if extras.on_ready is not None:
                extras.on_ready()
            extras.task_status.started()

            async with trio.open_nursery() as waiting:  # whichever comes first
                waiting.start_soon(_until, stop.wait, waiting.cancel_scope)
                trigger = _wait_for_signal if shutdown_trigger is None else shutdown_trigger
                waiting.start_soon(_until, trigger, waiting.cancel_scope)
            shutting_down(config)
            accepting.cancel_scope.cancel()  # each accept loop closes its socket
            manager.shutdown()  # QUIC connections too: GOAWAY, then close when answered
            timeout = config.graceful_timeout
            await drain(manager, lambda: runtime.tasks, timeout, trio.current_time, trio.sleep)
            ticker.stop()

            manager.close_all()
            for listener in quic_listeners:
                listener.close()
            assert runtime.nursery is not None
            runtime.nursery.cancel_scope.cancel()
            with trio.move_on_after(CLOSE_GRACE):
                while manager.connections or runtime.tasks:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
    finally:
        if own_sockets:
            sockets.close()


@dataclass
class _Extras:
    on_ready: Callable[[], None] | None
    request_limit: int | None
    on_retire: Callable[[], None] | None
    task_status: Any


async def _until(wait: Callable[[], Awaitable[Any]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()


def _start_quic(
    nursery: trio.Nursery, manager: ConnectionManager, sockets: Sockets, runtime: Runtime
) -> list[QUICListener]:
    setup = quic_setup(manager.config, sockets)
    if setup is None:
        return []
    listeners = []
    for sock in sockets.quic:
        listener = QUICListener(manager, sock, setup, runtime)
        nursery.start_soon(listener.run)
        listeners.append(listener)
    announce(manager, sockets)
    return listeners


async def _wait_for_signal() -> None:
    with ExitStack() as stack:
        try:
            signals = stack.enter_context(trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM))
        except (RuntimeError, ValueError):
            await trio.sleep_forever()  # not the main thread: the caller stops us some other way
            return
        async for _ in signals:
            return
