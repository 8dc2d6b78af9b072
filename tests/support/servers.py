"""edgecorn subprocesses for the end-to-end tests (`python -m edgecorn ...` from the repo root),
started by a `ServerFactory` (the `server_factory` fixture) that stops them all at teardown."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import procs
from tests.support.net import free_port
from tests.support.procs import Proc, spawn, wait_tcp

APP = "tests.apps.e2e:app"
READY_TIMEOUT = 15.0


@dataclass
class Server(Proc):
    """An edgecorn process: its TLS `--bind` is `port`, its first `--insecure-bind` is
    `insecure_port`."""

    insecure_port: int | None = None
    cafile: str | None = None
    extra_ports: list[int] = field(default_factory=list)

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.insecure_port}"


def _wait_serving(server: Server, deadline: float) -> None:
    """Sockets are bound before the app starts (a connect can succeed early): wait for
    the "Running on" line, or for the server to die (then fail with its log)."""
    while "Running on" not in server.stderr():
        if not server.alive():
            raise RuntimeError(f"server exited during start-up\n{server.describe()}")
        if time.monotonic() > deadline:
            return  # logging may be configured away: the port answers, go on
        time.sleep(0.05)


class ServerFactory:
    """Starts edgecorn subprocesses and stops every one of them at teardown."""

    def __init__(
        self,
        certs: tuple[str, str, str],
        tmp: Path,
        worker_class: str = "asyncio",
        http2_engine: str = "auto",
        quic_engine: str = "aioquic",
    ) -> None:
        self.certfile, self.keyfile, self.cafile = certs
        self.tmp = tmp
        self.worker_class = worker_class
        self.http2_engine = http2_engine
        self.quic_engine = quic_engine
        self.servers: list[Server] = []
        self.count = 0

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "edgecorn", *args]

    def spawn(self, args: Sequence[str], pass_fds: Sequence[int] = ()) -> Server:
        """Start `python -m edgecorn ARGS` with logs in files; no readiness wait."""
        self.count += 1
        proc = spawn(
            "server", self.command(*args), self.tmp / f"server{self.count}", pass_fds=pass_fds
        )
        server = Server(
            proc.name, proc.cmd, proc.proc, proc.log_dir, stop_timeout=5.0, cafile=self.cafile
        )
        self.servers.append(server)
        return server

    def start(
        self,
        *extra: str,
        app: str = APP,
        parser: str | None = None,
        tls: bool = True,
        insecure: bool = True,
        config: str | None = None,
        access_log: bool = True,
        wait_ports: Sequence[int] = (),
        wait_unix: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
    ) -> Server:
        """Start a server: a --bind (TLS unless `tls=False`) and, unless `insecure=False`,
        one cleartext --insecure-bind.

        `config` is YAML text written to a file and passed with `-c`.
        """
        args: list[str] = [
            app,
            "--workers",
            "0",
            "-k",
            self.worker_class,
            "--http2-engine",
            self.http2_engine,
            "--quic-engine",
            self.quic_engine,
        ]
        insecure_port = None
        # Always give --bind: without it the default 127.0.0.1:8000 would be bound too.
        port = free_port()
        args += ["--bind", f"127.0.0.1:{port}"]
        if tls:
            args += ["--certfile", self.certfile, "--keyfile", self.keyfile]
        if insecure:
            insecure_port = free_port()
            args += ["--insecure-bind", f"127.0.0.1:{insecure_port}"]
        if parser:
            args += ["--http1-parser", parser]
        if access_log:
            args += ["--access-logfile", "-"]
        if config is not None:
            self.count += 1
            path = self.tmp / f"config{self.count}.yaml"
            path.write_text(config)
            args += ["-c", str(path)]
        args += list(extra)
        server = self.spawn(args, pass_fds=pass_fds)
        server.port, server.insecure_port = port, insecure_port
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            for p in [p for p in (port, insecure_port) if p] + list(wait_ports):
                wait_tcp(server, p, max(0.0, deadline - time.monotonic()))
            for path_ in wait_unix:
                procs.wait_unix(server, path_, max(0.0, deadline - time.monotonic()))
            _wait_serving(server, deadline)
        except RuntimeError as exc:
            server.stop()
            print(server.describe(), file=sys.stderr)
            pytest.fail(str(exc), pytrace=False)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            rc = server.stop()
            if rc not in (0, None, -signal.SIGTERM) and "Traceback" in server.stderr():
                print(f"\n[e2e] {server.describe()}", file=sys.stderr)
        self.servers.clear()
