"""--reload: the glob filter, the watcher on real files (inotify and polling), and end to end."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgecorn import cli
from edgecorn.config import Config, ConfigError
from edgecorn.reload import Glob, Reloader, describe, reload_loop
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(60)

REPO_ROOT = Path(__file__).resolve().parent.parent
WAIT = 5.0  # a change must be reported within this
MODES = [pytest.param(False, id="inotify"), pytest.param(True, id="poll")]


# --------------------------------------------------------------------------- filter


def reloader(tmp_path: Path, **options: object) -> Reloader:
    return Reloader(Config(reload_dirs=[str(tmp_path)], **options))


@pytest.mark.parametrize(
    ("path", "watched"),
    [
        ("app.py", True),
        ("pkg/sub/mod.py", True),
        ("pkg/__init__.py", True),
        ("app.pyc", False),
        ("pkg/__pycache__/mod.cpython-311.pyc", False),
        ("pkg/__pycache__/weird.py", False),  # everything under an excluded directory
        (".hidden", False),
        (".hidden.py", False),
        (".git/hooks/pre-commit.py", False),
        (".venv/lib/python3.11/site-packages/x.py", False),
        ("venv/lib/python3.11/site-packages/x.py", False),
        ("node_modules/x/build.py", False),
        ("app.py~", False),
        (".app.py.swp", False),
        ("README.md", False),
        ("data.json", False),
        ("", False),  # the watched directory itself
    ],
)
def test_default_filter(tmp_path: Path, path: str, watched: bool) -> None:
    assert (
        reloader(tmp_path).should_watch(str(tmp_path / path) if path else str(tmp_path)) is watched
    )


def test_patterns_are_relative_to_the_watched_directory(tmp_path: Path) -> None:
    # tmp_path has no dot directory in it, but a watched directory under a hidden one
    # must still work: the default `.*` only looks below the watched directory.
    hidden = tmp_path / ".config" / "project"
    hidden.mkdir(parents=True)
    r = reloader(hidden)
    assert r.should_watch(str(hidden / "app.py"))
    assert not r.should_watch(str(hidden / ".cache" / "app.py"))


def test_includes_and_excludes(tmp_path: Path) -> None:
    r = reloader(
        tmp_path,
        reload_includes=["*.py", "*.html", "./conf/**"],
        reload_excludes=["./build", "tests/*", str(tmp_path / "static" / "gen"), "*.min.*"],
    )
    yes = [
        "a.py",
        "templates/index.html",
        "conf/app.yaml",
        "conf/deep/x.ini",
        "src/tests_helper.py",
        "src/build/x.py",
        "static/app.html",
    ]
    no = [
        "notes.txt",
        "build/x.py",
        "tests/test_a.py",
        "src/tests/test_b.py",
        "static/gen/page.html",
        "x/conf/app.yaml",
        "page.min.html",
        "app.min.py",
    ]
    for path in yes:
        assert r.should_watch(str(tmp_path / path)), path
    for path in no:
        assert not r.should_watch(str(tmp_path / path)), path


def test_a_pattern_in_both_lists_only_includes(tmp_path: Path) -> None:
    r = reloader(
        tmp_path, reload_includes=["*.py", "*.pyc"], reload_excludes=["*.pyc", "__pycache__"]
    )
    assert r.excludes == ("__pycache__",)
    assert r.should_watch(str(tmp_path / "x.pyc"))
    assert not r.should_watch(str(tmp_path / "__pycache__" / "x.pyc"))


def test_deepest_watched_directory_wins(tmp_path: Path) -> None:
    inner = tmp_path / "lib"
    inner.mkdir()
    r = Reloader(Config(reload_dirs=[str(tmp_path), str(inner)], reload_excludes=["./mod.py"]))
    assert not r.should_watch(str(inner / "mod.py"))  # ./ is the deepest: lib/
    assert not r.should_watch(str(tmp_path / "mod.py"))
    assert r.should_watch(str(tmp_path / "lib2" / "mod.py"))


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.py", "a/b/c.py", True),
        ("b/*.py", "a/b/c.py", True),
        ("a/*.py", "a/b/c.py", False),
        ("a/**/*.py", "a/b/c.py", True),
        ("a/**/*.py", "a/c.py", True),
        ("./b", "a/b/c.py", False),
        ("./a", "a/b/c.py", True),
        ("b", "a/b/c.py", True),  # a directory the file is in
        ("**", "a/b/c.py", True),
        ("", "a/b/c.py", False),
        ("c.p?", "a/b/c.py", True),
        ("[ab]", "a/b/c.py", True),
    ],
)
def test_glob(pattern: str, path: str, matches: bool) -> None:
    parts = path.split("/")
    assert Glob.parse(pattern).matches(parts, ["root", *parts]) is matches


def test_absolute_glob() -> None:
    glob = Glob.parse("/srv/app/data")
    assert glob.absolute and glob.anchored
    assert glob.matches(["data", "x.py"], ["srv", "app", "data", "x.py"])
    assert not glob.matches(["data", "x.py"], ["srv", "other", "data", "x.py"])


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reload_dirs: .*nope.* is not a directory"):
        Reloader(Config(reload_dirs=[str(tmp_path / "nope")]))


def test_default_directory_is_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Reloader(Config()).dirs == (str(tmp_path),)
    assert (
        describe([str(tmp_path / "b.py"), str(tmp_path / "a.py"), "/elsewhere/c.py"])
        == "/elsewhere/c.py, a.py, b.py"
    )
    assert (
        describe([str(tmp_path / f"{i:02}.py") for i in range(12)], limit=2)
        == "00.py, 01.py and 10 more"
    )


def test_options_validate() -> None:
    with pytest.raises(ConfigError, match="reload_delay"):
        Config(reload_delay=-1)
    with pytest.raises(ConfigError, match="reload_dirs"):
        Config(reload_dirs="src")
    with pytest.raises(ConfigError, match="reload_poll"):
        Config(reload_poll="yes")
    config = Config.from_mapping({"reload": True, "reload-dirs": ["src"], "reload_delay": 1})
    assert config.reload and config.reload_dirs == ["src"] and config.reload_delay == 1.0


def test_cli_flags() -> None:
    config = cli.parse_args(
        [
            "--reload",
            "--reload-dir",
            "src",
            "--reload-dir",
            "lib",
            "--reload-include",
            "*.html",
            "--reload-exclude",
            "data/*",
            "--reload-poll",
            "app:app",
        ]
    )
    assert config.reload and config.reload_poll
    assert config.reload_dirs == ["src", "lib"]
    assert config.reload_includes == [*Config.reload_includes, "*.html"]  # added to defaults
    assert config.reload_excludes == [*Config.reload_excludes, "data/*"]
    assert Config.reload_includes == ["*.py"]  # the defaults themselves are untouched
    assert cli.parse_args([]).reload is False


# --------------------------------------------------------------------------- real files


class Watch:
    """reload_loop() on a directory, with the batches it reports in a queue."""

    def __init__(self, directory: Path, poll: bool, **options: object) -> None:
        self.batches: queue.Queue[set[str]] = queue.Queue()
        self.stop = threading.Event()
        config = Config(
            **{"reload_dirs": [str(directory)], "reload_poll": poll, "reload_delay": 0.1, **options}
        )
        self.thread = reload_loop(config, self.batches.put, self.stop)

    def next(self, timeout: float = WAIT) -> set[str]:
        try:
            return self.batches.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no change reported within {timeout}s") from None

    def until(self, path: Path, timeout: float = WAIT) -> list[set[str]]:
        """The batches up to and including the first one naming `path`."""
        deadline = time.monotonic() + timeout
        seen: list[set[str]] = []
        while str(path) not in set().union(*seen):
            seen.append(self.next(max(0.0, deadline - time.monotonic())))
        return seen

    def close(self) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the reload thread did not stop"


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Callable[..., Watch]]:
    watches: list[Watch] = []

    def start(poll: bool, **options: object) -> Watch:
        watches.append(Watch(tmp_path, poll, **options))
        return watches[-1]

    yield start
    for w in watches:
        w.close()


def write(path: Path, text: str, *, old: bool = False) -> None:
    """Write a file; `old`: dated a minute ago, as a file written before the watcher
    started would be. Polling compares whole-second mtimes (the `notify` crate's
    PollWatcher), so a change in the same second as the file's last write is missed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if old:
        then = time.time() - 60
        os.utime(path, (then, then))


