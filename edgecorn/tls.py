"""TLS contexts shared by every TCP listener (and, later, QUIC)."""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config


def create_ssl_context(config: Config) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 9113 9.2
    context.set_ciphers(config.ciphers)
    context.options |= ssl.OP_NO_COMPRESSION
    assert config.certfile is not None
    context.load_cert_chain(config.certfile, config.keyfile, config.keyfile_password)
    if config.ca_certs:
        context.load_verify_locations(config.ca_certs)
    if config.verify_mode is not None:
        context.verify_mode = config.verify_mode
    context.set_alpn_protocols(list(config.alpn_protocols))
    keylog = getattr(config, "ssl_keylog_file", None) or os.environ.get("SSLKEYLOGFILE")
    if keylog:
        context.keylog_filename = keylog
    return context
