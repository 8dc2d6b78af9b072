"""Start-up as a Hypercorn user meets it: every failure is one line and a non-zero exit,
never a prompt, a traceback or a restart loop. Real `python -m edgecorn` subprocesses."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STARTUP_FAILED = 3  # the app could not start: same with and without a supervisor
INFO = re.compile(r"^\[[^]]+\] \[\d+\] \[INFO\] ")

pytestmark = pytest.mark.timeout(120)


def edgecorn(*args: str, cwd: Path, tty: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("EDGECORN_TEST_UNSET", None)
    # -P: no working directory on sys.path, as for the `edgecorn` console script
    command = [sys.executable, "-P", "-m", "edgecorn", *args]
    if tty:  # a real terminal, where OpenSSL would prompt for a key's password
        script = shutil.which("script")
        if script is None:
            pytest.fail("util-linux `script` is needed to give the server a terminal")
        command = [script, "-qec", subprocess.list2cmdline(command), os.devnull]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of output besides INFO log records (no tracebacks, no second error)."""
    output = result.stderr + (result.stdout if "script" in result.args[0] else "")
    lines = [line for line in output.replace("\r\n", "\n").splitlines() if not INFO.match(line)]
    assert len(lines) == 1, output
    return lines[0]


# --------------------------------------------------------------------------- apps that fail


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    (tmp_path / "badenv.py").write_text(
        "import os\nDATABASE = os.environ['EDGECORN_TEST_UNSET']\n"
        "async def app(scope, receive, send):\n    pass\n"
    )
    (tmp_path / "badfactory.py").write_text(
        "def create():\n    raise RuntimeError('no database')\n"
    )
    (tmp_path / "dies.py").write_text(
        "import os\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] == 'lifespan':\n"
        "        await receive()\n"
        "        os._exit(7)\n"
    )
    return tmp_path


@pytest.mark.parametrize("workers", ["0", "2"])
def test_app_module_raising_on_import(apps: Path, workers: str) -> None:
    result = edgecorn("badenv:app", "-w", workers, "-b", "127.0.0.1:0", cwd=apps)
    assert one_line(result) == (
        "edgecorn: error: error while importing module 'badenv': KeyError: 'EDGECORN_TEST_UNSET'"
    )
    assert result.returncode == STARTUP_FAILED


@pytest.mark.parametrize("workers", ["0", "2"])
@pytest.mark.parametrize("spelling", [["badfactory:create()"], ["--factory", "badfactory:create"]])
def test_factory_raising(apps: Path, workers: str, spelling: list[str]) -> None:
    result = edgecorn(*spelling, "-w", workers, "-b", "127.0.0.1:0", cwd=apps)
    assert (
        one_line(result)
        == "edgecorn: error: factory 'badfactory:create' raised RuntimeError: no database"
    )
    assert result.returncode == STARTUP_FAILED


@pytest.mark.parametrize("workers", ["0", "2"])
def test_lifespan_failure_exit_code(apps: Path, workers: str) -> None:
    result = edgecorn(
        "tests.apps.e2e:failing_lifespan_app", "-w", workers, "-b", "127.0.0.1:0", cwd=ROOT
    )
    assert one_line(result) == (
        "edgecorn: error: application startup failed: e2e-startup-failed: database unreachable"
    )
    assert result.returncode == STARTUP_FAILED


def test_worker_dying_before_it_served_is_not_restarted(apps: Path) -> None:
    result = edgecorn("dies:app", "-w", "2", "-b", "127.0.0.1:0", cwd=apps)
    assert (
        one_line(result)
        == "edgecorn: error: worker 0 exited with 7 before it served; not restarting"
    )
    assert result.returncode == STARTUP_FAILED


# --------------------------------------------------------------------------- -c python:module


def test_python_config_module_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "hconf.py").write_text("workers = 'two'\n")
    result = edgecorn("-c", "python:hconf", cwd=tmp_path)
    # it was imported (no PYTHONPATH=.): its own value is what is refused
    assert (
        one_line(result)
        == f"edgecorn: error: {tmp_path / 'hconf.py'}: workers: expected an integer >= 0, got 'two'"
    )
    assert result.returncode == 2


