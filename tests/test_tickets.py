"""Shared QUIC session tickets (`quic_ticket_key_file`): sealed tickets resume, with 0-RTT,
on another worker and in another server process holding the same key file; another key
falls back to a full handshake; a rotated file (new key first) still opens old tickets;
a replayed 0-RTT ticket is refused by the worker that saw it. ngtcp2's gtlsclient is the
client; the access log's `%(p)s` (the worker's pid) says which process answered.

The sans-IO half checks tickets.py itself: sealing, keys, the key file and the replay guard.
"""

from __future__ import annotations

import datetime
import importlib
import json
import re
import secrets
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from edgecorn.quic.tickets import (
    TICKETS_PER_GENERATION,
    EarlyDataGuard,
    SealedTickets,
    TicketKeyError,
    TicketState,
    TicketStore,
    read_key_file,
)
from tests.support.h3 import GtlsRun, gtlsclient, wait_quic
from tests.support.wait import wait_until

UTC = datetime.timezone.utc
LOG_FORMAT = "%(p)s %(r)s %(s)s"
RESUMED_MAX = 400  # Handshake CRYPTO bytes: a PSK handshake sends no certificate
FULL_MIN = 600


# --------------------------------------------------------------------------- sans-IO


def _state(**changes: Any) -> TicketState:
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    fields: dict[str, Any] = {
        "age_add": 123456789,
        "cipher_suite": 0x1301,
        "not_valid_before": now,
        "not_valid_after": now + datetime.timedelta(days=1),
        "resumption_secret": bytes(range(32)),
        "server_name": "example.test",
        "max_early_data_size": 0xFFFFFFFF,
    }
    fields.update(changes)
    return TicketState(**fields)


def test_seal_open_round_trip() -> None:
    tickets = SealedTickets([secrets.token_bytes(32)])
    for state in (_state(), _state(max_early_data_size=None, server_name="")):
        label = tickets.seal(state)
        assert state.resumption_secret not in label
        assert tickets.open(label) == state
    # Two seals of one state differ (a fresh nonce), so tickets cannot be linked.
    assert tickets.seal(_state()) != tickets.seal(_state())


