"""Quality data owned by the QMS: inspections (ISA-95 quality tests), nonconformances and holds."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from gateway import model
from gateway.reads import existing
from resolvers.context import GatewayContext
from schema.access import guarded_by
from schema.copies import copy_of
from schema.enums import HoldStatus, InspectionStatus, NonconformanceState, UsageDecisionCode
from schema.plain import PRESET

if TYPE_CHECKING:
    from schema.lot import Lot

LotRef = Annotated["Lot", strawberry.lazy("schema.lot")]
Info = strawberry.Info[GatewayContext, None]


@strawberry.type(description="One measured characteristic of an inspection.")
class InspectionResult:
    characteristic: str
    description: str
    unit: str | None
    lower_limit: float | None
    upper_limit: float | None
    value: float | None
    passed: bool | None = strawberry.field(description="Null while no result is recorded.")


@strawberry.type
class UsageDecision:
    code: UsageDecisionCode
    decided_by: str
    decided_at: datetime


def _results(inspection: Inspection) -> list[InspectionResult]:
    """An inspection's results as GraphQL objects: made only when a query selects them (a page of lots' inspections
    asks for their status, not for their hundreds of characteristics)."""
    return [copy_of(InspectionResult, result) for result in inspection.recorded]


@strawberry.federation.type(
    keys=["id"],
    directives=guarded_by("readLot"),
    description="A QMS inspection lot: the quality test of a material lot.",
)
class Inspection:
    id: strawberry.ID
    lot_id: strawberry.Private[str]
    plant_id: str
    origin: str = strawberry.field(description="01 goods receipt, 04 production.")
    status: InspectionStatus
    created_at: datetime
    recorded: strawberry.Private[tuple[model.InspectionResult, ...]]  # QMS's results, made GraphQL ones when asked

    @strawberry.field(metadata={PRESET: _results})  # a list of inspections reads them in its loop (`schema/plain.py`)
    def results(self) -> list[InspectionResult]:
        return _results(self)

    usage_decision: UsageDecision | None

    @strawberry.field
    def lot(self) -> LotRef:
        from schema.lot import Lot

        return Lot(id=strawberry.ID(self.lot_id))

    @strawberry.field(description="False when any characteristic failed or the usage decision rejected.")
    def passed(self) -> bool | None:
        if self.usage_decision is not None:
            return self.usage_decision.code is model.UsageDecisionCode.ACCEPTED
        verdicts = [r.passed for r in self.recorded if r.passed is not None]
        return all(verdicts) if verdicts else None

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Inspection:
        """An inspection lot by number (`Query.inspection`, a router's `_entities`), readable with its lot."""
        inspection = await existing(info.context.loaders.inspection, id, "inspection")
        await info.context.guard.require_lot_read(inspection.lot_id)
        return cls.of(inspection)

    @classmethod
    def of(cls, inspection: model.Inspection) -> Inspection:
        decision = inspection.usage_decision
        return cls(
            id=strawberry.ID(inspection.id),
            lot_id=inspection.lot_id,
            plant_id=inspection.plant_id,
            origin=inspection.origin,
            status=inspection.status,
            created_at=inspection.created_at,
            recorded=inspection.results,
            usage_decision=None if decision is None else copy_of(UsageDecision, decision),
        )


@strawberry.type
class Nonconformance:
    id: strawberry.ID
    category: str
    severity: str
    state: NonconformanceState
    description: str
    opened_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, nc: model.Nonconformance) -> Nonconformance:
        return copy_of(cls, nc)


@strawberry.type
class QualityHold:
    id: strawberry.ID
    status: HoldStatus
    reason_code: str
    reason: str
    placed_by: str
    placed_at: datetime
    released_by: str | None
    released_at: datetime | None
    origin: str = strawberry.field(
        description="Who placed it: `lotgraph` for the gateway's own holds, else the QMS's users (`QMS`)."
    )

    @classmethod
    def of(cls, hold: model.QualityHold) -> QualityHold:
        return copy_of(cls, hold)
