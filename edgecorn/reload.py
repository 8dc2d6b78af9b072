"""--reload: watch source files and report batches of changes to the supervisor.

The watching is done by `watchfiles` (the Rust `notify` crate: inotify on Linux,
FSEvents on macOS), or by polling with `reload_poll` (Docker bind mounts and
network file systems, where no inotify events arrive; the WATCHFILES_FORCE_POLLING
environment variable turns polling on as well).

What the supervisor does with a batch (a rolling restart of its workers) is up to
it: this module only watches, filters and debounces.

    stop = threading.Event()
    reload_loop(config, on_change, stop)   # watching starts before it returns
    ...
    stop.set()                             # the thread ends within about reload_delay

Globs (`reload_includes`, `reload_excludes`) are matched with fnmatch, one path
component against one pattern component, `**` standing for any number of
components. A pattern matches a file when it matches the file's path, or the path
of any directory the file is in (so `node_modules` or `build/*` exclude everything
under them), relative to the watched directory that holds the file:

- `*.py`, `__pycache__`, `static/*.css`: at any depth;
- `./build`, `./docs/**`: only from the watched directory down;
- `/srv/app/data`: an absolute path.

A file is reported when it matches an include pattern and no exclude pattern; a
pattern given in both lists only includes. So `--reload-include .env` still loses
to the default `.*` exclude (the CLI flags add to the defaults); a config file's
`reload_excludes` replaces them.

Polling compares modification times in whole seconds (notify's PollWatcher): a
second save within the same second as the one before it is not seen.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import platform
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

# RustNotify is the layer under watchfiles.watch(). Using it directly lets
# `changes()` start watching before it returns, so no change made after that is
# lost to a thread that has not started yet, and lets a failed watcher be replaced
# without losing the generator.
from watchfiles._rust_notify import RustNotify

from .config import Config, ConfigError

log = logging.getLogger("edgecorn.error")

MIN_STEP_MS = 50  # the Rust loop sleeps this long between looks: never busy-wait
MAX_GROUP_MS = 1600  # a burst of changes is reported after this long at most
POLL_DELAY_MS = 300  # how often the polling watcher looks at the files
RESTART_DELAY = 1.0  # seconds between attempts to replace a failed watcher


class Glob(NamedTuple):
    """One include or exclude pattern, split into components."""

    parts: tuple[str, ...]
    anchored: bool  # matched from the watched directory (or from / when absolute)
    absolute: bool

    @classmethod
    def parse(cls, pattern: str) -> Glob:
        text = pattern.replace(os.sep, "/")
        absolute = os.path.isabs(pattern) or text.startswith("/")
        anchored = absolute or text.startswith("./")
        parts = tuple(p for p in text.split("/") if p not in ("", "."))
        return cls(parts, anchored, absolute)

    def matches(self, relative: Sequence[str], absolute: Sequence[str]) -> bool:
        """Whether this matches the path, or the path of a directory it is in."""
        parts = absolute if self.absolute else relative
        if not self.parts:
            return False
        starts = range(1) if self.anchored else range(len(parts))
        return any(
            _match(parts[start:end], self.parts)
            for start in starts
            for end in range(start + 1, len(parts) + 1)
        )


def _match(parts: Sequence[str], pattern: Sequence[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(parts[i:], rest) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatch(parts[0], head) and _match(parts[1:], rest)


class Reloader:
    """The reload options of a Config: which files to watch, and how."""

    def __init__(self, config: Config) -> None:
        dirs = [os.path.abspath(d) for d in config.reload_dirs or ["."]]
        for directory in dirs:
            if not os.path.isdir(directory):
                raise ConfigError(f"{directory!r} is not a directory", key="reload_dirs")
        self.dirs: tuple[str, ...] = tuple(dict.fromkeys(dirs))
        self.includes: tuple[str, ...] = tuple(config.reload_includes)
        self.excludes: tuple[str, ...] = tuple(
            p for p in config.reload_excludes if p not in self.includes
        )
        self.poll: bool = config.reload_poll
        self.delay: float = config.reload_delay
        self._includes = [Glob.parse(p) for p in self.includes]
        self._excludes = [Glob.parse(p) for p in self.excludes]
        # Events may name a directory by its real path (macOS reports /private/var
        # for /var): try both spellings, the deepest directory first.
        roots = {*self.dirs, *(os.path.realpath(d) for d in self.dirs)}
        self._roots = sorted(roots, key=len, reverse=True)

    def should_watch(self, path: str) -> bool:
        """Whether a change to `path` (absolute, as watchfiles reports it) counts."""
        relative = self._relative_parts(path)
        if not relative:
            return False
        absolute = [p for p in path.replace(os.sep, "/").split("/") if p]
        return any(g.matches(relative, absolute) for g in self._includes) and not any(
            g.matches(relative, absolute) for g in self._excludes
        )

    def _relative_parts(self, path: str) -> list[str]:
        for root in self._roots:
            prefix = root.rstrip(os.sep) + os.sep
            if path.startswith(prefix):
                return [p for p in path[len(prefix) :].split(os.sep) if p]
            if path == root:
                return []
        return [os.path.basename(path)]  # not under a watched directory: the name only

    def changes(self, stop: threading.Event) -> Iterator[set[str]]:
        """Batches of changed paths (absolute, filtered) until `stop` is set.

        Watching starts when this is called, not at the first next(): changes made
        between the call and the first next() are in the first batch. A batch is
        reported once no file has changed for `reload_delay` seconds (at most
        MAX_GROUP_MS after its first change). It raises what watchfiles raises for
        a directory it cannot watch (OSError: e.g. the inotify watch limit).
        """
        step = max(MIN_STEP_MS, round(self.delay * 1000))
        if self.poll:  # a quiet step must span a poll, or one save could be two batches
            step = max(step, POLL_DELAY_MS + MIN_STEP_MS)
        return self._batches(self._open(), stop, step, max(MAX_GROUP_MS, 4 * step))

    def _open(self) -> RustNotify:
        return RustNotify(
            list(self.dirs),
            False,  # debug
            self.poll or _polling_by_default(),
            POLL_DELAY_MS,
            True,  # recursive
            True,  # ignore_permission_denied: an unreadable directory is not an error
        )

    def _batches(
        self, watcher: RustNotify, stop: threading.Event, step: int, group: int
    ) -> Iterator[set[str]]:
        try:
            while not stop.is_set():
                try:
                    raw = watcher.watch(group, step, 0, stop)
                except RuntimeError as exc:  # WatchfilesRustInternalError, e.g. a file
                    # vanishing while polling: start again with a new watcher.
                    log.warning("Reload: the file watcher failed (%s); restarting it", exc)
                    watcher.close()
                    if stop.wait(RESTART_DELAY):
                        return
                    watcher = self._open()
                    continue
                if raw == "stop":
                    return
                if raw == "signal":  # only when iterated in the main thread
                    raise KeyboardInterrupt
                if isinstance(raw, str):  # "timeout"
                    continue
                paths = {path for _, path in raw if self.should_watch(path)}
                if paths:
                    yield paths
        finally:
            watcher.close()


def _polling_by_default() -> bool:
    """As watchfiles.watch() decides: WATCHFILES_FORCE_POLLING, else on under WSL."""
    value = os.environ.get("WATCHFILES_FORCE_POLLING")
    if value:
        return value.lower() not in ("false", "disable", "disabled")
    uname = platform.uname()
    return uname.system == "Linux" and "microsoft-standard" in uname.release.lower()


def describe(paths: Iterable[str], limit: int = 10) -> str:
    """Changed paths for a log line: relative to the working directory where possible."""
    cwd = os.getcwd().rstrip(os.sep) + os.sep
    names = sorted(p[len(cwd) :] if p.startswith(cwd) else p for p in paths)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def reload_loop(
    config: Config, on_change: Callable[[set[str]], None], stop: threading.Event
) -> threading.Thread:
    """Watch in a daemon thread; call `on_change(paths)` (in that thread) for each batch.

    Raises ConfigError for a `reload_dirs` entry that is not a directory, and
    OSError when watching cannot start; changes made after it returns are seen.
    The thread ends when `stop` is set (within about reload_delay), or when the
    watcher fails for good (logged). An exception from `on_change` is logged and
    watching goes on.
    """
    reloader = Reloader(config)
    batches = reloader.changes(stop)
    log.info(
        "Reload: watching %s for %s%s",
        ", ".join(describe([d]) or "." for d in reloader.dirs),
        ", ".join(reloader.includes),
        " (polling)" if reloader.poll else "",
    )

    def loop() -> None:
        try:
            for paths in batches:
                log.info("Reloading: %s", describe(paths))
                try:
                    on_change(paths)
                except Exception:
                    log.exception("Reload: the change handler failed")
        except Exception:
            log.exception("Reload: stopped watching for changes")

    thread = threading.Thread(target=loop, name="edgecorn-reload", daemon=True)
    thread.start()
    return thread
