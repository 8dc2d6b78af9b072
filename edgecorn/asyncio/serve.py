"""serve(): listeners, lifespan, the manager's tick and graceful shutdown on asyncio."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

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
from .listen import Listener
from .runtime import AsyncioRuntime
from .tcp import TCPProtocol
from .udp import QUICListener

log = logging.getLogger("edgecorn.error")


async def serve(
    app: Any,
    config: Config,
    *,
    shutdown_trigger: Callable[..., Awaitable[Any]] | None = None,
    sockets: Sockets | None = None,
    on_ready: Callable[[], None] | None = None,
    request_limit: int | None = None,
    on_retire: Callable[[], None] | None = None,
) -> None:
    """Serve `app` until `shutdown_trigger` returns (or SIGINT/SIGTERM without one).

    The supervisor's extras: `on_ready` once listening; after `request_limit`
    requests, `on_retire` is called and the server stops gracefully.
    """
    loop = asyncio.get_running_loop()
    if not logging.getLogger("edgecorn").handlers:
        configure_logging(config)  # API use; run() has configured it already
    asgi_app = wrap_app(app, config)
    state: dict[str, Any] = {}
    lifespan = Lifespan(asgi_app, config, state)
    await lifespan.startup()

    own_sockets = sockets is None
    failure: BaseException | None = None
    if sockets is None:
        sockets = create_sockets(config)
    manager = ConnectionManager(config, asgi_app, state, AccessLogger(config))
    runtime = AsyncioRuntime(loop)
    tasks = runtime.tasks
    ssl_context = create_ssl_context(config) if sockets.secure else None
    servers: list[Listener] = []
    quic_listeners: list[QUICListener] = []
    try:
        for secure, group in ((True, sockets.secure), (False, sockets.insecure)):
            for sock in group:
                servers.append(
                    Listener(
                        sock,
                        _tcp_factory(manager, secure, runtime),
                        ssl_context if secure else None,
                        config.ssl_handshake_timeout,
                        config.backlog,
                        tasks,
                        manager,
                    )
                )
        redirect = redirect_app(https_port(sockets))
        for sock in sockets.redirect:  # cleartext listeners whose every answer is a 308
            factory = _redirect_factory(manager, runtime, redirect)
            timeout = config.ssl_handshake_timeout
            servers.append(Listener(sock, factory, None, timeout, config.backlog, tasks, manager))
        announce_tcp(sockets)
        announce_redirects(sockets)
        quic_listeners = await _start_quic(loop, manager, sockets, runtime)

        ticker = Ticker(runtime, manager)
        if on_ready is not None:
            on_ready()
        stop = asyncio.Event()
        arm_request_limit(manager, request_limit, on_retire, stop.set)
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if shutdown_trigger is None:
            waiters.append(asyncio.ensure_future(_wait_for_signal(loop)))
        else:
            waiters.append(asyncio.ensure_future(shutdown_trigger()))
        waiters.extend(server.failed for server in servers)
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
        failure = _listener_failure(servers)
        shutting_down(config)
        for server in servers:
            server.close()
        manager.shutdown()  # QUIC connections too: GOAWAY, then close when answered
        # A connection accepted just before the listeners closed gets its connection_made
        # a loop turn later: give it that turn, or it would be cut without an answer.
        await asyncio.sleep(0.1)
        timeout = config.graceful_timeout - 0.1
        await drain(manager, lambda: len(tasks), timeout, loop.time, asyncio.sleep)
        ticker.stop()
    finally:
        for server in servers:
            server.close()
        manager.close_all()
        for listener in quic_listeners:
            listener.close()
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.wait(list(tasks), timeout=1)
        if own_sockets:
            sockets.close()
    await lifespan.shutdown()
    if failure is not None:
        raise failure  # as on trio: the worker ends, and the supervisor starts a new one


def _listener_failure(servers: list[Listener]) -> BaseException | None:
    """The first broken listener's error (a graceful stop follows, then serve() raises)."""
    for server in servers:
        if server.failed.done() and not server.failed.cancelled():
            exc = server.failed.exception()
            if exc is not None:
                log.error("a listener failed (%s): this worker stops", exc)
                return exc
    return None


async def _start_quic(
    loop: asyncio.AbstractEventLoop,
    manager: ConnectionManager,
    sockets: Sockets,
    runtime: AsyncioRuntime,
) -> list[QUICListener]:
    setup = quic_setup(manager.config, sockets)
    if setup is None:
        return []
    listeners = []
    for sock in sockets.quic:
        listener = QUICListener(manager, sock, setup, runtime)
        await loop.create_datagram_endpoint(_factory(listener), sock=sock)
        listeners.append(listener)
    announce(manager, sockets)
    return listeners


def _factory(listener: QUICListener) -> Callable[[], QUICListener]:
    return lambda: listener


def _tcp_factory(
    manager: ConnectionManager, secure: bool, runtime: AsyncioRuntime
) -> Callable[[], TCPProtocol]:
    return lambda: TCPProtocol(manager, secure, runtime)


def _redirect_factory(
    manager: ConnectionManager, runtime: AsyncioRuntime, app: Any
) -> Callable[[], TCPProtocol]:
    def factory() -> TCPProtocol:
        protocol = TCPProtocol(manager, False, runtime)
        protocol.app = app
        return protocol

    return factory


async def _wait_for_signal(loop: asyncio.AbstractEventLoop) -> None:
    stop = asyncio.Event()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread: the caller stops us some other way
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
