"""Delivery inside one process: every event the bus hands this replica goes to each live listener's bounded queue.

A listener that falls `maxsize` events behind is cut off at once and its queue emptied, so a slow client costs
the gateway at most `maxsize` events of memory, never more, whatever it does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.errors import GatewayError
from gateway.events.envelope import Event


class SubscriberTooSlow(GatewayError):
    code = "SUBSCRIBER_TOO_SLOW"


class Listener:
    """One subscription's queue. `accept` is the cheap pre-filter (types, ids) applied before queueing."""

    def __init__(self, fanout: Fanout, maxsize: int, accept: Callable[[Event], bool]) -> None:
        self._fanout = fanout
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize + 1)  # + room for the cut-off marker
        self.maxsize = maxsize
        self.accept = accept
        self.overflowed = False

    def offer(self, event: Event) -> None:
        if self.overflowed or not self.accept(event):
            return
        if self._queue.qsize() >= self.maxsize:
            self.overflowed = True
            while not self._queue.empty():  # free the memory now, not when the client goes away
                self._queue.get_nowait()
            self._queue.put_nowait(None)
            self._fanout.cut_off += 1
            return
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        event = await self._queue.get()
        if event is None:
            raise SubscriberTooSlow(
                f"the subscriber fell more than {self.maxsize} events behind and was disconnected; "
                "resubscribe with `after` set to the last cursor received to catch up"
            )
        return event

    def close(self) -> None:
        self._fanout.listeners.discard(self)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Fanout:
    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.cut_off = 0  # listeners disconnected for falling behind (a metric)

    def listen(self, maxsize: int, accept: Callable[[Event], bool]) -> Listener:
        listener = Listener(self, maxsize, accept)
        self.listeners.add(listener)
        return listener

    def deliver(self, event: Event) -> None:
        for listener in tuple(self.listeners):
            listener.offer(event)
