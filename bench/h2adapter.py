"""The HTTP/2 adapter's own cost, without sockets: hello-world requests per second of
server-side time (H2Adapter.receive_data + send_response + data_to_send) against an h2
client in the same process, 10 requests per batch, on one engine.

    python bench/h2adapter.py                 # jh2, this checkout
    python bench/h2adapter.py h2 /other/tree  # another engine or checkout, to compare

Only the server's calls are timed (process CPU time); the median of 5 runs of 20,000
requests and their spread are printed. Not a test: numbers move with the machine.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ENGINE = sys.argv[1] if len(sys.argv) > 1 else "jh2"
TREE = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TREE))

import h2.config  # noqa: E402
import h2.connection  # noqa: E402

from edgecorn.protocol.engines import h2_engine  # noqa: E402
from edgecorn.protocol.events import Request  # noqa: E402
from edgecorn.protocol.h2 import H2Adapter  # noqa: E402

REQUEST = [
    (b":method", b"GET"),
    (b":path", b"/"),
    (b":scheme", b"https"),
    (b":authority", b"127.0.0.1:8443"),
    (b"user-agent", b"h2load nghttp2/1.52.0"),
    (b"accept", b"*/*"),
]
RESPONSE = [(b"content-type", b"text/plain"), (b"content-length", b"13")]


def run(requests: int = 20_000, batch: int = 10) -> float:
    server = H2Adapter(
        max_concurrent_streams=100,
        max_header_list_size=65536,
        max_inbound_frame_size=16384,
        max_requests=10**9,
        engine=h2_engine(ENGINE),
    )
    server.initiate()
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    stream_id, spent = 1, 0.0
    for _ in range(requests // batch):
        for _ in range(batch):
            client.send_headers(stream_id, REQUEST, end_stream=True)
            stream_id += 2
        data = client.data_to_send()
        start = time.process_time()
        for event in server.receive_data(data):
            if isinstance(event, Request):
                server.send_response(event.stream_id, 200, RESPONSE, b"Hello, world!", True)
        out = server.data_to_send()
        spent += time.process_time() - start
        for event in client.receive_data(out):
            size = getattr(event, "flow_controlled_length", 0)
            if size:
                client.acknowledge_received_data(size, event.stream_id)
        server.receive_data(client.data_to_send())  # the client's window updates, untimed
    return requests / spent


def main() -> None:
    rates = [run() for _ in range(5)]
    print(
        f"{ENGINE} ({TREE}): {statistics.median(rates):,.0f} requests/s of server time, "
        f"median of 5 ({min(rates):,.0f}-{max(rates):,.0f})"
    )


if __name__ == "__main__":
    main()
