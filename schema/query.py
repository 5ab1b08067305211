"""The root Query: entry points into the lot / order / inspection graph."""

from __future__ import annotations

from datetime import date

import strawberry

from gateway.contracts import REGISTRY
from gateway.reads import existing
from resolvers import lots
from resolvers.context import GatewayContext
from schema.access import AUTHENTICATED
from schema.enums import QualityStatus
from schema.lot import Lot
from schema.master import Material, Plant, Supplier
from schema.production import ProductionOrder
from schema.quality import Inspection

Info = strawberry.Info[GatewayContext, None]


@strawberry.input
class LotFilter:
    plant: str | None = None
    material: str | None = None
    supplier: str | None = None
    quality_status: QualityStatus | None = None
    consistent: bool | None = strawberry.field(
        default=None,
        description="false: only lots reconciliation found divergent (see divergentLots); true is not "
        "supported (the consistent lots are every other lot).",
    )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class LotEdge:
    cursor: str
    node: Lot


@strawberry.type
class LotConnection:
    edges: list[LotEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(description="A versioned service contract the gateway speaks with a source system.")
class ServiceContract:
    name: str = strawberry.field(description="source.operation@version, e.g. erp.batch.read@1.")
    source: str
    operation: str
    version: int
    summary: str
    status: str = strawberry.field(description="ACTIVE or DEPRECATED.")
    sunset: date | None
    in_use: bool = strawberry.field(description="This gateway is configured to speak this version.")


@strawberry.type
class Query:
    @strawberry.field(description="A lot by id (batch number).")
    async def lot(self, info: Info, id: strawberry.ID) -> Lot | None:
        return await Lot.resolve_reference(info, id)

    @strawberry.field(description="Lots matching a filter, as a Relay connection.")
    async def lots(
        self, info: Info, filter: LotFilter | None = None, first: int = 20, after: str | None = None
    ) -> LotConnection:
        f = filter or LotFilter()
        ctx = info.context
        asked = lots.LotFilter(
            plants=frozenset([f.plant] if f.plant else []), material=f.material, supplier=f.supplier,
            quality_status=f.quality_status, consistent=f.consistent,
        )  # fmt: skip
        # Ask the source for exactly what the caller may read, so pages stay full and counts leak nothing.
        where = lots.within(asked, ctx.guard.read_scope)
        if where.consistent is None:
            result = await lots.page(ctx.upstream, ctx.loaders, where, first, after, ctx.settings.max_page_size)
        else:
            divergent = ctx.runtime.opened_store.divergent
            result = await lots.divergent_page(divergent, where, first, after, ctx.settings.max_page_size)
        readable = await ctx.guard.readable_lots(e.lot_id for e in result.entries)
        edges = [
            LotEdge(cursor=e.cursor, node=Lot(id=strawberry.ID(e.lot_id), material_hint=e.material_id, authorized=True))
            for e in result.entries
            if e.lot_id in readable
        ]
        await Lot.preload(info, [edge.node for edge in edges], "lots", "edges", "node")
        return LotConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=result.has_next_page, end_cursor=edges[-1].cursor if edges else None),
            total_count=result.total,
        )

    @strawberry.field
    async def production_order(self, info: Info, id: strawberry.ID) -> ProductionOrder | None:
        return await ProductionOrder.resolve_reference(info, id)

    @strawberry.field(description="A QMS inspection lot by its number.")
    async def inspection(self, info: Info, id: strawberry.ID) -> Inspection | None:
        return await Inspection.resolve_reference(info, id)

    @strawberry.field
    async def material(self, info: Info, id: strawberry.ID) -> Material | None:
        return await Material.resolve_reference(info, id)

    @strawberry.field
    async def supplier(self, info: Info, id: strawberry.ID) -> Supplier | None:
        return await Supplier.resolve_reference(info, id)

    @strawberry.field
    async def plant(self, info: Info, id: strawberry.ID) -> Plant | None:
        return Plant.of(await existing(info.context.loaders.plant, id, "plant"))

    @strawberry.field(
        description="Every service contract the gateway knows, with version and status.", directives=AUTHENTICATED
    )
    def contracts(self, info: Info) -> list[ServiceContract]:
        in_use = info.context.upstream.in_use()
        return [
            ServiceContract(
                name=c.name,
                source=c.source,
                operation=c.operation,
                version=c.version,
                summary=c.summary,
                status=c.status.value,
                sunset=c.sunset,
                in_use=c.name in in_use,
            )
            for c in sorted(REGISTRY.values(), key=lambda c: c.name)
        ]
