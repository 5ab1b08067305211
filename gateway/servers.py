"""Several uvicorn servers in one event loop: the demo plant, the test fixtures and the benchmarks.

uvicorn's own signal handling assumes one server per process; here the group owns Ctrl-C and
stops every server together.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from gateway.errors import ConfigurationError
from gateway.wswrites import CoalescingWebSocketProtocol

# Subscription events are small JSON messages, each sent to many subscribers: compressing every copy cost more CPU
# than anything else per delivery (after tracing), for a few hundred bytes saved. Frames sent in one loop turn
# leave in one write (`gateway/wswrites.py`).
WEBSOCKETS: dict[str, Any] = {"ws": CoalescingWebSocketProtocol, "ws_per_message_deflate": False}


class _GroupedServer(uvicorn.Server):
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


@dataclass
class Listener:
    name: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_block(size: int, host: str = "127.0.0.1") -> int:
    """A first port of `size` consecutive free ports, for the demo's P, P+1 … layout.

    Picked below Linux's ephemeral range (32768+), where outgoing connections cannot grab them meanwhile.
    """
    chooser = random.Random()
    for _ in range(200):
        first = chooser.randrange(20_000, 32_000 - size)
        if all(_is_free(host, first + offset) for offset in range(size)):
            return first
    raise RuntimeError(f"no {size} consecutive free ports on {host}")


def _is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class ServerGroup:
    def __init__(self) -> None:
        self._servers: list[tuple[Listener, _GroupedServer]] = []
        self._sockets: dict[str, list[socket.socket]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, name: str, app: ASGIApp, host: str = "127.0.0.1", port: int | None = None) -> Listener:
        """Serve `app` on `port`, or on a port the system picks. Bound now, so no one can take it first and a
        port in use is one clear ConfigurationError here, not an exit from inside a running server."""
        # The family and protocol as getaddrinfo gives them, as asyncio would bind: a socket made with proto 0
        # is not recognized as TCP, its connections keep Nagle's algorithm on, and every keep-alive response
        # then waits for a delayed ACK (40 ms on Linux).
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise ConfigurationError("--host", f"{name} cannot listen on {host}: {exc.strerror}") from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise ConfigurationError("--port", f"{name} cannot listen on {host}:{port}: {exc.strerror}") from None
        port = sock.getsockname()[1]
        listener = Listener(name, host, port)
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5, **WEBSOCKETS
        )
        self._servers.append((listener, _GroupedServer(config)))
        self._sockets[name] = [sock]
        return listener

    @property
    def listeners(self) -> list[Listener]:
        return [listener for listener, _ in self._servers]

    async def start(self) -> None:
        """Start every server; raise if any of them cannot (a port in use, a failing start-up)."""
        self._tasks = [
            asyncio.create_task(server.serve(sockets=self._sockets[listener.name]))
            for listener, server in self._servers
        ]
        while not all(server.started for _, server in self._servers):
            failed = [task for task in self._tasks if task.done()]
            if failed:
                await self.stop()
                names = [listener.name for (listener, _), t in zip(self._servers, self._tasks, strict=True) if t.done()]
                raise RuntimeError(f"could not start: {', '.join(names)} (port in use?)")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        for _, server in self._servers:
            server.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def serve_until_signal(self, on_started: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run until SIGINT or SIGTERM, then stop everything cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        if on_started:
            await on_started()
        try:
            await stop.wait()
        finally:
            await self.stop()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[ServerGroup]:
        """Serve from a background thread (tests, benchmarks); stop when the block ends."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="lotgraph-servers", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=60)
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=60)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
