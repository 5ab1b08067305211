"""The deterministic plant every simulator is seeded from.

`generate(seed, lots)` builds one consistent picture of a small pharmaceutical plant: master data, lots and
their genealogy, quality records, stock and production history. Only `random.Random(seed)` is used and every
timestamp is an offset from `EPOCH`, so the same arguments always give the same plant. The records are frozen:
each simulator copies what it needs into its own state and never mutates the dataset.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import accumulate
from operator import mul

EPOCH = datetime(2026, 1, 5, tzinfo=UTC)
SYSTEMS = ("erp", "qms", "wms", "mes")


class QualityStatus(StrEnum):
    """A lot's true quality status, from which every system derives its own."""

    RELEASED = "RELEASED"
    IN_INSPECTION = "IN_INSPECTION"
    REJECTED = "REJECTED"
    ON_HOLD = "ON_HOLD"


BLOCKING = (QualityStatus.REJECTED, QualityStatus.ON_HOLD)


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


# --------------------------------------------------------------------------------------------- master data

PLANTS = (
    Plant("P100", "Werk Hamburg", "DE", "Hamburg"),
    Plant("P200", "Usine de Lyon", "FR", "Lyon"),
    Plant("P300", "Cork Plant", "IE", "Cork"),
)
PLANTS_BY_ID = {p.id: p for p in PLANTS}
WAREHOUSES = {"P100": "WH10", "P200": "WH20", "P300": "WH30"}
MATERIALS_PER_TIER = (70, 20, 20, 20, 20, 25, 25)
LOT_SHARE = (0.24, 0.14, 0.13, 0.12, 0.11, 0.10, 0.16)
# Bulk raw materials (first four raw materials) and how often a produced material's BOM contains each.
BULK = (("Purified water", "L"), ("Microcrystalline cellulose", "KG"), ("Lactose monohydrate", "KG"),
        ("Ethanol 96%", "L"))
BULK_USE = (0.9, 0.45, 0.3, 0.2)
BULK_SKEW = 1.3  # Zipf exponent: the oldest silo lot of a bulk material is drawn from most often
CHEMICALS = ("Magnesium stearate", "Croscarmellose sodium", "Povidone K30", "Hypromellose", "Talc",
             "Titanium dioxide", "Silicon dioxide colloidal", "Sodium starch glycolate", "Mannitol",
             "Maize starch", "Stearic acid", "Iron oxide yellow", "Macrogol 6000", "Polysorbate 80",
             "Sodium chloride", "Citric acid", "Calcium phosphate", "Sucrose", "Glycerol", "Isopropanol")
ACTIVES = ("Amlodipine besilate", "Metformin HCl", "Atorvastatin calcium", "Ibuprofen", "Paracetamol",
           "Omeprazole", "Losartan potassium", "Simvastatin", "Levothyroxine sodium", "Lisinopril")
GRADES = ("Ph. Eur.", "USP", "NF", "JP")
PACKAGING = (("Blister foil alu 20 um", "M"), ("PVC/PVDC film 250 um", "M"), ("Folding carton", "EA"),
             ("Patient leaflet", "EA"), ("Label 40x60", "EA"), ("HDPE bottle 100 ml", "EA"),
             ("Child-resistant cap", "EA"), ("Shipping carton", "EA"))
STAGES = ("Premix", "Granulate", "Final blend", "Coated core")
STRENGTHS = ("5 mg", "10 mg", "20 mg", "40 mg", "50 mg", "100 mg", "200 mg", "500 mg")
NAME_PARTS = (("Nord", "Alpen", "Rhein", "Baltic", "Atlas", "Helix", "Vector", "Orion", "Delta", "Summit"),
              ("chem", "pharm", "pack", "bio", "synth", "lab", "med", "source"),
              ("GmbH", "SA", "Ltd", "AG", "S.p.A.", "B.V.", "Inc."))
