"""The canonical model every resolver sees: ISA-95 names, one enum per kind of status.

Source systems speak their own dialects; contracts translate them into these objects once,
at the boundary (see `gateway/codes.py` for the status mappings).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class QualityStatus(StrEnum):
    """Whether a lot may be used, as quality decides it."""

    IN_INSPECTION = "IN_INSPECTION"
    RELEASED = "RELEASED"
    REJECTED = "REJECTED"
    ON_HOLD = "ON_HOLD"


class StockStatus(StrEnum):
    """What physical or booked stock of a lot may be used for."""

    AVAILABLE = "AVAILABLE"
    QUALITY_INSPECTION = "QUALITY_INSPECTION"
    BLOCKED = "BLOCKED"


class InspectionStatus(StrEnum):
    CREATED = "CREATED"
    RESULTS_RECORDED = "RESULTS_RECORDED"
    DECIDED = "DECIDED"


class UsageDecisionCode(StrEnum):
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


class NonconformanceState(StrEnum):
    OPEN = "OPEN"
    INVESTIGATING = "INVESTIGATING"
    CLOSED = "CLOSED"


class HoldStatus(StrEnum):
    ACTIVE = "ACTIVE"
    RELEASED = "RELEASED"


class MaterialClass(StrEnum):
    """ISA-95 material class, from the ERP material type."""

    RAW_MATERIAL = "RAW_MATERIAL"
    INTERMEDIATE = "INTERMEDIATE"
    FINISHED_GOOD = "FINISHED_GOOD"


class System(StrEnum):
    ERP = "ERP"
    QMS = "QMS"
    WMS = "WMS"
    MES = "MES"


class Canonical(BaseModel):
    model_config = ConfigDict(frozen=True)


class Plant(Canonical):
    id: str
    name: str
    country: str
    city: str


class Material(Canonical):
    """Material definition (ERP product master)."""

    id: str
    description: str
    material_class: MaterialClass
    base_unit: str
    group: str
    regulated: bool
    standard_price: float
    currency: str


class Supplier(Canonical):
    id: str
    name: str
    country: str


class Lot(Canonical):
    """Material lot as the ERP batch master holds it."""

    id: str
    material_id: str
    plant_id: str
    supplier_id: str | None
    supplier_batch: str | None
    manufactured_on: date | None
    expires_on: date | None
    restricted: bool
    country_of_origin: str | None
    purchase_order: str | None
    production_order_id: str | None
    customer: str | None


class ErpStock(Canonical):
    """Booked stock of a lot in one storage location and stock type."""

    lot_id: str
    material_id: str
    plant_id: str
    storage_location: str
    status: StockStatus
    quantity: float
    unit: str


class GoodsMovement(Canonical):
    document: str
    year: str
    item: str
    movement_type: str
    lot_id: str
    material_id: str
    plant_id: str
    quantity: float
    unit: str
    posted_on: date | None
    purchase_order: str | None
    production_order_id: str | None
    text: str = ""  # the item text: the gateway names its operation there


class StockPosition(Canonical):
    """Physical stock of a lot on one handling unit (WMS)."""

    lot_id: str
    material_id: str
    warehouse: str
    location: str
    handling_unit: str
    quantity: float
    unit: str
    status: StockStatus


class LotQuality(Canonical):
    """QMS's record of a lot's quality status."""

    lot_id: str
    plant_id: str
    material_id: str
    supplier_id: str | None
    status: QualityStatus
    changed_at: datetime


class InspectionResult(Canonical):
    characteristic: str
    description: str
    unit: str | None
    lower_limit: float | None
    upper_limit: float | None
    value: float | None
    passed: bool | None


class UsageDecision(Canonical):
    code: UsageDecisionCode
    decided_by: str
    decided_at: datetime


class Inspection(Canonical):
    """ISA-95 quality test: a QMS inspection lot with its results."""

    id: str
    lot_id: str
    plant_id: str
    material_id: str
    origin: str
    status: InspectionStatus
    created_at: datetime
    results: tuple[InspectionResult, ...]
    usage_decision: UsageDecision | None

    @property
    def passed(self) -> bool:
        """The usage decision if there is one, else every valued characteristic (and at least one) passed."""
        if self.usage_decision is not None:
            return self.usage_decision.code is UsageDecisionCode.ACCEPTED
        verdicts = [r.passed for r in self.results if r.passed is not None]
        return bool(verdicts) and all(verdicts)


class Nonconformance(Canonical):
    id: str
    lot_id: str
    plant_id: str
    category: str
    severity: str
    state: NonconformanceState
    description: str
    opened_at: datetime
    closed_at: datetime | None


class QualityHold(Canonical):
    id: str
    lot_id: str
    plant_id: str
    status: HoldStatus
    reason_code: str
    reason: str
    placed_by: str
    placed_at: datetime
    released_by: str | None
    released_at: datetime | None
    origin: str = "QMS"  # "lotgraph" for the gateway's own holds; anything else was decided in the QMS


class ProductionOrder(Canonical):
    """ERP production order header."""

    id: str
    material_id: str
    plant_id: str
    lot_id: str | None
    planned_quantity: float
    unit: str
    status: str
    planned_start: date | None
    released_on: date | None
    storage_location: str = ""  # where its goods receipt goes
    over_delivery_tolerance: float = 0.0  # percent over `planned_quantity` a receipt may bring
    received_quantity: float = 0.0


class PurchaseOrderItem(Canonical):
    """ERP purchase order item: what a supplier delivery is received against."""

    purchase_order: str
    item: str
    material_id: str
    plant_id: str
    supplier_id: str
    storage_location: str
    quantity: float
    unit: str
    over_delivery_tolerance: float
    received_quantity: float


class OperationCompletion(Canonical):
    operation: str
    description: str
    work_center: str
    completed_at: datetime | None
    yield_quantity: float
    scrap_quantity: float


class ProductionExecution(Canonical):
    """MES record of how an order actually ran."""

    order_id: str
    lot_id: str
    material_id: str
    plant_id: str
    line: str
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    good_quantity: float
    scrap_quantity: float
    unit: str
    operations: tuple[OperationCompletion, ...]


class MesLot(Canonical):
    """MES's own view of a lot it produced."""

    lot_id: str
    material_id: str
    plant_id: str
    status: QualityStatus