@pytest.mark.parametrize("poll", MODES)
def test_a_modified_file_is_reported(
    tmp_path: Path, watch: Callable[..., Watch], poll: bool
) -> None:
    app = tmp_path / "app.py"
    write(app, "BODY = 1\n", old=True)
    w = watch(poll)
    write(app, "BODY = 22\n")  # right after reload_loop() returns: already watched
    assert w.next() == {str(app)}


@pytest.mark.parametrize("poll", MODES)
def test_excluded_files_are_not_reported(
    tmp_path: Path, watch: Callable[..., Watch], poll: bool
) -> None:
    (tmp_path / "sub").mkdir()
    w = watch(poll)
    for name in ["x.pyc", ".hidden", "notes.txt", "__pycache__/app.cpython-311.pyc", ".git/x.py"]:
        write(tmp_path / name, "data\n")
    time.sleep(1.0)  # several debounce and poll periods
    assert w.batches.empty(), w.batches.get()
    # The watcher was alive all along: a watched file goes through, alone.
    write(tmp_path / "sub" / "new.py", "x = 1\n")  # a new file, in a subdirectory
    assert w.next() == {str(tmp_path / "sub" / "new.py")}
    time.sleep(0.5)
    assert w.batches.empty(), w.batches.get()


@pytest.mark.parametrize("poll", MODES)
def test_changes_close_together_are_one_batch(
    tmp_path: Path, watch: Callable[..., Watch], poll: bool
) -> None:
    a, b, c = (tmp_path / f"{n}.py" for n in "abc")
    write(a, "", old=True)
    write(c, "", old=True)
    w = watch(poll, reload_delay=0.4)
    write(a, "a = 1\n")
    write(b, "b = 1\n")
    c.unlink()  # a deletion is a change too
    assert w.next() == {str(a), str(b), str(c)}


