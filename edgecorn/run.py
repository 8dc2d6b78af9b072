"""run(config): the process model. `workers: 0` serves here; N forks N workers.

Sockets are bound once, before any worker starts, so a port in use is one
clear error and every worker shares the same listeners.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from .asgi.dispatch import AppLoadError, load_app
from .asgi.lifespan import LifespanFailure
from .config import Config
from .logging import configure_logging
from .sockets import Sockets, create_sockets

log = logging.getLogger("edgecorn.error")

# A worker that could not start (lifespan failure) exits with this, so the
# supervisor stops instead of restarting it forever.
STARTUP_FAILED = 3


def run(config: Config) -> int:
    configure_logging(config)
    if config.application_path is None and not config.ssl_enabled:
        _use_dev_certs(config)
    try:
        app = load_app(config)
    except AppLoadError as exc:
        print(f"edgecorn: error: {exc}", file=sys.stderr)
        return 1
    try:
        sockets = create_sockets(config)
    except OSError as exc:
        print(
            f"edgecorn: error: cannot listen on {config.bind + config.insecure_bind}: {exc}",
            file=sys.stderr,
        )
        return 1
    if config.pid_path:
        with open(config.pid_path, "w") as file:
            file.write(f"{os.getpid()}\n")
    try:
        if config.workers == 0:
            return _serve(app, config, sockets)
        return _supervise(app, config, sockets)
    finally:
        sockets.close()
        if config.pid_path:
            try:
                os.remove(config.pid_path)
            except OSError:
                pass


def _use_dev_certs(config: Config) -> None:
    from .certs import ensure_dev_certs, trust_hint

    certfile, keyfile, cafile = ensure_dev_certs("certs")
    config.certfile, config.keyfile = certfile, keyfile
    log.info("No certificate configured: serving the demo with %s (CA: %s)", certfile, cafile)
    log.info("%s", trust_hint(cafile))


def _serve(app: Any, config: Config, sockets: Sockets) -> int:
    from .asyncio import serve

    if config.worker_class == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif config.worker_class == "trio":
        print(
            "edgecorn: error: worker_class 'trio' is not available in this build", file=sys.stderr
        )
        return 2
    try:
        asyncio.run(serve(app, config, sockets=sockets))
    except LifespanFailure as exc:
        print(f"edgecorn: error: application startup failed: {exc}", file=sys.stderr)
        return STARTUP_FAILED
    except KeyboardInterrupt:
        pass
    return 0


def _supervise(app: Any, config: Config, sockets: Sockets) -> int:
    """Fork the workers, forward SIGINT/SIGTERM to them, replace crashed ones."""
    stopping = False
    workers: dict[int, int] = {}  # pid -> index

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 1
            try:
                code = _serve(app, config, sockets)
            finally:
                os._exit(code)
        workers[pid] = index

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping and signum == signal.SIGINT:
            for pid in workers:  # a second CTRL+C: stop at once
                _kill(pid, signal.SIGKILL)
        stopping = True
        for pid in workers:
            _kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for index in range(config.workers):
        start(index)
    status = 0
    while workers:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in workers:
            continue
        index = workers.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if code == STARTUP_FAILED:
            status = STARTUP_FAILED
            stop(signal.SIGTERM, None)
        elif not stopping:
            log.warning("worker %d (pid %d) exited with %d; starting a new one", index, pid, code)
            time.sleep(0.1)
            start(index)
    return status


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
