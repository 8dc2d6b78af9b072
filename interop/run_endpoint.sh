#!/usr/bin/env bash
# The QUIC interop runner's endpoint contract for edgecorn (server only).
#
# The runner sets ROLE, TESTCASE, SSLKEYLOGFILE and QLOGDIR and mounts /www and
# /certs; the fixed paths and the port are variables with the runner's values as
# defaults, so `python -m interop` runs this same script on loopback:
#   WWW=/www CERTS=/certs PORT=443 HOST4=0.0.0.0 HOST6=:: PYTHON=python3
# An unsupported test case (or ROLE=client) exits 127, as the runner expects.
set -euo pipefail

# Inside the simulator: routes through the ns-3 box, checksum offload off.
if [ -x /setup.sh ]; then
    /setup.sh
fi

ROLE="${ROLE:-server}"
TESTCASE="${TESTCASE:-}"
WWW="${WWW:-/www}"
CERTS="${CERTS:-/certs}"
PORT="${PORT:-443}"
HOST4="${HOST4-0.0.0.0}"  # empty: no IPv4 socket
HOST6="${HOST6-::}"       # empty: no IPv6 socket
PYTHON="${PYTHON:-python3}"

if [ "$ROLE" != "server" ]; then
    echo "edgecorn is a server; ROLE=$ROLE is not supported" >&2
    exit 127
fi

# The runner's server-side test names (several client-side cases run the server as
# "transfer" or "multiconnect") -> edgecorn options. Every case serves hq-interop and h3
# on the same port; the client's ALPN picks one.
opts=("quic_retry: \"off\"")  # edgecorn retries under load by default: never unasked here
case "$TESTCASE" in
    # transfer (also the runner's multiplexing, ~2000 streams): the default of 100
    # concurrent streams is within the runner's initial_max_streams_bidi <= 1000 and is
    # raised again as each stream finishes; qh3 cannot change it anyway.
    handshake | multiconnect | http3 | resumption | v2 | transfer | multiplexing | keyupdate) ;;
    retry) opts=("quic_retry: \"on\"") ;;
    zerortt) opts+=("quic_early_data: true") ;;
    chacha20) opts+=("quic_ciphers: [CHACHA20_POLY1305_SHA256]") ;;
    *)
        # ecn (aioquic neither marks nor counts ECN), connectionmigration (no
        # preferred_address transport parameter), and anything else.
        echo "test case '$TESTCASE' is not supported" >&2
        exit 127 ;;
esac

if [ ! -f "$CERTS/cert.pem" ] || [ ! -f "$CERTS/priv.key" ]; then
    echo "no certificate: $CERTS/cert.pem and $CERTS/priv.key are needed" >&2
    exit 1
fi
www="$(cd "$WWW" && pwd)"
certs="$(cd "$CERTS" && pwd)"

binds=""
if [ -n "$HOST4" ]; then binds="\"$HOST4:$PORT\""; fi
if [ -n "$HOST6" ] && [ -e /proc/net/if_inet6 ]; then
    binds="${binds:+$binds, }\"[$HOST6]:$PORT\""
fi

conf_dir="$(mktemp -d)"
trap 'rm -rf "$conf_dir"' EXIT
conf="$conf_dir/edgecorn.yaml"
{
    echo "bind: []"
    echo "quic_bind: [$binds]"
    echo "certfile: \"$certs/cert.pem\""
    echo "keyfile: \"$certs/priv.key\""
    echo "quic_alpn_protocols: [hq-interop, h3]"
    echo "workers: 0"
    # hq-interop has no GOAWAY, and multiplexing fetches ~2000 files on one connection.
    echo "keep_alive_max_requests: 100000"
    echo "lifespan: \"off\""
    if [ -n "${QLOGDIR:-}" ]; then echo "qlog_dir: \"$QLOGDIR\""; fi
    if [ -n "${SSLKEYLOGFILE:-}" ]; then echo "ssl_keylog_file: \"$SSLKEYLOGFILE\""; fi
    printf '%s\n' "${opts[@]}"
    echo "routes:"
    echo "  - static: \"$www\""
} >"$conf"
echo "edgecorn interop endpoint: TESTCASE=$TESTCASE"
cat "$conf"

# Not exec: the trap removes the config directory when edgecorn stops; signals are
# passed on so the runner's `docker stop` is a graceful stop.
"$PYTHON" -m edgecorn -c "$conf" ${SERVER_PARAMS:-} &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
while kill -0 "$pid" 2>/dev/null; do
    wait "$pid" || true  # a trapped signal interrupts wait: wait again
done
wait "$pid" && status=0 || status=$?  # bash keeps the status of a reaped child
exit "$status"
