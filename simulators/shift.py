"""A simulated production shift, so the plant keeps changing while the demo runs.

Every `interval_seconds` the plant's people do one plausible thing, each through one system's own state methods
(like a person at that system's screen), so it leaves the same records and emits the same events as the change made
over HTTP would. A planner releases a production order in ERP and the line completes it in MES from released
component lots; purchasing orders a raw material in ERP and the warehouse's dock receives the delivery in WMS; the
lab records the results of a pending inspection lot (most pass, some fail with a value outside the limits); a quality
engineer places a hold in QMS or releases one QMS placed, opens or closes a nonconformance; the line scraps part of
a produced lot; given a supplier, incoming quality also finds defects in that supplier's material. No system tells
another: carrying a change on (ERP's goods receipt, QMS's inspection lot, WMS's handling units) is what the client
connecting the plant does, so the shift inspects only inspection lots that exist, the seeded ones and those that
client created. Only the seeded random generator decides, and candidates are taken in a stable order, so one seed
gives the same shift.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any

from starlette.applications import Starlette

from simulators.catalog import HOLD_REASONS, NC_CATEGORIES, USERS
from simulators.dataset import base_quantity, round_quantity
from simulators.erp import Erp
from simulators.mes import Mes
from simulators.qms import SEVERITIES, Qms
from simulators.records import Characteristic, Material
from simulators.wms import Wms

PASS_RATE = 0.85
ATTEMPTS = 10  # materials tried before production gives up for this step
RECENT = 50  # lots and inspection lots the shift works on: the newest ones
SEVERITY_WEIGHTS = (0.6, 0.3, 0.1)
SCRAP_REASONS = ("Damaged in handling", "Sampling loss", "Failed in-process check", "Line clearance")
OWN_SUPPLIER_SHARE = 0.5  # of the deliveries, given a supplier: how many come from it


class Shift:
    """Production, deliveries, inspections, holds, nonconformances and scrap on one plant, one action per step."""

    def __init__(
        self,
        erp: Erp,
        qms: Qms,
        wms: Wms,
        mes: Mes,
        seed: int = 0,
        interval_seconds: float = 5.0,
        supplier: str | None = None,
    ) -> None:
        self.erp, self.qms, self.wms, self.mes = erp, qms, wms, mes
        self.rng = random.Random(seed)
        self.interval = interval_seconds
        self.supplier = supplier  # the demo's supplier persona's: some deliveries, and defects found in its lots
        self.actions: tuple[tuple[Callable[[], str | None], float], ...] = (
            (self.produce, 0.30),
            (self.receive_delivery, 0.10),
            (self.inspect, 0.30),
            (self.place_hold, 0.05),
            (self.release_hold, 0.04),
            (self.open_nonconformance, 0.08),
            (self.close_nonconformance, 0.06),
            (self.scrap, 0.07),
            *(((self.supplier_defect, 0.10),) if supplier else ()),
        )

    @classmethod
    def for_apps(
        cls, apps: Mapping[str, Starlette], seed: int = 0, interval_seconds: float = 5.0, supplier: str | None = None
    ) -> Shift:
        """The shift on the plant `simulators.create_apps` built."""
        erp, qms, wms, mes = (apps[system].state for system in ("erp", "qms", "wms", "mes"))
        return cls(erp.erp, qms.qms, wms.wms, mes.mes, seed, interval_seconds, supplier)

    async def run(self, duration: float | None = None) -> None:
        """One step every `interval_seconds`, for `duration` seconds (then the plant is left to settle) or until
        cancelled."""
        loop = asyncio.get_running_loop()
        end = None if duration is None else loop.time() + duration
        while end is None or loop.time() + self.interval <= end:
            await asyncio.sleep(self.interval)
            self.step()

    def step(self) -> str:
        """Do one weighted action (production, if the chosen one finds nothing to act on); says what was done."""
        actions, weights = zip(*self.actions, strict=True)
        action = self.rng.choices(actions, weights)[0]
        return action() or self.produce() or "nothing to do"

    def produce(self) -> str | None:
        """The planner releases an order in ERP for a material whose components are at hand, and the line
        completes it in MES."""
        produced = [m for m in self.erp.materials.values() if 1 <= m.tier <= 5]  # shipper packs are not made here
        for material in self.rng.sample(produced, ATTEMPTS):
            consumed = self.components(material)
            if consumed is None:
                continue
            quantity = base_quantity(self.rng, material)
            order = self.erp.release_order(material.id, material.plant, quantity)
            line = f"{material.plant}-L{self.rng.randint(1, 4):02d}"
            done = self.mes.complete(order, material.id, material.plant, line, quantity, consumed)
            return f"produced {done['lot_id']} ({done['quantity']} {done['unit']} {material.id}) on {line} for {order}"
        return None

    def components(self, material: Material) -> list[dict[str, Any]] | None:
        """A portion of one released lot with unrestricted stock in ERP per BOM component (from the producing plant
        if it has one), as MES's consumed entries; None if a component has none."""
        stock = self.erp.sets["A_MatlStkInAcctMod"]
        picked = []
        for component in material.bom:
            rows = [stock.rows[key] for key in sorted(stock.indexes["Material"].get(component, ()))]
            usable = [row for row in rows if row["InventoryStockType"] == "01" and self.released(row["Batch"])]
            if not usable:
                return None
            local = [row for row in usable if row["Plant"] == material.plant]
            row = self.rng.choice(local or usable)
            available = float(row["MatlWrhsStkQtyInMatlBaseUnit"])
            portion = round_quantity(available * self.rng.uniform(0.05, 0.25), row["MaterialBaseUnit"])
            used = min(portion, available) if portion > 0 else available
            picked.append({"lot_id": row["Batch"], "quantity": used, "material": component, "plant": row["Plant"]})
        return picked

    def at_hand(self, lot: str) -> float:
        """How much of a lot is in the plant: in the warehouse's handling units and on the ERP's books alike."""
        in_warehouse = sum(self.wms.units[hu].quantity for hu in self.wms.by_lot.get(lot, ()))
        stock = self.erp.sets["A_MatlStkInAcctMod"]
        booked = sum(
            float(stock.rows[key]["MatlWrhsStkQtyInMatlBaseUnit"]) for key in stock.indexes["Batch"].get(lot, ())
        )
        return min(in_warehouse, booked)

    def released(self, lot: str) -> bool:
        record = self.qms.lots.get(lot)
        return record is not None and record.status == "RELEASED"

    def receive_delivery(self) -> str:
        """Purchasing orders a raw material from a supplier (the given one, some of the time) and the dock receives
        the delivery."""
        material = self.rng.choice([m for m in self.erp.materials.values() if m.tier == 0])
        suppliers = sorted(key[0] for key in self.erp.sets["A_Supplier"].rows)
        own = self.supplier is not None and self.rng.random() < OWN_SUPPLIER_SHARE
        supplier = self.supplier if own and self.supplier else self.rng.choice(suppliers)
        plant = self.rng.choice(sorted(key[0] for key in self.erp.sets["A_Plant"].rows))
        quantity = base_quantity(self.rng, material)
        order, item = self.erp.create_purchase_order(material.id, plant, supplier, quantity)
        supplier_batch = f"{self.rng.choice('ACDFHKLMRTX')}{self.rng.randint(100000, 999999)}"
        received = self.wms.receive_delivery(order, item, material.id, plant, supplier, supplier_batch, quantity)
        return f"received {received['lot_id']} ({quantity} {received['unit']} {material.id}) from {supplier} on {order}"

    def inspect(self) -> str | None:
        pending = [i for i in self.qms.inspection_lots.values() if i.status != "DECIDED"]
        if not pending:
            return None
        inspection = self.rng.choice(pending[-RECENT:])
        passed = self.rng.random() < PASS_RATE
        failing = None if passed else self.rng.choice(inspection.characteristics).code
        results = {c.code: self.result(c, within=c.code != failing) for c in inspection.characteristics}
        self.qms.record_results(inspection.id, results, self.rng.choice(USERS))
        return f"inspected {inspection.id} for lot {inspection.lot}: {'accepted' if passed else 'rejected'}"

    def result(self, c: Characteristic, within: bool) -> float:
        """A measurement well inside the limits, or 5 to 30 % of the range above the upper one."""
        span = c.upper_limit - c.lower_limit
        if within:
            return round(c.lower_limit + span * self.rng.uniform(0.1, 0.9), 4)
        return round(c.upper_limit + span * self.rng.uniform(0.05, 0.3), 4)

    def open_nonconformance(self) -> str:
        lot = self.rng.choice(list(islice(reversed(self.qms.lots), RECENT)))
        category = self.rng.choice(NC_CATEGORIES)
        severity = self.rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]
        nc = self.qms.open_nonconformance(lot, category, severity, f"{category} on lot {lot}")
        return f"opened {nc.id} ({severity}) on lot {lot}"

    def place_hold(self) -> str | None:
        """A quality engineer blocks a recent lot in QMS."""
        recent = [r.lot_id for r in islice(reversed(self.qms.lots.values()), RECENT) if r.status != "BLOCKED"]
        if not recent:
            return None
        lot = self.rng.choice(recent)
        reason_code, reason = self.rng.choice(HOLD_REASONS)
        hold = self.qms.place_hold(lot, reason_code, reason, self.rng.choice(USERS))
        return f"held {lot} ({hold.id}, {reason_code})"

    def release_hold(self) -> str | None:
        """A quality engineer releases one of the holds QMS's own users placed (never a client's)."""
        active = [h for h in self.qms.holds.values() if h.status == "ACTIVE" and h.origin == "QMS"]
        if not active:
            return None
        hold = self.rng.choice(active[-RECENT:])
        self.qms.release_hold(hold.id, self.rng.choice(USERS), "investigation closed, no impact on the lot")
        return f"released {hold.id} on lot {hold.lot}"

    def supplier_defect(self) -> str | None:
        """Incoming quality finds a defect in released material of `supplier`: a nonconformance on one of its lots
        (which that supplier's app is told about, like the hold that contains it)."""
        supplied = [r.lot_id for r in self.qms.lots.values() if r.supplier == self.supplier and r.status == "RELEASED"]
        if not supplied:
            return None
        lot = self.rng.choice(supplied)
        category = self.rng.choice(NC_CATEGORIES)
        nc = self.qms.open_nonconformance(lot, category, "major", f"incoming inspection: {category} on lot {lot}")
        return f"opened {nc.id} (major) on supplied lot {lot}"

    def close_nonconformance(self) -> str | None:
        open_ncs = [nc for nc in self.qms.nonconformances.values() if nc.state != "CLOSED"]
        if not open_ncs:
            return None
        nc = self.qms.close_nonconformance(self.rng.choice(open_ncs[-RECENT:]).id, self.rng.choice(USERS))
        return f"closed {nc.id} on lot {nc.lot}"

    def scrap(self) -> str | None:
        """The line scraps part of a recently produced lot that is still in the plant (a lot shipped or used up
        cannot be scrapped: it is not there to throw away)."""
        executions = self.mes.executions
        recent = (executions[o] for o in islice(reversed(executions), RECENT))
        candidates = [
            (e, at_hand) for e in recent if e["good_quantity"] > 0 and (at_hand := self.at_hand(e["produced_lot"]))
        ]
        if not candidates:
            return None
        execution, at_hand = self.rng.choice(candidates)
        good, unit = min(execution["good_quantity"], at_hand), execution["unit"]
        quantity = min(good, round_quantity(good * self.rng.uniform(0.01, 0.05), unit)) or good
        scrapped = self.mes.scrap(execution["produced_lot"], quantity, self.rng.choice(SCRAP_REASONS))
        return f"scrapped {scrapped['quantity']} {unit} of lot {scrapped['lot_id']}"
