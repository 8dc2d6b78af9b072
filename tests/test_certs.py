from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from edgecorn import certs
from edgecorn.certs import ensure_dev_certs, spki_sha256_b64, trust_hint


def load_all(path: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def test_creates_a_ca_and_a_chain(tmp_path: Path) -> None:
    certfile, keyfile, cafile = ensure_dev_certs(tmp_path / "certs")
    assert Path(certfile).name == "localhost.pem"
    assert Path(keyfile).name == "localhost.key"
    assert Path(cafile).name == "ca.pem"

    (ca,) = load_all(cafile)
    leaf, chained_ca = load_all(certfile)
    assert chained_ca == ca
    common_name = ca.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert common_name == "edgecorn development CA"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    leaf.verify_directly_issued_by(ca)

    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for cert in (ca, leaf):
        assert cert.not_valid_after_utc - cert.not_valid_before_utc <= datetime.timedelta(days=825)

    for key in (keyfile, str(tmp_path / "certs" / "ca.key")):
        assert stat.S_IMODE(Path(key).stat().st_mode) == 0o600


def test_python_ssl_verifies_the_chain(tmp_path: Path) -> None:
    certfile, keyfile, cafile = ensure_dev_certs(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certfile, keyfile)
    client = ssl.create_default_context(cafile=cafile)
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(client_in, client_out, server_hostname="localhost")
    s = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    c.do_handshake()
    peer = c.getpeercert()
    assert peer is not None
    assert peer["subject"] == ((("commonName", "localhost"),),)


def test_reuses_valid_files(tmp_path: Path) -> None:
    first = ensure_dev_certs(tmp_path)
    before = [Path(p).read_bytes() for p in first]
    second = ensure_dev_certs(tmp_path)
    assert second == first
    assert [Path(p).read_bytes() for p in second] == before


def test_missing_leaf_is_reissued_by_the_same_ca(tmp_path: Path) -> None:
    certfile, keyfile, cafile = ensure_dev_certs(tmp_path)
    ca_before = Path(cafile).read_bytes()
    Path(keyfile).unlink()
    ensure_dev_certs(tmp_path)
    assert Path(cafile).read_bytes() == ca_before
    leaf = load_all(certfile)[0]
    leaf.verify_directly_issued_by(load_all(cafile)[0])
    key = serialization.load_pem_private_key(Path(keyfile).read_bytes(), None)
    assert key.public_key() == leaf.public_key()


def test_missing_ca_regenerates_everything(tmp_path: Path) -> None:
    certfile, _, cafile = ensure_dev_certs(tmp_path)
    leaf_before = Path(certfile).read_bytes()
    (tmp_path / "ca.key").unlink()
    ensure_dev_certs(tmp_path)
    assert Path(certfile).read_bytes() != leaf_before
    load_all(certfile)[0].verify_directly_issued_by(load_all(cafile)[0])


def test_expired_leaf_is_renewed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    certfile, _, cafile = ensure_dev_certs(tmp_path)
    old_leaf = load_all(certfile)[0]
    ca_before = Path(cafile).read_bytes()
    # Pretend the leaf is older than it is by issuing it in the past.
    real_now = certs._now
    monkeypatch.setattr(certs, "_now", lambda: real_now() - datetime.timedelta(days=900))
    ca = certs._load_pair(Path(cafile), tmp_path / "ca.key")
    assert ca is not None
    leaf, key = certs._make_leaf(*ca)
    monkeypatch.setattr(certs, "_now", real_now)
    certs._write(Path(certfile), certs._pem(leaf) + ca_before)
    certs._write_key(tmp_path / "localhost.key", key)

    ensure_dev_certs(tmp_path)
    new_leaf = load_all(certfile)[0]
    assert new_leaf != old_leaf and new_leaf != leaf
    assert new_leaf.not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc)
    assert Path(cafile).read_bytes() == ca_before


def test_spki_hash_matches_the_leaf_key(tmp_path: Path) -> None:
    certfile, _, _ = ensure_dev_certs(tmp_path)
    leaf = load_all(certfile)[0]
    der = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert spki_sha256_b64(certfile) == expected
    assert len(base64.b64decode(expected)) == 32


def test_trust_hint_names_the_ca() -> None:
    hint = trust_hint("/x/ca.pem")
    assert "curl --cacert /x/ca.pem" in hint
    assert "update-ca-certificates" in hint
    assert "rowser" in hint