def test_python_config_module_shows_its_own_import_error(tmp_path: Path) -> None:
    (tmp_path / "hconf.py").write_text("import nonexistent_dep\nworkers = 2\n")
    result = edgecorn("-c", "python:hconf", cwd=tmp_path)
    assert one_line(result) == (
        "edgecorn: error: importing 'hconf' raised "
        "ModuleNotFoundError: No module named 'nonexistent_dep'"
    )
    assert result.returncode == 2


def test_python_config_module_missing(tmp_path: Path) -> None:
    result = edgecorn("-c", "python:nosuchconf", cwd=tmp_path)
    assert one_line(result) == (
        "edgecorn: error: cannot import 'nosuchconf': no module named "
        f"'nosuchconf' (from {tmp_path} or sys.path)"
    )
    assert result.returncode == 2


# --------------------------------------------------------------------------- TLS files


@pytest.fixture
def encrypted(tmp_path: Path) -> Path:
    """A certificate and its key, the key encrypted with the password 'secret'."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    (tmp_path / "app.py").write_text("async def app(scope, receive, send):\n    pass\n")
    (tmp_path / "edgecorn.yaml").write_text(
        "bind: ['127.0.0.1:0']\ncertfile: cert.pem\nkeyfile: key.pem\n"
    )
    return tmp_path


@pytest.mark.parametrize("workers", ["0", "2"])
def test_encrypted_key_without_password_never_prompts(encrypted: Path, workers: str) -> None:
    result = edgecorn("-c", "edgecorn.yaml", "-w", workers, "app:app", cwd=encrypted, tty=True)
    assert one_line(result) == (
        f"edgecorn: error: edgecorn.yaml:3: keyfile: "
        f"'{encrypted / 'key.pem'}' is encrypted and keyfile_password "
        "is not set"
    )
    assert result.returncode == 1


def test_encrypted_key_with_wrong_password(encrypted: Path) -> None:
    result = edgecorn(
        "-c", "edgecorn.yaml", "--keyfile-password", "guess", "app:app", cwd=encrypted
    )
    assert one_line(result) == (
        f"edgecorn: error: edgecorn.yaml:3: keyfile: "
        f"'{encrypted / 'key.pem'}' is encrypted and keyfile_password "
        "is wrong"
    )
    assert result.returncode == 1


def test_encrypted_key_with_its_password_serves(encrypted: Path) -> None:
    """The right password: the server starts (and is stopped by a bounded wait)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgecorn",
            "-c",
            "edgecorn.yaml",
            "--keyfile-password",
            "secret",
            "-w",
            "0",
            "app:app",
        ],
        cwd=encrypted,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for _ in range(50):  # bounded: the start-up log is a few lines
            line = proc.stderr.readline()
            seen.append(line)
            if "Running on" in line or not line:
                break
        assert any("Running on https://" in line for line in seen), seen
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("missing, line", [("certfile", 2), ("keyfile", 3)])
def test_missing_tls_file_names_the_file_and_the_line(
    encrypted: Path, missing: str, line: int
) -> None:
    (encrypted / f"{missing}.yaml").write_text(
        "bind: ['127.0.0.1:0']\n"
        f"certfile: {'gone.pem' if missing == 'certfile' else 'cert.pem'}\n"
        f"keyfile: {'gone.pem' if missing == 'keyfile' else 'key.pem'}\n"
        "keyfile_password: secret\n"
    )
    result = edgecorn("-c", f"{missing}.yaml", "app:app", cwd=encrypted)
    assert one_line(result) == (
        f"edgecorn: error: {missing}.yaml:{line}: {missing}: cannot "
        f"read '{encrypted / 'gone.pem'}': No such file or directory"
    )
    assert result.returncode == 1


def test_demo_says_it_listens_on_this_machine_only(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecorn", "-w", "0", "-b", "127.0.0.1:0"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for _ in range(50):  # bounded: the start-up log is a few lines
            line = proc.stderr.readline()
            seen.append(line)
            if "Running on" in line or not line:
                break
        assert any(
            "The demo listens on this machine only; for every interface: "
            "-b 0.0.0.0:8000 -b [::]:8000" in line
            for line in seen
        ), seen
    finally:
        proc.terminate()
        proc.wait(10)
