"""Workflow benchmarks: how long the plant takes to agree after a change in one system, and how many workflows one
gateway process carries with nothing lost.

Every change is made through a simulator's own API, the way the plant's people make it, and every effect is read
back from the simulators' own APIs: the figures are what the plant sees, not what the gateway says it did. The
events reach the gateway however the stack configures the simulators (read from their `/_admin/events`, and
printed). Latency is measured from the simulator's answer to the change (the moment the change exists there) to
the moment the last system shows its effect, polled every POLL_SECONDS on the systems' admin views (which no
injected latency delays), one change at a time so no change queues behind another, and only once the simulators
have delivered the events they emitted before.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import httpx2

from bench.stack import Stack
from simulators import Dataset
from simulators.dataset import base_quantity, round_quantity
from simulators.records import Material

ODATA = "/sap/opu/odata/sap"
STOCK = f"{ODATA}/API_MATERIAL_STOCK_SRV/A_MatlStkInAcctMod"
ORDERS = f"{ODATA}/API_PRODUCTION_ORDER_2_SRV/A_ProductionOrder_2"
DOCUMENT_ITEMS = f"{ODATA}/API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentItem"
POLL_SECONDS = 0.01  # a latency sample is this much coarser than the truth
KEYS_PER_REQUEST = 40  # lots per batched read, to keep URLs short
COMPONENT_SHARE = 0.05  # of a component lot's unrestricted stock one completion consumes
USES_PER_LOT = 10  # completions that may consume one component lot: half its stock at most, never short
WITHIN_SECONDS = 60.0  # a change whose effects take longer counts as not reached
BURST_CONCURRENCY = 16  # MES completions in flight at once in the sustained run
IDLE_SECONDS = 30.0  # the sustained run stops waiting once no effect has appeared for this long

LOT = "query($id: ID!) { lot(id: $id) { consistency { consistent } } }"

Check = tuple[str, Callable[[dict[str, Any] | None], bool]]


def _stock_types(erp: dict[str, Any] | None) -> set[str]:
    return {row["InventoryStockType"] for row in erp["stock"]} if erp else set()


def _unit_statuses(wms: dict[str, Any] | None) -> set[str]:
    return {unit["status"] for unit in wms["handling_units"]} if wms else set()


def _qms_status(qms: dict[str, Any] | None) -> str | None:
    return qms["status"] if qms else None


def _held_with_nonconformance(qms: dict[str, Any] | None) -> bool:
    return bool(
        qms and qms["status"] == "BLOCKED" and any(hold["status"] == "ACTIVE" for hold in qms["holds"])
        and any(nc["state"] == "OPEN" for nc in qms["nonconformances"])
    )  # fmt: skip


# What each outcome looks like in each system's own view, the system a workflow writes last first: until that one
# shows the effect, it is the only one polled.
RECEIVED: tuple[Check, ...] = (
    ("qms", lambda qms: _qms_status(qms) == "IN_INSPECTION"),
    ("erp", lambda erp: _stock_types(erp) == {"02"}),
    ("wms", lambda wms: _unit_statuses(wms) == {"QUARANTINE"}),
)
RELEASED: tuple[Check, ...] = (
    ("erp", lambda erp: _stock_types(erp) == {"01"}),
    ("wms", lambda wms: _unit_statuses(wms) == {"AVAILABLE"}),
    ("qms", lambda qms: _qms_status(qms) == "RELEASED"),
)
CONTAINED: tuple[Check, ...] = (
    ("erp", lambda erp: _stock_types(erp) == {"07"}),
    ("wms", lambda wms: _unit_statuses(wms) == {"BLOCKED"}),
    ("qms", _held_with_nonconformance),
)


class Planner:
    """Releases production orders in ERP and picks their components from the ERP's unrestricted stock over its API,
    as the shift's planner does in process (the simulators run in another process here). A component lot serves at
    most USES_PER_LOT completions, so completions running at once never leave the ERP short of a component and no
    refusal muddies the figures."""

    def __init__(self, client: httpx2.AsyncClient, stack: Stack, dataset: Dataset, seed: int = 13) -> None:
        self.client = client
        self.erp = stack.sim("erp")
        self.rng = random.Random(seed)
        # Regulated material waits for a qualified person's signed release: no automatic release to time.
        made = (m for m in dataset.materials.values() if 1 <= m.tier <= 5 and not m.regulated)
        self.materials = sorted(made, key=lambda m: m.id)
        self.stock: dict[str, list[dict[str, Any]]] = {}
        self.csrf: str | None = None

    async def confirmations(self, count: int) -> list[dict[str, Any]]:
        """`count` MES confirmation bodies, each for an order just released in ERP."""
        made: list[dict[str, Any]] = []
        candidates = list(self.materials)
        while len(made) < count and candidates:
            material = self.rng.choice(candidates)
            consumed = await self._components(material)
            if consumed is None:  # a component has no lot with uses left, and never will in this run
                candidates.remove(material)
            else:
                made.append(await self._release(material, consumed))
        if len(made) < count:
            raise RuntimeError(f"found components for {len(made)} of {count} production orders")
        return made

    async def _components(self, material: Material) -> list[dict[str, Any]] | None:
        """A portion of one lot per component (from the producing plant where it has one, each lot with uses
        left), as MES's consumed entries; None if a component has none left."""
        for component in material.bom:
            if component not in self.stock:
                query = f"Material eq '{component}' and InventoryStockType eq '01'"
                rows = await self._odata(STOCK, {"$filter": query, "$top": "1000"})
                self.stock[component] = [row for row in rows if self._portion(row) > 0 for _ in range(USES_PER_LOT)]
        if not all(self.stock[component] for component in material.bom):
            return None
        consumed = []
        for component in material.bom:
            rows = self.stock[component]
            local = [index for index, row in enumerate(rows) if row["Plant"] == material.plant]
            row = rows.pop(self.rng.choice(local) if local else self.rng.randrange(len(rows)))
            consumed.append({"lot_id": row["Batch"], "quantity": self._portion(row), "material": component,
                             "plant": row["Plant"]})  # fmt: skip
        return consumed

    @staticmethod
    def _portion(row: dict[str, Any]) -> float:
        return round_quantity(float(row["MatlWrhsStkQtyInMatlBaseUnit"]) * COMPONENT_SHARE, row["MaterialBaseUnit"])

    async def _release(self, material: Material, consumed: list[dict[str, Any]]) -> dict[str, Any]:
        quantity = base_quantity(self.rng, material)
        if self.csrf is None:
            fetched = await self.client.get(f"{self.erp}{ODATA}/API_BATCH_SRV/", headers={"x-csrf-token": "fetch"})
            self.csrf = fetched.headers["x-csrf-token"]
        body = {"Material": material.id, "ProductionPlant": material.plant, "TotalQuantity": str(quantity)}
        order = await self.client.post(f"{self.erp}{ORDERS}", json=body, headers={"x-csrf-token": self.csrf})
        order.raise_for_status()
        return {
            "order_id": order.json()["d"]["ManufacturingOrder"], "material": material.id, "plant": material.plant,
            "line": f"{material.plant}-L{self.rng.randint(1, 4):02d}", "quantity": quantity, "consumed": consumed,
        }  # fmt: skip

    async def _odata(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        response = await self.client.get(f"{self.erp}{path}", params=params)
        response.raise_for_status()
        return list(response.json()["d"]["results"])


async def _view(client: httpx2.AsyncClient, stack: Stack, system: str, lot: str) -> dict[str, Any] | None:
    """What one system itself stores about a lot (its admin view); None if it knows nothing of it."""
    response = await client.get(f"{stack.sim(system)}/_admin/lots/{lot}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return dict(response.json())


async def _reached(client: httpx2.AsyncClient, stack: Stack, lot: str, checks: Sequence[Check]) -> bool:
    """Whether every system came to show its effect on `lot` within WITHIN_SECONDS."""
    deadline = time.monotonic() + WITHIN_SECONDS
    while time.monotonic() < deadline:
        for system, holds in checks:
            if not holds(await _view(client, stack, system, lot)):
                break
        else:
            return True
        await asyncio.sleep(POLL_SECONDS)
    return False


class Timings:
    """Latency samples of one kind of change, and how many lots lotgraph read consistent once the systems agreed."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.missed = 0
        self.agreed = 0

    def line(self, label: str) -> str:
        if not self.ms:
            return f"  {label}: none reached within {WITHIN_SECONDS:.0f} s ({self.missed} changes)"
        ms = sorted(self.ms)
        p95 = statistics.quantiles(ms, n=100, method="inclusive")[94] if len(ms) > 1 else ms[0]
        missed = f", {self.missed} not within {WITHIN_SECONDS:.0f} s" if self.missed else ""
        return (
            f"  {label}: p50 {statistics.median(ms):.0f} ms  p95 {p95:.0f} ms  max {ms[-1]:.0f} ms "
            f"({len(ms)} lots{missed}); lotgraph's lot {{ consistency }} consistent for {self.agreed} of {len(ms)}"
        )


async def _time(
    client: httpx2.AsyncClient, stack: Stack, token: str, timings: Timings, lot: str, checks: Sequence[Check]
) -> bool:
    """Time (from now) until `lot` shows `checks` everywhere, then ask lotgraph whether it reads it consistent."""
    started = time.perf_counter()
    if not await _reached(client, stack, lot, checks):
        timings.missed += 1
        return False
    timings.ms.append((time.perf_counter() - started) * 1000)
    answer = await client.post(f"{stack.gateway}/graphql", json={"query": LOT, "variables": {"id": lot}},
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    read = answer.json().get("data") or {}
    timings.agreed += bool(read.get("lot") and read["lot"]["consistency"]["consistent"])
    return True


async def _confirm(client: httpx2.AsyncClient, stack: Stack, confirmation: dict[str, Any]) -> str:
    """The line confirms a completion in MES; the new lot's id."""
    response = await client.post(f"{stack.sim('mes')}/api/confirmations", json=confirmation)
    response.raise_for_status()
    return str(response.json()["lot_id"])


def _result(characteristic: dict[str, Any], passed: bool) -> float:
    """A measurement in the middle of the limits, or a whole span above the upper one."""
    low, high = characteristic["lower_limit"], characteristic["upper_limit"]
    return float((low + high) / 2 if passed else high + (high - low))


async def _record(client: httpx2.AsyncClient, stack: Stack, lot: str, passed: bool) -> None:
    """The lab records the results of the lot's inspection lot in QMS, all passing or all failing."""
    qms = stack.sim("qms")
    found = await client.get(f"{qms}/api/v1/inspection-lots", params={"lot_ids": lot})
    (inspection,) = found.json()["items"]
    results = [{"code": c["code"], "result": _result(c, passed)} for c in inspection["characteristics"]]
    recorded = await client.post(f"{qms}/api/v1/inspection-lots/{inspection['id']}/results",
                                 json={"results": results, "decided_by": "bench"})  # fmt: skip
    recorded.raise_for_status()


async def _delivery(client: httpx2.AsyncClient, stack: Stack, system: str) -> str:
    """How `system` sends its events, as its own admin API says (a webhook or MQTT)."""
    target = (await client.get(f"{stack.sim(system)}/_admin/events")).json()["target"] or {}
    return f"{system.upper()} events by {' and '.join(target) or 'nothing (no target set)'}"


async def _latencies(stack: Stack, dataset: Dataset, lots: int) -> list[str]:
    token = stack.token("qa_manager")
    received, released, contained = Timings(), Timings(), Timings()
    async with httpx2.AsyncClient(timeout=WITHIN_SECONDS) as client:
        confirmations = await Planner(client, stack, dataset).confirmations(lots)
        mes, qms = [await _delivery(client, stack, system) for system in ("mes", "qms")]
        backlog = await stack.settled(client)
        stack.fault_all(latency_ms=20)
        try:
            produced = []
            for confirmation in confirmations:
                lot = await _confirm(client, stack, confirmation)
                if await _time(client, stack, token, received, lot, RECEIVED):
                    produced.append(lot)
            await stack.settled(client)
            for index, lot in enumerate(produced):
                passed = index % 2 == 0
                await _record(client, stack, lot, passed)
                outcome = (released, RELEASED) if passed else (contained, CONTAINED)
                await _time(client, stack, token, outcome[0], lot, outcome[1])
        finally:
            stack.clear_faults()
    waited = [f"  (first waited {backlog:.1f} s for the simulators to deliver earlier events)"] if backlog > 1 else []
    return [
        f"production completion (MES) -> lot in inspection in ERP, WMS and QMS, every simulator at 20 ms; {mes}",
        *waited,
        received.line("received everywhere"),
        f"inspection result (QMS) -> released or contained, every simulator at 20 ms; {qms}",
        released.line("pass -> released in WMS and ERP (321)"),
        contained.line("fail -> QMS hold and nonconformance, WMS and ERP blocked"),
    ]


def _erp_receipts(lots: list[str]) -> dict[str, str]:
    batches = " or ".join(f"Batch eq '{lot}'" for lot in lots)
    return {"$filter": f"GoodsMovementType eq '101' and ({batches})", "$select": "Batch"}


# Where each system's API shows a production completion's effect, as (path, query of a batch of lots, the rows in
# its answer, the row's lot field): a goods receipt (101) in ERP, a handling unit in WMS, an inspection lot in QMS.
EFFECTS: dict[str, tuple[str, Callable[[list[str]], dict[str, str]], Callable[[Any], list[Any]], str]] = {
    "erp": (DOCUMENT_ITEMS, _erp_receipts, lambda body: body["d"]["results"], "Batch"),
    "wms": ("/v1/stock", lambda lots: {"lots": ",".join(lots)}, lambda body: body["stock"], "lot"),
    "qms": ("/api/v1/inspection-lots", lambda lots: {"lot_ids": ",".join(lots)},
            lambda body: [i for i in body["items"] if i["origin"] == "04"], "lot_id"),
}  # fmt: skip


async def _effects(client: httpx2.AsyncClient, stack: Stack, system: str, lots: list[str]) -> Counter[str]:
    """How many times `system`'s own API shows each lot's receipt."""
    path, query, rows, field = EFFECTS[system]
    counted: Counter[str] = Counter()
    for start in range(0, len(lots), KEYS_PER_REQUEST):
        response = await client.get(f"{stack.sim(system)}{path}", params=query(lots[start : start + KEYS_PER_REQUEST]))
        response.raise_for_status()
        counted.update(row[field] for row in rows(response.json()))
    return counted


async def _drained(client: httpx2.AsyncClient, stack: Stack, lots: list[str], started: float) -> tuple[float, float]:
    """Seconds after `started` until MES had delivered all its events, and until the last lot's inspection lot (the
    workflow's last step) was in QMS, or the last one before none came for IDLE_SECONDS (then infinity for a
    delivery not seen)."""
    waiting, last, delivered = set(lots), time.perf_counter(), math.inf
    while waiting and time.perf_counter() - last < IDLE_SECONDS:
        await asyncio.sleep(0.25)
        if delivered == math.inf and (await client.get(f"{stack.sim('mes')}/_admin/events")).json()["pending"] == 0:
            delivered = time.perf_counter() - started
        if inspected := await _effects(client, stack, "qms", sorted(waiting)):
            waiting -= set(inspected)
            last = time.perf_counter()
    return delivered, last - started


async def _open_exceptions(client: httpx2.AsyncClient, stack: Stack) -> int:
    query = "{ exceptions(filter: {state: OPEN}) { totalCount } }"
    answer = await client.post(f"{stack.gateway}/graphql", json={"query": query},
                               headers={"Authorization": f"Bearer {stack.token('qa_manager')}"})  # fmt: skip
    return int(answer.json()["data"]["exceptions"]["totalCount"])


async def _sustained(stack: Stack, dataset: Dataset, completions: int) -> list[str]:
    limits = httpx2.Limits(max_connections=BURST_CONCURRENCY + 4)
    async with httpx2.AsyncClient(timeout=WITHIN_SECONDS, limits=limits) as client:
        pending = await Planner(client, stack, dataset, seed=17).confirmations(completions)
        mes = await _delivery(client, stack, "mes")
        await stack.settled(client)
        parked_before = await _open_exceptions(client, stack)
        lots: list[str] = []

        async def line() -> None:
            while pending:
                lots.append(await _confirm(client, stack, pending.pop()))

        started, cpu = time.perf_counter(), stack.gateway_cpu_seconds()
        await asyncio.gather(*(line() for _ in range(BURST_CONCURRENCY)))
        sent = time.perf_counter() - started
        delivered, seconds = await _drained(client, stack, lots, started)
        cpu = stack.gateway_cpu_seconds() - cpu
        await asyncio.sleep(2)  # a late duplicate would show by now
        found = {system: await _effects(client, stack, system, lots) for system in EFFECTS}
        parked = await _open_exceptions(client, stack) - parked_before
    effected = [lot for lot in lots if all(found[system][lot] for system in EFFECTS)]
    duplicates = {system: sum(n - 1 for n in found[system].values() if n > 1) for system in EFFECTS}
    rate = (
        f"{len(effected)}, the last {seconds:.1f} s after the first sent: {len(effected) / seconds:.1f} workflows/s; "
        f"gateway CPU {1000 * cpu / len(effected):.0f} ms per workflow"
        if effected
        else "none"
    )
    return [
        f"sustained workflows on one gateway process: a burst of {len(lots)} MES completions ({BURST_CONCURRENCY} at "
        f"a time) -> receipt in ERP, WMS and QMS, no injected latency; {mes}",
        f"  sent {len(lots)} in {sent:.1f} s, all delivered to the gateway after {delivered:.1f} s; effected {rate}",
        f"  duplicates {sum(duplicates.values())} ({'  '.join(f'{s}={n}' for s, n in duplicates.items())}), lost "
        f"{len(lots) - len(effected)}, new exception-queue entries {parked}",
    ]


def figures(stack: Stack, dataset: Dataset, lots: int = 40, completions: int = 300) -> list[str]:
    """Latencies over `lots` completions (then half of them passed, half failed), then a burst of `completions`."""

    async def run() -> list[str]:
        return [*await _latencies(stack, dataset, lots), *await _sustained(stack, dataset, completions)]

    return asyncio.run(run())
