"""A simulated production shift, so the plant keeps changing while the demo runs.

Every `interval_seconds` the shift does one plausible thing through the simulators' own state methods, so it
leaves the same records and emits the same events as the change made over HTTP would: it completes production
of an intermediate or finished good from released component lots (MES, and through the plant's integration ERP,
QMS and WMS), records the inspection results of a lot in inspection (most pass, some fail with a value outside
the limits), now and then opens or closes a nonconformance, or scraps part of a produced lot; given a supplier, its
incoming quality also finds defects in that supplier's material. Only the seeded random generator decides, and
candidates are taken in a stable order, so one seed gives the same shift.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from itertools import islice

from starlette.applications import Starlette

from simulators.catalog import NC_CATEGORIES, USERS
from simulators.dataset import base_quantity, round_quantity
from simulators.erp import Erp
from simulators.mes import Mes
from simulators.qms import SEVERITIES, Qms
from simulators.records import Characteristic, Material

PASS_RATE = 0.85
ATTEMPTS = 10  # materials tried before production gives up for this step
RECENT = 50  # lots and inspection lots the shift works on: the newest ones
SEVERITY_WEIGHTS = (0.6, 0.3, 0.1)
SCRAP_REASONS = ("Damaged in handling", "Sampling loss", "Failed in-process check", "Line clearance")


class Shift:
    """Production, inspections, nonconformances and scrap on one plant, one action per step."""

    def __init__(
        self, erp: Erp, qms: Qms, mes: Mes, seed: int = 0, interval_seconds: float = 5.0, supplier: str | None = None
    ) -> None:
        self.erp, self.qms, self.mes = erp, qms, mes
        self.rng = random.Random(seed)
        self.interval = interval_seconds
        self.supplier = supplier  # whose supplied lots incoming quality looks at (the demo's supplier persona's)
        self.actions: tuple[tuple[Callable[[], str | None], float], ...] = (
            (self.produce, 0.40),
            (self.inspect, 0.35),
            (self.open_nonconformance, 0.10),
            (self.close_nonconformance, 0.07),
            (self.scrap, 0.08),
            *(((self.supplier_defect, 0.10),) if supplier else ()),
        )

    @classmethod
    def for_apps(
        cls, apps: Mapping[str, Starlette], seed: int = 0, interval_seconds: float = 5.0, supplier: str | None = None
    ) -> Shift:
        """The shift on the plant `simulators.create_apps` built."""
        qms, mes = apps["qms"].state.qms, apps["mes"].state.mes
        return cls(apps["erp"].state.erp, qms, mes, seed, interval_seconds, supplier)

    async def run(self) -> None:
        """One step every `interval_seconds`, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.step()

    def step(self) -> str:
        """Do one weighted action (production, if the chosen one finds nothing to act on); says what was done."""
        actions, weights = zip(*self.actions, strict=True)
        action = self.rng.choices(actions, weights)[0]
        return action() or self.produce() or "nothing to do"

    def produce(self) -> str | None:
        produced = [m for m in self.mes.materials.values() if 1 <= m.tier <= 5]  # shipper packs are not made here
        for material in self.rng.sample(produced, ATTEMPTS):
            consumed = self.components(material)
            if consumed is None:
                continue
            line = f"{material.plant}-L{self.rng.randint(1, 4):02d}"
            done = self.mes.complete(material.id, material.plant, line, base_quantity(self.rng, material), consumed)
            return f"produced {done['lot_id']} ({done['quantity']} {done['unit']} {material.id}) on {line}"
        return None

    def components(self, material: Material) -> list[tuple[str, float]] | None:
        """A portion of one released lot with unrestricted stock per BOM component (from the producing plant if
        it has one); None if a component has none."""
        stock = self.erp.sets["A_MatlStkInAcctMod"]
        picked = []
        for component in material.bom:
            rows = [stock.rows[key] for key in sorted(stock.indexes["Material"].get(component, ()))]
            usable = [
                row
                for row in rows
                if row["InventoryStockType"] == "01" and self.qms.lots[row["Batch"]].status == "RELEASED"
            ]
            if not usable:
                return None
            local = [row for row in usable if row["Plant"] == material.plant]
            row = self.rng.choice(local or usable)
            available = float(row["MatlWrhsStkQtyInMatlBaseUnit"])
            portion = round_quantity(available * self.rng.uniform(0.05, 0.25), row["MaterialBaseUnit"])
            picked.append((row["Batch"], min(portion, available) if portion > 0 else available))
        return picked

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
        executions = self.mes.executions
        candidates = [o for o in islice(reversed(executions), RECENT) if executions[o]["good_quantity"] > 0]
        if not candidates:
            return None
        execution = executions[self.rng.choice(candidates)]
        good, unit = execution["good_quantity"], execution["unit"]
        quantity = min(good, round_quantity(good * self.rng.uniform(0.01, 0.05), unit)) or good
        scrapped = self.mes.scrap(execution["produced_lot"], quantity, self.rng.choice(SCRAP_REASONS))
        return f"scrapped {scrapped['quantity']} {unit} of lot {scrapped['lot_id']}"