COUNTRIES = ("DE", "FR", "IE", "IT", "NL", "CH", "BE", "ES", "IN", "CN", "US", "PL")
CITIES = ("Berlin", "Paris", "Dublin", "Milan", "Rotterdam", "Basel", "Antwerp", "Madrid", "Vienna",
          "Warsaw", "Prague", "Lisbon", "Copenhagen", "Oslo", "Zurich")
CHARACTERISTICS = (  # code, description, unit, lower, upper
    ("ASSAY", "Assay", "%", 98.0, 102.0), ("WATER", "Water content (KF)", "%", 0.0, 0.5),
    ("PH", "pH (1% solution)", "", 6.0, 7.5), ("DENS", "Bulk density", "g/ml", 0.45, 0.65),
    ("PSD", "Particle size d50", "um", 60.0, 140.0), ("MICRO", "Total aerobic count", "cfu/g", 0.0, 100.0),
    ("HARD", "Tablet hardness", "N", 60.0, 120.0), ("DISS", "Dissolution 30 min", "%", 80.0, 100.0),
    ("MASS", "Uniformity of mass", "%", -5.0, 5.0), ("LEAK", "Seal integrity leak rate", "mbar/s", 0.0, 0.01),
)
ROUTINGS = (  # operations per tier: description, work center prefix
    (), (("Dispensing", "DISP"), ("Premixing", "BLND")),
    (("Wet granulation", "GRAN"), ("Fluid-bed drying", "DRY"), ("Milling", "MILL")),
    (("Final blending", "BLND"), ("Sieving", "SIEV")),
    (("Compression", "COMP"), ("Film coating", "COAT"), ("Visual inspection", "INSP")),
    (("Blister packaging", "PACK"), ("Serialisation", "SERI"), ("Cartoning", "CART")),
    (("Pick and pack", "SHIP"), ("Labelling", "LABL")),
)
HOLD_REASONS = (("DEV", "Deviation under investigation"), ("CMP", "Customer complaint"),
                ("SUP", "Supplier quality notification"), ("OOS", "Out-of-specification result"),
                ("ENV", "Environmental monitoring excursion"))
NC_CATEGORIES = ("Out of specification", "Contamination", "Labelling error", "Documentation gap",
                 "Equipment malfunction", "Supplier defect")
USERS = ("QA.MUELLER", "QA.DUBOIS", "QA.MURPHY", "QA.SCHMIDT", "QA.MARTIN", "QA.KELLY")
STORAGE_LOCATIONS = ("RM01", "WP01", "WP01", "WP01", "WP01", "FG01", "FG01")
ZONES = ("RM", "WIP", "WIP", "WIP", "WIP", "FG", "SHIP")
SSCC_WEIGHTS = (3, 1) * 8 + (3,)
STOCK_TYPE = {QualityStatus.RELEASED: "01", QualityStatus.IN_INSPECTION: "02",
              QualityStatus.ON_HOLD: "07", QualityStatus.REJECTED: "07"}
WMS_STATUS = {QualityStatus.RELEASED: "AVAILABLE", QualityStatus.IN_INSPECTION: "QUARANTINE",
              QualityStatus.ON_HOLD: "BLOCKED", QualityStatus.REJECTED: "BLOCKED"}


def _at(day: float) -> datetime:
    return EPOCH + timedelta(days=day)


def _round(quantity: float, unit: str) -> float:
    """Pieces are whole numbers; everything else keeps three decimals like SAP quantities."""
    return float(max(1, round(quantity))) if unit == "EA" else round(quantity, 3)


def _company(rng: random.Random, used: set[str]) -> str:
    while True:
        first, second, form = (rng.choice(part) for part in NAME_PARTS)
        name = f"{first}{second} {form}"
        if name not in used:
            used.add(name)
            return name


def _partners(rng: random.Random) -> tuple[dict[str, Supplier], dict[str, Customer]]:
    used: set[str] = set()
    suppliers = {}
    for n in range(40):
        supplier = Supplier(f"{17300001 + n}", _company(rng, used), rng.choice(COUNTRIES))
        suppliers[supplier.id] = supplier
    customers = {}
    for n in range(25):
        customer = Customer(f"{10100001 + n}", _company(rng, used), rng.choice(COUNTRIES), rng.choice(CITIES))
        customers[customer.id] = customer
    return suppliers, customers


