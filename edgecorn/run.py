"""run(config): the process model.

`workers: 0` serves in this process. Otherwise a supervisor binds the TCP
sockets once, forks the workers (each loads the app itself, so a restart picks
up new code), keeps their number, and restarts them without dropping requests:

- SIGTERM / SIGINT: graceful stop (a second SIGINT: stop at once);
- SIGHUP: rolling restart with the configuration read again: each new worker
  starts and reports ready before the one it replaces is told to drain;
- SIGTTIN / SIGTTOU: one worker more / less;
- a worker that dies is replaced (with back-off when it keeps dying young);
  `max_requests` (+ jitter) and `max_worker_rss` retire workers gracefully.

Each worker has its own UDP socket per QUIC address, all in one SO_REUSEPORT
group; `reuseport.py` steers every datagram to the worker that owns its
connection.
"""

from __future__ import annotations

import asyncio
import grp
import importlib
import logging
import os
import pwd
import random
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from . import metrics, reuseport
from .asgi.lifespan import LifespanFailure
from .asgi.loader import AppLoadError, load_app
from .certificates import check_files
from .config import Config
from .logging import configure_logging
from .quic.lb import worker_offset
from .sockets import Sockets, create_sockets, parse_host_port, quic_binds
from .tls import TLSFileError

log = logging.getLogger("edgecorn.error")

# The app could not start (import, factory or lifespan failure): the exit status of a worker
# and of the whole server, with or without a supervisor (as Gunicorn's and Uvicorn's 3).
STARTUP_FAILED = 3
# A worker that dies younger than this counts as failing at start: back off.
YOUNG = 5.0
MAX_BACKOFF = 30.0


