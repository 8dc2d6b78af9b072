"""The certificate store: which certificate each TLS or QUIC handshake gets, and reloads.

`certificates:` is a list of `{cert, key, names}`; a handshake whose SNI matches a name
(exact, or `*.example.com` for one label under example.com) gets that entry, any other
handshake the first entry. `certfile`/`keyfile` are the one-entry case.

Over TCP every entry has its own `ssl.SSLContext`; the listeners hold the first one, whose
`sni_callback` swaps the handshake's context. Over QUIC, aioquic takes the certificate as
objects, chosen in quic/engine.py once the ClientHello is read (`quic_certificate`).

Reloads: the manager's tick calls `tick()` once a second; every RELOAD_EVERY seconds (or
after SIGHUP when serving without a supervisor) the files' stamps are compared and changed
entries rebuilt. A handshake already under way or a connection already open keeps the
certificate it started with; a reload that fails keeps the old certificate and logs one
line. The listeners keep their context object, so after a reload it always swaps.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .certspec import CertificateSpec
from .tls import TLSFileError, new_ssl_context

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("edgecorn.error")

RELOAD_EVERY = 5  # ticks (seconds) between looks at the files' modification stamps

# (certificate, chain, private key) as aioquic's TLS context takes them.
QuicCertificate = tuple[Any, list[Any], Any]
Stamp = tuple[tuple[int, int, int], ...]


def specs_of(config: Config) -> list[CertificateSpec]:
    """The configured certificates; `certfile`/`keyfile` are the one-entry case."""
    if config.certificates:
        if config.certfile is not None:
            raise TLSFileError(
                "certfile",
                "give either certificates or certfile/keyfile, not both "
                "(the first certificates entry is the default certificate)",
            )
        return list(config.certificates)
    if config.certfile is None or config.keyfile is None:
        return []
    return [CertificateSpec(0, config.certfile, config.keyfile)]


def match(names: dict[str, int], server_name: str | None) -> int:
    """The entry for an SNI name: exact first, then a `*.` wildcard one label up, else 0."""
    if not server_name:
        return 0
    name = server_name.lower().rstrip(".")
    found = names.get(name)
    if found is None:
        _, dot, parent = name.partition(".")
        found = names.get("*." + parent) if dot else None
    return found or 0


@dataclass(frozen=True)
class _Loaded:
    """One entry as loaded: its TCP context, its QUIC objects, its files' stamp."""

    context: ssl.SSLContext
    quic: QuicCertificate
    stamp: Stamp