def _raw_materials(rng: random.Random) -> list[tuple[str, str, str]]:
    """Descriptions, units and product groups of the raw materials, bulk ones first."""
    names = [(name, unit, "RM-BULK") for name, unit in BULK]
    names += [(f"{name} {strength} grade", "KG", "RM-API") for name in ACTIVES for strength in ("micronised",)]
    names += [(name, unit, "RM-PACK") for name, unit in PACKAGING]
    excipients = [f"{name} {grade}" for name in CHEMICALS for grade in GRADES]
    rng.shuffle(excipients)
    needed = MATERIALS_PER_TIER[0] - len(names)
    names += [(name, rng.choice(("KG", "KG", "L")), "RM-EXC") for name in excipients[:needed]]
    return names


def _materials(rng: random.Random) -> dict[str, Material]:
    materials: dict[str, Material] = {}
    by_tier: list[list[Material]] = [[] for _ in MATERIALS_PER_TIER]

    def add(material: Material) -> None:
        materials[material.id] = material
        by_tier[material.tier].append(material)

    for n, (description, unit, group) in enumerate(_raw_materials(rng)):
        add(Material(f"RM-{10001 + n}", "ROH", 0, description, unit, group, rng.random() < 0.33,
                     round(rng.uniform(0.5, 400.0), 2), "EUR", "", rng.choice((720, 1080, 1440)),
                     group == "RM-BULK", ()))
    bulk = [m.id for m in by_tier[0] if m.bulk]
    additives = [m.id for m in by_tier[0] if not m.bulk]
    products = [f"{active.split()[0]} {rng.choice(STRENGTHS)}" for active in ACTIVES for _ in range(3)]
    serial = 20001
    for tier in range(1, 6):
        for n in range(MATERIALS_PER_TIER[tier]):
            product = products[n % len(products)]
            lower = by_tier[tier - 1] if tier > 1 else [materials[m] for m in additives]
            bom = [rng.choice(lower).id]
            if tier > 1 and rng.random() < 0.35:
                bom.append(rng.choice(by_tier[rng.choice((tier - 1, max(1, tier - 2)))]).id)
            bom += rng.sample(additives, rng.randint(1, 2))
            bom += [b for b, share in zip(bulk, BULK_USE, strict=True) if rng.random() < share]
            if tier < 5:
                ident, kind, desc = f"SF-{serial}", "HALB", f"{product} {STAGES[tier - 1].lower()}"
                unit, group = rng.choice(("KG", "KG", "L")), f"SF-{STAGES[tier - 1].upper().replace(' ', '')}"
                serial += 1
            else:
                ident, kind, desc = f"FG-{30001 + n}", "FERT", f"{product} film-coated tablets, 30 pcs"
                unit, group = "EA", "FG-TABLETS"
            add(Material(ident, kind, tier, desc, unit, group, rng.random() < 0.33,
                         round(rng.uniform(5.0, 900.0), 2), "EUR", rng.choice(PLANTS).id,
                         rng.choice((720, 1080)), False, tuple(dict.fromkeys(bom))))
    for n, finished in enumerate(by_tier[5]):
        add(Material(f"SP-{40001 + n}", "FERT", 6, f"{finished.description}, shipper of 48",
                     "EA", "FG-SHIPPERS", finished.regulated, round(finished.price * 48, 2), "EUR",
                     finished.plant, finished.shelf_life_days, False, (finished.id,)))
    return materials


# ----------------------------------------------------------------------------------------------- genealogy


