"""`edgecorn check FILE` as a user runs it: a subprocess, its exact output and exit status."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_check(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGECORN_")}
    environ["PYTHONPATH"] = str(REPO_ROOT)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "edgecorn", "check", str(path)],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def site(tmp_path: Path, certs: tuple[str, str, str]) -> Path:
    """A directory with certs/localhost.pem and .key (names: localhost, 127.0.0.1, ::1)."""
    (tmp_path / "certs").mkdir()
    shutil.copy(certs[0], tmp_path / "certs" / "localhost.pem")
    shutil.copy(certs[1], tmp_path / "certs" / "localhost.key")
    (tmp_path / "public").mkdir()
    return tmp_path


def write(site: Path, text: str, name: str = "edge.yaml") -> Path:
    path = site / name
    path.write_text(textwrap.dedent(text))
    return path


def self_signed(site: Path, name: str, days: int, host: str = "localhost") -> None:
    """certs/NAME.pem + .key valid from 400 days ago for 400 + `days` days."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=400))
        .not_valid_after(now + datetime.timedelta(days=days, hours=12))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (site / "certs" / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (site / "certs" / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


GOOD = """\
    bind: ["0.0.0.0:8443"]
    insecure_bind: ["127.0.0.1:8080"]
    certfile: certs/localhost.pem
    keyfile: certs/localhost.key
    routes:
      - host: localhost
        path: /v1/
        proxy: [http://127.0.0.1:9000, "http://backend:9001"]
        strip_prefix: true
      - path: /static/
        static: ./public
      - path: =/healthz
        respond: {status: 200, body: "ok\\n"}
      - app: demo:app
    """


def test_good_file_prints_what_would_be_served(site: Path) -> None:
    result = run_check(write(site, GOOD))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    expires = [line for line in lines if line.startswith(f"  {site}/certs/localhost.pem:")]
    assert len(expires) == 1 and "(expires 20" in expires[0]
    assert lines == [
        "listeners:",
        "  https://0.0.0.0:8443  TCP, TLS (h2, http/1.1)",
        "  http://127.0.0.1:8080  TCP, cleartext (http/1.1, h2c)",
        "  quic://0.0.0.0:8443  UDP, QUIC (h3)",
        "routes:",
        "  localhost/v1/ -> proxy http://127.0.0.1:9000, http://backend:9001",
        f"  */static/ -> static {site}/public",
        "  *=/healthz -> respond",
        "  */ -> app demo:app",
        "certificates:",
        expires[0],
        f"{site}/edge.yaml: OK",
    ]
    assert expires[0].startswith(f"  {site}/certs/localhost.pem: localhost, 127.0.0.1, ::1 ")


def test_every_error_with_its_line_in_one_run(site: Path) -> None:
    path = write(
        site,
        """\
        bind: ["0.0.0.0:8443"]
        certfile: certs/localhost.pem
        keyfile: certs/localhost.key
        workers: two
        graceful_timout: 5
        routes:
          - path: /v1/
            proxy: ftp://example.com
          - path: /s/
            statik: ./public
          - path: /ok/
            respond: 200
          - path: /up/
            proxy: "http://[::1"
        """,
    )
    result = run_check(path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {path}:4: workers: expected an integer >= 0, got 'two'",
        f"error: {path}:5: graceful_timout: unknown option (did you mean 'graceful_timeout'?)",
        f"error: {path}:8: routes[0].proxy: bad upstream URL 'ftp://example.com': the scheme "
        "must be http or https",
        f"error: {path}:10: routes[1].statik: unknown key (did you mean 'static'?); a route "
        "takes host, path, strip_prefix, one action of app, wsgi, static, proxy, respond, "
        "redirect and that action's options",
        f"error: {path}:14: routes[3].proxy: bad upstream URL 'http://[::1': Invalid IPv6 URL",
        f"{path}: 5 errors",
    ]


def test_a_key_given_twice_and_another_error(site: Path) -> None:
    path = write(
        site,
        """\
        workers: 2
        backlog: -1
        workers: 3
        """,
    )
    result = run_check(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {path}:2: backlog: expected an integer >= 0, got -1",
        f"error: {path}:3: workers: given twice (first on line 1)",
        f"{path}: 2 errors",
    ]


def test_invalid_yaml_is_one_error(site: Path) -> None:
    path = write(site, "bind: [\n")
    result = run_check(path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith(f"error: {path}:2: invalid YAML: ")
    assert result.stderr.splitlines()[-1] == f"{path}: 1 error"


def test_key_that_does_not_match_the_certificate(site: Path) -> None:
    self_signed(site, "other", days=300)
    path = write(
        site,
        """\
        certfile: certs/localhost.pem
        keyfile: certs/other.key
        """,
    )
    result = run_check(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {path}:2: keyfile: the key '{site}/certs/other.key' does not match the "
        f"certificate '{site}/certs/localhost.pem'",
        f"{path}: 1 error",
    ]


def test_missing_certificate_file(site: Path) -> None:
    path = write(
        site,
        """\
        bind: "127.0.0.1:8443"
        certfile: certs/nope.pem
        keyfile: certs/localhost.key
        """,
    )
    result = run_check(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {path}:2: certfile: cannot read '{site}/certs/nope.pem': No such file or "
        "directory",
        f"{path}: 1 error",
    ]


def test_expired_certificate_is_an_error(site: Path) -> None:
    self_signed(site, "old", days=-3)
    path = write(site, "certfile: certs/old.pem\nkeyfile: certs/old.key\n")
    result = run_check(path)
    assert result.returncode == 1
    [error, total] = result.stderr.splitlines()
    assert error.startswith(
        f"error: {path}:1: certfile: the certificate '{site}/certs/old.pem' expired on "
    )
    assert total == f"{path}: 1 error"


def test_certificate_expiring_soon_is_a_warning(site: Path) -> None:
    self_signed(site, "soon", days=10)
    path = write(site, "certfile: certs/soon.pem\nkeyfile: certs/soon.key\n")
    result = run_check(path)
    assert result.returncode == 0, result.stderr
    [warning] = result.stderr.splitlines()
    assert warning.startswith(
        f"warning: {path}:1: certfile: the certificate '{site}/certs/soon.pem' expires on "
    )
    assert warning.endswith(", in 10 days")
    assert result.stdout.splitlines()[-1] == f"{path}: OK"


def test_route_hosts_must_be_on_the_certificate(site: Path) -> None:
    self_signed(site, "wild", days=300, host="*.example.com")
    path = write(
        site,
        """\
        certfile: certs/wild.pem
        keyfile: certs/wild.key
        routes:
          - host: api.example.com
            respond: 200
          - host: a.b.example.com
            respond: 200
          - host: "*.example.com"
            path: /x/
            respond: 200
          - host: example.com
            respond: 200
        """,
    )
    result = run_check(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {path}:6: routes[1].host: 'a.b.example.com' is not among the certificate's "
        "names (*.example.com)",
        f"error: {path}:11: routes[3].host: 'example.com' is not among the certificate's names "
        "(*.example.com)",
        f"{path}: 2 errors",
    ]


def test_uncovered_host_with_a_cleartext_listener_is_a_warning(site: Path) -> None:
    path = write(
        site,
        """\
        certfile: certs/localhost.pem
        keyfile: certs/localhost.key
        insecure_bind: 127.0.0.1:8080
        routes:
          - host: intranet.lan
            respond: 200
        """,
    )
    result = run_check(path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"warning: {path}:5: routes[0].host: 'intranet.lan' is not among the certificate's "
        "names (localhost, 127.0.0.1, ::1)",
    ]


def test_apps_are_imported(site: Path) -> None:
    (site / "good.py").write_text("async def app(scope, receive, send):\n    pass\n")
    (site / "broken.py").write_text("import os\nSECRET = os.environ['NOT_SET_ANYWHERE_42']\n")
    path = write(
        site,
        """\
        routes:
          - path: /a/
            app: good:app
          - path: /b/
            app: broken:app
          - path: /c/
            wsgi: missing_module_42:application
          - path: /d/
            app: good:nope
        """,
    )
    result = run_check(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {path}:5: routes[1].app: error while importing module 'broken': KeyError: "
        "'NOT_SET_ANYWHERE_42'",
        f"error: {path}:7: routes[2].wsgi: cannot import module 'missing_module_42': No module "
        "named 'missing_module_42'",
        f"error: {path}:9: routes[3].app: module 'good' has no attribute 'nope'",
        f"{path}: 3 errors",
    ]


def test_quic_bind_without_certificate(site: Path) -> None:
    path = write(site, "quic_bind: ['127.0.0.1:8443']\n")
    result = run_check(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {path}:1: quic_bind: QUIC needs a certificate (certfile and keyfile)",
        f"{path}: 1 error",
    ]


def test_environment_is_checked_too(site: Path) -> None:
    path = write(site, "workers: 2\n")
    result = run_check(path, EDGECORN_WORKERS="-3")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: EDGECORN_WORKERS: expected an integer >= 0, got -3",
        f"{path}: 1 error",
    ]
    result = run_check(path, EDGECORN_BIND="127.0.0.1:9001,unix:/tmp/e.sock")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "listeners:",
        "  http://127.0.0.1:9001  TCP, cleartext (http/1.1, h2c)",
        "  http+unix:///tmp/e.sock  TCP, cleartext (http/1.1, h2c)",
        "routes:",
        "  * -> app demo:app (the built-in demo)",
        "from the environment: EDGECORN_BIND",
        f"{path}: OK",
    ]


def test_toml_file_reports_its_first_error(site: Path) -> None:
    path = write(site, 'bind = ["127.0.0.1:8000"]\nworkers = "2"\n', name="edge.toml")
    result = run_check(path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {path}:2: workers: expected an integer >= 0, got '2' (that is a string; "
        "write the number without quotes)",
        f"{path}: 1 error",
    ]


def test_missing_file(tmp_path: Path) -> None:
    result = run_check(tmp_path / "nope.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {tmp_path}/nope.yaml: cannot read config file: No such file or directory",
        f"{tmp_path}/nope.yaml: 1 error",
    ]
