"""QMS contracts: lot quality status, inspection lots, nonconformances and holds.

QMS answers in each plant's dialect (numeric codes at P100, text labels elsewhere); these contracts
translate every status through `gateway.codes` so the graph only ever sees canonical values.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.codes import (
    QMS_HOLD_STATUS,
    QMS_INSPECTION_STATUS,
    QMS_LOT_STATUS,
    QMS_NONCONFORMANCE_STATE,
    QMS_USAGE_DECISION,
    qms_native_lot_statuses,
    qms_translate,
    translate,
)
from gateway.contracts.base import BULK_ITEMS, Bulk, Contract, Keys, Upstream, bulk_outcomes, register
from gateway.model import (
    Inspection,
    InspectionResult,
    LotQuality,
    Nonconformance,
    QualityHold,
    QualityStatus,
    UsageDecision,
)
from gateway.sources.connector import SourceConnector

Code = str | int


class QmsLot(Upstream):
    lot_id: str
    plant: str
    material: str
    supplier: str | None = None
    status: Code
    status_changed_at: datetime

    def canonical(self) -> LotQuality:
        return LotQuality(
            lot_id=self.lot_id,
            plant_id=self.plant,
            material_id=self.material,
            supplier_id=self.supplier or None,
            status=qms_translate(QMS_LOT_STATUS, self.plant, self.status, field="status"),
            changed_at=self.status_changed_at,
        )


class QmsLots(Upstream):
    items: list[QmsLot]
    total: int | None = None


class QmsCharacteristic(InspectionResult):
    """A QMS characteristic validated straight into the canonical result (QMS's names its validation aliases, its
    A/R valuation the verdict): a page of lots' inspections carry hundreds, and building each twice cost more than
    parsing them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    characteristic: str = Field(validation_alias="code")
    unit: str | None = None
    lower_limit: float | None = None
    upper_limit: float | None = None
    value: float | None = Field(default=None, validation_alias="result")
    passed: bool | None = Field(default=None, validation_alias="valuation")

    @field_validator("passed", mode="before")
    @classmethod
    def _verdict(cls, valuation: object) -> bool | None:
        """A accepted, R (or another code) rejected, null while no result is recorded."""
        if valuation is None:
            return None
        if not isinstance(valuation, str):
            raise ValueError("valuation must be a code such as A or R")
        return valuation == "A"


class QmsUsageDecision(Upstream):
    code: str
    decided_by: str
    decided_at: datetime


class QmsInspectionLot(Upstream):
    id: str
    lot_id: str
    plant: str
    material: str
    origin: str
    status: Code
    created_at: datetime
    characteristics: list[QmsCharacteristic]
    usage_decision: QmsUsageDecision | None = None

    def canonical(self) -> Inspection:
        decision = self.usage_decision
        return Inspection(
            id=self.id,
            lot_id=self.lot_id,
            plant_id=self.plant,
            material_id=self.material,
            origin=self.origin,
            status=qms_translate(QMS_INSPECTION_STATUS, self.plant, self.status, field="status"),
            created_at=self.created_at,
            results=tuple(self.characteristics),
            usage_decision=None
            if decision is None
            else UsageDecision(
                code=translate(QMS_USAGE_DECISION, decision.code, field="usage_decision.code"),
                decided_by=decision.decided_by,
                decided_at=decision.decided_at,
            ),
        )


class QmsInspectionLots(Upstream):
    items: list[QmsInspectionLot]


class QmsNonconformance(Upstream):
    id: str
    lot_id: str
    plant: str
    category: str
    severity: str
    state: Code
    description: str
    opened_at: datetime
    closed_at: datetime | None = None

    def canonical(self) -> Nonconformance:
        return Nonconformance(
            id=self.id,
            lot_id=self.lot_id,
            plant_id=self.plant,
            category=self.category,
            severity=self.severity,
            state=qms_translate(QMS_NONCONFORMANCE_STATE, self.plant, self.state, field="state"),
            description=self.description,
            opened_at=self.opened_at,
            closed_at=self.closed_at,
        )


class QmsNonconformances(Upstream):
    items: list[QmsNonconformance]


