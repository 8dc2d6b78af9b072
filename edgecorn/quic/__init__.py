"""QUIC and HTTP/3: everything edgecorn does with aioquic lives in this package.

- `engine`: the one module that touches aioquic's private internals (checked at import)
- `routing`: the first look at a datagram (which connection, version negotiation, Retry)
- `retry`, `tickets`: stateless Retry tokens and single-use session tickets
- `configuration`: certificates, key log and qlog for aioquic's QuicConfiguration
- `h3`: the sans-IO HTTP/3 adapter (datagrams in, stream events out)
- `connection`, `endpoint`: one QUIC connection and one UDP socket's connections,
  independent of the event loop; `worker` sets them up for a worker
"""
