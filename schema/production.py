"""Production: ERP production orders and how the MES actually executed them."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from gateway import model
from gateway.reads import existing
from resolvers.context import GatewayContext
from schema.access import guarded_by
from schema.copies import copy_of
from schema.master import Material, Plant

if TYPE_CHECKING:
    from schema.lot import Lot

LotRef = Annotated["Lot", strawberry.lazy("schema.lot")]
Info = strawberry.Info[GatewayContext, None]


@strawberry.type(description="An operation step the MES confirmed.")
class OperationCompletion:
    operation: str
    description: str
    work_center: str
    completed_at: datetime | None
    yield_quantity: float
    scrap_quantity: float


@strawberry.type(description="How the MES ran a production order.")
class ProductionExecution:
    line: str
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    good_quantity: float
    scrap_quantity: float
    unit: str
    operations: list[OperationCompletion]

    @classmethod
    def of(cls, execution: model.ProductionExecution) -> ProductionExecution:
        return cls(
            line=execution.line,
            status=execution.status,
            started_at=execution.started_at,
            completed_at=execution.completed_at,
            good_quantity=execution.good_quantity,
            scrap_quantity=execution.scrap_quantity,
            unit=execution.unit,
            operations=[copy_of(OperationCompletion, op) for op in execution.operations],
        )


@strawberry.federation.type(
    keys=["id"], directives=guarded_by("readLot"), description="An ERP production order (ISA-95 production request)."
)
class ProductionOrder:
    id: strawberry.ID
    material_id: strawberry.Private[str]
    plant_id: strawberry.Private[str]
    lot_id: strawberry.Private[str | None]
    planned_quantity: float
    unit: str
    status: str = strawberry.field(description="ERP order status: CRTD, REL, TECO.")
    planned_start: date | None
    released_on: date | None

    @strawberry.field
    async def material(self, info: Info) -> Material | None:
        material = await info.context.loaders.material.load(self.material_id)
        return Material.of(material) if material else None

    @strawberry.field
    async def plant(self, info: Info) -> Plant | None:
        plant = await info.context.loaders.plant.load(self.plant_id)
        return Plant.of(plant) if plant else None

    @strawberry.field(description="The lot this order produced.")
    def produced_lot(self) -> LotRef | None:
        from schema.lot import Lot

        return Lot(id=strawberry.ID(self.lot_id)) if self.lot_id else None

    @strawberry.field(description="The MES execution record; null before the order ran.")
    async def execution(self, info: Info) -> ProductionExecution | None:
        execution = await info.context.loaders.execution.load(self.id)
        return ProductionExecution.of(execution) if execution else None

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> ProductionOrder:
        """An order by id (`Query.productionOrder`, a router's `_entities`), readable with the lot it made."""
        order = await existing(info.context.loaders.production_order, id, "production order")
        if order.lot_id:
            await info.context.guard.require_lot_read(order.lot_id)
        return cls.of(order)

    @classmethod
    def of(cls, order: model.ProductionOrder) -> ProductionOrder:
        return cls(
            id=strawberry.ID(order.id),
            material_id=order.material_id,
            plant_id=order.plant_id,
            lot_id=order.lot_id,
            planned_quantity=order.planned_quantity,
            unit=order.unit,
            status=order.status,
            planned_start=order.planned_start,
            released_on=order.released_on,
        )
