"""A certificate chain like the runner's: a root CA, `length - 1` intermediates and a leaf.

The runner's amplificationlimit case uses a 9-certificate chain so that the server's
first flight cannot fit in three times the client's Initial; RSA keys make each
certificate big enough for that (~8 KB of certificates).
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

NAMES = ("localhost", "server", "server4", "server6", "server46")
ADDRESSES = ("127.0.0.1", "::1")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    subject: str,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
    key: rsa.RSAPrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    issuer_name, issuer_key = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san: list[x509.GeneralName] = [x509.DNSName(name) for name in NAMES]
        san += [x509.IPAddress(ipaddress.ip_address(a)) for a in ADDRESSES]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@functools.cache
def _key(index: int) -> rsa.RSAPrivateKey:
    """RSA keys take a while to make: one run reuses them (the certificates are new)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_chain(directory: Path, length: int = 1) -> None:
    """Write ca.pem (the root), cert.pem (leaf first, then intermediates) and priv.key."""
    directory.mkdir(parents=True, exist_ok=True)
    root_key = _key(0)
    root = _cert("edgecorn interop root", None, root_key, ca=True)
    issuer = (root.subject, root_key)
    intermediates: list[x509.Certificate] = []
    for index in range(length - 1):
        key = _key(index + 2)
        cert = _cert(f"edgecorn interop intermediate {index + 1}", issuer, key, ca=True)
        intermediates.append(cert)
        issuer = (cert.subject, key)
    leaf_key = _key(1)
    leaf = _cert("server", issuer, leaf_key, ca=False)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(root.public_bytes(pem))
    chain = [leaf] + intermediates[::-1]
    (directory / "cert.pem").write_bytes(b"".join(c.public_bytes(pem) for c in chain))
    (directory / "priv.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
