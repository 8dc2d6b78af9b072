"""Processes this test run started: spawn with logs in files, wait until they listen, walk
their /proc tree (workers, RSS), stop them by their own pid."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.wait import wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
READY_TIMEOUT = 20.0


# --------------------------------------------------------------------------- /proc


def children(pid: int) -> set[int]:
    """The direct children of `pid` (its workers, for a supervisor)."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found.update(int(p) for p in fh.read().split())
        except OSError:
            pass
    return found


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants (bounded: a fork bomb cannot hang a test)."""
    pids: list[int] = []
    todo = [pid]
    while todo and len(pids) < 1000:
        current = todo.pop()
        pids.append(current)
        todo.extend(children(current))
    return pids


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def rss_kib(pid: int) -> int:
    """VmRSS of a process and all its descendants (a supervisor's workers), in KiB."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def ready_pids(server: Any) -> set[int]:
    """PIDs that logged their QUIC listener (the last listener a worker starts)."""
    return {int(m) for m in re.findall(r"\[(\d+)\] \[INFO\] Running on quic://", server.stderr())}


def wait_workers(server: Any, count: int, timeout: float = 20.0) -> set[int]:
    """Wait until the supervisor has exactly `count` live children, all serving."""
    pids: set[int] = set()

    def settled() -> bool:
        nonlocal pids
        pids = {p for p in children(server.pid) if alive(p)}
        return len(pids) == count and pids <= ready_pids(server)

    if not wait_until(settled, timeout):
        raise AssertionError(
            f"expected {count} serving workers, have {sorted(pids)} "
            f"(ready: {sorted(ready_pids(server))})\n{server.describe()}"
        )
    return pids


# --------------------------------------------------------------------------- spawning


def subprocess_env(paths: Sequence[Path | str] = ()) -> dict[str, str]:
    """This environment with `paths` and the repo root first on PYTHONPATH, output unbuffered."""
    env = dict(os.environ)
    parts = [str(p) for p in paths] + [str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Proc:
    """A process this test run started, with its output in `log_dir/NAME.out` and `.err`."""

    name: str
    cmd: list[str]
    proc: subprocess.Popen[bytes]
    log_dir: Path
    port: int = 0
    stop_timeout: float = 8.0  # SIGTERM, then SIGKILL after this many seconds

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return (self.log_dir / f"{self.name}.out").read_text(errors="replace")

    def stderr(self) -> str:
        return (self.log_dir / f"{self.name}.err").read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def describe(self) -> str:
        return (
            f"{self.name}: {' '.join(self.cmd)} (pid {self.pid}, rc {self.proc.poll()})\n"
            f"--- stderr ---\n{self.stderr()[-8000:]}\n"
            f"--- stdout ---\n{self.stdout()[-2000:]}"
        )

    def wait_stderr(self, needle: str, timeout: float = 5.0) -> bool:
        return wait_until(lambda: needle in self.stderr(), timeout)

    def wait_stdout(self, needle: str, timeout: float = 5.0) -> str:
        """The stdout once it holds `needle`, or at the deadline."""
        wait_until(lambda: needle in self.stdout(), timeout)
        return self.stdout()

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def spawn(
    name: str,
    cmd: Sequence[str],
    log_dir: Path,
    cwd: Path | str = REPO_ROOT,
    paths: Sequence[Path | str] = (),
    pass_fds: Sequence[int] = (),
) -> Proc:
    """Start `cmd` with its output in files under `log_dir`; no readiness wait."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.out", "wb") as out, open(log_dir / f"{name}.err", "wb") as err:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=subprocess_env(paths),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            pass_fds=tuple(pass_fds),
        )
    return Proc(name, list(cmd), proc, log_dir)


def _wait_connect(proc: Proc, what: str, connect: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise RuntimeError(f"exited before listening on {what}\n{proc.describe()}")
        try:
            connect()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"not listening on {what} after {timeout:.0f}s\n{proc.describe()}"
                ) from None
            time.sleep(0.05)


def wait_tcp(proc: Proc, port: int, timeout: float = READY_TIMEOUT) -> None:
    """Wait until 127.0.0.1:`port` accepts; RuntimeError (with the log) if `proc` dies first."""

    def connect() -> None:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()

    _wait_connect(proc, str(port), connect, timeout)


def wait_unix(proc: Proc, path: str, timeout: float = READY_TIMEOUT) -> None:
    """Wait until the Unix socket `path` accepts."""

    def connect() -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(0.5)
            sock.connect(path)

    _wait_connect(proc, path, connect, timeout)