class QmsHold(Upstream):
    id: str
    lot_id: str
    plant: str
    status: Code
    reason_code: str
    reason: str
    placed_by: str
    placed_at: datetime
    released_by: str | None = None
    released_at: datetime | None = None
    origin: str = "QMS"  # who placed it: "lotgraph" for the gateway's own holds, else the QMS's users

    def canonical(self) -> QualityHold:
        return QualityHold(
            id=self.id,
            lot_id=self.lot_id,
            plant_id=self.plant,
            status=qms_translate(QMS_HOLD_STATUS, self.plant, self.status, field="status"),
            reason_code=self.reason_code,
            reason=self.reason,
            placed_by=self.placed_by,
            placed_at=self.placed_at,
            released_by=self.released_by,
            released_at=self.released_at,
            origin=self.origin,
        )


class QmsHolds(Upstream):
    items: list[QmsHold]


class LotStatusQuery(BaseModel):
    """One page of lots in a canonical quality status, optionally narrowed by plants (any of them), material,
    supplier."""

    model_config = ConfigDict(frozen=True)

    status: QualityStatus
    plants: tuple[str, ...] = ()
    material: str | None = None
    supplier: str | None = None
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)


class LotQualityPage(BaseModel):
    lots: list[LotQuality]
    total: int


def _canonical_items(body: QmsLots | QmsInspectionLots | QmsNonconformances | QmsHolds) -> list:
    return [item.canonical() for item in body.items]


def _keyed(path: str, key_param: str):
    async def send(qms: SourceConnector, request: Keys):
        return await qms.get_keyed(path, key_param, request.keys)

    return send


async def _list_lots(qms: SourceConnector, request: LotStatusQuery):
    return await qms.get(
        "/api/v1/lots",
        status=",".join(qms_native_lot_statuses(request.status)),
        plant=",".join(request.plants) or None,
        material=request.material,
        supplier=request.supplier,
        limit=request.limit,
        offset=request.offset,
    )


def _lot_page(body: QmsLots) -> list[LotQualityPage]:
    lots = [item.canonical() for item in body.items]
    return [LotQualityPage(lots=lots, total=body.total if body.total is not None else len(lots))]


LOT_QUALITY_READ = register(
    Contract(
        "qms", "lot_quality.read", 1, "Quality status of lots, by lot id",
        request=Keys, response=QmsLots,
        send=_keyed("/api/v1/lots", "ids"),
        adapt=_canonical_items,
    )
)  # fmt: skip

LOT_QUALITY_LIST = register(
    Contract(
        "qms", "lot_quality.list", 1, "A page of lots in one quality status",
        request=LotStatusQuery, response=QmsLots,
        send=_list_lots,
        adapt=_lot_page,
    )
)  # fmt: skip

INSPECTION_BY_LOT = register(
    Contract(
        "qms", "inspection_lot.by_lot", 1, "Inspection lots with results and usage decision, by material lot",
        request=Keys, response=QmsInspectionLots,
        send=_keyed("/api/v1/inspection-lots", "lot_ids"),
        adapt=_canonical_items,
    )
)  # fmt: skip

INSPECTION_READ = register(
    Contract(
        "qms", "inspection_lot.read", 1, "Inspection lots by inspection lot number",
        request=Keys, response=QmsInspectionLots,
        send=_keyed("/api/v1/inspection-lots", "ids"),
        adapt=_canonical_items,
    )
)  # fmt: skip

NONCONFORMANCE_BY_LOT = register(
    Contract(
        "qms", "nonconformance.by_lot", 1, "Nonconformances by material lot",
        request=Keys, response=QmsNonconformances,
        send=_keyed("/api/v1/nonconformances", "lot_ids"),
        adapt=_canonical_items,
    )
)  # fmt: skip

HOLD_READ = register(
    Contract(
        "qms", "hold.read", 1, "Quality holds by hold id",
        request=Keys, response=QmsHolds,
        send=_keyed("/api/v1/holds", "ids"),
        adapt=_canonical_items,
    )
)  # fmt: skip

HOLD_BY_LOT = register(
    Contract(
        "qms", "hold.by_lot", 1, "Quality holds by material lot",
        request=Keys, response=QmsHolds,
        send=_keyed("/api/v1/holds", "lot_ids"),
        adapt=_canonical_items,
    )
)  # fmt: skip


HOLD_ORIGIN = "lotgraph"  # the origin of the gateway's own holds: their QMS events are not carried back


class HoldPlacement(BaseModel):
    model_config = ConfigDict(frozen=True)

    lot_id: str
    reason_code: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    placed_by: str
    request_id: str = Field(description="QMS answers a repeated request id with the first hold: retries are safe.")
    origin: str = HOLD_ORIGIN


class HoldRelease(BaseModel):
    model_config = ConfigDict(frozen=True)

    hold_id: str
    released_by: str
    justification: str = Field(min_length=1)