def test_open_refuses_other_keys_and_tampering() -> None:
    key = secrets.token_bytes(32)
    label = SealedTickets([key]).seal(_state())
    assert SealedTickets([secrets.token_bytes(32)]).open(label) is None
    for at in (0, 3, 10, len(label) // 2, len(label) - 1):
        bad = bytearray(label)
        bad[at] ^= 1
        assert SealedTickets([key]).open(bytes(bad)) is None, at
    assert SealedTickets([key]).open(label[:20]) is None
    assert SealedTickets([key]).open(b"") is None
    assert SealedTickets([key]).open(secrets.token_bytes(64)) is None  # an aioquic label


def test_rotation_new_key_first() -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(48)
    old_ticket = SealedTickets([old]).seal(_state())
    rotated = SealedTickets([new, old])
    assert rotated.open(old_ticket) == _state()  # the old key still opens
    new_ticket = rotated.seal(_state())
    assert SealedTickets([new]).open(new_ticket) == _state()  # sealed under the new key
    assert SealedTickets([old]).open(new_ticket) is None


def test_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    first, second = secrets.token_hex(32), secrets.token_hex(40)
    path.write_text(f"# newest first\n{first}\n\n{second}  # until tomorrow\n")
    assert read_key_file(str(path)) == [bytes.fromhex(first), bytes.fromhex(second)]
    cases = {
        "": "holds no key",
        "# only a comment\n": "holds no key",
        secrets.token_hex(31) + "\n": "line 1: 31 bytes; a key needs 32 or more",
        f"{first}\nnot-hex\n": "line 2: not a hex string",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(TicketKeyError, match=re.escape(message)):
            read_key_file(str(path))
    with pytest.raises(TicketKeyError, match="cannot read .*missing: No such file"):
        read_key_file(str(tmp_path / "missing"))


def _ms(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_early_data_guard_once_per_window() -> None:
    guard = EarlyDataGuard(window=10.0)
    state = _state()
    issued = _ms(state.not_valid_before)
    label = b"ticket-1"

    def age(client_age_ms: int) -> int:  # the obfuscated age a client would send
        return (client_age_ms + state.age_add) % (1 << 32)

    now = issued + 60_000  # the client comes back a minute later
    assert guard.admit(label, state, age(60_000), now)
    assert not guard.admit(label, state, age(60_000), now + 1)  # replayed at once
    assert not guard.admit(label, state, age(60_000), now + 15_000)  # replayed later: stale
    assert guard.admit(b"ticket-2", state, age(60_000 - 9_000), now)  # skew inside the window
    assert not guard.admit(b"ticket-3", state, age(60_000 - 11_000), now)  # outside it
    # After twice the window the ticket is forgotten: a new ClientHello (fresh age) is fine.
    later = now + 20_001
    assert guard.admit(label, state, age(80_001), later)
    assert b"ticket-2" not in guard.seen


def test_early_data_guard_full_refuses() -> None:
    guard = EarlyDataGuard(window=10.0, max_size=2)
    state = _state()
    now = _ms(state.not_valid_before)
    obfuscated = state.age_add
    assert guard.admit(b"a", state, obfuscated, now)
    assert guard.admit(b"b", state, obfuscated, now)
    assert not guard.admit(b"c", state, obfuscated, now)  # full: refuse, never forget early


# --------------------------------------------------------------------------- end to end


def _key_file(path: Path, *keys: bytes) -> Path:
    path.write_text("".join(key.hex() + "\n" for key in keys))
    return path


def _start(factory: Any, keys: Path | None, *extra: str, workers: int = 0) -> Any:
    args = ["--workers", str(workers), "--quic-early-data", "--access-logformat", LOG_FORMAT]
    if keys is not None:
        args += ["--quic-ticket-key-file", str(keys)]
    server = factory.start(*args, *extra)
    wait_quic(server)
    want = max(workers, 1)
    assert wait_until(lambda: server.stderr().count("Running on quic://") >= want, 15), (
        server.describe()
    )
    return server


class Client:
    """gtlsclient runs sharing one session file: each run presents the ticket the
    previous run received (gtlsclient stores the newest one)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.session = tmp / "session"
        self.count = 0

    def get(self, server: Any, *extra: str, session: Path | None = None) -> tuple[GtlsRun, int]:
        """One GET; the run and the pid of the worker that answered it."""
        self.count += 1
        name = f"run{self.count}"
        files = [f"--session-file={session or self.session}", f"--tp-file={self.tmp / 'tp'}"]
        url = f"https://127.0.0.1:{server.port}/scope/{name}"
        run = gtlsclient(server.port, url, download=self.tmp / name, extra=files + list(extra))
        assert run.statuses() == [200], run.summary()
        line = re.compile(rf"<(\d+)> GET /scope/{name} HTTP/3 200")
        assert wait_until(lambda: line.search(server.stdout()), 10), server.stdout()[-2000:]
        match = line.search(server.stdout())
        assert match is not None
        return run, int(match.group(1))


def _early(run: GtlsRun) -> str | None:
    name = run.download.name
    headers = dict(json.loads(run.file(name).read_bytes())["headers"])
    return headers.get("early-data")


def _resumed_with_0rtt(run: GtlsRun) -> bool:
    return (
        run.handshake_crypto_received() < RESUMED_MAX
        and run.sent_0rtt_stream_data()
        and not run.early_data_rejected
        and _early(run) == "1"
    )


def _full_handshake(run: GtlsRun) -> bool:
    return run.handshake_crypto_received() > FULL_MIN and _early(run) is None


def _no_tracebacks(*servers: Any) -> None:
    for server in servers:
        err = server.stderr()
        assert "Traceback" not in err and "[ERROR]" not in err, server.describe()


@pytest.mark.timeout(180)
def test_resumes_on_other_workers_and_processes(server_factory: Any, tmp_path: Path) -> None:
    keys = _key_file(tmp_path / "keys", secrets.token_bytes(32))
    two = _start(server_factory, keys, workers=2)
    other = _start(server_factory, keys)  # a second "host": its own process and port
    client = Client(tmp_path)
    first, issuer = client.get(two)
    assert _full_handshake(first), first.summary()
    # Each run resumes the ticket the previous run got; the kernel spreads new
    # connections over the two workers, so within a few runs one lands on the worker
    # that did not issue its ticket. Bounded: 12 runs (all on one worker: 2**-11).
    crossed = 0
    for _ in range(12):
        run, pid = client.get(two)
        assert _resumed_with_0rtt(run), run.summary()
        crossed += pid != issuer
        issuer = pid
        if crossed:
            break
    assert crossed, "every connection reached the same worker"
    # The other process never issued a ticket, yet resumes one with 0-RTT.
    run, pid = client.get(other)
    assert _resumed_with_0rtt(run), run.summary()
    assert pid == other.proc.pid and pid != issuer
    # ... and the ticket it issued resumes back on the two-worker server.
    run, pid = client.get(two)
    assert _resumed_with_0rtt(run), run.summary()
    assert "TLS over TCP resumes only on the worker that issued" in two.stderr()
    _no_tracebacks(two, other)


@pytest.mark.timeout(120)
def test_other_key_full_handshake_and_rotation(server_factory: Any, tmp_path: Path) -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    old_server = _start(server_factory, _key_file(tmp_path / "old", old))
    other_server = _start(server_factory, _key_file(tmp_path / "other", new))
    rotated = _start(server_factory, _key_file(tmp_path / "rotated", new, old))
    client = Client(tmp_path)
    client.get(old_server)
    saved = client.session.read_bytes()
    # A server without the ticket's key: a full handshake, the 0-RTT request refused.
    run, _ = client.get(other_server)
    assert _full_handshake(run), run.summary()
    if run.sent_0rtt_stream_data():
        assert run.early_data_rejected, run.summary()
    # The rotated file (new key first, old kept) still opens the old server's ticket ...
    client.session.write_bytes(saved)
    run, _ = client.get(rotated)
    assert _resumed_with_0rtt(run), run.summary()
    # ... and seals its own under the new key, which the old server cannot open.
    run, _ = client.get(old_server)
    assert _full_handshake(run), run.summary()
    _no_tracebacks(old_server, other_server, rotated)


@pytest.mark.timeout(120)
def test_replay_to_same_worker_refused(server_factory: Any, tmp_path: Path) -> None:
    server = _start(server_factory, _key_file(tmp_path / "keys", secrets.token_bytes(32)))
    client = Client(tmp_path)
    client.get(server)
    saved = client.session.read_bytes()
    copies = []
    for i in range(2):  # the same ticket, presented twice
        copy = tmp_path / f"copy{i}"
        copy.write_bytes(saved)
        copies.append(client.get(server, session=copy)[0])
    used, replay = copies
    assert _resumed_with_0rtt(used), used.summary()
    # The replay still resumes (a PSK handshake is safe to repeat) but its 0-RTT request
    # never reaches the app: the worker saw this ticket's early data already.
    assert replay.handshake_crypto_received() < RESUMED_MAX, replay.summary()
    assert replay.sent_0rtt_stream_data() and replay.early_data_rejected, replay.summary()
    assert _early(replay) is None
    _no_tracebacks(server)


@pytest.mark.timeout(120)
def test_post_in_0rtt_still_425(server_factory: Any, tmp_path: Path) -> None:
    """Shared tickets do not widen what 0-RTT may carry: a replay to another host can be
    accepted, so non-idempotent methods are still refused in early data."""
    server = _start(server_factory, _key_file(tmp_path / "keys", secrets.token_bytes(32)))
    client = Client(tmp_path)
    client.get(server)
    body = tmp_path / "body"
    body.write_bytes(b"not idempotent")
    files = [f"--session-file={client.session}", f"--tp-file={tmp_path / 'tp'}"]
    run = gtlsclient(
        server.port,
        f"https://127.0.0.1:{server.port}/echo",
        download=tmp_path / "post",
        extra=[*files, "-m", "POST", "-d", str(body)],
    )
    assert run.sent_0rtt_stream_data(), run.summary()
    assert run.statuses() == [425], run.summary()
    assert "POST /echo HTTP/3 200" not in server.stdout()


def test_bad_key_file_is_one_line(server_factory: Any, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("abcd\n")
    server = server_factory.spawn(
        [
            "tests.apps.e2e:app",
            "--bind",
            "127.0.0.1:0",
            "--certfile",
            server_factory.certfile,
            "--keyfile",
            server_factory.keyfile,
            "--quic-ticket-key-file",
            str(keys),
        ]
    )
    assert server.proc.wait(30) == 1
    assert server.stderr().strip() == (
        f"edgecorn: error: quic_ticket_key_file: {keys} line 1: 2 bytes; a key needs 32 or more"
    )


def test_qh3_refuses_a_key_file(tmp_path: Path) -> None:
    """qh3 cannot seal its tickets: an explicit qh3 is a config error, auto stays on aioquic."""
    qh3_engine = pytest.importorskip("edgecorn.quic.qh3_engine")
    from edgecorn.config import Config, ConfigError
    from edgecorn.quic.worker import choose_engine

    config = Config()
    config.quic_ticket_key_file = str(_key_file(tmp_path / "keys", secrets.token_bytes(32)))
    assert "quic_ticket_key_file: qh3's session tickets cannot be sealed" in (
        qh3_engine.unsupported(config)
    )
    assert choose_engine(config)[0] == "aioquic"
    config.quic_engine = "qh3"
    with pytest.raises(ConfigError, match="quic_ticket_key_file: qh3's session tickets"):
        choose_engine(config)


def _engine_ticket(engine: str, label: bytes, early: int | None = 0xFFFFFFFF) -> Any:
    """A SessionTicket as the engine's TLS hands it to the store (naive UTC times in qh3)."""
    tls: Any = importlib.import_module(f"{engine}.tls")
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    if engine == "qh3":
        now = now.replace(tzinfo=None)
    return tls.SessionTicket(
        age_add=987654321,
        cipher_suite=tls.CipherSuite.AES_256_GCM_SHA384,
        not_valid_after=now + datetime.timedelta(days=1),
        not_valid_before=now,
        resumption_secret=bytes(range(48)),
        server_name="localhost",
        ticket=label,
        max_early_data_size=early,
        other_extensions=[(0x39, bytes(120))],  # the QUIC transport parameters
    )


@pytest.mark.parametrize("engine", ["aioquic", "qh3"])
def test_the_in_memory_store_gives_back_the_engines_ticket(engine: str) -> None:
    store = TicketStore()
    for early in (0xFFFFFFFF, None):
        ticket = _engine_ticket(engine, secrets.token_bytes(64), early)
        store.add(ticket)
        back = store.pop(ticket.ticket)
        assert type(back) is type(ticket) and back.is_valid
        assert back.cipher_suite is ticket.cipher_suite
        for name in (
            "age_add",
            "not_valid_before",
            "not_valid_after",
            "resumption_secret",
            "server_name",
            "ticket",
            "max_early_data_size",
        ):
            assert getattr(back, name) == getattr(ticket, name), name
        assert store.pop(ticket.ticket) is None  # single use


def test_the_in_memory_store_stays_bounded() -> None:
    # Clients that never resume must not grow a worker without end: two generations of
    # at most max_size tickets each; the newest ones still resume, each once.
    store = TicketStore(max_size=100)
    for i in range(1000):
        store.add(_engine_ticket("aioquic", b"%d" % i))
    assert len(store.current) + len(store.previous) <= 200
    assert store.pop(b"999") is not None and store.pop(b"999") is None
    assert store.pop(b"0") is None
    assert TicketStore().max_size == TICKETS_PER_GENERATION <= 10_000


def test_a_stored_ticket_is_small() -> None:
    # Kept as the engine's SessionTicket under its label, a ticket cost ~640 B more than
    # the label, so a full store grew a worker by ~16 MB (bench/soak.py); packed it is a
    # 16-byte key, ~90 bytes of state and a dict slot.
    labels = [secrets.token_bytes(64) for _ in range(2000)]
    store = TicketStore()
    store.add(_engine_ticket("aioquic", b"first"))  # the store's one-off bookkeeping
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for label in labels:  # what the store keeps of each; the ticket itself is dropped
            store.add(_engine_ticket("aioquic", label))
        per_ticket = (tracemalloc.get_traced_memory()[0] - before) / len(labels)
    finally:
        tracemalloc.stop()
    assert per_ticket < 250, per_ticket  # the labels themselves were made before tracing