@pytest.mark.parametrize("poll", MODES)
def test_a_failing_handler_does_not_stop_watching(tmp_path: Path, poll: bool) -> None:
    calls: queue.Queue[set[str]] = queue.Queue()

    def on_change(paths: set[str]) -> None:
        calls.put(paths)
        if calls.qsize() == 1:
            raise RuntimeError("boom")

    stop = threading.Event()
    thread = reload_loop(
        Config(reload_dirs=[str(tmp_path)], reload_poll=poll, reload_delay=0.1), on_change, stop
    )
    try:
        write(tmp_path / "one.py", "1\n")
        assert calls.get(timeout=WAIT) == {str(tmp_path / "one.py")}
        write(tmp_path / "two.py", "2\n")
        assert calls.get(timeout=WAIT) == {str(tmp_path / "two.py")}
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(WAIT)
    assert not thread.is_alive()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_logs_each_batch(
    tmp_path: Path, watch: Callable[..., Watch], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg").mkdir()
    logger = logging.getLogger("edgecorn.error")
    records, level = Records(), logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        w = watch(False)
        write(tmp_path / "pkg" / "mod.py", "x = 1\n")
        w.until(tmp_path / "pkg" / "mod.py")  # logged before on_change is called
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    assert "Reloading: pkg/mod.py" in records.messages
    assert any(m.startswith("Reload: watching") for m in records.messages)


def test_changes_iterator_stops_when_told(tmp_path: Path) -> None:
    stop = threading.Event()
    batches = Reloader(Config(reload_dirs=[str(tmp_path)], reload_delay=0.05)).changes(stop)
    write(tmp_path / "a.py", "1\n")  # before the first next(): still seen
    assert next(batches) == {str(tmp_path / "a.py")}
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert list(batches) == []
    assert time.monotonic() - started < 2.0


# --------------------------------------------------------------------------- end to end

APP_SOURCE = """\
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": BODY})
"""


def get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body: bytes = response.read()
            return body
    except OSError:
        return None


def write_app(path: Path, body: bytes) -> None:
    before = path.stat().st_mtime_ns if path.exists() else None
    path.write_text(f"BODY = {body!r}\n\n{APP_SOURCE}")
    # Same size and same whole second as the source a worker compiled: Python would
    # take the stale __pycache__ file. Not what this test is about, so move the mtime.
    if before is not None and path.stat().st_mtime_ns // 10**9 == before // 10**9:
        os.utime(path, ns=(before + 10**9, before + 10**9))


@pytest.mark.parametrize("poll", MODES)
def test_end_to_end(tmp_path: Path, poll: bool) -> None:
    app_dir = tmp_path / "app"  # the server log stays outside the watched directory
    app_dir.mkdir()
    app_file = app_dir / "app_module.py"
    write_app(app_file, b"v1")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    env.pop("WATCHFILES_FORCE_POLLING", None)
    args = [
        sys.executable,
        "-m",
        "edgecorn",
        "app_module:app",
        "--workers",
        "1",
        "--reload",
        "--reload-dir",
        str(app_dir),
        "--insecure-bind",
        f"127.0.0.1:{port}",
    ]
    args += ["--reload-poll"] if poll else []
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args,
            cwd=app_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                assert proc.poll() is None, f"server exited: {log.read_text()}"
                assert time.monotonic() < deadline, f"{what}\n{log.read_text()}"
                time.sleep(0.1)

        until(lambda: get(url) == b"v1", 15, "the server never answered v1")
        until(lambda: "Reload: watching" in log.read_text(), 5, "the reloader did not start")
        write_app(app_file, b"v2")
        until(lambda: get(url) == b"v2", 15, "still not v2 15 s after the change")
        # The new worker's __pycache__ writes must not set off another reload.
        time.sleep(1.5)
        assert log.read_text().count("Reloading:") == 1, log.read_text()
        assert get(url) == b"v2"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
