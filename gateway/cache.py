"""The read cache in front of the contracts (aiocache; in memory by default).

Each entry remembers when it was fetched. Within its operation's TTL it is served instead of asking the
source; past it, it is kept for `stale_seconds` more and served only when the source fails, with the
response flagged (`extensions.stale`) so clients know the data may be old. Concurrent identical
loads share one upstream call. Events and operations call `invalidate_lot` so a query after a change
never shows the old state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiocache import RedisCache, SimpleMemoryCache
from aiocache.base import BaseCache
from aiocache.serializers import PickleSerializer
from pydantic import BaseModel, Field

from gateway.errors import UpstreamError

# Lot-keyed operations: what `invalidate_lot` clears.
LOT_KEYED = (
    "erp.batch.read", "erp.stock.read", "erp.material_document.read", "qms.lot_quality.read",
    "qms.inspection_lot.by_lot", "qms.nonconformance.by_lot", "qms.hold.by_lot", "wms.stock.read", "mes.lot.read",
)  # fmt: skip

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


def _backend(redis_url: str | None) -> BaseCache:
    """In memory by default; in Redis (pickled canonical objects) when replicas should share one cache."""
    if redis_url is None:
        return SimpleMemoryCache()
    url = urlsplit(redis_url)
    return RedisCache(
        serializer=PickleSerializer(), namespace="lotgraph:cache", endpoint=url.hostname or "127.0.0.1",
        port=url.port or 6379, db=int(url.path.strip("/") or 0), password=url.password,
    )  # fmt: skip


@dataclass(frozen=True)
class _Entry:
    value: Any
    fetched: float


class ReadCache:
    def __init__(
        self,
        settings: CacheSettings,
        count: Callable[[str, str, int], None],
        clock: Callable[[], float] = time.time,
        redis_url: str | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock  # wall time: entries shared through Redis are compared across processes
        self.count = count  # (contract, "hit" | "miss" | "stale", n): the metrics hook
        self.backend: BaseCache = _backend(redis_url)
        self._inflight: dict[tuple[str, tuple[str, ...]], asyncio.Future[dict[str, Any]]] = {}

    async def load(
        self, name: str, keys: Sequence[str], fetch: Callable[[list[str]], Awaitable[Mapping[str, Any]]]
    ) -> dict[str, Any]:
        """Each key's value: fresh from the cache, else from `fetch` (shared by identical concurrent loads),
        else, if `fetch` fails, a stale entry, flagged."""
        ttl = self.settings.ttl.get(name, 0.0)
        entries: dict[str, _Entry | None] = dict(
            zip(keys, await self.backend.multi_get([f"{name}:{k}" for k in keys]), strict=True)
        )
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
            stale = {k: entries[k] for k in missing if entries.get(k) is not None}
            if len(stale) < len(missing):
                raise
            self.count(name, "stale", len(stale))
            self._flag(name, max(now - e.fetched for e in stale.values()))
            return found | {k: e.value for k, e in stale.items()}
        await self.backend.multi_set(
            [(f"{name}:{k}", _Entry(v, self.clock())) for k, v in fetched.items()],
            ttl=ttl + self.settings.stale_seconds or None,
        )
        return found | dict(fetched)

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

    async def aclose(self) -> None:
        await self.backend.close()

    async def invalidate_lot(self, lot_id: str) -> None:
        for name in LOT_KEYED:
            await self.backend.delete(f"{name}:{lot_id}")

    @staticmethod
    def _flag(name: str, age: float) -> None:
        reads = stale_reads.get()
        if reads is not None:
            reads.append({"contract": name, "ageSeconds": round(age, 1)})
