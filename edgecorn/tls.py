"""TLS contexts made from certificate files (`new_ssl_context`), and `TLSFileError` for a file
that cannot be used. Which context a handshake gets, and checking every configured file at
start, is `edgecorn.certificates`.

OpenSSL prompts on the terminal for the password of an encrypted key when it is given none;
a server must never do that (and in workers, without a terminal, the prompt is EINVAL). We
always pass a password callback, so a missing or wrong `keyfile_password` is one clear line.
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config


class TLSFileError(ValueError):
    """A certificate, key or CA file that cannot be used; `key` is the option that names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def new_ssl_context(
    config: Config, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    """A server context with these files (the config's certfile/keyfile by default)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 9113 9.2
    context.set_ciphers(config.ciphers)
    context.options |= ssl.OP_NO_COMPRESSION
    load_cert_chain(context, config, certfile, keyfile)
    if config.ca_certs:
        context.load_verify_locations(config.ca_certs)
    if config.verify_mode is not None:
        context.verify_mode = config.verify_mode
    if config.verify_flags is not None:
        context.verify_flags = config.verify_flags
    context.set_alpn_protocols(list(config.alpn_protocols))
    keylog = config.ssl_keylog_file or os.environ.get("SSLKEYLOGFILE")
    if keylog:
        context.keylog_filename = keylog
    return context


def load_cert_chain(
    context: ssl.SSLContext,
    config: Config,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> None:
    certfile, keyfile = certfile or config.certfile, keyfile or config.keyfile
    assert certfile is not None and keyfile is not None

    def password() -> str:
        if config.keyfile_password is None:
            raise TLSFileError(
                "keyfile", f"{keyfile!r} is encrypted and keyfile_password is not set"
            )
        return config.keyfile_password

    try:
        context.load_cert_chain(certfile, keyfile, password)
    except ssl.SSLError as exc:
        if config.keyfile_password is not None and _encrypted(keyfile):
            raise TLSFileError(
                "keyfile", f"{keyfile!r} is encrypted and keyfile_password is wrong"
            ) from None
        raise TLSFileError(
            "certfile",
            f"cannot load the certificate {certfile!r} with the "
            f"key {keyfile!r}: {exc.reason or exc}",
        ) from None


def _encrypted(keyfile: str) -> bool:
    try:
        with open(keyfile, "rb") as file:
            head = file.read(4096)
    except OSError:
        return False
    return b"ENCRYPTED" in head  # PKCS#8 "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED"
