"""Sans-IO protocol adapters: bytes in, stream events out; commands in, bytes out.

HTTP/1.1 (h11 or httptools), HTTP/2 (h2) and HTTP/3 (aioquic) all emit the
events in `events.py` and accept the same commands, so streams never need to
know which protocol carried them.
"""
