"""Per-request DataLoaders, one per source and entity, so a list of any size costs a constant
number of upstream requests per source (fields of all items are collected, then fetched in one batch).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from functools import cached_property
from operator import attrgetter
from typing import Any, Generic, TypeVar

from strawberry.dataloader import DataLoader

from gateway.contracts.base import Keys
from gateway.errors import NotFound
from gateway.model import (
    ErpStock,
    GoodsMovement,
    Inspection,
    Lot,
    LotQuality,
    Material,
    MesLot,
    Nonconformance,
    Plant,
    ProductionExecution,
    ProductionOrder,
    QualityHold,
    StockPosition,
    Supplier,
)
from gateway.telemetry import tracer
from gateway.upstream import Upstream

T = TypeVar("T")


async def _batch(
    upstream: Upstream, source: str, operation: str, keys: list[str],
    fetch: Callable[[list[str]], Awaitable[Mapping[str, T]]], cached: bool,
) -> list[T]:  # fmt: skip
    with tracer.start_as_current_span(f"batch {source}.{operation}", attributes={"lotgraph.keys": len(keys)}):
        values = await (upstream.cache.load(f"{source}.{operation}", keys, fetch) if cached else fetch(keys))
    return [values[key] for key in keys]


def _one_each(
    upstream: Upstream, source: str, operation: str, key_of: Callable[[Any], Hashable], cached: bool
) -> Callable[[list[str]], Awaitable[Sequence[Any]]]:
    """Batch function answering one object (or None when the source does not know it) per key."""

    async def fetch(missing: list[str]) -> dict[str, Any]:
        found = {key_of(item): item for item in await upstream.call(source, operation, Keys(keys=missing))}
        return {key: found.get(key) for key in missing}

    async def load(keys: list[str]) -> list[Any]:
        return await _batch(upstream, source, operation, keys, fetch, cached)

    return load


def _all_each(
    upstream: Upstream, source: str, operation: str, key_of: Callable[[Any], Hashable], cached: bool
) -> Callable[[list[str]], Awaitable[Sequence[list[Any]]]]:
    """Batch function answering the list of objects belonging to each key (possibly empty)."""

    async def fetch(missing: list[str]) -> dict[str, list[Any]]:
        grouped: dict[Hashable, list[Any]] = defaultdict(list)
        for item in await upstream.call(source, operation, Keys(keys=missing)):
            grouped[key_of(item)].append(item)
        return {key: grouped.get(key, []) for key in missing}

    async def load(keys: list[str]) -> list[list[Any]]:
        return await _batch(upstream, source, operation, keys, fetch, cached)

    return load


class _Loader(Generic[T]):
    """A request's loader of one source's entity, made on first use: a request uses a few of the sixteen."""

    def __init__(
        self, batch: Callable[..., Callable[[list[str]], Awaitable[Sequence[Any]]]], source: str, operation: str,
        key_of: Callable[[Any], Hashable],
    ) -> None:  # fmt: skip
        self.batch, self.source, self.operation, self.key_of = batch, source, operation, key_of

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, loaders: Loaders, owner: type | None = None) -> DataLoader[str, T]:
        loader: DataLoader[str, T] = DataLoader(
            self.batch(loaders.upstream, self.source, self.operation, self.key_of, loaders.cached)
        )
        loaders.__dict__[self.name] = loader  # from now on the instance's own attribute: made once per request
        return loader


BY_ID, BY_LOT = attrgetter("id"), attrgetter("lot_id")


class Loaders:
    """Every loader a request may use; created fresh per request so nothing leaks between callers.

    With `cached` False they always ask the system of record and never stand in a stale entry for a failed
    read: `fresh` loaders are what a write decision rests on (release evidence, who placed the holds).
    """

    plant = _Loader[Plant | None](_one_each, "erp", "plant.read", BY_ID)
    material = _Loader[Material | None](_one_each, "erp", "material.read", BY_ID)
    supplier = _Loader[Supplier | None](_one_each, "erp", "supplier.read", BY_ID)
    batch = _Loader[Lot | None](_one_each, "erp", "batch.read", BY_ID)
    erp_stock = _Loader[list[ErpStock]](_all_each, "erp", "stock.read", BY_LOT)
    production_order = _Loader[ProductionOrder | None](_one_each, "erp", "production_order.read", BY_ID)
    movements = _Loader[list[GoodsMovement]](_all_each, "erp", "material_document.read", BY_LOT)
    lot_quality = _Loader[LotQuality | None](_one_each, "qms", "lot_quality.read", BY_LOT)
    inspection = _Loader[Inspection | None](_one_each, "qms", "inspection_lot.read", BY_ID)
    inspections = _Loader[list[Inspection]](_all_each, "qms", "inspection_lot.by_lot", BY_LOT)
    nonconformances = _Loader[list[Nonconformance]](_all_each, "qms", "nonconformance.by_lot", BY_LOT)
    holds = _Loader[list[QualityHold]](_all_each, "qms", "hold.by_lot", BY_LOT)
    hold = _Loader[QualityHold | None](_one_each, "qms", "hold.read", BY_ID)
    stock_positions = _Loader[list[StockPosition]](_all_each, "wms", "stock.read", BY_LOT)
    execution = _Loader[ProductionExecution | None](_one_each, "mes", "execution.read", attrgetter("order_id"))
    mes_lot = _Loader[MesLot | None](_one_each, "mes", "lot.read", BY_LOT)

    def __init__(self, upstream: Upstream, *, cached: bool = True) -> None:
        self.upstream = upstream
        self.cached = cached

    @cached_property
    def fresh(self) -> Loaders:
        """Loaders of this request that bypass the read cache (itself, when it already does)."""
        return self if not self.cached else Loaders(self.upstream, cached=False)


def ready(loader: DataLoader[str, T], key: str) -> asyncio.Future[T] | None:
    """The loader's finished, successful load of `key`, if this request made one: its value can be used at once,
    without awaiting (a list of thousands then needs no coroutine per item)."""
    future = loader.cache_map.get(key) if loader.cache else None
    if future is None or not future.done() or future.cancelled() or future.exception() is not None:
        return None
    return future


async def load_now(loader: DataLoader[str, T], keys: Iterable[str]) -> dict[str, T]:
    """What `loader.load_many(keys)` answers (by key), without a future and a gather per key (a genealogy asks
    about 12,000, a page's preload 400: they cost more than the reads): what the loader has loaded it answers, the
    rest its batch function fetches in one call now. The loader keeps them for the rest of the request, or their
    failure: a field asking for one later is answered with it, and nothing is fetched twice."""
    wanted = list(dict.fromkeys(keys))
    known = {key: future.result() for key in wanted if (future := ready(loader, key)) is not None}
    if missing := [key for key in wanted if key not in known]:
        try:
            fetched = dict(zip(missing, await loader.load_fn(missing), strict=True))
        except Exception as exc:
            for key in missing:
                failed: asyncio.Future[T] = asyncio.get_running_loop().create_future()
                failed.set_exception(exc)
                failed.exception()  # retrieved: only a field that asks for it reports it
                loader.cache_map.set(key, failed)
            raise
        loader.prime_many(fetched)
        known |= fetched
    return known


async def existing(loader: DataLoader[str, T | None], key: str, what: str) -> T:
    """The entity, or NOT_FOUND (naming the `id` argument) when its system of record does not know it."""
    found = await loader.load(key)
    if found is None:
        raise NotFound(f"no {what} '{key}'", argument="id")
    return found
