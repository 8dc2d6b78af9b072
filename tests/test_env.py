"""Options from EDGECORN_<KEY> variables: types, errors naming the variable, and the
precedence flags > env > file > defaults; then a real server configured by env alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecorn.cli import main, parse_args
from edgecorn.config import Config, ConfigError
from edgecorn.env import apply_env

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_outer_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EDGECORN_"):
            monkeypatch.delenv(name)


def env_config(**env: str) -> Config:
    config = Config()
    apply_env(config, env)
    return config


def test_types() -> None:
    config = env_config(
        EDGECORN_BIND="127.0.0.1:9000, [::1]:9001",
        EDGECORN_INSECURE_BIND="",
        EDGECORN_WORKERS="2",
        EDGECORN_GRACEFUL_TIMEOUT="2.5",
        EDGECORN_QUIC_EARLY_DATA="true",
        EDGECORN_ALT_SVC="0",
        EDGECORN_RELOAD="1",
        EDGECORN_INCLUDE_SERVER_HEADER="False",
        EDGECORN_MAX_REQUESTS="null",
        EDGECORN_READ_TIMEOUT="",
        EDGECORN_ACCESSLOG="-",
        EDGECORN_LOGLEVEL="debug",
        EDGECORN_TRUSTED_PROXIES="10.0.0.0/8,::1",
        EDGECORN_ROUTES="[{path: =/healthz, respond: {status: 200, body: ok}}]",
    )
    assert config.bind == ["127.0.0.1:9000", "[::1]:9001"]
    assert config.insecure_bind == []
    assert config.workers == 2
    assert config.graceful_timeout == 2.5
    assert config.quic_early_data is True
    assert config.alt_svc is False
    assert config.reload is True
    assert config.include_server_header is False
    assert config.max_requests is None
    assert config.read_timeout is None
    assert config.accesslog == "-"
    assert config.loglevel == "DEBUG"
    assert config.trusted_proxies == ["10.0.0.0/8", "::1"]
    assert [route.describe() for route in config.routes] == ["*=/healthz -> respond"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EDGECORN_WORKERS": "two"}, "EDGECORN_WORKERS: expected an integer, got 'two'"),
        ({"EDGECORN_WORKERS": "-1"}, "EDGECORN_WORKERS: expected an integer >= 0, got -1"),
        ({"EDGECORN_RELOAD": "yes"}, "EDGECORN_RELOAD: expected true, false, 1 or 0, got 'yes'"),
        (
            {"EDGECORN_KEEP_ALIVE_TIMEOUT": "5s"},
            "EDGECORN_KEEP_ALIVE_TIMEOUT: expected a number, got '5s'",
        ),
        (
            {"EDGECORN_BIND": "127.0.0.1:80,localhost:http"},
            "EDGECORN_BIND: expected 'host:port', '[ipv6]:port', 'unix:/path' or 'fd://N', got "
            "'localhost:http' (the port must be a number from 0 to 65535, not 'http')",
        ),
        (
            {"EDGECORN_QUIC_RETRY": "sometimes"},
            "EDGECORN_QUIC_RETRY: expected one of 'off', 'on', 'under_load', got 'sometimes'",
        ),
        (
            {"EDGECORN_ROUTES": "[{path: /x/, proxy: 'ftp://a'}]"},
            "EDGECORN_ROUTES[0].proxy: bad upstream URL 'ftp://a': the scheme must be http or "
            "https",
        ),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        env_config(**env)
    assert str(info.value) == message


def test_a_typo_is_warned_about_and_other_prefixed_names_are_left_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = env_config(EDGECORN_WORKER="3", EDGECORN_MY_APP_SETTING="x")
    assert config.workers == Config.workers
    assert capsys.readouterr().err == (
        "edgecorn: warning: EDGECORN_WORKER is not an option (did you mean "
        "EDGECORN_WORKERS?); ignored\n"
    )


def test_precedence_flags_env_file_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("workers: 3\nbacklog: 7\nkeep_alive_timeout: 9\n")
    # file only
    config = parse_args(["-c", str(path)])
    assert (config.workers, config.backlog, config.keep_alive_timeout) == (3, 7, 9.0)
    assert config.graceful_timeout == Config.graceful_timeout  # default
    # env over file
    monkeypatch.setenv("EDGECORN_WORKERS", "2")
    monkeypatch.setenv("EDGECORN_BACKLOG", "50")
    config = parse_args(["-c", str(path)])
    assert (config.workers, config.backlog, config.keep_alive_timeout) == (2, 50, 9.0)
    # flags over env
    config = parse_args(["-c", str(path), "--workers", "1"])
    assert (config.workers, config.backlog, config.keep_alive_timeout) == (1, 50, 9.0)
    # env without a file, over the defaults
    config = parse_args([])
    assert (config.workers, config.backlog) == (2, 50)


def test_cli_error_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGECORN_MAX_REQUESTS", "many")
    assert main(["tests.apps.e2e:app"]) == 2
    assert capsys.readouterr().err == (
        "edgecorn: error: EDGECORN_MAX_REQUESTS: expected an integer, got 'many'\n"
    )


def test_server_configured_by_the_environment_alone(
    tmp_path: Path, certs: tuple[str, str, str]
) -> None:
    """No flags but the app: TLS bind, cleartext bind, certificate and access log from env."""
    from tests.support.net import free_port

    tls_port, plain_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECORN_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        EDGECORN_BIND=f"127.0.0.1:{tls_port}",
        EDGECORN_INSECURE_BIND=f"127.0.0.1:{plain_port}",
        EDGECORN_CERTFILE=certs[0],
        EDGECORN_KEYFILE=certs[1],
        EDGECORN_WORKERS="0",
        EDGECORN_WORKER_CLASS="asyncio",
        EDGECORN_ACCESSLOG="-",
        EDGECORN_ACCESS_LOG_FORMAT="%(m)s %(U)s %(s)s env-format",
    )
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgecorn", "tests.apps.e2e:app"],
            cwd=REPO_ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 20
        while "Running on quic://" not in err.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.05)
        assert f"https://127.0.0.1:{tls_port}" in err.read_text()
        for url in (f"https://localhost:{tls_port}/", f"http://127.0.0.1:{plain_port}/"):
            result = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "--cacert",
                    certs[2],
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "10",
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert result.stdout == "200", result.stderr
        deadline = time.monotonic() + 5
        while out.read_text().count("GET / 200 env-format") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out.read_text().count("GET / 200 env-format") == 2, out.read_text()
    finally:
        proc.terminate()
        proc.wait(10)