class GenealogyLink(Canonical):
    """One consumption: `consumed_lot_id` went into `produced_lot_id`."""

    consumed_lot_id: str
    consumed_material_id: str
    consumed_plant_id: str
    produced_lot_id: str
    produced_material_id: str
    produced_plant_id: str
    quantity: float
    unit: str
    order_id: str


class StockMoved(Canonical):
    """A WMS status move of every handling unit of a lot."""

    lot_id: str
    handling_units: int
    status: StockStatus


class Received(Canonical):
    """Handling units the WMS received for a lot."""

    lot_id: str
    handling_units: tuple[str, ...]
    status: StockStatus


class Reduced(Canonical):
    """A quantity the WMS took off a lot's handling units, and what is left."""

    lot_id: str
    reduced: float
    remaining: float


class PostedDocument(Canonical):
    """An ERP material document the gateway posted."""

    document: str
    year: str
    items: int


class ErpPosting(Canonical):
    """One entry of the ERP change feed (a goods movement or a batch change), in posting order."""

    sequence: int
    kind: str  # GOODS_MOVEMENT | BATCH_CHANGE
    lot_id: str
    material_id: str
    plant_id: str
    movement_type: str | None
    quantity: float | None
    unit: str | None
    stock_status: StockStatus | None  # where the stock went; None when it left the books (scrap) or for batch changes
    batch_restricted: bool | None
    document: str | None
    posted_at: datetime
