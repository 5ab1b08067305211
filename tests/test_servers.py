"""The server group the demo, the tests and the benchmarks serve from."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import websockets
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from gateway.servers import ServerGroup
from gateway.wswrites import CoalescedTransport


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


class _Recorder(asyncio.Transport):
    """Stands in for the socket: what reached it, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_frames_written_in_one_loop_turn_leave_in_one_write_in_order() -> None:
    socket_ = _Recorder()
    transport = CoalescedTransport(socket_)
    for frame in (b"one", b"two", b"three"):
        transport.write(frame)
    assert socket_.writes == []  # nothing until the turn is over
    await asyncio.sleep(0)
    assert socket_.writes == [b"onetwothree"]
    transport.write(b"four")
    await asyncio.sleep(0)
    assert socket_.writes == [b"onetwothree", b"four"]


async def test_closing_sends_what_is_pending_first() -> None:
    socket_ = _Recorder()
    transport = CoalescedTransport(socket_)
    transport.write(b"last frame")
    transport.close()
    assert socket_.writes == [b"last frame"]
    assert socket_.closed
    await asyncio.sleep(0)
    assert socket_.writes == [b"last frame"]  # the scheduled flush has nothing left to send


async def test_a_burst_of_frames_then_a_close_reaches_the_client_whole_and_in_order() -> None:
    """Through the servers' own WebSocket protocol: 200 frames sent in one turn, then a close with its code and
    reason, arrive as sent."""

    async def burst(websocket: WebSocket) -> None:
        await websocket.accept()
        for i in range(200):
            await websocket.send_text(f'{{"n":{i}}}')
        await websocket.close(4401, "token expired")

    group = ServerGroup()
    listener = group.add("ws", Starlette(routes=[WebSocketRoute("/", burst)]))
    with group.running_in_thread():
        async with websockets.connect(f"ws://{listener.host}:{listener.port}/") as client:
            received: list[int] = []
            with pytest.raises(websockets.ConnectionClosedError):  # a close code other than 1000
                async for message in client:
                    received.append(json.loads(message)["n"])
            assert received == list(range(200))
            assert (client.close_code, client.close_reason) == (4401, "token expired")
