"""Reconciliation in the graph: the divergent lots the sweep found (for the plants a caller may read), and
`repairLot`, which brings WMS and ERP in line with QMS as a governed operation."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gateway import consistency
from gateway.store import divergence as store
from resolvers import reconciliation
from resolvers.context import GatewayContext
from schema.access import guarded_by
from schema.consistency import SystemView
from schema.enums import QualityStatus, StockStatus, System
from schema.lot import Lot
from schema.operations import Operation
from schema.query import PageInfo

Info = strawberry.Info[GatewayContext, None]

DivergenceKind = strawberry.enum(
    consistency.DivergenceKind,
    description="What a disagreeing system (WMS or ERP) lets people do with the lot while QMS, the system of record "
    "for quality, says otherwise: AVAILABLE_WHILE_BLOCKED is stock that can be shipped although quality blocks it.",
)


@strawberry.type(description="A lot whose systems disagree, as reconciliation found it (a sweep or a re-check).")
class DivergentLot:
    id: strawberry.ID = strawberry.field(description="This divergence's entry (a lot diverging again gets a new one).")
    lot_id: strawberry.ID
    plant: str
    material: str
    supplier: str | None
    kinds: list[DivergenceKind]
    quality_status: QualityStatus | None = strawberry.field(description="What QMS said when last checked.")
    systems: list[SystemView] = strawberry.field(description="Each judged system's statement when last checked.")
    disagreements: list[str]
    first_seen: datetime
    last_seen: datetime
    divergent_seconds: float = strawberry.field(description="Since first seen.")

    @strawberry.field(description="The lot itself, read live from the systems.")
    def lot(self) -> Lot:
        return Lot(id=self.lot_id, material_hint=self.material, authorized=True)

    @classmethod
    def of(cls, entry: store.DivergentLot) -> DivergentLot:
        systems = [
            SystemView(system=System(s["system"]), reachable=True, error_code=None,
                       quality_status=QualityStatus(s["qualityStatus"]) if s["qualityStatus"] else None,
                       stock_status=StockStatus(s["stockStatus"]) if s["stockStatus"] else None)
            for s in entry.statements.get("systems", [])
        ]  # fmt: skip
        return cls(
            id=strawberry.ID(str(entry.id)), lot_id=strawberry.ID(entry.lot_id), plant=entry.plant,
            material=entry.material, supplier=entry.supplier,
            kinds=[consistency.DivergenceKind(kind) for kind in entry.kinds],
            quality_status=QualityStatus(entry.quality_status) if entry.quality_status else None, systems=systems,
            disagreements=list(entry.statements.get("disagreements", [])), first_seen=entry.first_seen,
            last_seen=entry.last_seen, divergent_seconds=round(entry.divergent_for.total_seconds(), 3),
        )  # fmt: skip


@strawberry.input
class DivergentLotFilter:
    plant: str | None = None
    kind: DivergenceKind | None = None
    older_than: int | None = strawberry.field(
        default=None, description="Only lots divergent for at least this many seconds (first seen that long ago)."
    )


@strawberry.type
class DivergentLotEdge:
    cursor: str
    node: DivergentLot


@strawberry.type
class DivergentLotConnection:
    edges: list[DivergentLotEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Divergent lots matching the filter that the caller may read.")


@strawberry.input
class RepairLotInput:
    lot_id: strawberry.ID
    reason: str
    idempotency_key: str = strawberry.field(description="Repeat a request with the same key to get the same result.")


@strawberry.type
class ReconciliationQuery:
    @strawberry.field(
        description="Lots whose systems disagree, oldest first, of the plants (or the supplier's lots) the caller "
        "reads; found by the reconciliation sweep and re-checks, gone once the systems agree.",
        directives=guarded_by("readLot"),
    )
    async def divergent_lots(
        self, info: Info, filter: DivergentLotFilter | None = None, first: int = 50, after: str | None = None
    ) -> DivergentLotConnection:
        f = filter or DivergentLotFilter()
        found = await reconciliation.page(
            info.context, first=first, after=after, plant=f.plant, kind=f.kind.value if f.kind else None,
            older_than=f.older_than,
        )  # fmt: skip
        edges = [DivergentLotEdge(cursor=str(entry.id), node=DivergentLot.of(entry)) for entry in found.entries]
        return DivergentLotConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=found.has_next_page, end_cursor=edges[-1].cursor if edges else None),
            total_count=found.total,
        )


@strawberry.type
class ReconciliationMutation:
    @strawberry.mutation(
        description="Bring WMS and ERP in line with what QMS says about a divergent lot: a governed operation, "
        "audited, never unblocking what QMS blocks, never making regulated material available.",
        directives=guarded_by("repairLot"),
    )
    async def repair_lot(self, info: Info, input: RepairLotInput) -> Operation:
        op = await reconciliation.repair_lot(info.context, input.lot_id, input.reason, input.idempotency_key)
        return Operation.of(op)
