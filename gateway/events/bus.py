"""The event bus: every published event gets a cursor; retention is bounded; duplicates (same id) are dropped.

Two backends share this interface: `MemoryBus` (one process, the embedded default) and
`gateway.events.redis_bus.RedisBus` (Redis Streams, for replicas). Cursors look alike in both (`<ms>-<seq>`,
Redis's stream ids) and are opaque to clients. Each replica's bus hands every event, its own and the other
replicas', to its `Fanout`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import AsyncIterator

from gateway.errors import BadUserInput
from gateway.events.envelope import Event
from gateway.events.fanout import Fanout


class CursorExpired(BadUserInput):
    code = "CURSOR_EXPIRED"


Position = tuple[int, int]


def position(cursor: str) -> Position:
    """A cursor's place in the stream; a string that is not a cursor is the client's mistake."""
    first, sep, second = cursor.partition("-")
    if not (sep and first.isdigit() and second.isdigit()):
        raise BadUserInput(f"'{cursor}' is not an event cursor", argument="after")
    return int(first), int(second)


class Bus(ABC):
    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout

    @abstractmethod
    async def publish(self, event: Event) -> Event | None:
        """Append the event and return it with its cursor; `None` if an event with its id was already published."""

    @abstractmethod
    def replay(self, after: str) -> AsyncIterator[Event]:
        """Events after the cursor, oldest first; `CursorExpired` if some of them are past retention."""

    async def ping(self) -> None:  # noqa: B027 - the in-memory bus is always there
        """Raise if the backend cannot be reached."""

    async def start(self) -> None:  # noqa: B027 - the in-memory bus has nothing to start
        """Begin handing events to the fan-out."""

    async def aclose(self) -> None:  # noqa: B027
        """Stop; events already published stay where the backend keeps them."""


class Dedupe:
    """Event ids seen within `seconds` (at most `limit` of them), oldest forgotten first."""

    def __init__(self, seconds: float, limit: int = 1_000_000) -> None:
        self.seconds = seconds
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, event_id: str) -> bool:
        now = time.monotonic()
        while self._seen and (len(self._seen) >= self.limit or next(iter(self._seen.values())) < now - self.seconds):
            self._seen.popitem(last=False)
        if event_id in self._seen:
            return False
        self._seen[event_id] = now
        return True


class MemoryBus(Bus):
    """The last `retention` events of this process, delivered to its fan-out as they are published."""

    def __init__(self, fanout: Fanout, retention: int, dedupe_seconds: float) -> None:
        super().__init__(fanout)
        self._events: deque[Event] = deque(maxlen=retention)
        self._dedupe = Dedupe(dedupe_seconds)
        self._next = 0
        self._trimmed: Position = (0, 0)  # the newest position no longer kept

    async def publish(self, event: Event) -> Event | None:
        if not self._dedupe.first_time(event.id):
            return None
        self._next += 1
        stored = event.at(f"0-{self._next}")
        if len(self._events) == self._events.maxlen:
            self._trimmed = position(self._events[0].cursor or "0-0")
        self._events.append(stored)
        self.fanout.deliver(stored)
        return stored

    async def replay(self, after: str) -> AsyncIterator[Event]:
        start = position(after)
        if start < self._trimmed:
            raise CursorExpired(f"events after {after} are no longer retained", argument="after")
        for event in tuple(self._events):
            if position(event.cursor or "0-0") > start:
                yield event
