"""The event bus: every published event gets a cursor; retention is bounded; duplicates (same id) are dropped.

Two backends share this interface: `MemoryBus` (one process, the embedded default) and
`gateway.events.redis_bus.RedisBus` (Redis Streams, for replicas). Cursors look alike in both,
`<epoch>:<ms>-<seq>` (the position is Redis's stream id), and are opaque to clients. The epoch names one life of
the stream (a process for the in-memory bus, the stream's keys in Redis until they are flushed): positions restart
with a new stream, so a cursor of another epoch is refused (`CURSOR_EXPIRED`) rather than answered with a gap.
`0-0`, the start of whatever stream there is, is the one cursor without an epoch. Each replica's bus hands every
event, its own and the other replicas', to its `Fanout`.
"""

from __future__ import annotations

import secrets
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import NamedTuple

from gateway.errors import BadUserInput
from gateway.events.envelope import Event
from gateway.events.fanout import Fanout


class CursorExpired(BadUserInput):
    code = "CURSOR_EXPIRED"


Position = tuple[int, int]
START = "0-0"


class Cursor(NamedTuple):
    epoch: str  # "" for `START` (and for cursors handed out before cursors had epochs)
    position: Position

    def __str__(self) -> str:
        return f"{self.epoch}:{self.position[0]}-{self.position[1]}"


def parse(cursor: str) -> Cursor:
    """A cursor's stream and place; a string that is not a cursor is the client's mistake."""
    epoch, _, place = cursor.rpartition(":")
    first, sep, second = place.partition("-")
    # ASCII only: str.isdigit also accepts "²", which int() refuses.
    if not (sep and cursor.isascii() and first.isdigit() and second.isdigit() and (epoch.isalnum() or not epoch)):
        raise BadUserInput(f"'{cursor}' is not an event cursor", argument="after")
    return Cursor(epoch, (int(first), int(second)))


def position(cursor: str) -> Position:
    return parse(cursor).position


def new_epoch() -> str:
    return secrets.token_hex(4)


def resume_from(after: str, epoch: str | None) -> Position:
    """Where a replay after `after` starts on the stream of `epoch` (None: there is no stream yet); a cursor of
    another stream is refused, since events between it and the new stream's first are lost."""
    cursor = parse(after)
    if after == START:
        return cursor.position
    if cursor.epoch != epoch:
        raise CursorExpired(
            f"cursor {after} belongs to an event stream that is gone (the gateway restarted or its Redis was "
            "emptied): events after it may be lost; re-read the state you need, then subscribe without `after`",
            argument="after",
        )
    return cursor.position


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
        self.epoch = new_epoch()  # this process's stream: gone with it

    async def publish(self, event: Event) -> Event | None:
        if not self._dedupe.first_time(event.id):
            return None
        self._next += 1
        stored = event.at(str(Cursor(self.epoch, (0, self._next))))
        if len(self._events) == self._events.maxlen:
            self._trimmed = position(self._events[0].cursor or START)
        self._events.append(stored)
        self.fanout.deliver(stored)
        return stored

    async def replay(self, after: str) -> AsyncIterator[Event]:
        start = resume_from(after, self.epoch)
        if start < self._trimmed:
            raise CursorExpired(f"events after {after} are no longer retained", argument="after")
        for event in tuple(self._events):
            if position(event.cursor or START) > start:
                yield event
