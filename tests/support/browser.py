"""A small driver for headless Chromium in the end-to-end tests.

Two ways to use it:
- `Chromium(...).dump_dom(url)`: `--dump-dom` runs the page (with a virtual-time budget)
  and returns the DOM Chromium printed.
- `with Chromium(...).devtools() as page:`: starts Chromium with
  `--remote-debugging-port=0`, reads the port from `DevToolsActivePort` in the profile dir,
  opens a page target and drives it over the DevTools protocol (`page.navigate(url)`,
  `page.evaluate(expr)`, `page.poll(expr, timeout)`) with the `websockets` sync client.

Chromium always runs in a new session (its own process group) with a fresh
`--user-data-dir`; every process of that group, and every descendant found in /proc,
is killed when the run ends, whatever happened.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.procs import tree_pids

BASE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


def _group_members(pgid: int) -> list[int]:
    """PIDs whose process group is `pgid` (Chromium helpers that outlived their parent)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


class DevToolsError(RuntimeError):
    pass


class Page:
    """One page target, attached with a flattened session on the browser WebSocket."""

    def __init__(self, ws: Any, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.ids = itertools.count(1000)
        self.events: list[dict[str, Any]] = []

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        return _call(
            self.ws, method, params, self.ids, self.events, timeout, session_id=self.session_id
        )

    def navigate(self, url: str, timeout: float = 15.0) -> None:
        """Navigate and wait for the load event (bounded by `timeout`)."""
        self.send("Page.enable")
        self.events.clear()
        result = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise DevToolsError(f"navigation to {url} failed: {result['errorText']}")
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DevToolsError(f"no load event for {url} within {timeout}s")
            _receive(self.ws, self.events, remaining)

    def evaluate(self, expression: str, timeout: float = 10.0) -> Any:
        """The JSON value of `expression` in the page (promises awaited)."""
        result = self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "returnByValue": True,
                "awaitPromise": True,
            },
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression!r} raised {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def poll(self, expression: str, timeout: float, interval: float = 0.2) -> Any:
        """Evaluate until the value is truthy; the last value when `timeout` runs out."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(interval)


def _receive(ws: Any, events: list[dict[str, Any]], timeout: float) -> dict[str, Any] | None:
    try:
        raw = ws.recv(timeout=max(timeout, 0.01))
    except TimeoutError:
        return None
    message: dict[str, Any] = json.loads(raw)
    if "id" not in message:
        events.append(message)
    return message


def _call(
    ws: Any,
    method: str,
    params: dict[str, Any] | None,
    ids: Iterator[int],
    events: list[dict[str, Any]],
    timeout: float,
    session_id: str | None = None,
) -> dict[str, Any]:
    call_id = next(ids)
    message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
    if session_id:
        message["sessionId"] = session_id
    ws.send(json.dumps(message))
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DevToolsError(f"no answer to {method} within {timeout}s")
        reply = _receive(ws, events, remaining)
        if reply is not None and reply.get("id") == call_id:
            if "error" in reply:
                raise DevToolsError(f"{method} failed: {reply['error']}")
            result: dict[str, Any] = reply.get("result", {})
            return result


class Chromium:
    """Headless Chromium with the given extra flags and a fresh profile under `workdir`."""

    def __init__(
        self, exe: str, workdir: Path, flags: Sequence[str] = (), net_log: bool = False
    ) -> None:
        self.exe = exe
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.profile = Path(tempfile.mkdtemp(prefix="profile-", dir=self.workdir))
        self.flags = list(flags)
        self.stderr_path = self.profile.parent / f"{self.profile.name}.stderr.log"
        self.net_log_path = self.profile.parent / f"{self.profile.name}.netlog.json"
        if net_log:
            self.flags.append(f"--log-net-log={self.net_log_path}")
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, *extra: str) -> list[str]:
        return [self.exe, *BASE_FLAGS, f"--user-data-dir={self.profile}", *self.flags, *extra]

    def _spawn(self, args: list[str], stdout: Any) -> subprocess.Popen[bytes]:
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=err,
                start_new_session=True,  # its own process group: killed as one at the end
                env={**os.environ, "HOME": str(self.profile)},
            )
        return self.proc

    def stderr(self) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.splitlines() if "dbus" not in line]
        return "\n".join(lines[-40:])

    def net_log(self) -> dict[str, Any] | None:
        """The parsed `--log-net-log` file (complete only after a clean exit)."""
        try:
            text = self.net_log_path.read_text(errors="replace")
        except OSError:
            return None
        try:
            parsed: dict[str, Any] = json.loads(text)
            return parsed
        except json.JSONDecodeError:
            # Killed before the file was closed: repair the truncated events list.
            try:
                repaired: dict[str, Any] = json.loads(text.rstrip().rstrip(",") + "]}")
                return repaired
            except json.JSONDecodeError:
                return None

    def kill(self) -> None:
        """SIGTERM, then SIGKILL, the whole process group and every descendant."""
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the leader's pid is the group id
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = set(tree_pids(proc.pid)[1:]) | set(_group_members(pgid))
            if proc.poll() is None:
                pids.add(proc.pid)
            if not pids:
                break
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + (3.0 if sig == signal.SIGTERM else 5.0)
            while time.monotonic() < deadline:
                if proc.poll() is not None and not _group_members(pgid):
                    break
                time.sleep(0.05)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def dump_dom(self, url: str, budget_ms: int = 8000, timeout: float = 30.0) -> str:
        """Run `--dump-dom --virtual-time-budget=budget_ms URL`; return what it printed."""
        out_path = self.profile.parent / f"{self.profile.name}.dom.html"
        with open(out_path, "wb") as out:
            proc = self._spawn(
                self.command("--dump-dom", f"--virtual-time-budget={budget_ms}", url), out
            )
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            finally:
                self.kill()
        return out_path.read_text(errors="replace")

    @contextmanager
    def devtools(self, start_timeout: float = 15.0) -> Iterator[Page]:
        """Chromium with a DevTools endpoint; yields an attached blank page."""
        from websockets.sync.client import connect

        self._spawn(self.command("--remote-debugging-port=0", "about:blank"), subprocess.DEVNULL)
        try:
            port_file = self.profile / "DevToolsActivePort"
            deadline = time.monotonic() + start_timeout
            lines: list[str] = []
            while len(lines) < 2:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise DevToolsError(f"chromium exited early:\n{self.stderr()}")
                if time.monotonic() > deadline:
                    raise DevToolsError(f"no DevToolsActivePort after {start_timeout}s")
                try:
                    lines = port_file.read_text().split()
                except OSError:
                    lines = []
                time.sleep(0.05)
            url = f"ws://127.0.0.1:{int(lines[0])}{lines[1]}"
            options: dict[str, Any] = {"max_size": None, "open_timeout": 10}
            if "proxy" in inspect.signature(connect).parameters:
                options["proxy"] = None  # websockets >= 15 would honour *_proxy variables
            with connect(url, **options) as ws:
                ids = itertools.count(1)
                events: list[dict[str, Any]] = []
                target = _call(
                    ws, "Target.createTarget", {"url": "about:blank"}, ids, events, 10.0
                )["targetId"]
                session = _call(
                    ws,
                    "Target.attachToTarget",
                    {"targetId": target, "flatten": True},
                    ids,
                    events,
                    10.0,
                )["sessionId"]
                yield Page(ws, session)
                try:
                    _call(ws, "Browser.close", None, ids, events, 3.0)
                except Exception:  # closing is best effort; kill() follows
                    pass
        finally:
            self.kill()
