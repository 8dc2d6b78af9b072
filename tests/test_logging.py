from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecorn.config import Config
from edgecorn.logging import AccessLogger, configure_logging

NAMES = ("edgecorn", "edgecorn.error", "edgecorn.access")


@pytest.fixture(autouse=True)
def _restore_loggers() -> Iterator[None]:
    saved = {}
    for name in NAMES:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def scope(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "type": "http",
        "http_version": "2",
        "method": "POST",
        "scheme": "https",
        "path": "/caf\u00e9",
        "raw_path": b"/caf%C3%A9",
        "query_string": b"a=1",
        "headers": [
            (b"user-agent", b"curl/8"),
            (b"referer", b"https://example.com/"),
            (b"x-many", b"1"),
            (b"x-many", b"2"),
            (b"authorization", b"Basic " + base64.b64encode(b"alice:secret")),
        ],
        "client": ("192.0.2.1", 40000),
        "server": ("127.0.0.1", 8443),
    }
    value.update(overrides)
    return value


def access_line(fmt: str, tmp_path: Path, **log: Any) -> str:
    path = tmp_path / "access.log"
    config = Config(access_log_format=fmt, accesslog=str(path), errorlog=None)
    configure_logging(config)
    logger = AccessLogger(config)
    arguments: dict[str, Any] = {
        "scope": scope(),
        "status": 201,
        "response_headers": [(b"content-type", b"text/plain"), (b"x-out", b"yes")],
        "sent_bytes": 1234,
        "request_time": 1.5,
    }
    arguments.update(log)
    logger.log(**arguments)
    return path.read_text().rstrip("\n")


def test_default_format(tmp_path: Path) -> None:
    line = access_line(Config.access_log_format, tmp_path)
    assert re.fullmatch(
        r"192\.0\.2\.1:40000 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        r'"POST /caf%C3%A9\?a=1 HTTP/2" 201 1234 "https://example.com/" "curl/8"',
        line,
    ), line


def test_every_atom(tmp_path: Path) -> None:
    atoms = "h l u m U q H s st S b B f a T M D L p r"
    fmt = "|".join(f"%({atom})s" for atom in atoms.split())
    assert access_line(fmt, tmp_path).split("|") == [
        "192.0.2.1:40000",  # as Hypercorn prints %(h)s
        "-",
        "alice",
        "POST",
        "/caf\u00e9",
        "a=1",
        "HTTP/2",
        "201",
        "Created",
        "https",
        "1234",
        "1234",
        "https://example.com/",
        "curl/8",
        "1",
        "1500",
        "1500000",
        "1.500000",
        f"<{os.getpid()}>",
        "POST /caf%C3%A9?a=1 HTTP/2",
    ]


def test_header_and_environ_atoms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECORN_TEST_VAR", "env-value")
    fmt = "%({X-Many}i)s %({x-out}o)s %({EDGECORN_TEST_VAR}e)s %({missing}i)s %(zz)s"
    assert access_line(fmt, tmp_path) == "1,2 yes env-value - -"


def test_empty_response_and_no_client(tmp_path: Path) -> None:
    line = access_line(
        "%(h)s %(b)s %(B)s %(u)s %(f)s",
        tmp_path,
        scope=scope(client=None, headers=[]),
        sent_bytes=0,
    )
    assert line == "- - 0 - -"


def test_websocket_scope_has_get(tmp_path: Path) -> None:
    ws = scope(type="websocket", http_version="1.1", query_string=b"", raw_path=b"/ws")
    del ws["method"]
    assert access_line("%(r)s", tmp_path, scope=ws, status=101) == "GET /ws HTTP/1.1"


def test_access_log_off() -> None:
    config = Config(accesslog=None)
    logger = AccessLogger(config)
    assert logger.enabled is False
    logger.log(scope(), 200, [], 0, 0.0)  # a no-op, never an error


def test_access_log_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    config = Config(accesslog="-", errorlog=None, access_log_format="%(m)s %(s)s")
    configure_logging(config)
    AccessLogger(config).log(scope(), 200, [], 0, 0.0)
    assert capsys.readouterr().out == "POST 200\n"


def test_error_log_to_stderr_with_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Config(errorlog="-", loglevel="warning"))
    logging.getLogger("edgecorn.error").info("hidden")
    logging.getLogger("edgecorn.error").warning("shown")
    logging.getLogger("edgecorn.manager").warning("module logger")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert re.search(r"\[\d{4}-\d\d-\d\d [\d:]+ [+-]\d{4}\] \[\d+\] \[WARNING\] shown", err)
    assert "module logger" in err


def test_error_log_to_file_and_reconfigure(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    configure_logging(Config(errorlog=str(path), loglevel="DEBUG"))
    configure_logging(Config(errorlog=str(path), loglevel="DEBUG"))  # no duplicate handlers
    logging.getLogger("edgecorn.error").debug("details")
    assert path.read_text().count("details") == 1


def test_error_log_off(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Config(errorlog=None))
    logging.getLogger("edgecorn.error").error("nowhere")
    captured = capsys.readouterr()
    assert "nowhere" not in captured.err + captured.out


def test_bad_level() -> None:
    config = Config()
    object.__setattr__(config, "loglevel", "chatty")  # past Config's own validation
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(config)


def test_bad_format_is_reported_not_raised(tmp_path: Path) -> None:
    errors = tmp_path / "error.log"
    config = Config(accesslog="-", errorlog=str(errors), access_log_format="%(s)d")
    configure_logging(config)
    AccessLogger(config).log(scope(), 200, [], 0, 0.0)
    assert "bad access_log_format" in errors.read_text()