@dataclass(slots=True)
class _Draft:
    """A lot under construction: indices into the draft list instead of ids until ids are assigned."""

    material: Material
    plant: str
    day: float
    quantity: float
    inputs: list[int]
    consumers: list[int]
    customer: str = ""
    supplier: str = ""
    status: QualityStatus = QualityStatus.RELEASED
    remaining: float = 0.0
    id: str = ""
    order_id: str = ""
    purchase_order: str = ""
    started: float = 0.0  # production start (the day the inputs were issued)
    decided: float | None = None  # usage decision of its inspection lot
    held: float | None = None  # when its open hold was placed


class _Pool:
    """The lots of one material ordered by date, so a consumer can pick one that already existed."""

    def __init__(self, drafts: list[_Draft], members: list[int], bulk: bool) -> None:
        self.members = sorted(members, key=lambda i: drafts[i].day)
        self.days = [drafts[i].day for i in self.members]
        self.cumulative = list(accumulate((n + 1) ** -BULK_SKEW for n in range(len(members)))) if bulk else None

    def pick(self, rng: random.Random, day: float) -> int:
        """Bulk materials draw Zipf-skewed towards the oldest silo lot; others take one of the newest."""
        available = bisect_right(self.days, day)
        if available == 0:
            return self.members[0]
        if self.cumulative is not None:
            n = bisect_left(self.cumulative, rng.random() * self.cumulative[available - 1])
            return self.members[min(n, available - 1)]
        return self.members[available - 1 - min(available - 1, int(rng.expovariate(0.7)))]


def _lot_counts(total: int) -> list[int]:
    counts = [round(total * share) for share in LOT_SHARE[:-1]]
    return [*counts, total - sum(counts)]


def _base_quantity(rng: random.Random, material: Material) -> float:
    if material.bulk:
        return _round(rng.uniform(15000, 30000), material.unit)
    scale = {"KG": 800.0, "L": 1000.0, "M": 4000.0, "EA": 20000.0}[material.unit]
    return _round(scale * rng.uniform(0.25, 1.5), material.unit)


def _build_genealogy(rng: random.Random, materials: dict[str, Material], suppliers: list[str],
                     customers: list[str], total: int) -> list[_Draft]:
    """Create the lots tier by tier; every produced lot consumes one existing lot per BOM component."""
    drafts: list[_Draft] = []
    pools: dict[str, _Pool] = {}
    tiers = [[m for m in materials.values() if m.tier == tier] for tier in range(len(MATERIALS_PER_TIER))]
    for tier, count in enumerate(_lot_counts(total)):
        candidates = [m for m in tiers[tier] if all(c in pools for c in m.bom)]
        if not candidates:
            raise ValueError(f"{total} lots are too few to populate tier {tier}")
        weights = [0.25 if m.bulk else rng.uniform(0.3, 1.7) for m in candidates]
        start = len(drafts)
        for material in rng.choices(candidates, weights, k=count):
            target = rng.uniform(0.0, 330.0)
            inputs = [pools[component].pick(rng, target) for component in material.bom]
            day = max([target] + [drafts[i].day + rng.uniform(0.3, 2.0) for i in inputs])
            plant = material.plant or rng.choice(PLANTS).id
            lot = len(drafts)
            drafts.append(_Draft(material, plant, day, _base_quantity(rng, material), inputs, []))
            for i in inputs:
                drafts[i].consumers.append(lot)
            if tier == 0:
                drafts[lot].supplier = rng.choice(suppliers)
            elif tier == 6:
                drafts[lot].customer = rng.choice(customers)
        members: dict[str, list[int]] = {}
        for i in range(start, len(drafts)):
            members.setdefault(drafts[i].material.id, []).append(i)
        pools.update({m: _Pool(drafts, ids, materials[m].bulk) for m, ids in members.items()})
    return drafts


