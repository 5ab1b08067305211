"""The bus on Redis Streams, shared by every replica: one stream, trimmed to between `retention` and 110% of it.

Dedupe, append and trimming are one Lua script, so two replicas ingesting the same event (an ERP poll, a webhook
retried to another replica) store it once, and the id of the newest entry trimmed is recorded beside the stream:
Redis's own `max-deleted-entry-id` follows XDEL only, not MAXLEN trimming, so it cannot tell a resuming client
that events after its cursor are gone. The stream's epoch (`gateway.events.bus`) is kept beside it too, created by
the first append after the keys were made or flushed (SET NX), and written into every entry, so all replicas
hand out the same cursors and a cursor from before a flush is refused. Each replica tails the stream with XREAD
from where it started and hands every entry to its own fan-out; replay is XRANGE from the client's cursor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from gateway.events.bus import Bus, Cursor, CursorExpired, new_epoch, position, resume_from
from gateway.events.envelope import Event
from gateway.events.fanout import Fanout

log = logging.getLogger("lotgraph.events")

STREAM = "lotgraph:events"
SEEN = "lotgraph:events:seen:"
TRIMMED = "lotgraph:events:trimmed"
EPOCH = "lotgraph:events:epoch"
PAGE = 500

# KEYS: stream, seen-key, trimmed-key, epoch-key; ARGV: event json, dedupe seconds, retention, trim batch,
# a new epoch (kept only if the stream has none). Returns {entry id, epoch}, or false for a duplicate. Trims
# exactly the oldest entries past `retention`, once `batch` of them have piled up (amortized cost), and records
# the newest id it removed.
APPEND = """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
redis.call('SET', KEYS[4], ARGV[5], 'NX')
local epoch = redis.call('GET', KEYS[4])
local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[1], 'epoch', epoch)
redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[3])
if excess >= tonumber(ARGV[4]) then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[3])
  redis.call('SET', KEYS[3], gone[#gone][1])
end
return {id, epoch}
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _event(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Event:
    """A stream entry as the event it holds, with its cursor."""
    cursor = Cursor(_text(fields.get(b"epoch", b"")), position(_text(entry_id)))
    return Event.model_validate_json(fields[b"event"]).at(str(cursor))


class RedisBus(Bus):
    def __init__(self, fanout: Fanout, url: str, retention: int, dedupe_seconds: float) -> None:
        super().__init__(fanout)
        self.redis = Redis.from_url(url)
        self._tail_client = Redis.from_url(url)  # XREAD BLOCK holds its connection
        self.retention = retention
        self.dedupe_seconds = int(dedupe_seconds)
        self.trim_batch = max(1, retention // 10)
        self._append = self.redis.register_script(APPEND)
        self._tail: asyncio.Task[None] | None = None

    async def publish(self, event: Event) -> Event | None:
        entry = await self._append(
            keys=[STREAM, SEEN + event.id, TRIMMED, EPOCH],
            args=[event.model_dump_json(), self.dedupe_seconds, self.retention, self.trim_batch, new_epoch()],
        )
        if entry is None:
            return None
        entry_id, epoch = map(_text, entry)
        return event.at(str(Cursor(epoch, position(entry_id))))

    async def replay(self, after: str) -> AsyncIterator[Event]:
        epoch, trimmed = await self.redis.mget(EPOCH, TRIMMED)
        start = resume_from(after, None if epoch is None else _text(epoch))
        if trimmed is not None and start < position(_text(trimmed)):
            raise CursorExpired(f"events after {after} are no longer retained", argument="after")
        last = "{}-{}".format(*start)
        while entries := await self.redis.xrange(STREAM, min=f"({last}", count=PAGE):
            for entry_id, fields in entries:
                last = _text(entry_id)
                yield _event(entry_id, fields)

    async def _info(self) -> dict[str, Any] | None:
        try:
            return await self.redis.xinfo_stream(STREAM)
        except Exception as exc:  # the stream does not exist until the first event
            if "no such key" in str(exc).lower():
                return None
            raise

    async def ping(self) -> None:
        await self.redis.ping()

    async def start(self) -> None:
        info = await self._info()
        last = _text(info["last-generated-id"]) if info else "0-0"
        self._tail = asyncio.create_task(self._follow(last), name="lotgraph-event-tail")

    async def _follow(self, last: str) -> None:
        while True:
            try:
                answer = await self._tail_client.xread({STREAM: last}, count=PAGE, block=1000)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the event stream failed; retrying")
                await asyncio.sleep(1)
                continue
            for _stream, entries in answer or ():
                for entry_id, fields in entries:
                    last = _text(entry_id)
                    self.fanout.deliver(_event(entry_id, fields))

    async def aclose(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
            await asyncio.gather(self._tail, return_exceptions=True)
        await self._tail_client.aclose()
        await self.redis.aclose()
