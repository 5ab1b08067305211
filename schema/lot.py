"""The material lot, resolved across systems: batch master (ERP), stock (ERP and WMS),
quality (QMS), production (ERP and MES), genealogy (MES) and the cross-system consistency view."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from operator import attrgetter
from typing import Any

import strawberry
from strawberry.utils.str_converters import to_camel_case

from gateway import consistency, genealogy, model
from gateway.errors import BadUserInput, GatewayError, GenealogyRedacted, NotFound
from gateway.limits import WALK, Walk
from gateway.reads import load_now, ready
from gateway.settings import Settings
from resolvers.context import GatewayContext
from resolvers.selection import selects
from schema.access import guarded_by
from schema.consistency import Consistency
from schema.copies import copy_of
from schema.enums import GenealogyDirection, QualityStatus, StockStatus
from schema.genealogy import Genealogy
from schema.master import Material, Plant, Supplier
from schema.plain import PRESET, UNSET, Unset
from schema.production import ProductionOrder
from schema.quality import Inspection, Nonconformance, QualityHold

Info = strawberry.Info[GatewayContext, None]
# A genealogy without `maxDepth` is priced (gateway/limits.py) as deep as one may go by default.
_DEEPEST: int = Settings.model_fields["max_genealogy_depth"].default


@strawberry.type(description="Stock of a lot as the ERP books it, per storage location and stock type.")
class BookedStock:
    plant_id: str
    storage_location: str
    status: StockStatus
    quantity: float
    unit: str


@strawberry.type(description="Physical stock of a lot on one handling unit, as the WMS knows it.")
class StockPosition:
    warehouse: str
    location: str
    handling_unit: str
    quantity: float
    unit: str
    status: StockStatus


@strawberry.type(description="An ERP material document item that moved this lot.")
class GoodsMovement:
    document: str
    year: str
    item: str
    movement_type: str = strawberry.field(
        description="101 receipt, 261 issue to order, 321/343/344/350 stock type changes, 551 scrap."
    )
    quantity: float
    unit: str
    posted_on: date | None
    purchase_order: str | None
    production_order_id: str | None


READS = "lotgraph.reads"  # a Lot field's metadata: what it reads (`Reads`), which a list of lots preloads


@dataclasses.dataclass(frozen=True, eq=False)  # compared and hashed by identity: one per field, the key of its presets
class Reads:
    """What a Lot field reads (the request's loader of that name, keyed by the lot's id or by `key(lot)`), and
    how its answer is made of what was read (`shape`, which depends on the lot only through that key: lots of one
    key share one answer, a genealogy's 12,000 nodes their few materials)."""

    loader: str
    shape: Callable[[Lot, Any], Any]
    key: Callable[[Lot], str | None] = attrgetter("id")

    def preset(self, lot: Lot) -> Any:
        """The field's answer for `lot` as its list preloaded it (`Lot.preload`), or UNSET (`schema/plain.py`)."""
        return lot.presets.get(self, UNSET)


def _lot_read(loader: str, **field: Any) -> Callable[[Callable[[Lot, Any], Any]], Any]:
    """A Lot field answering `shape(lot, what the request's `loader` holds for the lot)`: at once when the request
    has it loaded (a list of lots preloads what its lots' fields read, `Lot.preload`), without a coroutine per lot
    and field; else awaited, once the lot's read is allowed. A failed load is never ready: awaited, it raises."""

    def field_of(shape: Callable[[Lot, Any], Any]) -> Any:
        def resolve(self: Lot, info: Info) -> Any:
            loaded = ready(getattr(info.context.loaders, loader), self.id) if self.authorized else None
            return shape(self, loaded.result()) if loaded is not None else _awaited(self, info, loader, shape)

        reads = Reads(loader, shape)
        return strawberry.field(resolver=resolve, metadata={READS: reads, PRESET: reads.preset}, **field)

    return field_of


async def _awaited(lot: Lot, info: Info, loader: str, shape: Callable[[Lot, Any], Any]) -> Any:
    await lot.require_read(info)
    return shape(lot, await getattr(info.context.loaders, loader).load(lot.id))


_UNASKED = object()


def _shaped(reads: Reads, lot: Lot, loaded: asyncio.Future[Any] | None) -> Any:
    """The field's answer from a finished load, or UNSET when there is none to preset (the field then resolves
    itself, and reports the failure or the refusal as it would alone)."""
    if loaded is None:
        return UNSET
    try:
        return reads.shape(lot, loaded.result())
    except GatewayError:  # e.g. ERP has no such batch
        return UNSET


_MATERIAL = Reads("material", lambda _lot, material: Material.of(material) if material else None,
                  key=attrgetter("material_hint"))  # fmt: skip


def _known(lot: Lot, batch: model.Lot | None) -> model.Lot:
    if batch is None:
        raise NotFound(f"ERP has no batch {lot.id}", source="erp")
    return batch


def _batch_attribute(name: str, graphql_type: object, description: str | None = None) -> Any:
    """A Lot field that is its ERP batch's attribute `name`."""
    read = _lot_read("batch", graphql_type=graphql_type, description=description)
    return read(lambda lot, batch: getattr(_known(lot, batch), name))


@strawberry.federation.type(
    keys=["id"],
    directives=guarded_by("readLot"),
    description="A material lot (batch), with what every system of record says about it. Every field that "
    "comes from a source system is nullable: when that system fails, its fields carry the error and the rest resolve.",
)
class Lot:
    id: strawberry.ID
    material_hint: strawberry.Private[str | None] = None
    authorized: strawberry.Private[bool] = False
    # Fields' answers, by what they read, filled by the list the lot is in (`preload`; `schema/plain.py`).
    presets: strawberry.Private[dict[Reads, Any]] = dataclasses.field(default_factory=dict)

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Lot:
        """A lot by id, for `Query.lot` and for a router's `_entities`: the same Cedar decision either way."""
        await info.context.guard.require_lot_read(id)
        batch = await info.context.loaders.batch.load(id)
        return cls(id=id, material_hint=batch.material_id if batch else None, authorized=True)

    async def require_read(self, info: Info) -> None:
        """Every field of a lot is governed, whichever path reached it (lists and genealogy pre-authorize)."""
        if not self.authorized:
            await info.context.guard.require_lot_read(self.id)

    @classmethod
    async def preload(cls, info: Info, lots: Sequence[Lot], *path: str) -> None:
        """Load, for every lot of a list at once (lots the caller may read), what the fields selected under `path`
        read: one batch per source, sent as soon as the list is known rather than once graphql-core has started
        every item's fields; then preset each lot's answers, which the list completes in one loop. A failed load
        stays in its loader and presets nothing: each lot's field reports it, as it would alone."""
        loaders, selected = info.context.loaders, info.selected_fields  # made anew on each access: made once
        readable = [lot for lot in lots if lot.authorized]
        selected_reads = []
        for field in cls.__strawberry_definition__.fields:
            reads = field.metadata.get(READS)
            if reads is not None and selects(selected, *path, to_camel_case(field.python_name)):
                selected_reads.append((reads, getattr(loaders, reads.loader)))
        loads = [load_now(loader, {key for lot in readable if (key := reads.key(lot)) is not None})
                 for reads, loader in selected_reads]  # fmt: skip
        await asyncio.gather(*loads, return_exceptions=True)
        for reads, loader in selected_reads:
            answers: dict[str, Any] = {}  # by key; UNSET: nothing to preset (the load failed, or the shape refused)
            for lot in readable:
                if (key := reads.key(lot)) is None:
                    continue
                if (answer := answers.get(key, _UNASKED)) is _UNASKED:
                    answer = answers[key] = _shaped(reads, lot, ready(loader, key))
                if answer is not UNSET:
                    lot.presets[reads] = answer

    async def _batch(self, info: Info) -> model.Lot:
        await self.require_read(info)
        return _known(self, await info.context.loaders.batch.load(self.id))

    @strawberry.field(graphql_type=Material | None, metadata={READS: _MATERIAL, PRESET: _MATERIAL.preset})
    def material(self, info: Info) -> Material | Awaitable[Material | None] | None:
        """Answered at once when this request has loaded the material already (a list of lots preloads its lots'
        few materials): 12,000 genealogy nodes then make no coroutine each."""
        if not isinstance(preset := _MATERIAL.preset(self), Unset):
            return preset  # type: ignore[no-any-return]
        loaded = ready(info.context.loaders.material, self.material_hint) if self.material_hint else None
        if self.authorized and loaded is not None:
            return Material.of(material) if (material := loaded.result()) else None
        return self._material(info)

    async def _material(self, info: Info) -> Material | None:
        await self.require_read(info)
        material_id = self.material_hint or (await self._batch(info)).material_id
        material = await info.context.loaders.material.load(material_id)
        return Material.of(material) if material else None

    @strawberry.field
    async def plant(self, info: Info) -> Plant | None:
        plant = await info.context.loaders.plant.load((await self._batch(info)).plant_id)
        return Plant.of(plant) if plant else None

    @strawberry.field(description="The supplier of a purchased lot; null for lots produced in-house.")
    async def supplier(self, info: Info) -> Supplier | None:
        supplier_id = (await self._batch(info)).supplier_id
        supplier = await info.context.loaders.supplier.load(supplier_id) if supplier_id else None
        return Supplier.of(supplier) if supplier else None

    supplier_batch = _batch_attribute("supplier_batch", str | None)
    manufactured_on = _batch_attribute("manufactured_on", date | None)
    expires_on = _batch_attribute("expires_on", date | None)
    restricted = _batch_attribute("restricted", bool | None, "The ERP batch is flagged restricted-use.")
    country_of_origin = _batch_attribute("country_of_origin", str | None)
    purchase_order = _batch_attribute("purchase_order", str | None)
    customer = _batch_attribute("customer", str | None, "The customer a distribution lot ships to.")

    @strawberry.field(description="The order that produced this lot; null for purchased lots.")
    async def production_order(self, info: Info) -> ProductionOrder | None:
        order_id = (await self._batch(info)).production_order_id
        order = await info.context.loaders.production_order.load(order_id) if order_id else None
        return ProductionOrder.of(order) if order else None

    @_lot_read(
        "lot_quality", graphql_type=QualityStatus | None,
        description="QMS quality status; null when QMS has no record of the lot.",
    )  # fmt: skip
    def quality_status(self, quality: model.LotQuality | None) -> QualityStatus | None:
        return quality.status if quality else None

    @_lot_read(
        "erp_stock", graphql_type=list[BookedStock] | None, description="ERP stock by storage location and stock type."
    )
    def booked_stock(self, rows: list[model.ErpStock]) -> list[BookedStock]:
        return [copy_of(BookedStock, row) for row in rows]

    @_lot_read("stock_positions", graphql_type=list[StockPosition] | None, description="WMS stock by handling unit.")
    def stock_positions(self, positions: list[model.StockPosition]) -> list[StockPosition]:
        return [copy_of(StockPosition, p) for p in positions]

    @_lot_read("movements", graphql_type=list[GoodsMovement] | None)
    def movements(self, items: list[model.GoodsMovement]) -> list[GoodsMovement]:
        return [copy_of(GoodsMovement, m) for m in items]

    @_lot_read("inspections", graphql_type=list[Inspection] | None)
    def inspections(self, items: list[model.Inspection]) -> list[Inspection]:
        return [Inspection.of(i) for i in items]

    @_lot_read("nonconformances", graphql_type=list[Nonconformance] | None)
    def nonconformances(self, items: list[model.Nonconformance]) -> list[Nonconformance]:
        return [Nonconformance.of(n) for n in items]

    @_lot_read("holds", graphql_type=list[QualityHold] | None)
    def holds(self, items: list[model.QualityHold]) -> list[QualityHold]:
        return [QualityHold.of(h) for h in items]

    @strawberry.field(
        description="The traceability graph around this lot: every lot within `maxDepth` links, and the links.",
        metadata={WALK: Walk("maxDepth", assumed_depth=_DEEPEST)},
    )
    async def genealogy(
        self,
        info: Info,
        direction: GenealogyDirection,
        max_depth: int | None = None,
    ) -> Genealogy | None:
        await self.require_read(info)
        settings = info.context.settings
        depth = settings.default_genealogy_depth if max_depth is None else max_depth
        if not 1 <= depth <= settings.max_genealogy_depth:
            raise BadUserInput(f"maxDepth must be between 1 and {settings.max_genealogy_depth}", argument="maxDepth")
        walk = await genealogy.walk(info.context.upstream, self.id, direction, depth)
        traced = Genealogy.of(walk, readable=await info.context.guard.readable_lots(walk.nodes))
        await Lot.preload(info, traced.nodes, "genealogy", "nodes")
        if traced.redacted_count:  # said without being asked: a recall built from this trace would miss lots
            info.context.notify(GenealogyRedacted(
                f"{traced.redacted_count} of {len(walk.nodes)} lots of this genealogy are outside what you may read "
                "and are left out", redactedCount=traced.redacted_count,
            ), info)  # fmt: skip
        return traced

    @strawberry.field(description="What ERP, QMS, WMS and MES each say about this lot, and where they disagree.")
    async def consistency(self, info: Info) -> Consistency | None:
        await self.require_read(info)
        result = await consistency.assess(info.context.loaders, self.id)
        if result.disagreements:
            info.context.runtime.metrics.disagreement_reads.inc()
        return Consistency.of(result)
