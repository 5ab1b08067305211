"""Master data: plants, materials (material definitions) and suppliers, all owned by the ERP."""

from __future__ import annotations

import strawberry

from gateway import model
from gateway.reads import existing
from resolvers.context import GatewayContext
from schema.access import AUTHENTICATED, guarded_by
from schema.enums import MaterialClass

Info = strawberry.Info[GatewayContext, None]


@strawberry.type(description="A plant (site) of the enterprise.", directives=AUTHENTICATED)
class Plant:
    id: strawberry.ID
    name: str
    country: str
    city: str

    @classmethod
    def of(cls, plant: model.Plant) -> Plant:
        return cls(id=strawberry.ID(plant.id), name=plant.name, country=plant.country, city=plant.city)


@strawberry.federation.type(
    keys=["id"], directives=AUTHENTICATED, description="A material definition from the ERP material master."
)
class Material:
    id: strawberry.ID
    description: str
    material_class: MaterialClass
    base_unit: str
    group: str
    regulated: bool = strawberry.field(description="Subject to regulated-release rules (e.g. GMP).")
    price: strawberry.Private[float]
    price_currency: strawberry.Private[str]

    @strawberry.field(
        description="Standard price per base unit (a cost field: internal roles only).",
        directives=guarded_by("readCost"),
    )
    async def standard_price(self, info: Info) -> float | None:
        await info.context.guard.require_cost_read(self.id)
        return self.price

    @strawberry.field(
        description="Currency of the standard price (a cost field: internal roles only).",
        directives=guarded_by("readCost"),
    )
    async def currency(self, info: Info) -> str | None:
        await info.context.guard.require_cost_read(self.id)
        return self.price_currency

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Material:
        return cls.of(await existing(info.context.loaders.material, id, "material"))

    @classmethod
    def of(cls, material: model.Material) -> Material:
        return cls(
            id=strawberry.ID(material.id),
            description=material.description,
            material_class=material.material_class,
            base_unit=material.base_unit,
            group=material.group,
            regulated=material.regulated,
            price=material.standard_price,
            price_currency=material.currency,
        )


@strawberry.federation.type(keys=["id"], directives=AUTHENTICATED, description="A supplier from the ERP master.")
class Supplier:
    id: strawberry.ID
    name: str
    country: str

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Supplier:
        return cls.of(await existing(info.context.loaders.supplier, id, "supplier"))

    @classmethod
    def of(cls, supplier: model.Supplier) -> Supplier:
        return cls(id=strawberry.ID(supplier.id), name=supplier.name, country=supplier.country)
