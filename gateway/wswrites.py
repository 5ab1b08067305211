"""WebSocket frames written to the socket once per event-loop turn, not once each.

A plant event reaches every subscriber as its own `next` frame, and uvicorn writes each frame to the socket as it
is sent: one system call, one TCP segment and one wake-up of the client per frame. When events arrive together (a
burst of webhooks commits as one group), each subscriber's task sends several frames in the same turn of the event
loop. `CoalescingWebSocketProtocol` is uvicorn's WebSocket protocol with the connection's transport wrapped so that
everything written in one turn leaves in one write at the start of the next: the same bytes in the same order, a
turn later (microseconds), with one system call for the burst. A lone frame costs one scheduled callback more.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class CoalescedTransport:
    """The parts of an `asyncio.Transport` uvicorn's WebSocket protocol uses, with `write` deferred to the end of
    the loop turn and every write of the turn joined. Closing sends what is pending first; aborting drops it."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending and not self._transport.is_closing():
            self._transport.write(b"".join(self._pending))
        self._pending.clear()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


class CoalescingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol (its default), writing through a `CoalescedTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(CoalescedTransport(cast(asyncio.Transport, transport)))  # type: ignore[arg-type]
