"""The CLI a Hypercorn user knows: every Hypercorn 0.18 flag, a default in every help text,
a flag for every option, --log-config, -u/-g (privileges dropped after binding), atoms."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from edgecorn import cli
from edgecorn.config import OPTIONS

pytestmark = pytest.mark.timeout(120)

# Hypercorn 0.18's command-line flags (hypercorn/__main__.py) with a sample value
# (None: a switch). Skipped on purpose: --daemon (no meaning here; see the README's
# migration table).
HYPERCORN_FLAGS: dict[str, str | None] = {
    "--statsd-host": "127.0.0.1:8125",
    "--statsd-prefix": "edge",
    "--access-log": "-",
    "--access-logfile": "-",
    "--access-logformat": "%(h)s",
    "--backlog": "50",
    "-b": "127.0.0.1",
    "--bind": "127.0.0.1:9000",
    "--ca-certs": "ca.pem",
    "--certfile": "c.pem",
    "--cert-reqs": "2",
    "--ciphers": "ECDHE+AESGCM",
    "-c": None,
    "--config": None,
    "--debug": None,
    "--error-log": "-",
    "--error-logfile": "-",
    "--log-file": "err.log",
    "--graceful-timeout": "2",
    "--read-timeout": "9",
    "--max-requests": "10",
    "--max-requests-jitter": "2",
    "-g": "65534",
    "--group": "nogroup",
    "-k": "trio",
    "--worker-class": "asyncio",
    "--keep-alive": "7",
    "--keyfile": "k.pem",
    "--keyfile-password": "pw",
    "--insecure-bind": "127.0.0.1:8080",
    "--log-config": "json:log.json",
    "--log-level": "debug",
    "-p": "x.pid",
    "--pid": "x.pid",
    "--quic-bind": "127.0.0.1:4433",
    "--reload": None,
    "--root-path": "/api",
    "--server-name": "example.com",
    "-m": "027",
    "--umask": "0o27",
    "-u": "1000",
    "--user": "nobody",
    "--verify-mode": "CERT_REQUIRED",
    "--websocket-ping-interval": "5",
    "-w": "2",
    "--workers": "3",
}


@pytest.mark.parametrize("flag", sorted(HYPERCORN_FLAGS))
def test_every_hypercorn_flag_is_accepted(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    if flag in ("-c", "--config"):
        return  # covered by the config tests (needs a file)
    value = HYPERCORN_FLAGS[flag]
    cli.parse_args([flag] + ([] if value is None else [value]))


def test_hypercorn_flag_values() -> None:
    config = cli.parse_args(
        [
            "-b",
            "127.0.0.1",
            "-m",
            "027",
            "-u",
            "nobody",
            "-g",
            "65534",
            "-p",
            "edgecorn.pid",
            "--log-file",
            "err.log",
            "--cert-reqs",
            "2",
            "--log-config",
            "toml:log.toml",
            "--debug",
            "--h11-max-incomplete-size",
            "4096",
            "--h2-max-concurrent-streams",
            "7",
        ]
    )
    assert config.bind == ["127.0.0.1:8000"]  # no port: 8000, as in Hypercorn
    assert (config.umask, config.user, config.group) == (0o27, "nobody", 65534)
    assert (config.pid_path, config.errorlog) == ("edgecorn.pid", "err.log")
    assert config.verify_mode is not None and config.verify_mode.name == "CERT_REQUIRED"
    assert config.logconfig == "toml:log.toml" and config.debug is True
    assert (config.h11_max_incomplete_size, config.h2_max_concurrent_streams) == (4096, 7)
    assert cli.parse_args(["--no-include-server-header"]).include_server_header is False


def test_every_flag_has_help_with_its_default() -> None:
    parser = cli.build_parser()
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if (
            isinstance(action, (argparse._HelpAction, argparse._VersionAction))
            or action.dest == "config"
        ):
            continue
        assert action.help, action.option_strings
        shown = parser._get_formatter()._get_help_string(action)  # type: ignore[attr-defined]
        assert shown and "(default: " in shown, action.option_strings
    for flag in (
        "--alt-svc-max-age",
        "--websocket-ping-interval",
        "--http1-parser",
        "--lifespan",
        "--worker-class",
        "--max-requests-jitter",
        "--access-logformat",
    ):
        block = text[text.index(flag) :]
        block = block[: block.index("(default: ")]
        assert len(block.split()) > 3, block  # a help text, not just the flag


def test_every_option_has_a_flag() -> None:
    dests = {action.dest for action in cli.build_parser()._actions}
    missing = set(OPTIONS) - dests - cli.FILE_ONLY
    assert not missing


# --------------------------------------------------------------------------- real servers


def _app_request(curl: Any, port: int, path: str = "/") -> Any:
    return curl("-w", "\n%{http_code}", f"http://127.0.0.1:{port}{path}")


LOG_JSON = {
    "version": 1,
    "formatters": {"plain": {"format": "custom-access %(message)s"}},
    "handlers": {
        "file": {"class": "logging.FileHandler", "filename": "{path}", "formatter": "plain"}
    },
    "loggers": {"edgecorn.access": {"handlers": ["file"], "level": "INFO", "propagate": False}},
}

LOG_INI = """\
[loggers]
keys=root,access

