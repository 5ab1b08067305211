"""The server group the demo, the tests and the benchmarks serve from."""

from __future__ import annotations

import socket

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.servers import ServerGroup


def test_listening_sockets_are_tcp_as_asyncio_makes_them() -> None:
    """A listening socket made without its protocol (proto 0) is not recognized as TCP by asyncio, which then leaves
    Nagle's algorithm on for its connections: every response on a kept-alive connection waited for the client's
    delayed ACK (40 ms per upstream call in the benchmarks). Bound with getaddrinfo's protocol, it is TCP."""
    group = ServerGroup()
    listener = group.add("probe", Starlette(routes=[Route("/", lambda _: PlainTextResponse("ok"))]))
    assert group._sockets["probe"][0].proto == socket.IPPROTO_TCP
    with group.running_in_thread(), socket.create_connection((listener.host, listener.port)) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(1024).startswith(b"HTTP/1.1 200")