def _settle(rng: random.Random, drafts: list[_Draft], now: float) -> dict[tuple[int, int], float]:
    """Decide statuses and how much of each lot was consumed or shipped; returns link quantities."""
    link_qty: dict[tuple[int, int], float] = {}
    for i, d in enumerate(drafts):
        r = rng.random()
        if d.material.tier == 6:  # a shipper holds exactly what was packed from its finished-good lot
            d.quantity = link_qty[d.inputs[0], i]
            d.status = QualityStatus.ON_HOLD if r < 0.02 else QualityStatus.RELEASED
        elif not d.consumers and d.day > now - 14 and r < 0.8:
            d.status = QualityStatus.IN_INSPECTION
        elif r < 0.03:
            d.status = QualityStatus.ON_HOLD
        elif not d.consumers and r < 0.09:
            d.status = QualityStatus.REJECTED
        if d.consumers:
            used = 1.0 if d.day < now - 30 and rng.random() < 0.75 else rng.uniform(0.3, 0.95)
            shares = [rng.uniform(0.5, 1.5) for _ in d.consumers]
            scale = d.quantity * used / sum(shares)
            for consumer, share in zip(d.consumers, shares, strict=True):
                link_qty[i, consumer] = _round(share * scale, d.material.unit)
            d.remaining = 0.0 if used == 1.0 else _round(d.quantity * (1 - used), d.material.unit)
        elif d.material.tier == 6:
            d.remaining = 0.0 if d.day < now - 10 or r < 0.6 else d.quantity
        else:
            d.remaining = d.quantity
    return link_qty


def _largest_closure(drafts: list[_Draft]) -> tuple[int, int]:
    """Raw lot with the most descendants, via one pass of bitsets from the top tier down (exact and fast)."""
    top = len(drafts) - 1
    reach: list[int] = [0] * len(drafts)
    best, best_size = -1, -1
    for i in range(top, -1, -1):  # drafts are created tier by tier, so consumers always come later
        bits = 0
        for consumer in drafts[i].consumers:  # the top tier gets the low bits, which keeps the ints short
            bits |= reach[consumer] | (1 << (top - consumer))
        reach[i] = bits
        if drafts[i].material.tier == 0:
            size = bits.bit_count()
            if size > best_size:
                best, best_size = i, size
    return best, best_size


def _number(rng: random.Random, drafts: list[_Draft]) -> None:
    """Assign SAP-like numbers in date order, the way a real system hands them out."""
    orders = purchases = 0
    for n, d in enumerate(sorted(drafts, key=lambda d: d.day), start=1):
        d.id = f"B26{n:05d}"
        if d.material.tier == 0:
            purchases += 1
            d.purchase_order = f"{4500000000 + purchases}"
        else:
            orders += 1
            d.order_id = f"{1000000 + orders}"
            d.started = d.day - rng.uniform(0.08, 0.25)


def _timeline(rng: random.Random, drafts: list[_Draft], now: float) -> None:
    """When usage decisions were made and open holds placed."""
    for d in drafts:
        if d.material.tier < 6 and d.status is not QualityStatus.IN_INSPECTION:
            d.decided = d.day + rng.uniform(0.01, 0.05)
        if d.status is QualityStatus.ON_HOLD:
            d.held = d.day + (now - d.day) * rng.uniform(0.2, 0.9)


def _diverge(rng: random.Random, drafts: list[_Draft]) -> dict[tuple[str, str], QualityStatus]:
    """Leave a few percent of lots stale in one system: a blocked lot still looks released there, or a
    released lot still looks in inspection (the usage decision never reached that system)."""
    stale: dict[tuple[str, str], QualityStatus] = {}
    for d in drafts:
        blocked = d.status in BLOCKING
        if d.status is QualityStatus.IN_INSPECTION or (not blocked and d.material.tier == 6):
            continue  # nothing to be stale about yet; shippers never pass through inspection
        if rng.random() >= (0.3 if blocked else 0.015):
            continue
        systems = [s for s in ("erp", "wms") if d.remaining > 0] + (["mes"] if d.material.tier else [])
        if systems:
            shown = QualityStatus.RELEASED if blocked else QualityStatus.IN_INSPECTION
            stale[rng.choice(systems), d.id] = shown
    return stale


