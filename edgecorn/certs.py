"""A development CA and a localhost certificate it signed, made once and reused.

Clients such as curl_cffi refuse a self-signed leaf, so the leaf is issued by a
small CA the user can trust once (`ca.pem`); `localhost.pem` holds the chain
(leaf, then CA). A leaf that expires is reissued by the same CA, so a CA the
user already trusts stays trusted.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "edgecorn development CA"
VALIDITY = datetime.timedelta(days=825)  # the most Apple platforms accept for a TLS leaf
RENEW_BEFORE = datetime.timedelta(days=1)  # reissue a day early, not mid-session
DNS_NAMES = ["localhost"]
IP_ADDRESSES = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]


def ensure_dev_certs(directory: str | Path = "certs") -> tuple[str, str, str]:
    """Return `(certfile, keyfile, cafile)`, creating or renewing them as needed."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    ca_cert_path, ca_key_path = folder / "ca.pem", folder / "ca.key"
    cert_path, key_path = folder / "localhost.pem", folder / "localhost.key"

    with _lock(folder):  # several workers may start at once
        ca = _load_pair(ca_cert_path, ca_key_path)
        if ca is None or not _valid_ca(*ca):
            ca = _make_ca()
            _write_key(ca_key_path, ca[1])
            _write(ca_cert_path, _pem(ca[0]))
            leaf = None
        else:
            leaf = _load_pair(cert_path, key_path)
        if leaf is None or not _valid_leaf(*leaf, ca[0]):
            leaf = _make_leaf(*ca)
            _write_key(key_path, leaf[1])
            _write(cert_path, _pem(leaf[0]) + _pem(ca[0]))
    return str(cert_path), str(key_path), str(ca_cert_path)


def spki_sha256_b64(certfile: str | Path) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of the first (leaf) certificate in `certfile`.

    The value Chromium's `--ignore-certificate-errors-spki-list` takes.
    """
    cert = x509.load_pem_x509_certificates(Path(certfile).read_bytes())[0]
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def trust_hint(cafile: str | Path) -> str:
    """A few lines telling the user how to make clients trust the development CA."""
    return "\n".join(
        [
            f"The development certificates are signed by a local CA: {cafile}",
            f"  curl:            curl --cacert {cafile} https://localhost:8000/",
            f"  Python:          SSL_CERT_FILE={cafile} (or verify='{cafile}')",
            f"  Debian/Ubuntu:   sudo cp {cafile} /usr/local/share/ca-certificates/"
            "edgecorn-dev-ca.crt && sudo update-ca-certificates",
            "  Browsers:        import it as an authority (Chrome: Settings > Privacy and"
            " security > Manage certificates; Firefox: Settings > Certificates > Authorities)",
        ]
    )


Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _make_ca() -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgecorn"),
        ]
    )
    start = _start()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    start = _start()
    # A leaf must not outlive its issuer: clients reject the chain once the CA expires.
    not_after = min(start + VALIDITY, ca_cert.not_valid_after_utc)
    san: list[x509.GeneralName] = [x509.DNSName(name) for name in DNS_NAMES]
    san += [x509.IPAddress(address) for address in IP_ADDRESSES]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _load_pair(cert_path: Path, key_path: Path) -> Pair | None:
    """The certificate and key, or None if either is missing, unreadable or mismatched."""
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, IndexError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _fresh(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


def _valid_ca(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return False
    return constraints.ca and cert.subject == cert.issuer and _fresh(cert)


def _valid_leaf(
    cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> bool:
    if cert.issuer != ca_cert.subject or not _fresh(cert):
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return set(DNS_NAMES) <= set(san.get_values_for_type(x509.DNSName)) and set(
        IP_ADDRESSES
    ) <= set(san.get_values_for_type(x509.IPAddress))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _start() -> datetime.datetime:
    # An hour back tolerates clock skew between this machine and a client.
    return _now() - datetime.timedelta(hours=1)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(path, data, mode=0o600)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    # Write beside the target and rename, so a reader never sees half a file.
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask; keys must be 0600
        handle.write(data)
    os.replace(temp, path)


@contextmanager
def _lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the atomic renames still keep files whole
        yield
        return
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
