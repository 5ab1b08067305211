"""The material lot, resolved across systems: batch master (ERP), stock (ERP and WMS),
quality (QMS), production (ERP and MES), genealogy (MES) and the cross-system consistency view."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import date

import strawberry

from gateway import consistency, genealogy, model
from gateway.errors import BadUserInput, GenealogyRedacted, NotFound
from gateway.limits import WALK, Walk
from gateway.reads import ready
from gateway.settings import Settings
from resolvers.context import GatewayContext
from resolvers.selection import selects
from schema.access import guarded_by
from schema.consistency import Consistency
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
    # Filled by a genealogy, which loads its lots' materials at once (`schema/plain.py`'s presets).
    preset_material: strawberry.Private[Material | Unset | None] = UNSET

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

    async def _batch(self, info: Info) -> model.Lot:
        await self.require_read(info)
        batch = await info.context.loaders.batch.load(self.id)
        if batch is None:
            raise NotFound(f"ERP has no batch {self.id}", source="erp")
        return batch

    @strawberry.field(graphql_type=Material | None, metadata={PRESET: "preset_material"})
    def material(self, info: Info) -> Material | Awaitable[Material | None] | None:
        """Answered at once when this request has loaded the material already (a genealogy loads its lots' few
        materials before its nodes resolve, and presets them): 12,000 nodes then make no coroutine each."""
        if not isinstance(self.preset_material, Unset):
            return self.preset_material
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

    @strawberry.field
    async def supplier_batch(self, info: Info) -> str | None:
        return (await self._batch(info)).supplier_batch

    @strawberry.field
    async def manufactured_on(self, info: Info) -> date | None:
        return (await self._batch(info)).manufactured_on

    @strawberry.field
    async def expires_on(self, info: Info) -> date | None:
        return (await self._batch(info)).expires_on

    @strawberry.field(description="The ERP batch is flagged restricted-use.")
    async def restricted(self, info: Info) -> bool | None:
        return (await self._batch(info)).restricted

    @strawberry.field
    async def country_of_origin(self, info: Info) -> str | None:
        return (await self._batch(info)).country_of_origin

    @strawberry.field
    async def purchase_order(self, info: Info) -> str | None:
        return (await self._batch(info)).purchase_order

    @strawberry.field(description="The customer a distribution lot ships to.")
    async def customer(self, info: Info) -> str | None:
        return (await self._batch(info)).customer

    @strawberry.field(description="The order that produced this lot; null for purchased lots.")
    async def production_order(self, info: Info) -> ProductionOrder | None:
        order_id = (await self._batch(info)).production_order_id
        order = await info.context.loaders.production_order.load(order_id) if order_id else None
        return ProductionOrder.of(order) if order else None

    @strawberry.field(description="QMS quality status; null when QMS has no record of the lot.")
    async def quality_status(self, info: Info) -> QualityStatus | None:
        await self.require_read(info)
        quality = await info.context.loaders.lot_quality.load(self.id)
        return quality.status if quality else None

    @strawberry.field(description="ERP stock by storage location and stock type.")
    async def booked_stock(self, info: Info) -> list[BookedStock] | None:
        await self.require_read(info)
        rows = await info.context.loaders.erp_stock.load(self.id)
        return [BookedStock(**row.model_dump(exclude={"lot_id", "material_id"})) for row in rows]

    @strawberry.field(description="WMS stock by handling unit.")
    async def stock_positions(self, info: Info) -> list[StockPosition] | None:
        await self.require_read(info)
        positions = await info.context.loaders.stock_positions.load(self.id)
        return [StockPosition(**p.model_dump(exclude={"lot_id", "material_id"})) for p in positions]

    @strawberry.field
    async def movements(self, info: Info) -> list[GoodsMovement] | None:
        await self.require_read(info)
        items = await info.context.loaders.movements.load(self.id)
        return [GoodsMovement(**m.model_dump(exclude={"lot_id", "material_id", "plant_id"})) for m in items]

    @strawberry.field
    async def inspections(self, info: Info) -> list[Inspection] | None:
        await self.require_read(info)
        return [Inspection.of(i) for i in await info.context.loaders.inspections.load(self.id)]

    @strawberry.field
    async def nonconformances(self, info: Info) -> list[Nonconformance] | None:
        await self.require_read(info)
        return [Nonconformance.of(n) for n in await info.context.loaders.nonconformances.load(self.id)]

    @strawberry.field
    async def holds(self, info: Info) -> list[QualityHold] | None:
        await self.require_read(info)
        return [QualityHold.of(h) for h in await info.context.loaders.holds.load(self.id)]

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
        if selects(info.selected_fields, "genealogy", "nodes", "material"):
            # A failed load stays in the loader: each node's `material` then reports it, as it would have alone.
            materials = list({lot.material_hint for lot in traced.nodes if lot.material_hint})
            loaded = await asyncio.gather(*map(info.context.loaders.material.load, materials), return_exceptions=True)
            preset = {
                material_id: Material.of(material) if material else None
                for material_id, material in zip(materials, loaded, strict=True)
                if not isinstance(material, BaseException)
            }
            for lot in traced.nodes:
                if lot.material_hint in preset:
                    lot.preset_material = preset[lot.material_hint]
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
