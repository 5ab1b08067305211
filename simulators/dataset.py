"""The deterministic plant every simulator is seeded from.

`generate(seed, lots)` builds one consistent picture of a small pharmaceutical plant: master data, lots and
their genealogy, quality records, stock and production history. Only `random.Random(seed)` is used and every
timestamp is an offset from `EPOCH`, so the same arguments always give the same plant.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from operator import mul

from simulators.catalog import (
    CHARACTERISTICS,
    HOLD_REASONS,
    MATERIALS_PER_TIER,
    NC_CATEGORIES,
    PLANTS,
    PLANTS_BY_ID,
    ROUTINGS,
    STORAGE_LOCATIONS,
    USERS,
    WAREHOUSES,
    ZONES,
    materials,
    partners,
)
from simulators.records import (
    Characteristic,
    Dataset,
    Execution,
    HandlingUnit,
    Hold,
    InspectionLot,
    Link,
    Lot,
    Material,
    MaterialDocumentItem,
    Nonconformance,
    Operation,
    ProductionOrder,
    QualityStatus,
    StockRow,
    Supplier,
    UsageDecision,
)

EPOCH = datetime(2026, 1, 5, tzinfo=UTC)
LOT_SHARE = (0.24, 0.14, 0.13, 0.12, 0.11, 0.10, 0.16)
BULK_SKEW = 1.3  # Zipf exponent: the oldest silo lot of a bulk material is drawn from most often
BLOCKING = (QualityStatus.REJECTED, QualityStatus.ON_HOLD)
SSCC_WEIGHTS = (3, 1) * 8 + (3,)
STOCK_TYPE = {
    QualityStatus.RELEASED: "01",
    QualityStatus.IN_INSPECTION: "02",
    QualityStatus.ON_HOLD: "07",
    QualityStatus.REJECTED: "07",
}
WMS_STATUS = {
    QualityStatus.RELEASED: "AVAILABLE",
    QualityStatus.IN_INSPECTION: "QUARANTINE",
    QualityStatus.ON_HOLD: "BLOCKED",
    QualityStatus.REJECTED: "BLOCKED",
}


def _at(day: float) -> datetime:
    return EPOCH + timedelta(days=day)


def round_quantity(quantity: float, unit: str) -> float:
    """Pieces are whole numbers; everything else keeps three decimals like SAP quantities."""
    return float(max(1, round(quantity))) if unit == "EA" else round(quantity, 3)


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


def base_quantity(rng: random.Random, material: Material) -> float:
    if material.bulk:
        return round_quantity(rng.uniform(15000, 30000), material.unit)
    scale = {"KG": 800.0, "L": 1000.0, "M": 4000.0, "EA": 20000.0}[material.unit]
    return round_quantity(scale * rng.uniform(0.25, 1.5), material.unit)


def _build_genealogy(
    rng: random.Random, materials: dict[str, Material], suppliers: list[str], customers: list[str], total: int
) -> list[_Draft]:
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
        picks = rng.sample(candidates, min(count, len(candidates)))  # every material gets a lot if it can
        for material in picks + rng.choices(candidates, weights, k=count - len(picks)):
            target = rng.uniform(0.0, 330.0)
            inputs = [pools[component].pick(rng, target) for component in material.bom]
            day = max([target] + [drafts[i].day + rng.uniform(0.3, 2.0) for i in inputs])
            plant = material.plant or rng.choice(PLANTS).id
            lot = len(drafts)
            drafts.append(_Draft(material, plant, day, base_quantity(rng, material), inputs, []))
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
                link_qty[i, consumer] = round_quantity(share * scale, d.material.unit)
            d.remaining = 0.0 if used == 1.0 else round_quantity(d.quantity * (1 - used), d.material.unit)
        elif d.material.tier == 6:
            d.remaining = 0.0 if d.day < now - 10 or r < 0.6 else d.quantity
        else:
            d.remaining = d.quantity
    return link_qty


def _largest_closure(drafts: list[_Draft]) -> int:
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
    return best


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
        lots[d.id] = Lot(
            id=d.id,
            material=m.id,
            plant=d.plant,
            tier=m.tier,
            quantity=d.quantity,
            remaining=d.remaining,
            unit=m.unit,
            storage_location=STORAGE_LOCATIONS[m.tier],
            manufactured_at=_at(d.day),
            expires_at=_at(d.day + m.shelf_life_days),
            quality_status=d.status,
            supplier=d.supplier,
            supplier_batch=supplier_batch,
            purchase_order=d.purchase_order,
            order_id=d.order_id,
            customer=d.customer,
            country_of_origin=origin,
        )
    return lots


def _links(drafts: list[_Draft], link_qty: dict[tuple[int, int], float]) -> list[Link]:
    return [
        Link(drafts[i].id, d.id, link_qty[i, n], drafts[i].material.unit, d.order_id, _at(d.started))
        for n, d in enumerate(drafts)
        for i in d.inputs
    ]


def _production(
    rng: random.Random, drafts: list[_Draft], now: float
) -> tuple[dict[str, ProductionOrder], dict[str, Execution]]:
    """ERP production orders and MES executions; lots still in inspection from the last day are running."""
    orders, executions = {}, {}
    for d in sorted((d for d in drafts if d.order_id), key=lambda d: d.order_id):
        m = d.material
        running = d.status is QualityStatus.IN_INSPECTION and d.day > now - 1.5
        scrap = round_quantity(d.quantity * rng.uniform(0.0, 0.03), m.unit) if rng.random() < 0.6 else 0.0
        line = f"{d.plant}-L{rng.randint(1, 4):02d}"
        routing = ROUTINGS[m.tier]
        done = len(routing) // 2 if running else len(routing)
        operations = tuple(
            Operation(
                operation=f"{(k + 1) * 10:04d}",
                description=description,
                work_center=f"{center}-{d.plant[1]}{line[-1]}",
                completed_at=_at(d.started + (d.day - d.started) * (k + 1) / len(routing)) if k < done else None,
                yield_quantity=d.quantity if k < done else 0.0,
                scrap_quantity=round_quantity(scrap / len(routing), m.unit) if scrap else 0.0,
            )
            for k, (description, center) in enumerate(routing)
        )
        orders[d.order_id] = ProductionOrder(
            id=d.order_id,
            material=m.id,
            plant=d.plant,
            lot=d.id,
            quantity=round_quantity(d.quantity + scrap, m.unit),
            unit=m.unit,
            status="REL" if running else "TECO",
            planned_start=_at(d.started - rng.uniform(0.5, 3.0)),
            released_at=_at(d.started - rng.uniform(0.05, 0.4)),
        )
        executions[d.order_id] = Execution(
            order_id=d.order_id,
            lot=d.id,
            material=m.id,
            plant=d.plant,
            line=line,
            status="RUNNING" if running else "COMPLETED",
            started_at=_at(d.started),
            completed_at=None if running else _at(d.day),
            good_quantity=d.quantity,
            scrap_quantity=scrap,
            unit=m.unit,
            operations=operations,
        )
    return orders, executions


def _inspection_lots(rng: random.Random, drafts: list[_Draft]) -> dict[str, InspectionLot]:
    """One inspection lot per received or produced lot (shippers are not inspected)."""
    plans: dict[str, list[tuple[str, str, str, float, float]]] = {}
    inspection_lots = {}
    for n, d in enumerate(sorted((d for d in drafts if d.material.tier < 6), key=lambda d: d.day), start=1):
        m = d.material
        if m.id not in plans:
            plans[m.id] = rng.sample(CHARACTERISTICS, rng.randint(2, 4))
        plan = plans[m.id]
        status = "DECIDED" if d.decided is not None else rng.choice(("CREATED", "RESULTS_RECORDED"))
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
        inspection = InspectionLot(
            id=f"{origin}{n:010d}",
            lot=d.id,
            plant=d.plant,
            material=m.id,
            origin=origin,
            status=status,
            created_at=_at(d.day + 0.005),
            characteristics=tuple(characteristics),
            usage_decision=decision,
        )
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
            id=f"QH-{n:06d}",
            lot=d.id,
            plant=d.plant,
            status="ACTIVE" if released is None else "RELEASED",
            reason_code=reason_code,
            reason=reason,
            placed_by=rng.choice(USERS),
            placed_at=_at(start),
            released_by=None if released is None else rng.choice(USERS),
            released_at=None if released is None else _at(released),
        )
    return holds


def _nonconformances(rng: random.Random, drafts: list[_Draft], now: float) -> dict[str, Nonconformance]:
    """Rejected and held lots carry a nonconformance; a few released lots had a minor one, long closed."""
    opened = []
    for d in drafts:
        if d.status is QualityStatus.REJECTED and d.decided is not None:
            state = "CLOSED" if rng.random() < 0.6 else "IN_INVESTIGATION"
            opened.append((d.decided, d, state, rng.choice(("major", "critical"))))
        elif d.held is not None:
            state = rng.choice(("OPEN", "IN_INVESTIGATION"))
            opened.append((d.held, d, state, rng.choice(("minor", "major", "major", "critical"))))
        elif d.decided is not None and rng.random() < 0.01:
            opened.append((d.decided, d, "CLOSED", "minor"))
    ncs = {}
    for n, (start, d, state, severity) in enumerate(sorted(opened, key=lambda o: o[0]), start=1):
        category = rng.choice(NC_CATEGORIES)
        closed = _at(min(now - 0.01, start + rng.uniform(2.0, 20.0))) if state == "CLOSED" else None
        ncs[f"NC-{n:06d}"] = Nonconformance(
            id=f"NC-{n:06d}",
            lot=d.id,
            plant=d.plant,
            category=category,
            severity=severity,
            state=state,
            description=f"{category} on lot {d.id} ({d.material.description})",
            opened_at=_at(start),
            closed_at=closed,
        )
    return ncs


def sscc(serial: int) -> str:
    """An 18-digit SSCC with its GS1 mod-10 check digit."""
    body = f"34012345{serial:09d}"
    total = sum(map(mul, map(int, body), SSCC_WEIGHTS))
    return body + str(-total % 10)


def _stock(
    rng: random.Random, drafts: list[_Draft], stale: dict[tuple[str, str], QualityStatus]
) -> tuple[list[StockRow], list[HandlingUnit]]:
    """ERP stock rows and the WMS handling units holding the same quantity, for lots with stock left."""
    rows, units = [], []
    for d in sorted((d for d in drafts if d.remaining > 0), key=lambda d: d.id):
        m = d.material
        erp = stale.get(("erp", d.id), d.status)
        rows.append(
            StockRow(
                material=m.id,
                plant=d.plant,
                storage_location=STORAGE_LOCATIONS[m.tier],
                lot=d.id,
                stock_type=STOCK_TYPE[erp],
                quantity=d.remaining,
                unit=m.unit,
            )
        )
        wms = WMS_STATUS[stale.get(("wms", d.id), d.status)]
        count = rng.randint(1, 4) if d.remaining >= 4 else 1
        shares = [rng.uniform(0.6, 1.4) for _ in range(count)]
        quantities = [round_quantity(d.remaining * s / sum(shares), m.unit) for s in shares[:-1]]
        quantities.append(round(d.remaining - sum(quantities), 3))
        updated = _at(max(t for t in (d.day, d.decided, d.held) if t is not None))
        for quantity in quantities:
            zone = ZONES[m.tier]
            location = f"{zone}-{rng.randint(1, 24):02d}-{rng.randint(1, 8):02d}-{rng.randint(1, 4)}"
            units.append(
                HandlingUnit(
                    id=sscc(len(units) + 1),
                    lot=d.id,
                    material=m.id,
                    warehouse=WAREHOUSES[d.plant],
                    zone=zone,
                    bin=location,
                    quantity=quantity,
                    unit=m.unit,
                    status=wms,
                    updated_at=updated,
                )
            )
    return rows, units


def _movement(movement_type: str, d: _Draft, quantity: float, purchase_order: str = "", order_id: str = "") -> dict:
    """One material document line for lot `d`, as keyword arguments of `MaterialDocumentItem`."""
    return {
        "movement_type": movement_type,
        "material": d.material.id,
        "plant": d.plant,
        "storage_location": STORAGE_LOCATIONS[d.material.tier],
        "lot": d.id,
        "quantity": quantity,
        "unit": d.material.unit,
        "purchase_order": purchase_order,
        "order_id": order_id,
    }


def _documents(
    drafts: list[_Draft], link_qty: dict[tuple[int, int], float], stale: dict[tuple[str, str], QualityStatus]
) -> list[MaterialDocumentItem]:
    """Goods receipts, issues to orders and the stock-type moves ERP saw, numbered in posting order."""
    events: list[tuple[float, list[dict]]] = []
    for n, d in enumerate(drafts):
        receipt = _movement("101", d, d.quantity, d.purchase_order, d.order_id)
        issues = [_movement("261", drafts[i], link_qty[i, n], order_id=d.order_id) for i in d.inputs]
        events.append((d.day, [receipt, *issues]))
        erp = stale.get(("erp", d.id), d.status)
        if d.decided is not None and erp is not QualityStatus.IN_INSPECTION:
            movement = "350" if erp is QualityStatus.REJECTED else "321"
            events.append((d.decided, [_movement(movement, d, d.quantity)]))
        if d.held is not None and erp is QualityStatus.ON_HOLD and d.remaining > 0:
            events.append((d.held, [_movement("344", d, d.remaining)]))
    items = []
    for n, (day, lines) in enumerate(sorted(events, key=lambda e: e[0]), start=1):
        posted, document = _at(day), f"{4900000000 + n}"
        for k, line in enumerate(lines, start=1):
            items.append(
                MaterialDocumentItem(
                    year=str(posted.year), document=document, item=f"{k:04d}", posted_at=posted, **line
                )
            )
    return items


def generate(seed: int = 42, lots: int = 20000) -> Dataset:
    """Build the whole plant for `seed`; identical arguments always give an identical dataset.

    Raises ValueError when `lots` is too small to give every tier a lot whose components exist (below a few
    hundred lots)."""
    rng = random.Random(seed)
    catalog = materials(rng)
    suppliers, customers = partners(rng)
    drafts = _build_genealogy(rng, catalog, list(suppliers), list(customers), lots)
    now = max(d.day for d in drafts) + 0.5
    link_qty = _settle(rng, drafts, now)
    _number(rng, drafts)
    _timeline(rng, drafts, now)
    stale = _diverge(rng, drafts)
    orders, executions = _production(rng, drafts, now)
    stock, units = _stock(rng, drafts, stale)
    recall = _largest_closure(drafts)
    lot_records = _lots(rng, drafts, suppliers)
    return Dataset(
        seed=seed,
        now=_at(now),
        plants=dict(PLANTS_BY_ID),
        materials=catalog,
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
        divergent={
            lot: f"{system} still shows {shown} while the lot is {lot_records[lot].quality_status}"
            for (system, lot), shown in stale.items()
        },
        stale=stale,
    )