async def _place_hold(qms: SourceConnector, request: HoldPlacement):
    return await qms.post("/api/v1/holds", request.model_dump())


class HoldPlacements(BaseModel):
    """Many placements in one bulk request; QMS places or refuses each on its own."""

    model_config = ConfigDict(frozen=True)

    placements: tuple[HoldPlacement, ...] = Field(min_length=1, max_length=BULK_ITEMS)


async def _place_holds(qms: SourceConnector, request: HoldPlacements):
    return await qms.post("/api/v1/holds/bulk", {"holds": [p.model_dump() for p in request.placements]})


async def _release_hold(qms: SourceConnector, request: HoldRelease):
    body = {"released_by": request.released_by, "justification": request.justification}
    return await qms.post(f"/api/v1/holds/{request.hold_id}/release", body)


HOLD_PLACE = register(
    Contract(
        "qms", "hold.place", 1, "Place a quality hold on a lot (idempotent by request id)",
        request=HoldPlacement, response=QmsHold,
        send=_place_hold,
        adapt=lambda hold: [hold.canonical()],
    )
)  # fmt: skip

HOLD_PLACE_MANY = register(
    Contract(
        "qms", "hold.place_many", 1, "Place holds on many lots in one bulk request (each idempotent by request id)",
        request=HoldPlacements, response=Bulk[QmsHold],
        send=_place_holds,
        adapt=lambda body: bulk_outcomes("qms", body, QmsHold.canonical),
    )
)  # fmt: skip

HOLD_RELEASE = register(
    Contract(
        "qms", "hold.release", 1, "Release a quality hold (releasing a released hold answers it again)",
        request=HoldRelease, response=QmsHold,
        send=_release_hold,
        adapt=lambda hold: [hold.canonical()],
    )
)  # fmt: skip


class DispositionRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    lot_id: str
    decision: str = Field(pattern=r"^(RELEASE|SCRAP|REWORK|RETURN_TO_SUPPLIER)$")
    reason: str = Field(min_length=1)
    decided_by: str
    request_id: str


class QmsDisposition(Upstream):
    lot_id: str
    decision: str
    decided_by: str
    decided_at: datetime


async def _record_disposition(qms: SourceConnector, request: DispositionRecord):
    body = request.model_dump(exclude={"lot_id"})
    return await qms.post(f"/api/v1/lots/{request.lot_id}/disposition", body)


DISPOSITION_RECORD = register(
    Contract(
        "qms", "disposition.record", 1, "Record a lot's usage decision (idempotent by request id)",
        request=DispositionRecord, response=QmsDisposition,
        send=_record_disposition,
        adapt=lambda d: [{"decision": d.decision, "decidedBy": d.decided_by, "decidedAt": d.decided_at.isoformat()}],
    )
)  # fmt: skip


class InspectionLotCreation(BaseModel):
    """A lot that arrived (produced, or received from a supplier) gets its inspection lot: origin 04 (production) or
    01 (goods receipt). QMS answers a repeated request id with the first inspection lot."""

    model_config = ConfigDict(frozen=True)

    lot_id: str
    material: str
    plant: str
    origin: str = Field(pattern=r"^(01|04)$")
    supplier: str | None = None
    quantity: float | None = None
    unit: str | None = None
    request_id: str


async def _create_inspection_lot(qms: SourceConnector, request: InspectionLotCreation):
    return await qms.post("/api/v1/inspection-lots", request.model_dump(exclude_none=True))


INSPECTION_LOT_CREATE = register(
    Contract(
        "qms", "inspection_lot.create", 1, "Create the inspection lot of an arrived lot (idempotent by request id)",
        request=InspectionLotCreation, response=QmsInspectionLot,
        send=_create_inspection_lot,
        adapt=lambda inspection: [inspection.canonical()],
    )
)  # fmt: skip


class NonconformanceReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    lot_id: str
    category: str = Field(min_length=1)
    severity: str = Field(pattern=r"^(minor|major|critical)$")
    description: str = Field(min_length=1)
    request_id: str


async def _create_nonconformance(qms: SourceConnector, request: NonconformanceReport):
    return await qms.post("/api/v1/nonconformances", request.model_dump())


NONCONFORMANCE_CREATE = register(
    Contract(
        "qms", "nonconformance.create", 1, "Open a nonconformance on a lot (idempotent by request id)",
        request=NonconformanceReport, response=QmsNonconformance,
        send=_create_nonconformance,
        adapt=lambda nc: [nc.canonical()],
    )
)  # fmt: skip
