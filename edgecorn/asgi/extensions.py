"""ASGI extensions beyond the core HTTP spec: `tls`, `http.response.pathsend` and
`http.response.push`.

Each is listed in `scope["extensions"]` only where it works:
- `http.response.trailers`, `http.response.early_hint`, `http.response.pathsend`: every
  HTTP request (the manager's shared dict);
- `tls`: connections over TLS (TCP: from the ssl object; QUIC: TLS 1.3, the cipher suite
  and our certificate from the engine). The connection gets its own copy of the dict;
- `http.response.push`: HTTP/2 requests whose client allows push (SETTINGS_ENABLE_PUSH).
"""

from __future__ import annotations

import os
import ssl
import weakref
from typing import Any

from ..protocol.events import Headers

# A file is read and sent in pieces of this size: each goes through the stream's normal
# send path, so flow control and the transport's buffer limit apply as to any body.
PATHSEND_CHUNK = 256 * 1024

_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# OpenSSL's cipher names -> IANA numbers (the low 16 bits of get_ciphers()'s "id").
_cipher_ids: dict[str, int] = {}
_server_pems: weakref.WeakKeyDictionary[ssl.SSLContext, str | None] = weakref.WeakKeyDictionary()


# --- tls -----------------------------------------------------------------------------


def with_tls(
    extensions: dict[str, dict[str, Any]], ssl_object: Any, config: Any
) -> dict[str, dict[str, Any]]:
    """The connection's own extensions: the shared ones plus `tls` for this handshake.
    `ssl_object` is an ssl.SSLObject or anything forwarding its methods (trio.SSLStream)."""
    if ssl_object is None:
        return extensions
    return {**extensions, "tls": tls_extension(ssl_object, config)}


def tls_extension(ssl_object: Any, config: Any) -> dict[str, Any]:
    """The ASGI TLS extension (version 0.2) for a completed TCP handshake."""
    context = getattr(ssl_object, "context", None)  # SNI may have swapped it
    cipher = ssl_object.cipher()
    chain = _client_chain(ssl_object)
    return {
        "server_cert": _server_pem(context, config),
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der) for der in chain],
        "client_cert_name": _subject(chain[0]) if chain else None,
        # Python's ssl ends a handshake whose client certificate fails verification
        # (CERT_OPTIONAL and CERT_REQUIRED alike): a certificate we see was verified.
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": _cipher_id(cipher[0], context) if cipher else None,
    }


def quic_tls_extension(cipher_suite: int | None, certificate_der: bytes | None) -> dict[str, Any]:
    """QUIC is always TLS 1.3 (RFC 9001). Client certificates are not asked for on QUIC:
    the chain stays empty."""
    return {
        "server_cert": ssl.DER_cert_to_PEM_cert(certificate_der) if certificate_der else None,
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": 0x0304,
        "cipher_suite": cipher_suite,
    }


def _client_chain(ssl_object: Any) -> list[bytes]:
    """The client's certificates as DER, leaf first. Python 3.13 gives the chain the client
    sent; before it (and through trio's SSLStream) only the leaf is reachable."""
    unverified = getattr(ssl_object, "get_unverified_chain", None)
    if unverified is not None:
        chain = unverified()
        if chain:
            return [bytes(der) for der in chain]
    der = ssl_object.getpeercert(binary_form=True)
    return [der] if der else []


def _subject(der: bytes) -> str | None:
    from cryptography import x509

    try:
        subject: str = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    except ValueError:
        return None
    return subject


def _cipher_id(name: str, context: ssl.SSLContext | None) -> int | None:
    found = _cipher_ids.get(name)
    if found is None and context is not None:
        for cipher in context.get_ciphers():
            _cipher_ids[cipher["name"]] = cipher["id"] & 0xFFFF
        found = _cipher_ids.get(name)
    return found


def _server_pem(context: ssl.SSLContext | None, config: Any) -> str | None:
    """Our certificate as sent on this context: the store entry that owns the context
    (Python's ssl cannot tell which certificate a handshake used), cached per context."""
    if context is None:
        return None
    try:
        return _server_pems[context]
    except KeyError:
        pass
    pem: str | None = None
    from ..certificates import store_for
    from ..tls import TLSFileError

    try:
        loaded = store_for(config).loaded
    except (TLSFileError, OSError, ValueError):
        loaded = []
    for entry in loaded:
        if entry.context is context:
            from cryptography.hazmat.primitives.serialization import Encoding

            pem = entry.quic[0].public_bytes(Encoding.PEM).decode("ascii")
            break
    _server_pems[context] = pem
    return pem


# --- http.response.push ------------------------------------------------------------------


def with_push(extensions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {**extensions, "http.response.push": {}}


def push_fields(scheme: str, headers: Headers, message: dict[str, Any]) -> Headers:
    """The promised request's field section (RFC 9113 8.4: a GET with :authority of the
    request that pushes it) for an `http.response.push` message."""
    path = message["path"]
    if not isinstance(path, str) or not path.startswith("/"):
        raise TypeError(f"http.response.push needs a path starting with '/', got {path!r}")
    authority = next((value for name, value in headers if name == b"host"), b"")
    fields: Headers = [
        (b":method", b"GET"),
        (b":scheme", scheme.encode("ascii")),
        (b":authority", authority),
        (b":path", path.encode("utf-8")),
    ]
    fields += [(bytes(name).lower(), bytes(value)) for name, value in message.get("headers", ())]
    return fields


# --- http.response.pathsend ------------------------------------------------------------


async def send_path(stream: Any, message: dict[str, Any]) -> None:
    """The file as the response body, through `stream.send` piece by piece: the same
    back-pressure, flow control and access log as any body, on every protocol.

    Not zero-copy: the HTTP/1 adapter frames and counts the body, TLS encrypts it in user
    space, and neither asyncio's nor uvloop's transports let os.sendfile share a socket
    with buffered writes. Reads are blocking but page-sized for the cache (~256 KiB)."""
    if not stream.started:
        raise RuntimeError("http.response.pathsend sent before http.response.start")
    with open(os.fspath(message["path"]), "rb") as file:
        data = file.read(PATHSEND_CHUNK)
        while True:
            following = file.read(PATHSEND_CHUNK) if data else b""
            await stream.send(
                {"type": "http.response.body", "body": data, "more_body": bool(following)}
            )
            if not following or stream.done or stream.disconnected:
                return
            data = following
