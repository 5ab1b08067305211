"""Per-request DataLoaders, one per source and entity, so a list of any size costs a constant
number of upstream requests per source (fields of all items are collected, then fetched in one batch).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from functools import cached_property
from operator import attrgetter
from typing import Any, TypeVar

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


class Loaders:
    """Every loader a request may use; created fresh per request so nothing leaks between callers.

    With `cached` False they always ask the system of record and never stand in a stale entry for a failed
    read: `fresh` loaders are what a write decision rests on (release evidence, who placed the holds).
    """

    def __init__(self, upstream: Upstream, *, cached: bool = True) -> None:
        self._upstream = upstream
        self.cached = cached

        def one(source: str, operation: str, key_of: Callable[[Any], Hashable]) -> DataLoader[str, Any]:
            return DataLoader(_one_each(upstream, source, operation, key_of, cached))

        def many(source: str, operation: str, key_of: Callable[[Any], Hashable]) -> DataLoader[str, Any]:
            return DataLoader(_all_each(upstream, source, operation, key_of, cached))

        by_id, by_lot = attrgetter("id"), attrgetter("lot_id")
        self.plant: DataLoader[str, Plant | None] = one("erp", "plant.read", by_id)
        self.material: DataLoader[str, Material | None] = one("erp", "material.read", by_id)
        self.supplier: DataLoader[str, Supplier | None] = one("erp", "supplier.read", by_id)
        self.batch: DataLoader[str, Lot | None] = one("erp", "batch.read", by_id)
        self.erp_stock: DataLoader[str, list[ErpStock]] = many("erp", "stock.read", by_lot)
        self.production_order: DataLoader[str, ProductionOrder | None] = one("erp", "production_order.read", by_id)
        self.movements: DataLoader[str, list[GoodsMovement]] = many("erp", "material_document.read", by_lot)
        self.lot_quality: DataLoader[str, LotQuality | None] = one("qms", "lot_quality.read", by_lot)
        self.inspection: DataLoader[str, Inspection | None] = one("qms", "inspection_lot.read", by_id)
        self.inspections: DataLoader[str, list[Inspection]] = many("qms", "inspection_lot.by_lot", by_lot)
        self.nonconformances: DataLoader[str, list[Nonconformance]] = many("qms", "nonconformance.by_lot", by_lot)
        self.holds: DataLoader[str, list[QualityHold]] = many("qms", "hold.by_lot", by_lot)
        self.hold: DataLoader[str, QualityHold | None] = one("qms", "hold.read", by_id)
        self.stock_positions: DataLoader[str, list[StockPosition]] = many("wms", "stock.read", by_lot)
        self.execution: DataLoader[str, ProductionExecution | None] = one(
            "mes", "execution.read", attrgetter("order_id")
        )
        self.mes_lot: DataLoader[str, MesLot | None] = one("mes", "lot.read", by_lot)

    @cached_property
    def fresh(self) -> Loaders:
        """Loaders of this request that bypass the read cache (itself, when it already does)."""
        return self if not self.cached else Loaders(self._upstream, cached=False)


async def existing(loader: DataLoader[str, T | None], key: str, what: str) -> T:
    """The entity, or NOT_FOUND (naming the `id` argument) when its system of record does not know it."""
    found = await loader.load(key)
    if found is None:
        raise NotFound(f"no {what} '{key}'", argument="id")
    return found