[handlers]
keys=file

[formatters]
keys=plain

[logger_root]
handlers=

[logger_access]
qualname=edgecorn.access
handlers=file
propagate=0
level=INFO

[handler_file]
class=FileHandler
formatter=plain
args=('{path}',)

[formatter_plain]
format=custom-access %(message)s
"""


@pytest.mark.parametrize("kind", ["json", "toml", "ini"])
def test_log_config(server_factory: Any, curl: Any, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "access.txt"
    if kind == "ini":
        spec = tmp_path / "logging.ini"
        spec.write_text(LOG_INI.replace("{path}", str(out)))
        flag = str(spec)
    else:
        data = json.loads(json.dumps(LOG_JSON).replace("{path}", str(out)))
        spec = tmp_path / f"logging.{kind}"
        if kind == "json":
            spec.write_text(json.dumps(data))
        else:
            spec.write_text(_toml(data))
        flag = f"{kind}:{spec}"
    server = server_factory.start(
        "--log-config",
        flag,
        "--access-logformat",
        "%(R)s|%(Uq)s|%(h)s",
        tls=False,
        app="tests.apps.migration:whoami",
    )
    assert _app_request(curl, server.insecure_port, "/caf%C3%A9?x=1").stdout.endswith(b"200")
    deadline = time.monotonic() + 10
    while "custom-access" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline, server.describe()
        time.sleep(0.05)
    line = out.read_text().splitlines()[0]
    assert re.fullmatch(
        r"custom-access GET /caf\u00e9\?x=1 1\.1\|/caf\u00e9\?x=1\|"
        r"127\.0\.0\.1:\d+",
        line,
    ), line


def test_log_config_written_for_hypercorn(server_factory: Any, curl: Any, tmp_path: Path) -> None:
    """A dictConfig file that names Hypercorn's loggers configures ours too, with a note."""
    out = tmp_path / "access.txt"
    data = json.loads(json.dumps(LOG_JSON).replace("{path}", str(out)))
    data["loggers"] = {"hypercorn.access": data["loggers"]["edgecorn.access"]}
    spec = tmp_path / "hypercorn-logging.json"
    spec.write_text(json.dumps(data))
    server = server_factory.start(
        "--log-config", f"json:{spec}", tls=False, app="tests.apps.migration:whoami"
    )
    assert _app_request(curl, server.insecure_port, "/from-hypercorn").stdout.endswith(b"200")
    deadline = time.monotonic() + 10
    while "from-hypercorn" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline, server.describe()
        time.sleep(0.05)
    assert out.read_text().startswith("custom-access 127.0.0.1:")
    assert (
        "edgecorn: note: logging: hypercorn.access also configures edgecorn.access "
        "(the edgecorn name is preferred)"
    ) in server.stderr()


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for LOG_JSON: nested tables of strings, bools, ints and lists."""
    plain = {k: v for k, v in data.items() if not isinstance(v, dict)}
    lines = [f"[{prefix}]"] if prefix and plain else []
    lines += [
        f"{k} = {json.dumps(v)}" if not isinstance(v, bool) else f"{k} = {str(v).lower()}"
        for k, v in plain.items()
    ]
    for key, value in data.items():
        if isinstance(value, dict):
            name = f'{prefix}."{key}"' if prefix else f'"{key}"'
            lines.append(_toml(value, name))
    return "\n".join(lines) + "\n"


def test_broken_log_config_is_one_line(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory.spawn(
        [
            "tests.apps.e2e:app",
            "-w",
            "0",
            "-b",
            "127.0.0.1:0",
            "--log-config",
            f"json:{tmp_path / 'missing.json'}",
        ]
    )
    assert server.proc.wait(30) == 2
    lines = server.stderr().splitlines()
    assert lines == [
        f"edgecorn: error: logging: [Errno 2] No such file or directory: "
        f"'{tmp_path / 'missing.json'}'"
    ]


def _uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid line")


@pytest.mark.parametrize("workers", ["0", "2"])
def test_user_and_group_after_binding(server_factory: Any, curl: Any, workers: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")  # the CI and dev machines run as root
    unix = f"/tmp/edgecorn-migration-{os.getpid()}-{workers}.sock"
    server = server_factory.start(
        "-w",
        workers,
        "-u",
        "nobody",
        "-g",
        "nogroup",
        "--insecure-bind",
        f"unix:{unix}",
        "-m",
        "007",
        app="tests.apps.migration:whoami",
        tls=False,
        wait_unix=[unix],
    )
    try:
        info = json.loads(curl(f"http://127.0.0.1:{server.insecure_port}/").stdout)
        assert (info["uid"], info["gid"]) == (65534, 65534)
        if workers == "0":
            assert info["pid"] == server.pid
        else:
            assert info["pid"] != server.pid and _uid(server.pid) == 0  # the supervisor stays
        st = os.stat(unix)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o660)
        via_unix = curl("--unix-socket", unix, "http://localhost/")
        assert json.loads(via_unix.stdout)["uid"] == 65534
    finally:
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(20)
        if os.path.exists(unix):
            os.remove(unix)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_root_only_key_with_user(
    server_factory: Any, curl: Any, certs: tuple[str, str, str], tmp_path: Path, workers: str
) -> None:
    """The edge case -u is for: a key only root may read, 443-style TLS + QUIC, served as
    nobody. The certificates are loaded before the switch (h2 over TCP, h3 over QUIC)."""
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    from tests.support.h3 import cffi_h3, wait_quic
    from tests.support.net import free_port

    key = tmp_path / "root-only-key.pem"
    key.write_bytes(Path(certs[1]).read_bytes())
    key.chmod(0o600)
    port = free_port()
    server_factory.certfile, server_factory.keyfile = certs[0], str(key)
    server = server_factory.spawn(
        [
            "tests.apps.migration:whoami",
            "-w",
            workers,
            "-u",
            "nobody",
            "-g",
            "nogroup",
            "--bind",
            f"127.0.0.1:{port}",
            "--certfile",
            certs[0],
            "--keyfile",
            str(key),
        ]
    )
    server.port = port
    wait_quic(server, timeout=20)
    h2 = json.loads(curl("--http2", f"https://localhost:{port}/").stdout)
    assert (h2["uid"], h2["gid"]) == (65534, 65534)
    h3 = cffi_h3("GET", f"https://localhost:{port}/", certs[2])
    assert h3.status_code == 200 and h3.json()["uid"] == 65534


def test_unknown_user_is_one_line(server_factory: Any) -> None:
    server = server_factory.spawn(
        ["tests.apps.e2e:app", "-w", "0", "-b", "127.0.0.1:0", "-u", "no-such-user-here"]
    )
    assert server.proc.wait(30) == 2
    assert server.stderr().splitlines() == [
        "edgecorn: error: user: no such user 'no-such-user-here'"
    ]


@pytest.mark.parametrize("debug", [True, False])
def test_debug_turns_on_asyncio_debug(server_factory: Any, curl: Any, debug: bool) -> None:
    """asyncio's debug mode reports a callback that blocks the loop (here 0.3 s)."""
    args = ["--debug"] if debug else []
    server = server_factory.start(*args, tls=False, app="tests.apps.migration:blocking")
    assert _app_request(curl, server.insecure_port).stdout.endswith(b"200")
    if debug:
        # Start-up on a busy machine can log slow callbacks of its own first: wait for the
        # app's 0.3 s block, not for the first report.
        blocked = re.compile(r"Executing <Task .* took (0\.[3-9]|[1-9])\d*(\.\d+)? seconds")
        deadline = time.monotonic() + 10
        while not blocked.search(server.stderr()):
            assert time.monotonic() < deadline, server.describe()
            time.sleep(0.05)
    else:
        server.stop()
        assert "took" not in server.stderr()


def test_app_without_a_response_names_the_request(server_factory: Any, curl: Any) -> None:
    server = server_factory.start(tls=False, app="tests.apps.migration:silent")
    result = curl(
        "-w", "%{http_code}", f"http://127.0.0.1:{server.insecure_port}/quiet?x=1", check=False
    )
    assert result.stdout.endswith(b"500")
    deadline = time.monotonic() + 10
    while "without starting a response" not in server.stderr():
        assert time.monotonic() < deadline, server.describe()
        time.sleep(0.05)
    assert "ASGI app returned without starting a response to GET /quiet" in server.stderr()
