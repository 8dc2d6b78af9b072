from __future__ import annotations

import ssl
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from edgecorn.config import OPTIONS, Config, ConfigError, validate

VALUES: dict[str, Any] = {
    "bind": ["0.0.0.0:8443", "[::1]:8443"],
    "quic_bind": ["0.0.0.0:8443"],
    "keep_alive_timeout": 7.5,
    "workers": 4,
    "loglevel": "DEBUG",
    "alt_svc": False,
    "read_timeout": None,
    "root_path": "/api",
    "server_names": ["example.com"],
}

YAML = """\
# edgecorn.yaml
bind:
  - 0.0.0.0:8443
  - "[::1]:8443"
quic-bind: 0.0.0.0:8443
keep_alive_timeout: 7.5
workers: 4
loglevel: debug
alt-svc: false
read_timeout: null
root_path: /api/
server_names: [example.com]
"""

TOML = """\
bind = ["0.0.0.0:8443", "[::1]:8443"]
quic_bind = "0.0.0.0:8443"
keep-alive-timeout = 7.5
workers = 4
loglevel = "DEBUG"
alt_svc = false
root_path = "/api"
server_names = ["example.com"]
"""

PYFILE = """\
import os
WORKERS_DEFAULT = 4
_helper = 2
bind = ["0.0.0.0:8443", "[::1]:8443"]
quic_bind = ["0.0.0.0:8443"]
keep_alive_timeout: float = 7.5
workers = WORKERS_DEFAULT
loglevel = "Debug"
alt_svc = False
read_timeout = None
root_path = "/api"
server_names = ["example.com"]

def unused() -> None:
    pass
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(excinfo.value)


# Defaults and Hypercorn behaviour


def test_every_class_option_is_validated() -> None:
    assert set(Config.__annotations__) == set(OPTIONS)


def test_defaults_match_hypercorn() -> None:
    config = Config()
    assert config.bind == ["127.0.0.1:8000"]
    assert config.insecure_bind == [] and config.quic_bind == []
    assert config.keep_alive_timeout == 5.0 and config.graceful_timeout == 3.0
    assert config.alpn_protocols == ["h2", "http/1.1"]
    assert config.errorlog == "-" and config.accesslog is None
    assert config.workers == 1 and config.worker_class == "auto"
    assert config.alt_svc is True and config.alt_svc_max_age == 86400
    assert config.ssl_enabled is False


def test_list_defaults_are_not_shared() -> None:
    Config().bind.append("0.0.0.0:1")
    assert Config().bind == ["127.0.0.1:8000"]
    assert Config.bind == ["127.0.0.1:8000"]


def test_hypercorn_setters() -> None:
    # A str becomes a one-item list at run time (the annotation stays list[str]).
    config = Config()
    config.bind = "0.0.0.0:80"  # type: ignore[assignment]
    config.insecure_bind = "unix:/tmp/sock"  # type: ignore[assignment]
    config.quic_bind = "fd://3"  # type: ignore[assignment]
    config.root_path = "/mount/"
    assert config.bind == ["0.0.0.0:80"]
    assert config.insecure_bind == ["unix:/tmp/sock"]
    assert config.quic_bind == ["fd://3"]
    assert config.root_path == "/mount"
    config.certfile, config.keyfile = "cert.pem", "key.pem"
    assert config.ssl_enabled


@pytest.mark.parametrize(
    "value, expected",
    [
        ("CERT_REQUIRED", ssl.CERT_REQUIRED),
        ("cert_optional", ssl.CERT_OPTIONAL),
        ("none", ssl.CERT_NONE),
        (ssl.CERT_REQUIRED, ssl.CERT_REQUIRED),
        (2, ssl.CERT_REQUIRED),
        (None, None),
    ],
)
def test_verify_mode(value: Any, expected: Any) -> None:
    assert Config(verify_mode=value).verify_mode is expected


def test_setting_an_option_validates() -> None:
    config = Config()
    with pytest.raises(ConfigError, match="workers"):
        config.workers = -1
    assert config.workers == 1


def test_max_requests_zero_means_unlimited() -> None:
    assert Config(max_requests=0).max_requests is None
    assert Config(max_requests=500).max_requests == 500


# Loaders agree


def test_loaders_produce_equal_configs(tmp_path: Path) -> None:
    expected = Config.from_mapping(VALUES).to_dict()
    assert Config(**VALUES).to_dict() == expected
    assert Config.from_mapping(**VALUES).to_dict() == expected
    assert Config.from_yaml(write(tmp_path, "c.yaml", YAML)).to_dict() == expected
    assert Config.from_toml(write(tmp_path, "c.toml", TOML)).to_dict() == expected
    assert Config.from_pyfile(write(tmp_path, "c.py", PYFILE)).to_dict() == expected
    for name, text in [("a.yml", YAML), ("a.yaml", YAML), ("a.toml", TOML), ("a.py", PYFILE)]:
        assert Config.from_file(write(tmp_path, name, text)).to_dict() == expected
    assert expected["keep_alive_timeout"] == 7.5 and expected["workers"] == 4


def test_from_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "edgecorn_test_settings.py", PYFILE + "class Settings:\n    workers = 9\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    expected = Config.from_mapping(VALUES).to_dict()
    assert Config.from_object("edgecorn_test_settings").to_dict() == expected
    assert Config.from_object("edgecorn_test_settings.Settings").workers == 9
    module = sys.modules["edgecorn_test_settings"]
    assert Config.from_object(module).to_dict() == expected
    assert Config.from_object(Config(workers=3)).workers == 3
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_x.y'"):
        Config.from_object("no_such_module_x.y")


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.yaml", "# nothing here\n")
    assert Config.from_yaml(path).to_dict() == Config().to_dict()


# Errors name the key, the value, what is allowed, the file and the line


@pytest.mark.parametrize(
    "text, line, parts",
    [
        ("workers: 2\nbackl0g: 10\n", 2, ["backl0g", "unknown option", "did you mean 'backlog'"]),
        ("keep-alive-timout: 3\n", 1, ["did you mean 'keep-alive-timeout'"]),
        ("statsd_host: x\n", 1, ["statsd_host", "HOST:PORT", "'x'"]),
        ("logger_class: x\n", 1, ["logger_class", "Hypercorn option"]),
        ("\n\nworkers: -1\n", 3, ["workers", "-1", "integer >= 0"]),
        ("workers: '2'\n", 1, ["workers", "'2'", "without quotes"]),
        ("factory: 'true'\n", 1, ["factory", "'true'", "true or false without quotes"]),
        ("include_date_header: 1\n", 1, ["include_date_header", "true or false", "got 1"]),
        ("keep_alive_timeout: 5s\n", 1, ["keep_alive_timeout", "'5s'", "number of seconds"]),
        ("lifespan: maybe\n", 1, ["lifespan", "'maybe'", "'auto', 'on', 'off'"]),
        ("http1_parser: picohttp\n", 1, ["http1_parser", "'h11'", "'httptools'"]),
        ("worker_class: gevent\n", 1, ["worker_class", "'gevent'", "'uvloop'"]),
        ("loglevel: loud\n", 1, ["loglevel", "'loud'", "'DEBUG'"]),
        ("bind: ['localhost:http']\n", 1, ["bind", "'localhost:http'", "0 to 65535"]),
        ("x: 1\n", 1, ["unknown option"]),
        (
            "bind:\n  - 0.0.0.0:80\nquic_bind: '[::1]:99999'\n",
            3,
            ["quic_bind", "'[::1]:99999'", "0 to 65535"],
        ),
        ("server_names: example.com\n", 1, ["server_names", "a list of strings"]),
        ("alpn_protocols: [h2, h3]\n", 1, ["alpn_protocols", "'h3'"]),
        ("root_path: api\n", 1, ["root_path", "'api'", "starting with '/'"]),
        ("workers: 1\nworkers: 2\n", 2, ["workers", "given twice", "line 1"]),
        ("workers: 1\nworkers: 2\n", 2, ["workers", "given twice"]),
        ("keep_alive_timeout: 1\nkeep-alive-timeout: 2\n", 2, ["given twice"]),
        ("- workers\n", 1, ["top level must be a mapping"]),
        ("workers: [1\n", 2, ["invalid YAML"]),
        ("verify_mode: sometimes\n", 1, ["verify_mode", "'sometimes'", "CERT_REQUIRED"]),
    ],
)
def test_yaml_errors(tmp_path: Path, text: str, line: int, parts: list[str]) -> None:
    path = write(tmp_path, "edgecorn.yaml", text)
    with pytest.raises(ConfigError) as excinfo:
        Config.from_yaml(path)
    message = error(excinfo)
    assert message.startswith(f"{path}:{line}: "), message
    for part in parts:
        assert part in message
    assert "\n" not in message
    assert excinfo.value.line == line and excinfo.value.source == str(path)


@pytest.mark.parametrize(
    "text, line, parts",
    [
        ("workers = 2\n\nmax_requests = -5\n", 3, ["max_requests", "-5", "integer >= 0"]),
        ('quic-bind = ["0.0.0.0:443", "nope:"]\n', 1, ["quic-bind", "'nope:'"]),
        ("alt_svc = 'yes'\n", 1, ["alt_svc", "'yes'", "true or false"]),
        ("workers = 2\nworkerz = 3\n", 2, ["workerz", "did you mean 'workers'"]),
        ("workers = = 2\n", 1, ["invalid TOML"]),
        ("[server]\nworkers = 2\n", 1, ["server", "unknown option"]),
    ],
)
def test_toml_errors(tmp_path: Path, text: str, line: int, parts: list[str]) -> None:
    path = write(tmp_path, "edgecorn.toml", text)
    with pytest.raises(ConfigError) as excinfo:
        Config.from_toml(path)
    message = error(excinfo)
    assert message.startswith(f"{path}:{line}: "), message
    for part in parts:
        assert part in message


@pytest.mark.parametrize(
    "text, line, parts",
    [
        ("workers = 2\nbind: list[str] = ['nohost:']\n", 2, ["bind", "'nohost:'"]),
        ("workers = 2\nworkerz = 3\n", 2, ["did you mean 'workers'"]),
        ("workers = (\n", 1, ["SyntaxError"]),
        ("x = 1\nworkers = 1 / 0\n", 2, ["ZeroDivisionError"]),
    ],
)
def test_pyfile_errors(tmp_path: Path, text: str, line: int, parts: list[str]) -> None:
    path = write(tmp_path, "edgecorn_conf.py", text)
    with pytest.raises(ConfigError) as excinfo:
        Config.from_pyfile(path)
    message = error(excinfo)
    assert message.startswith(f"{path}:{line}: "), message
    for part in parts:
        assert part in message


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"conf\.ini: unsupported config file type '\.ini'"):
        Config.from_file(write(tmp_path, "conf.ini", "[x]\n"))
    with pytest.raises(ConfigError, match="missing.yaml: cannot read config file"):
        Config.from_file(tmp_path / "missing.yaml")


def test_mapping_errors() -> None:
    with pytest.raises(ConfigError, match=r"^workers: expected an integer >= 0, got 2\.0$"):
        Config.from_mapping({"workers": 2.0})
    with pytest.raises(ConfigError, match=r"^factory: expected true or false, got 'yes'"):
        Config(factory="yes")
    with pytest.raises(ConfigError, match=r"did you mean 'graceful_timeout'"):
        Config(gracefull_timeout=3)
    with pytest.raises(ConfigError, match="workers: .* got True"):
        Config(workers=True)
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "bind",
    [
        "127.0.0.1:8000",
        "0.0.0.0:0",
        "localhost:65535",
        "[::]:443",
        "[fe80::1%eth0]:80",
        "unix:/run/edgecorn.sock",
        "fd://3",
        "my-host.example:8080",
    ],
)
def test_valid_binds(bind: str) -> None:
    assert validate("bind", bind) == [bind]


@pytest.mark.parametrize(
    "bind, why",
    [
        ("127.0.0.1:65536", "0 to 65535"),
        ("127.0.0.1:http", "0 to 65535"),
        ("::1:8000", "brackets"),
        ("[::1]8000", "[::1]:8000"),
        (":8000", "host is missing"),
        ("unix:", "path is empty"),
        ("fd://x", "file descriptor"),
        ("bad host:80", "not a host name"),
    ],
)
def test_invalid_binds(bind: str, why: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        validate("bind", [bind])
    assert f"got {bind!r}" in str(excinfo.value) and why in str(excinfo.value)
    assert "'host:port', '[ipv6]:port', 'unix:/path' or 'fd://N'" in str(excinfo.value)
