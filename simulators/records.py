"""The records of the simulated plant, as `simulators.dataset.generate` produces them.

They are frozen: each simulator copies what it needs into its own state and never mutates the dataset, so
one dataset can seed any number of simulators.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class QualityStatus(StrEnum):
    """A lot's true quality status, from which every system derives its own."""

    RELEASED = "RELEASED"
    IN_INSPECTION = "IN_INSPECTION"
    REJECTED = "REJECTED"
    ON_HOLD = "ON_HOLD"


@dataclass(frozen=True, slots=True)
class Plant:
    id: str
    name: str
    country: str
    city: str


@dataclass(frozen=True, slots=True)
class Material:
    """A product; `bom` lists the component materials a production lot of it consumes."""

    id: str
    type: str  # ROH / HALB / FERT
    tier: int  # 0 raw .. 5 finished good, 6 distribution pack
    description: str
    unit: str
    group: str
    regulated: bool
    price: float
    currency: str
    plant: str  # producing plant; "" for raw materials, which every plant receives
    shelf_life_days: int
    bulk: bool
    bom: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Supplier:
    id: str
    name: str
    country: str


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    country: str
    city: str


@dataclass(frozen=True, slots=True)
class Lot:
    """A batch. `remaining` is what is still in stock (0 once consumed or shipped)."""

    id: str
    material: str
    plant: str
    tier: int
    quantity: float
    remaining: float
    unit: str
    storage_location: str
    manufactured_at: datetime
    expires_at: datetime
    quality_status: QualityStatus
    supplier: str
    supplier_batch: str
    purchase_order: str
    order_id: str
    customer: str
    country_of_origin: str


@dataclass(frozen=True, slots=True)
class Link:
    """One genealogy edge: `quantity` of `consumed_lot` went into `produced_lot` by `order_id`."""

    consumed_lot: str
    produced_lot: str
    quantity: float
    unit: str
    order_id: str
    consumed_at: datetime


@dataclass(frozen=True, slots=True)
class ProductionOrder:
    id: str
    material: str
    plant: str
    lot: str
    quantity: float
    unit: str
    status: str  # REL while running, TECO once completed
    planned_start: datetime
    released_at: datetime


@dataclass(frozen=True, slots=True)
class Operation:
    operation: str
    description: str
    work_center: str
    completed_at: datetime | None
    yield_quantity: float
    scrap_quantity: float


@dataclass(frozen=True, slots=True)
class Execution:
    """MES's record of running a production order."""

    order_id: str
    lot: str
    material: str
    plant: str
    line: str
    status: str  # COMPLETED / RUNNING
    started_at: datetime
    completed_at: datetime | None
    good_quantity: float
    scrap_quantity: float
    unit: str
    operations: tuple[Operation, ...]


@dataclass(frozen=True, slots=True)
class Characteristic:
    code: str
    description: str
    unit: str
    lower_limit: float
    upper_limit: float
    result: float | None
    valuation: str | None  # A / R, None until a result is recorded


@dataclass(frozen=True, slots=True)
class UsageDecision:
    code: str  # A accept / R reject
    decided_by: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class InspectionLot:
    id: str
    lot: str
    plant: str
    material: str
    origin: str  # 01 goods receipt / 04 production
    status: str  # CREATED / RESULTS_RECORDED / DECIDED
    created_at: datetime
    characteristics: tuple[Characteristic, ...]
    usage_decision: UsageDecision | None
    quantity: float | None = None  # the lot quantity, when whoever created the inspection lot gave it
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Nonconformance:
    id: str
    lot: str
    plant: str
    category: str
    severity: str
    state: str  # OPEN / IN_INVESTIGATION / CLOSED
    description: str
    opened_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Hold:
    id: str
    lot: str
    plant: str
    status: str  # ACTIVE / RELEASED
    reason_code: str
    reason: str
    placed_by: str
    placed_at: datetime
    released_by: str | None
    released_at: datetime | None
    origin: str = "QMS"  # who placed it: QMS (its own users) or the client that posted it, e.g. lotgraph


@dataclass(frozen=True, slots=True)
class StockRow:
    material: str
    plant: str
    storage_location: str
    lot: str
    stock_type: str  # 01 unrestricted / 02 quality inspection / 07 blocked
    quantity: float
    unit: str


@dataclass(frozen=True, slots=True)
class HandlingUnit:
    id: str
    lot: str
    material: str
    warehouse: str
    zone: str
    bin: str
    quantity: float
    unit: str
    status: str  # AVAILABLE / QUARANTINE / BLOCKED / DAMAGED
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MaterialDocumentItem:
    year: str
    document: str
    item: str
    movement_type: str
    material: str
    plant: str
    storage_location: str
    lot: str
    quantity: float
    unit: str
    posted_at: datetime
    purchase_order: str
    order_id: str


@dataclass(frozen=True, slots=True)
class Dataset:
    """The whole plant. `now` is the plant's present (just after the newest lot); `recall_lot` is the raw lot
    with the largest downstream genealogy; `stale[(system, lot)]` is what a diverged system still shows, and
    `divergent[lot]` says so in words."""

    seed: int
    now: datetime
    plants: dict[str, Plant]
    materials: dict[str, Material]
    suppliers: dict[str, Supplier]
    customers: dict[str, Customer]
    lots: dict[str, Lot]
    links: list[Link]
    orders: dict[str, ProductionOrder]
    executions: dict[str, Execution]
    inspection_lots: dict[str, InspectionLot]
    nonconformances: dict[str, Nonconformance]
    holds: dict[str, Hold]
    stock: list[StockRow]
    handling_units: list[HandlingUnit]
    material_documents: list[MaterialDocumentItem]
    recall_lot: str
    divergent: dict[str, str]
    stale: dict[tuple[str, str], QualityStatus]

    def status_in(self, system: str, lot_id: str) -> QualityStatus:
        """The status `system` derives its state from: the true one unless that system was left diverged."""
        return self.stale.get((system, lot_id), self.lots[lot_id].quality_status)