def run(config: Config, reload_config: Callable[[], Config] | None = None) -> int:
    try:
        configure_logging(config)
    except (OSError, ValueError, TypeError, KeyError) as exc:  # a broken log config file
        print(f"edgecorn: error: logging: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if config.umask is not None:
        os.umask(config.umask)  # before binding: unix sockets and files get it
    try:
        _ids(config)
    except ValueError as exc:
        print(f"edgecorn: error: {exc}", file=sys.stderr)
        return 2
    if config.application_path is None and not config.routes and not config.ssl_enabled:
        _use_dev_certs(config)
    if config.ssl_enabled:
        try:  # a bad certificate or key is one line now, not a worker crash later
            check_files(config)
        except TLSFileError as exc:
            where = config.origin(exc.key)
            print(
                f"edgecorn: error: {where + ': ' if where else ''}{exc.key}: {exc}", file=sys.stderr
            )
            return 1
    if config.quic_ticket_key_file is not None and _ticket_keys_unusable(config):
        return 1
    if config.metrics or config.statsd_host:  # before any fork: the workers inherit them
        from . import metrics

        metrics.start(config)
    if config.workers == 0 and not config.reload:  # reloading needs a supervisor
        return _run_here(config)
    return Supervisor(config, reload_config).run()


def _ticket_keys_unusable(config: Config) -> bool:
    """A bad ticket key file is one line now, not a worker crash later; and say once that
    it cannot cover TLS over TCP (Python's ssl has no way to set OpenSSL's ticket keys)."""
    from .quic.tickets import TicketKeyError, read_key_file

    try:
        read_key_file(str(config.quic_ticket_key_file))
    except TicketKeyError as exc:
        where = config.origin("quic_ticket_key_file")
        print(
            f"edgecorn: error: {where + ': ' if where else ''}quic_ticket_key_file: {exc}",
            file=sys.stderr,
        )
        return True
    if config.ssl_enabled:
        log.warning(
            "quic_ticket_key_file shares QUIC session tickets only: TLS over TCP resumes "
            "only on the worker that issued the ticket (Python's ssl cannot set ticket keys)"
        )
    return False


def _use_dev_certs(config: Config) -> None:
    from .certs import ensure_dev_certs, trust_hint

    certfile, keyfile, cafile = ensure_dev_certs("certs")
    config.certfile, config.keyfile = certfile, keyfile
    log.info("No certificate configured: serving the demo with %s (CA: %s)", certfile, cafile)
    log.info("%s", trust_hint(cafile))
    if all(_loopback(bind) for bind in config.bind + config.insecure_bind):
        log.info(
            "The demo listens on this machine only; for every interface: "
            "-b 0.0.0.0:8000 -b [::]:8000"
        )


def _loopback(bind: str) -> bool:
    host = bind.rpartition(":")[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _listen_error(config: Config, exc: OSError) -> int:
    binds = config.bind + config.insecure_bind + config.quic_bind
    print(f"edgecorn: error: cannot listen on {', '.join(binds)}: {exc}", file=sys.stderr)
    return 1


def _run_here(config: Config) -> int:
    try:
        sockets = create_sockets(config)
    except OSError as exc:
        return _listen_error(config, exc)
    _write_pid(config)
    try:
        _own_unix_sockets(config, sockets)
        _drop_privileges(config)  # bound (maybe to port 443 as root); serve as `user`
        app = _load(config)
        if app is None:
            return STARTUP_FAILED
        return _serve(app, config, sockets)
    finally:
        sockets.close()
        _remove_pid(config)


def _ids(config: Config) -> tuple[int | None, int | None]:
    """(uid, gid) for `user` / `group` (names or numbers); a named user brings its group."""
    uid = gid = None
    if config.user is not None:
        if isinstance(config.user, int):
            uid = config.user
        else:
            try:
                entry = pwd.getpwnam(config.user)
            except KeyError:
                raise ValueError(f"user: no such user {config.user!r}") from None
            uid, gid = entry.pw_uid, entry.pw_gid
    if config.group is not None:
        if isinstance(config.group, int):
            gid = config.group
        else:
            try:
                gid = grp.getgrnam(config.group).gr_gid
            except KeyError:
                raise ValueError(f"group: no such group {config.group!r}") from None
    return uid, gid


def _own_unix_sockets(config: Config, sockets: Sockets) -> None:
    """As Hypercorn: unix sockets belong to `user`/`group`, with the umask's permissions."""
    uid, gid = _ids(config)
    for sock in sockets.secure + sockets.insecure:
        if sock.family != socket.AF_UNIX or not isinstance(sock.getsockname(), str):
            continue
        path = sock.getsockname()
        if config.umask is not None:
            os.chmod(path, 0o666 & ~config.umask)
        if uid is not None or gid is not None:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)


_SERVING_MODULES = (
    "edgecorn.asyncio",
    "edgecorn.trio",
    "trio",
    "uvloop",
    "edgecorn.asgi.wsgi",
    "edgecorn.edge.router",
    "edgecorn.edge.static",
    "edgecorn.edge.proxy",
    "edgecorn.protocol.h1",
    "edgecorn.protocol.h2",
    "edgecorn.quic.endpoint",
    "h11",
    "httptools",
    "h2.connection",
    "jh2.connection",
    "wsproto",
    "aioquic.h3.connection",
    "aioquic.quic.connection",
    "aioquic.tls",
    "cryptography.hazmat.backends.openssl",
    "qh3",
    "encodings.idna",
    "email.utils",
    "mimetypes",
)


def _drop_privileges(config: Config) -> None:
    """After binding: become `group` then `user` (the group first, while we still may)."""
    uid, gid = _ids(config)
    if uid is None and gid is None:
        return
    # What serving imports lazily is imported now: `user` may not be able to read the
    # Python installation (a pyenv under /root); the app itself is imported as `user`.
    for name in _SERVING_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # an optional engine that is not installed
    if config.ssl_enabled:  # keys are often root's alone: load them (TCP and QUIC) now
        from .certificates import store_for

        store_for(config)
    if gid is not None and gid != os.getegid():
        if os.geteuid() == 0:
            os.setgroups([gid])
        os.setgid(gid)
    if uid is not None and uid != os.geteuid():
        os.setuid(uid)


def _load(config: Config) -> Any:
    """The app, or None after one line saying why it cannot be loaded."""
    try:
        return load_app(config)
    except AppLoadError as exc:
        print(f"edgecorn: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return None


def _serve(
    app: Any,
    config: Config,
    sockets: Sockets,
    on_ready: Callable[[], None] | None = None,
    request_limit: int | None = None,
    on_retire: Callable[[], None] | None = None,
) -> int:
    """Serve until stopped, on the configured event loop; returns the exit status."""
    from .asyncio import serve
    from .protocol.engines import resolve_h2, resolve_worker_class

    loop = resolve_worker_class(config.worker_class)
    # One line saying what `auto` picked, so a benchmark or a bug report names it.
    log.info(
        "Worker %d: %s event loop, HTTP/2 engine %s",
        os.getpid(),
        loop,
        resolve_h2(config.http2_engine),
    )
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        if loop == "trio":
            import trio

            from . import trio as trio_backend

            trio.run(
                partial(
                    trio_backend.serve,
                    app,
                    config,
                    sockets=sockets,
                    on_ready=on_ready,
                    request_limit=request_limit,
                    on_retire=on_retire,
                )
            )
        else:
            asyncio.run(
                serve(
                    app,
                    config,
                    sockets=sockets,
                    on_ready=on_ready,
                    request_limit=request_limit,
                    on_retire=on_retire,
                ),
                debug=config.debug,
            )
    except LifespanFailure as exc:
        print(f"edgecorn: error: application startup failed: {exc}", file=sys.stderr)
        return STARTUP_FAILED
    except KeyboardInterrupt:
        pass
    return 0


def _write_pid(config: Config) -> None:
    if config.pid_path:
        with open(config.pid_path, "w") as file:
            file.write(f"{os.getpid()}\n")


def _remove_pid(config: Config) -> None:
    if config.pid_path:
        try:
            os.remove(config.pid_path)
        except OSError:
            pass


@dataclass
class Worker:
    index: int  # its socket index in every QUIC group (and its CID tag)
    pid: int
    ready_fd: int
    started: float
    replaces: Worker | None = None  # drain this one once we are ready
    ready: bool = False
    retiring: bool = False  # told to drain (or draining itself): takes no new connections
    replacing: bool = False  # a replacement for it is starting


class Supervisor:
    def __init__(self, config: Config, reload_config: Callable[[], Config] | None) -> None:
        self.config = config
        self.reload_config = reload_config
        self.target = max(1, config.workers)
        self.workers: dict[int, Worker] = {}  # pid -> worker
        self.quic_groups: list[list[Any]] = []  # per QUIC address, sockets by index
        self.quic_addresses: list[tuple[str, int]] = []
        self.steering = True
        self.stopping = False
        self.stop_deadline = 0.0
        self.signals: list[int] = []
        self.status = 0
        self.backoff = 0.0
        self.respawn_at = 0.0
        self.started_once = False

    # --- start and stop ---------------------------------------------------------

    def run(self) -> int:
        config = self.config
        try:
            self.sockets = create_sockets(config, quic=False)
            for bind in quic_binds(config, self.sockets.secure):
                self.quic_addresses.append(parse_host_port(bind))
                self.quic_groups.append([])
            self._quic_sockets(0)
            _own_unix_sockets(config, self.sockets)
        except OSError as exc:
            return _listen_error(config, exc)
        try:
            reloader = self._start_reloader()
        except (ValueError, OSError) as exc:  # ConfigError is a ValueError
            print(f"edgecorn: error: {exc}", file=sys.stderr)
            self.sockets.close()
            return 2
        _write_pid(config)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, self._on_signal)
        try:
            # One worker first: a broken app or lifespan is reported once, then the rest.
            self._spawn()
            while self.workers or not self.stopping:
                self._loop_once(wake_r)
        finally:
            if reloader is not None:
                reloader.set()
            signal.set_wakeup_fd(old_wakeup)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            self.sockets.close()
            for group in self.quic_groups:
                for sock in group:
                    sock.close()
            os.close(wake_r)
            os.close(wake_w)
            _remove_pid(config)
        return self.status

    def _start_reloader(self) -> Any:
        if not self.config.reload:
            return None
        import threading

        from .reload import reload_loop

        stop = threading.Event()
        reload_loop(self.config, lambda changed: os.kill(os.getpid(), signal.SIGHUP), stop)
        return stop

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def _loop_once(self, wake_r: int) -> None:
        fds = [wake_r] + [w.ready_fd for w in self.workers.values() if w.ready_fd >= 0]
        try:
            readable, _, _ = select.select(fds, [], [], 0.5)
        except InterruptedError:
            readable = []
        if wake_r in readable:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        for worker in list(self.workers.values()):
            if worker.ready_fd in readable:
                self._worker_message(worker)
        while self.signals:
            self._handle_signal(self.signals.pop(0))
        self._reap()
        now = time.monotonic()
        if self.stopping:
            if now >= self.stop_deadline:
                self._kill_all(signal.SIGKILL)
            return
        self._check_rss()
        if self.started_once and now >= self.respawn_at:
            while self._accepting() < self.target:
                self._spawn()

    def _handle_signal(self, signum: int) -> None:
        if signum in (signal.SIGINT, signal.SIGTERM):
            if self.stopping and signum == signal.SIGINT:
                log.info("Second interrupt: stopping now")
                self._kill_all(signal.SIGKILL)
                return
            self._stop()
        elif signum == signal.SIGHUP and not self.stopping:
            self._rolling_restart()
        elif signum == signal.SIGTTIN and not self.stopping:
            self.target += 1
            log.info("SIGTTIN: %d workers", self.target)
        elif signum == signal.SIGTTOU and not self.stopping and self.target > 1:
            self.target -= 1
            log.info("SIGTTOU: %d workers", self.target)
            newest = max(
                (w for w in self.workers.values() if not w.retiring), key=lambda w: w.started
            )
            self._retire(newest)

    def _stop(self) -> None:
        if self.stopping:
            return
        log.info("Stopping: workers finish open requests (up to %ss)", self.config.graceful_timeout)
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.config.graceful_timeout + 5.0
        # No worker will be started again: our copies of the TCP listeners would only keep
        # them open, so that connects made during the drain wait and are reset at exit.
        self.sockets.close()
        self._kill_all(signal.SIGTERM)

    def _kill_all(self, sig: int) -> None:
        for pid in list(self.workers):
            _kill(pid, sig)

    # --- workers ------------------------------------------------------------------

    def _accepting(self) -> int:
        """Workers that count towards the target (a replacement stands for its old one)."""
        return sum(1 for w in self.workers.values() if not (w.retiring or w.replaces))

    def _free_index(self) -> int:
        used = {w.index for w in self.workers.values()}
        index = 0
        while index in used:
            index += 1
        return index

    def _quic_sockets(self, index: int) -> list[Any]:
        """This index's socket in every QUIC group, creating the group up to it."""
        for (host, port), group in zip(self.quic_addresses, self.quic_groups, strict=True):
            while len(group) <= index:
                if group:  # the group shares the port the first socket got
                    port = group[0].getsockname()[1]
                group.append(reuseport.reuseport_udp_socket(host, port))
        return [group[index] for group in self.quic_groups]

    def _steer(self) -> None:
        if not self.quic_groups or not self.steering:
            return
        live = sorted(w.index for w in self.workers.values())
        accepting = sorted(w.index for w in self.workers.values() if not w.retiring) or live
        if not live:
            return
        offset = worker_offset(self.config.quic_lb_server_id)  # QUIC-LB: after the server ID
        for group in self.quic_groups:
            if not reuseport.attach(group[0], live, accepting, offset):
                self.steering = False
                return

    def _spawn(self, replaces: Worker | None = None) -> Worker:
        config = self.config
        index = self._free_index()
        quic = self._quic_sockets(index)
        ready_r, ready_w = os.pipe()
        limit = None
        if config.max_requests:
            limit = config.max_requests + random.randint(0, max(0, config.max_requests_jitter))
        if replaces is not None:
            replaces.replacing = True
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(ready_r)
            code = 1
            try:
                code = _worker_main(config, self.sockets, quic, index, ready_w, limit)
            except Exception:  # os._exit() below would swallow the traceback
                log.exception("worker %d failed", index)
            finally:
                os._exit(code)
        os.close(ready_w)
        worker = Worker(index, pid, ready_r, time.monotonic(), replaces)
        self.workers[pid] = worker
        self._steer()
        return worker

    def _worker_message(self, worker: Worker) -> None:
        try:
            data = os.read(worker.ready_fd, 64)
        except OSError:
            data = b""
        if not data:  # the worker closed its end: it is exiting
            os.close(worker.ready_fd)
            worker.ready_fd = -1
            return
        if b"R" in data and not worker.ready:
            worker.ready = True
            self.started_once = True
            if worker.replaces is not None:
                self._retire(worker.replaces)
                worker.replaces = None
        if b"L" in data and not worker.retiring:  # max_requests reached: it drains itself
            worker.retiring = True
            self._steer()

    def _retire(self, worker: Worker) -> None:
        if worker.pid in self.workers and not worker.retiring:
            worker.retiring = True
            self._steer()
            _kill(worker.pid, signal.SIGTERM)

    def _rolling_restart(self) -> None:
        if self.reload_config is not None:
            try:
                new = self.reload_config()
            except Exception as exc:  # a broken config must not take the server down
                log.error("SIGHUP: configuration not reloaded: %s", exc)
            else:
                if (new.bind, new.insecure_bind, new.quic_bind) != (
                    self.config.bind,
                    self.config.insecure_bind,
                    self.config.quic_bind,
                ):
                    log.warning("SIGHUP: listeners changed; they apply after a full restart")
                if new.application_path is None and not new.routes and not new.ssl_enabled:
                    new.certfile, new.keyfile = self.config.certfile, self.config.keyfile
                self.config = new
                self.target = max(1, new.workers)
        log.info("SIGHUP: rolling restart of %d workers", len(self.workers))
        for worker in [w for w in self.workers.values() if not (w.retiring or w.replacing)]:
            self._spawn(replaces=worker)

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            if self.config.metrics:
                metrics.worker_exited(pid)  # its open-connection gauges end with it
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)
            self._steer()
            self._worker_exited(worker, os.waitstatus_to_exitcode(wait_status))

    def _worker_exited(self, worker: Worker, code: int) -> None:
        if self.stopping or worker.retiring:
            return
        if not (worker.ready or self.started_once):
            # It never served: the next one would fail the same way. Stop, do not loop.
            if code != STARTUP_FAILED:  # a STARTUP_FAILED worker has printed why
                print(
                    f"edgecorn: error: worker {worker.index} exited with {code} before it "
                    "served; not restarting",
                    file=sys.stderr,
                )
            self.status = STARTUP_FAILED
            self.stopping = True  # quietly: there is nothing to drain
            self.stop_deadline = time.monotonic() + self.config.graceful_timeout + 5.0
            self._kill_all(signal.SIGTERM)
            return
        age = time.monotonic() - worker.started
        if age < YOUNG:
            self.backoff = min(MAX_BACKOFF, self.backoff * 2 or 1.0)
            self.respawn_at = time.monotonic() + self.backoff
            self.started_once = True
            log.error(
                "worker %d (pid %d) exited with %d after %.1fs; restarting in %.0fs",
                worker.index,
                worker.pid,
                code,
                age,
                self.backoff,
            )
        else:
            self.backoff = 0.0  # it lived: the next crash starts the back-off afresh
            log.warning(
                "worker %d (pid %d) exited with %d; restarting", worker.index, worker.pid, code
            )
        if self.config.metrics:
            from . import metrics

            metrics.worker_restarted()
        if worker.replaces is not None:
            worker.replaces.replacing = False  # it never came up: the old one stays

    def _check_rss(self) -> None:
        limit = self.config.max_worker_rss
        if not limit:
            return
        for worker in list(self.workers.values()):
            if worker.retiring or worker.replacing or not worker.ready:
                continue
            rss = _rss_mb(worker.pid)
            if rss is not None and rss > limit:
                log.warning(
                    "worker %d uses %d MB (max_worker_rss %d): replacing it",
                    worker.index,
                    rss,
                    limit,
                )
                self._spawn(replaces=worker)  # its readiness drains this one


def _worker_main(
    config: Config,
    tcp: Sockets,
    quic: list[Any],
    index: int,
    ready_w: int,
    limit: int | None,
) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)  # for the supervisor (a terminal signals them all)
    signal.set_wakeup_fd(-1)
    _drop_privileges(config)  # the supervisor keeps root to bind new workers' QUIC sockets
    app = _load(config)
    if app is None:
        return STARTUP_FAILED
    tag = index if len(quic) else None
    # one Retry secret for every worker: the supervisor's (made with its sockets)
    sockets = Sockets(
        tcp.secure,
        tcp.insecure,
        quic,
        quic_tag=tag,
        quic_secret=tcp.quic_secret,
        redirect=tcp.redirect,
    )

    def tell(message: bytes) -> None:
        try:
            os.write(ready_w, message)
        except OSError:
            pass

    return _serve(app, config, sockets, lambda: tell(b"R"), limit, lambda: tell(b"L"))


def _rss_mb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