def _lots(rng: random.Random, drafts: list[_Draft], suppliers: dict[str, Supplier]) -> dict[str, Lot]:
    lots = {}
    for d in sorted(drafts, key=lambda d: d.id):
        m = d.material
        origin = suppliers[d.supplier].country if d.supplier else PLANTS_BY_ID[d.plant].country
        supplier_batch = f"{rng.choice('ACDFHKLMRTX')}{rng.randint(100000, 999999)}" if d.supplier else ""
        lots[d.id] = Lot(d.id, m.id, d.plant, m.tier, d.quantity, d.remaining, m.unit,
                         STORAGE_LOCATIONS[m.tier], _at(d.day), _at(d.day + m.shelf_life_days), d.status,
                         d.supplier, supplier_batch, d.purchase_order, d.order_id, d.customer, origin)
    return lots


def _links(drafts: list[_Draft], link_qty: dict[tuple[int, int], float]) -> list[Link]:
    return [Link(drafts[i].id, d.id, link_qty[i, n], drafts[i].material.unit, d.order_id, _at(d.started))
            for n, d in enumerate(drafts) for i in d.inputs]


def _production(rng: random.Random, drafts: list[_Draft], now: float
                ) -> tuple[dict[str, ProductionOrder], dict[str, Execution]]:
    """ERP production orders and MES executions; lots still in inspection from the last day are running."""
    orders, executions = {}, {}
    for d in sorted((d for d in drafts if d.order_id), key=lambda d: d.order_id):
        m = d.material
        running = d.status is QualityStatus.IN_INSPECTION and d.day > now - 1.5
        scrap = _round(d.quantity * rng.uniform(0.0, 0.03), m.unit) if rng.random() < 0.6 else 0.0
        line = f"{d.plant}-L{rng.randint(1, 4):02d}"
        routing = ROUTINGS[m.tier]
        done = len(routing) // 2 if running else len(routing)
        operations = tuple(
            Operation(f"{(k + 1) * 10:04d}", description, f"{center}-{d.plant[1]}{line[-1]}",
                      _at(d.started + (d.day - d.started) * (k + 1) / len(routing)) if k < done else None,
                      d.quantity if k < done else 0.0, _round(scrap / len(routing), m.unit) if scrap else 0.0)
            for k, (description, center) in enumerate(routing))
        orders[d.order_id] = ProductionOrder(
            d.order_id, m.id, d.plant, d.id, _round(d.quantity + scrap, m.unit), m.unit,
            "REL" if running else "TECO", _at(d.started - rng.uniform(0.5, 3.0)),
            _at(d.started - rng.uniform(0.05, 0.4)))
        executions[d.order_id] = Execution(
            d.order_id, d.id, m.id, d.plant, line, "RUNNING" if running else "COMPLETED", _at(d.started),
            None if running else _at(d.day), d.quantity, scrap, m.unit, operations)
    return orders, executions


def _inspection_lots(rng: random.Random, drafts: list[_Draft]) -> dict[str, InspectionLot]:
    """One inspection lot per received or produced lot (shippers are not inspected)."""
    plans: dict[str, list[tuple[str, str, str, float, float]]] = {}
    inspection_lots = {}
    for n, d in enumerate(sorted((d for d in drafts if d.material.tier < 6), key=lambda d: d.day), start=1):
        m = d.material
        plan = plans.setdefault(m.id, rng.sample(CHARACTERISTICS, rng.randint(2, 4)))
        if d.decided is not None:
            status = "DECIDED"
        else:
            status = rng.choice(("CREATED", "RESULTS_RECORDED"))
        characteristics = []
        for k, (code, description, unit, lower, upper) in enumerate(plan):
            if status == "CREATED":
                result, valuation = None, None
            elif k == 0 and d.status is QualityStatus.REJECTED:
                result, valuation = round(upper + (upper - lower) * rng.uniform(0.05, 0.3), 3), "R"
            else:
                result, valuation = round(lower + (upper - lower) * rng.uniform(0.1, 0.9), 3), "A"
            characteristics.append(Characteristic(code, description, unit, lower, upper, result, valuation))
        decision = None
        if d.decided is not None:
            code = "R" if d.status is QualityStatus.REJECTED else "A"
            decision = UsageDecision(code, rng.choice(USERS), _at(d.decided))
        origin = "01" if m.tier == 0 else "04"
        inspection = InspectionLot(f"{origin}{n:010d}", d.id, d.plant, m.id, origin, status,
                                   _at(d.day + 0.005), tuple(characteristics), decision)
        inspection_lots[inspection.id] = inspection
    return inspection_lots


