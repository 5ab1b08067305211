"""The read cache in front of the contracts: in process by default, in Redis when replicas share it.

Each entry remembers when it was fetched. Within its operation's TTL it is served instead of asking the
source; past it, it is kept for `stale_seconds` more and served only when the source fails, with the
response flagged (`extensions.stale`) so clients know the data may be old. Concurrent identical
loads share one upstream call. Events and operations call `invalidate_lot` so a query after a change
never shows the old state.

What goes into Redis is data only: JSON of the canonical models, each tagged with its class name and
read back through pydantic's validation of that class (`gateway.model`), never a pickle. Anyone who can
write to a shared Redis can at worst make a gateway read wrong data, not run code. In process the
objects are kept as they are, in a size-bounded LRU whose entries expire when read (no timer per key).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from cachetools import TLRUCache
from pydantic import BaseModel, Field, ValidationError
from redis.asyncio import Redis

from gateway.errors import UpstreamError
from gateway.model import Canonical

log = logging.getLogger("lotgraph.cache")

# Lot-keyed operations: what `invalidate_lot` clears.
LOT_KEYED = (
    "erp.batch.read", "erp.stock.read", "erp.material_document.read", "qms.lot_quality.read",
    "qms.inspection_lot.by_lot", "qms.nonconformance.by_lot", "qms.hold.by_lot", "wms.stock.read", "mes.lot.read",
)  # fmt: skip
REDIS_PREFIX = "lotgraph:cache:"

stale_reads: ContextVar[list[dict[str, Any]] | None] = ContextVar("lotgraph_stale_reads", default=None)


class CacheSettings(BaseModel):
    """`LOTGRAPH_CACHE__TTL='{"erp.material.read": 600}'`, ... (seconds; 0 = always ask the source)."""

    ttl: dict[str, float] = Field(
        default_factory=lambda: {
            "erp.plant.read": 3600,
            "erp.material.read": 600,
            "erp.supplier.read": 600,
            "erp.batch.read": 60,
            "erp.production_order.read": 60,
            "mes.execution.read": 30,
        }
    )
    stale_seconds: float = Field(default=600, ge=0, description="How long past its TTL an entry may stand in.")
    max_entries: int = Field(default=200_000, ge=1, description="In-process entries kept at most (least recent go).")


@dataclass(frozen=True)
class _Entry:
    value: Any  # a canonical object, None (the source does not know the key), or a list of canonical objects
    fetched: float
    expires: float


class _Entries(Protocol):
    """Where entries live: this process, or Redis shared by every replica."""

    async def get_many(self, keys: Sequence[str]) -> list[_Entry | None]: ...
    async def set_many(self, entries: Mapping[str, _Entry]) -> None: ...
    async def delete_many(self, keys: Sequence[str]) -> None: ...


class _InProcess:
    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self._entries: TLRUCache[str, _Entry] = TLRUCache(
            maxsize=max_entries, ttu=lambda _key, entry, _now: entry.expires, timer=clock
        )

    async def get_many(self, keys: Sequence[str]) -> list[_Entry | None]:
        return [self._entries.get(key) for key in keys]

    async def set_many(self, entries: Mapping[str, _Entry]) -> None:
        self._entries.update(entries)

    async def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)


class _InRedis:
    def __init__(self, redis: Redis, clock: Callable[[], float]) -> None:
        self.redis = redis
        self.clock = clock

    async def get_many(self, keys: Sequence[str]) -> list[_Entry | None]:
        stored = await self.redis.mget([REDIS_PREFIX + key for key in keys])
        return [_decoded(key, raw) if raw is not None else None for key, raw in zip(keys, stored, strict=True)]

    async def set_many(self, entries: Mapping[str, _Entry]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for key, entry in entries.items():
            milliseconds = max(1, round((entry.expires - self.clock()) * 1000))
            pipe.set(REDIS_PREFIX + key, _encoded(entry), px=milliseconds)
        await pipe.execute()

    async def delete_many(self, keys: Sequence[str]) -> None:
        await self.redis.delete(*(REDIS_PREFIX + key for key in keys))


def _classes(root: type[Canonical]) -> dict[str, type[Canonical]]:
    found = {}
    for cls in root.__subclasses__():
        found |= {cls.__name__: cls, **_classes(cls)}
    return found


CANONICAL = _classes(Canonical)  # what a stored entry may name as its type: the canonical model, nothing else


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Canonical):
        return {"type": type(value).__name__, "data": value.model_dump(mode="json")}
    if value is None:
        return None
    raise TypeError(f"the read cache holds canonical objects, not {type(value).__name__}")


def _typed(value: Any) -> Any:
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if value is None:
        return None
    return CANONICAL[value["type"]].model_validate(value["data"])


def _encoded(entry: _Entry) -> bytes:
    return json.dumps({"fetched": entry.fetched, "expires": entry.expires, "value": _plain(entry.value)}).encode()


def _decoded(key: str, raw: bytes) -> _Entry | None:
    """The entry, or None (a miss) when what Redis holds is not an entry this gateway wrote."""
    try:
        stored = json.loads(raw)
        return _Entry(_typed(stored["value"]), float(stored["fetched"]), float(stored["expires"]))
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        log.warning("ignoring a cache entry that is not lotgraph's (%s): %s", key, exc.__class__.__name__)
        return None


class ReadCache:
    def __init__(
        self,
        settings: CacheSettings,
        count: Callable[[str, str, int], None],
        clock: Callable[[], float] = time.time,
        redis: Redis | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock  # wall time: entries shared through Redis are compared across processes
        self.count = count  # (contract, "hit" | "miss" | "stale", n): the metrics hook
        self.entries: _Entries = (
            _InRedis(redis, clock) if redis is not None else _InProcess(settings.max_entries, clock)
        )
        self._inflight: dict[tuple[str, tuple[str, ...]], asyncio.Future[dict[str, Any]]] = {}

    async def load(
        self, name: str, keys: Sequence[str], fetch: Callable[[list[str]], Awaitable[Mapping[str, Any]]]
    ) -> dict[str, Any]:
        """Each key's value: fresh from the cache, else from `fetch` (shared by identical concurrent loads),
        else, if `fetch` fails, a stale entry, flagged."""
        ttl = self.settings.ttl.get(name, 0.0)
        keep = ttl + self.settings.stale_seconds
        if keep <= 0:  # nothing could ever be served from the cache: do not keep it
            return dict(await self._coalesced(name, list(keys), fetch))
        # Entries of a TTL of 0 (status data) are never fresh: read only if the source fails, not before asking it.
        entries = await self._entries(name, keys) if ttl > 0 else {}
        now = self.clock()
        found = {k: e.value for k, e in entries.items() if e is not None and now - e.fetched <= ttl}
        self.count(name, "hit", len(found))
        missing = [k for k in keys if k not in found]
        if not missing:
            return found
        self.count(name, "miss", len(missing))
        try:
            fetched = await self._coalesced(name, missing, fetch)
        except UpstreamError:
            entries = entries if ttl > 0 else await self._entries(name, missing)
            stale = {k: e for k in missing if (e := entries.get(k)) is not None}
            if len(stale) < len(missing):
                raise
            self.count(name, "stale", len(stale))
            self._flag(name, max(now - e.fetched for e in stale.values()))
            return found | {k: e.value for k, e in stale.items()}
        at = self.clock()
        await self.entries.set_many({f"{name}:{k}": _Entry(v, at, at + keep) for k, v in fetched.items()})
        return found | dict(fetched)

    async def _entries(self, name: str, keys: Sequence[str]) -> dict[str, _Entry | None]:
        return dict(zip(keys, await self.entries.get_many([f"{name}:{k}" for k in keys]), strict=True))

    async def _coalesced(
        self, name: str, keys: list[str], fetch: Callable[[list[str]], Awaitable[Mapping[str, Any]]]
    ) -> Mapping[str, Any]:
        flight = (name, tuple(sorted(keys)))
        if (running := self._inflight.get(flight)) is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[flight] = future
        try:
            result = dict(await fetch(keys))
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a load nobody shared must not warn
            raise
        finally:
            del self._inflight[flight]

    async def invalidate_lot(self, lot_id: str) -> None:
        await self.invalidate_lots([lot_id])

    async def invalidate_lots(self, lot_ids: Sequence[str]) -> None:
        if lot_ids:
            await self.entries.delete_many([f"{name}:{lot_id}" for lot_id in lot_ids for name in LOT_KEYED])

    @staticmethod
    def _flag(name: str, age: float) -> None:
        reads = stale_reads.get()
        if reads is not None:
            reads.append({"contract": name, "ageSeconds": round(age, 1)})