class CertificateStore:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.specs = specs_of(config)
        if not self.specs:
            raise TLSFileError("certfile", "no certificate is configured")
        self.names: dict[str, int] = {}
        for spec in self.specs:
            for name in spec.names:
                self.names.setdefault(name, spec.index)  # the first entry naming it wins
        self.loaded = [self._load(spec) for spec in self.specs]
        self.failed: dict[int, Stamp] = {}  # a stamp whose reload failed: logged once
        self.ticks = 0
        self.reload_requested = False
        self.context = self.loaded[0].context  # the listeners': swaps per handshake
        if len(self.specs) > 1:
            self.context.sni_callback = self._on_sni

    # --- choosing ------------------------------------------------------------------

    def _on_sni(self, ssl_object: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        chosen = self.loaded[match(self.names, server_name)].context
        if chosen is not context:
            ssl_object.context = chosen

    def quic_certificate(self, server_name: str | None) -> QuicCertificate:
        return self.loaded[match(self.names, server_name)].quic

    def quic_for_hello(self, server_name: str | None | Callable[[], str | None]) -> QuicCertificate:
        """The QUIC engines' choice. `server_name` may be a function that parses the
        ClientHello (~0.1 ms in aioquic): it is called only when there is a choice."""
        if len(self.loaded) == 1:
            return self.loaded[0].quic
        name = server_name() if callable(server_name) else server_name
        return self.loaded[match(self.names, name)].quic

    # --- loading and reloading ----------------------------------------------------------

    def _load(self, spec: CertificateSpec) -> _Loaded:
        label = spec.index if self.config.certificates else None  # None: certfile/keyfile
        try:
            stamp = _stamp(spec)
            context = new_ssl_context(self.config, spec.cert, spec.key)
            quic = _quic_objects(spec, self.config.keyfile_password)
        except TLSFileError as exc:
            if label is None:
                raise
            raise TLSFileError(f"certificates[{label}]", str(exc)) from None
        except OSError as exc:
            raise TLSFileError(
                "certfile" if label is None else f"certificates[{label}]",
                f"cannot load {exc.filename!r}: {exc.strerror}",
            ) from None
        except ValueError as exc:
            raise TLSFileError(
                "certfile" if label is None else f"certificates[{label}]",
                f"cannot load {spec.cert!r} with {spec.key!r}: {exc}",
            ) from None
        return _Loaded(context, quic, stamp)

    def tick(self) -> None:
        self.ticks += 1
        if self.reload_requested or self.ticks % RELOAD_EVERY == 0:
            force, self.reload_requested = self.reload_requested, False
            self.reload(force)

    def reload(self, force: bool = False) -> int:
        """Rebuild every entry whose files changed (all of them with `force`); the count."""
        reloaded = 0
        for spec in self.specs:
            try:
                stamp = _stamp(spec)
            except OSError as exc:
                stamp = ()
                problem = f"cannot read it: {exc.strerror}"
            else:
                if stamp == self.loaded[spec.index].stamp and not force:
                    continue
                if stamp == self.failed.get(spec.index) and not force:
                    continue
                try:
                    loaded = self._load(spec)
                except TLSFileError as exc:
                    problem = str(exc)
                else:
                    self.loaded[spec.index] = loaded
                    self.failed.pop(spec.index, None)
                    reloaded += 1
                    log.info("Reloaded the certificate %s", spec.cert)
                    continue
            if self.failed.get(spec.index) != stamp:
                self.failed[spec.index] = stamp
                log.error("Certificate %s not reloaded, the old one stays: %s", spec.cert, problem)
        if reloaded:
            self.context.sni_callback = self._on_sni  # the listeners' context is the old one
        return reloaded


def _stamp(spec: CertificateSpec) -> Stamp:
    """What changes when a file is rewritten or replaced (renamed over, as tools do)."""
    stamps = []
    for path in (spec.cert, spec.key):
        info = os.stat(path)
        stamps.append((info.st_mtime_ns, info.st_size, info.st_ino))
    return tuple(stamps)


def _quic_objects(spec: CertificateSpec, password: str | None) -> QuicCertificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with open(spec.cert, "rb") as file:
        chain = x509.load_pem_x509_certificates(file.read())
    with open(spec.key, "rb") as file:
        key = serialization.load_pem_private_key(
            file.read(), password.encode() if password is not None else None
        )
    return chain[0], chain[1:], key


# --- one store per Config (per worker process) ---------------------------------------

_stores: weakref.WeakKeyDictionary[Config, CertificateStore] = weakref.WeakKeyDictionary()


def store_for(config: Config) -> CertificateStore:
    """The store the TCP listeners, QUIC and the tick of this config share."""
    store = _stores.get(config)
    if store is None:
        store = _stores[config] = CertificateStore(config)
        if config.workers == 0:
            _reload_on_sighup(store)
    return store


def tick(config: Config) -> None:
    """The manager's once-a-second call: nothing unless a store is in use."""
    store = _stores.get(config)
    if store is not None:
        try:
            store.tick()
        except Exception:  # a reload must never stop the tick
            log.exception("error while checking the certificates")


def _reload_on_sighup(store: CertificateStore) -> None:
    """Without a supervisor (which restarts its workers on SIGHUP), SIGHUP reloads the
    certificates at the next tick. Only when nothing else handles SIGHUP."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, None):
        return

    def on_sighup(signum: int, frame: Any) -> None:
        store.reload_requested = True

    signal.signal(signal.SIGHUP, on_sighup)


# --- for `edgecorn check` ----------------------------------------------------------------


@dataclass(frozen=True)
class Inspected:
    """One entry as `edgecorn check` sees it: loadable (error None), its SAN names, expiry."""

    spec: CertificateSpec
    error: str | None = None
    san: tuple[str, ...] = ()
    expires: Any = None  # datetime (UTC) of the leaf's notAfter


def inspect(config: Config) -> list[Inspected]:
    """Load every `certificates:` entry as a worker would, each on its own."""
    from cryptography import x509

    found = []
    for spec in config.certificates:
        try:
            new_ssl_context(config, spec.cert, spec.key)
            with open(spec.cert, "rb") as file:
                leaf = x509.load_pem_x509_certificates(file.read())[0]
        except TLSFileError as exc:
            found.append(Inspected(spec, str(exc)))
            continue
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            found.append(Inspected(spec, f"cannot load {spec.cert!r}: {reason}"))
            continue
        try:
            ext = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            san = tuple(name.lower() for name in ext.value.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            san = ()
        found.append(Inspected(spec, None, san, leaf.not_valid_after_utc))
    return found


def uncovered(entry: Inspected) -> list[str]:
    """Configured names the entry's own certificate is not valid for (clients would refuse)."""
    out = []
    for name in entry.spec.names:
        parent = name.partition(".")[2]
        if name not in entry.san and not (not name.startswith("*.") and "*." + parent in entry.san):
            out.append(name)
    return out


# --- start-up ----------------------------------------------------------------------


def create_ssl_context(config: Config) -> ssl.SSLContext:
    """The TCP listeners' context: it picks each handshake's certificate ."""
    return store_for(config).context


def check_files(config: Config) -> None:
    """Raise TLSFileError naming the first TLS file that cannot be read, then load them."""
    for key in ("certfile", "keyfile", "ca_certs"):
        path = getattr(config, key)
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise TLSFileError(key, f"cannot read {path!r}: {exc.strerror}") from None
    try:
        CertificateStore(config)  # every certificate loaded as a worker will
    except TLSFileError:
        raise
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise TLSFileError("certfile", f"cannot use the TLS files: {exc}") from None