def _holds(rng: random.Random, drafts: list[_Draft], now: float) -> dict[str, Hold]:
    """An active hold for every lot on hold, plus released holds from the past on a few released lots."""
    placed = []
    for d in drafts:
        if d.held is not None:
            placed.append((d.held, d, None))
        elif d.status is QualityStatus.RELEASED and rng.random() < 0.015:
            start = d.day + rng.uniform(0.1, 2.0)
            placed.append((start, d, min(now - 0.01, start + rng.uniform(0.5, 5.0))))
    holds = {}
    for n, (start, d, released) in enumerate(sorted(placed, key=lambda p: p[0]), start=1):
        reason_code, reason = rng.choice(HOLD_REASONS)
        holds[f"QH-{n:06d}"] = Hold(
            f"QH-{n:06d}", d.id, d.plant, "ACTIVE" if released is None else "RELEASED", reason_code, reason,
            rng.choice(USERS), _at(start), None if released is None else rng.choice(USERS),
            None if released is None else _at(released))
    return holds


def _nonconformances(rng: random.Random, drafts: list[_Draft], now: float) -> dict[str, Nonconformance]:
    """Rejected and held lots carry a nonconformance; a few released lots had a minor one, long closed."""
    opened = []
    for d in drafts:
        if d.status is QualityStatus.REJECTED and d.decided is not None:
            opened.append((d.decided, d, "CLOSED" if rng.random() < 0.6 else "IN_INVESTIGATION",
                           rng.choice(("major", "critical"))))
        elif d.held is not None:
            opened.append((d.held, d, rng.choice(("OPEN", "IN_INVESTIGATION")),
                           rng.choice(("minor", "major", "major", "critical"))))
        elif d.decided is not None and rng.random() < 0.01:
            opened.append((d.decided, d, "CLOSED", "minor"))
    ncs = {}
    for n, (start, d, state, severity) in enumerate(sorted(opened, key=lambda o: o[0]), start=1):
        category = rng.choice(NC_CATEGORIES)
        closed = _at(min(now - 0.01, start + rng.uniform(2.0, 20.0))) if state == "CLOSED" else None
        ncs[f"NC-{n:06d}"] = Nonconformance(
            f"NC-{n:06d}", d.id, d.plant, category, severity, state,
            f"{category} on lot {d.id} ({d.material.description})", _at(start), closed)
    return ncs


def _sscc(serial: int) -> str:
    """An 18-digit SSCC with its GS1 mod-10 check digit."""
    body = f"34012345{serial:09d}"
    total = sum(map(mul, map(int, body), SSCC_WEIGHTS))
    return body + str(-total % 10)


def _stock(rng: random.Random, drafts: list[_Draft], stale: dict[tuple[str, str], QualityStatus]
           ) -> tuple[list[StockRow], list[HandlingUnit]]:
    """ERP stock rows and the WMS handling units holding the same quantity, for lots with stock left."""
    rows, units = [], []
    for d in sorted((d for d in drafts if d.remaining > 0), key=lambda d: d.id):
        m = d.material
        erp = stale.get(("erp", d.id), d.status)
        rows.append(StockRow(m.id, d.plant, STORAGE_LOCATIONS[m.tier], d.id, STOCK_TYPE[erp], d.remaining, m.unit))
        wms = WMS_STATUS[stale.get(("wms", d.id), d.status)]
        count = rng.randint(1, 4) if d.remaining >= 4 else 1
        shares = [rng.uniform(0.6, 1.4) for _ in range(count)]
        quantities = [_round(d.remaining * s / sum(shares), m.unit) for s in shares[:-1]]
        quantities.append(round(d.remaining - sum(quantities), 3))
        updated = _at(max(t for t in (d.day, d.decided, d.held) if t is not None))
        for quantity in quantities:
            zone = ZONES[m.tier]
            location = f"{zone}-{rng.randint(1, 24):02d}-{rng.randint(1, 8):02d}-{rng.randint(1, 4)}"
            units.append(HandlingUnit(_sscc(len(units) + 1), d.id, m.id, WAREHOUSES[d.plant], zone, location,
                                      quantity, m.unit, wms, updated))
    return rows, units


