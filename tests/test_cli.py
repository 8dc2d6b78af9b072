from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import edgecorn
from edgecorn import cli
from edgecorn.config import Config, ConfigError

ROOT = Path(__file__).resolve().parent.parent


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "edgecorn", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_no_flags_gives_defaults_and_demo_mode() -> None:
    config = cli.parse_args([])
    assert config.to_dict() == Config().to_dict()
    assert config.application_path is None


def test_flags_map_to_config() -> None:
    config = cli.parse_args(
        [
            "-b",
            "0.0.0.0:8443",
            "--bind",
            "[::]:8443",
            "--insecure-bind",
            "127.0.0.1:8080",
            "--quic-bind",
            "0.0.0.0:8443",
            "--certfile",
            "c.pem",
            "--keyfile",
            "k.pem",
            "--keyfile-password",
            "pw",
            "--ca-certs",
            "ca.pem",
            "--ciphers",
            "ECDHE+CHACHA20",
            "--verify-mode",
            "CERT_OPTIONAL",
            "-w",
            "3",
            "-k",
            "uvloop",
            "--access-logfile",
            "-",
            "--error-logfile",
            "err.log",
            "--access-logformat",
            "%(h)s",
            "--log-level",
            "warning",
            "--keep-alive",
            "10",
            "--graceful-timeout",
            "2.5",
            "--read-timeout",
            "30",
            "--root-path",
            "/api/",
            "--server-name",
            "a.example",
            "--server-name",
            "b.example",
            "--lifespan",
            "off",
            "--factory",
            "--http1-parser",
            "h11",
            "--backlog",
            "512",
            "--pid",
            "edgecorn.pid",
            "--max-requests",
            "1000",
            "--max-requests-jitter",
            "50",
            "--websocket-ping-interval",
            "20",
            "myproject.asgi:create_app",
        ]
    )
    assert config.bind == ["0.0.0.0:8443", "[::]:8443"]
    assert config.insecure_bind == ["127.0.0.1:8080"]
    assert config.quic_bind == ["0.0.0.0:8443"]
    assert (config.certfile, config.keyfile, config.keyfile_password) == ("c.pem", "k.pem", "pw")
    assert config.ca_certs == "ca.pem" and config.ciphers == "ECDHE+CHACHA20"
    assert config.verify_mode is not None and config.verify_mode.name == "CERT_OPTIONAL"
    assert config.ssl_enabled
    assert config.workers == 3 and config.worker_class == "uvloop"
    assert config.accesslog == "-" and config.errorlog == "err.log"
    assert config.access_log_format == "%(h)s" and config.loglevel == "WARNING"
    assert config.keep_alive_timeout == 10.0 and config.graceful_timeout == 2.5
    assert config.read_timeout == 30.0 and config.root_path == "/api"
    assert config.server_names == ["a.example", "b.example"]
    assert config.lifespan == "off" and config.factory is True
    assert config.http1_parser == "h11" and config.backlog == 512
    assert config.pid_path == "edgecorn.pid"
    assert config.max_requests == 1000 and config.max_requests_jitter == 50
    assert config.websocket_ping_interval == 20.0
    assert config.application_path == "myproject.asgi:create_app"


def test_flags_override_only_what_they_name(tmp_path: Path) -> None:
    path = tmp_path / "edgecorn.yaml"
    path.write_text("workers: 4\nloglevel: debug\nbind: [0.0.0.0:9000]\napplication_path: a:b\n")
    config = cli.parse_args(["-c", str(path), "-w", "2"])
    assert config.workers == 2
    assert config.loglevel == "DEBUG" and config.bind == ["0.0.0.0:9000"]
    assert config.application_path == "a:b"  # the file's app, as no app argument was given
    assert config.factory is False
    assert cli.parse_args(["-c", str(path), "x:app"]).application_path == "x:app"
    assert cli.parse_args(["-c", str(path), "-b", "[::1]:1"]).bind == ["[::1]:1"]


def test_config_prefixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "edgecorn_cli_settings.py").write_text("workers = 5\n")
    (tmp_path / "settings.toml").write_text("workers = 6\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.parse_args(["-c", "python:edgecorn_cli_settings"]).workers == 5
    assert cli.parse_args(["-c", f"file:{tmp_path / 'edgecorn_cli_settings.py'}"]).workers == 5
    assert cli.parse_args(["--config", str(tmp_path / "settings.toml")]).workers == 6


@pytest.mark.parametrize(
    "old, new, key",
    [
        ("--access-log", "--access-logfile", "accesslog"),
        ("--error-log", "--error-logfile", "errorlog"),
    ],
)
def test_deprecated_flags_warn(
    capsys: pytest.CaptureFixture[str], old: str, new: str, key: str
) -> None:
    config = cli.parse_args([old, "out.log"])
    assert getattr(config, key) == "out.log"
    err = capsys.readouterr().err
    assert old in err and new in err and "deprecated" in err
    cli.parse_args([new, "out.log"])
    assert capsys.readouterr().err == ""


def test_invalid_flag_value_names_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--workers: expected an integer >= 0, got -1$"):
        cli.parse_args(["-w", "-1"])
    with pytest.raises(ConfigError, match=r"^--bind: .*got 'localhost:http'"):
        cli.parse_args(["-b", "localhost:http"])
    with pytest.raises(ConfigError, match=r"^--log-level: .*got 'loud'"):
        cli.parse_args(["--log-level", "loud"])


def test_argparse_rejects_bad_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        cli.parse_args(["--lifespan", "maybe"])
    assert excinfo.value.code == 2
    assert "--lifespan" in capsys.readouterr().err


def test_main_runs_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Config] = []
    fake = types.ModuleType("edgecorn.run")

    def run(config: Config, reload_config: Any = None) -> int:
        seen.append(config)
        assert reload_config is not None and reload_config().workers == 0  # SIGHUP re-reads
        return 7

    fake.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "edgecorn.run", fake)
    assert cli.main(["-w", "0", "app:app"]) == 7
    assert seen[0].workers == 0 and seen[0].application_path == "app:app"


def test_main_reports_config_errors_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("workers: 2\nworkerz: 3\n")
    assert cli.main(["-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"edgecorn: error: {path}:2: workerz: unknown option (did you mean 'workers'?)\n"


def test_certs_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = types.ModuleType("edgecorn.certs")
    fake.ensure_dev_certs = lambda: ("/c/cert.pem", "/c/key.pem", "/c/ca.pem")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "edgecorn.certs", fake)
    assert cli.main(["certs"]) == 0
    out = capsys.readouterr().out
    assert "/c/cert.pem" in out and "/c/key.pem" in out and "/c/ca.pem" in out


def test_version_subprocess(tmp_path: Path) -> None:
    result = run_module("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"edgecorn {edgecorn.__version__}"


def test_config_error_subprocess(tmp_path: Path) -> None:
    (tmp_path / "edgecorn.yaml").write_text("bind: 127.0.0.1:8000\n\nkeep_alive_timeout: soon\n")
    result = run_module("-c", "edgecorn.yaml", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgecorn: error: edgecorn.yaml:3: keep_alive_timeout: ")
    assert "'soon'" in lines[0] and "number of seconds" in lines[0]
    assert "Traceback" not in result.stderr