def _documents(drafts: list[_Draft], link_qty: dict[tuple[int, int], float],
               stale: dict[tuple[str, str], QualityStatus]) -> list[MaterialDocumentItem]:
    """Goods receipts, issues to orders and the stock-type moves ERP saw, numbered in posting order."""
    events: list[tuple[float, list[tuple]]] = []
    for n, d in enumerate(drafts):
        m = d.material
        sloc = STORAGE_LOCATIONS[m.tier]
        receipt = [("101", m.id, d.plant, sloc, d.id, d.quantity, m.unit, d.purchase_order, d.order_id)]
        issues = [("261", drafts[i].material.id, drafts[i].plant, STORAGE_LOCATIONS[drafts[i].material.tier],
                   drafts[i].id, link_qty[i, n], drafts[i].material.unit, "", d.order_id) for i in d.inputs]
        events.append((d.day, receipt + issues))
        erp = stale.get(("erp", d.id), d.status)
        if d.decided is not None and erp is not QualityStatus.IN_INSPECTION:
            movement = "350" if erp is QualityStatus.REJECTED else "321"
            events.append((d.decided, [(movement, m.id, d.plant, sloc, d.id, d.quantity, m.unit, "", "")]))
        if d.held is not None and erp is QualityStatus.ON_HOLD and d.remaining > 0:
            events.append((d.held, [("344", m.id, d.plant, sloc, d.id, d.remaining, m.unit, "", "")]))
    items = []
    for n, (day, lines) in enumerate(sorted(events, key=lambda e: e[0]), start=1):
        posted = _at(day)
        for k, line in enumerate(lines, start=1):
            items.append(MaterialDocumentItem(str(posted.year), f"{4900000000 + n}", f"{k:04d}", *line[:7],
                                              posted, *line[7:]))
    return items


def generate(seed: int = 42, lots: int = 20000) -> Dataset:
    """Build the whole plant for `seed`; identical arguments always give an identical dataset."""
    rng = random.Random(seed)
    materials = _materials(rng)
    suppliers, customers = _partners(rng)
    drafts = _build_genealogy(rng, materials, list(suppliers), list(customers), lots)
    now = max(d.day for d in drafts) + 0.5
    link_qty = _settle(rng, drafts, now)
    _number(rng, drafts)
    _timeline(rng, drafts, now)
    stale = _diverge(rng, drafts)
    orders, executions = _production(rng, drafts, now)
    stock, units = _stock(rng, drafts, stale)
    recall, _ = _largest_closure(drafts)
    lot_records = _lots(rng, drafts, suppliers)
    return Dataset(
        seed=seed,
        now=_at(now),
        plants=dict(PLANTS_BY_ID),
        materials=materials,
        suppliers=suppliers,
        customers=customers,
        lots=lot_records,
        links=_links(drafts, link_qty),
        orders=orders,
        executions=executions,
        inspection_lots=_inspection_lots(rng, drafts),
        nonconformances=_nonconformances(rng, drafts, now),
        holds=_holds(rng, drafts, now),
        stock=stock,
        handling_units=units,
        material_documents=_documents(drafts, link_qty, stale),
        recall_lot=drafts[recall].id,
        divergent={lot: f"{system} still shows {shown} while the lot is {lot_records[lot].quality_status}"
                   for (system, lot), shown in stale.items()},
        stale=stale,
    )
