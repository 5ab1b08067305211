"""The MES simulator: production executions, its own view of produced lots, and the genealogy.

Genealogy links are indexed both ways (by consumed and by produced lot) and pre-rendered, because a recall
walks thousands of lots per level and `POST /api/genealogy/search` must answer such a frontier at once.

MES is also where production happens: the line completes an order ERP released (MES takes the order number on
trust: it is independent of ERP), which creates the produced lot and its genealogy and is published as a
`production.completed` event (`simulators.events`). MES tells no other system: whoever connects the plant reads
the event and posts the goods receipt to ERP, the inspection lot to QMS and the handling units to WMS.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.admin import build_app
from simulators.catalog import ROUTINGS
from simulators.credentials import Credentials
from simulators.dataset import Dataset, Execution, QualityStatus
from simulators.events import Emitter
from simulators.records import Material, Operation
from simulators.web import iso, json_object, split_keys

MES_STATUS = {
    QualityStatus.RELEASED: "RELEASED",
    QualityStatus.ON_HOLD: "HOLD",
    QualityStatus.IN_INSPECTION: "QC_PENDING",
    QualityStatus.REJECTED: "REJECTED",
}
DIRECTIONS = ("consumed", "produced")
LINE = re.compile(r"[A-Za-z0-9_.-]{1,40}")  # a line id is an MQTT topic level: no '/', '+' or '#'


@dataclass(frozen=True, slots=True)
class Consumption:
    lot: str
    material: str
    plant: str
    quantity: float
    unit: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A production completion MES accepted, as `production.completed` announces it."""

    order_id: str
    lot: str
    material: Material
    plant: str
    line: str
    quantity: float
    completed_at: datetime
    consumed: tuple[Consumption, ...]


def render_completion(c: Completion) -> dict[str, Any]:
    return {
        "order_id": c.order_id,
        "lot_id": c.lot,
        "material": c.material.id,
        "plant": c.plant,
        "line": c.line,
        "quantity": c.quantity,
        "unit": c.material.unit,
        "completed_at": iso(c.completed_at),
        "consumed": [
            {"lot_id": x.lot, "material": x.material, "quantity": x.quantity, "unit": x.unit} for x in c.consumed
        ],
    }


def _quantity(value: Any, unit: str, what: str) -> float:
    """A positive quantity with SAP's three decimals; pieces (EA) must be whole."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HTTPException(400, f"{what} must be a number")
    if round(value, 3) <= 0 or (unit == "EA" and value != int(value)):
        raise HTTPException(400, f"{what} must be positive{' and whole (EA)' if unit == 'EA' else ''}")
    return round(float(value), 3)


def render_execution(e: Execution) -> dict[str, Any]:
    return {
        "order_id": e.order_id,
        "produced_lot": e.lot,
        "material": e.material,
        "plant": e.plant,
        "line": e.line,
        "status": e.status,
        "started_at": iso(e.started_at),
        "completed_at": iso(e.completed_at),
        "good_quantity": e.good_quantity,
        "scrap_quantity": e.scrap_quantity,
        "unit": e.unit,
        "operations": [
            {
                "operation": o.operation,
                "description": o.description,
                "work_center": o.work_center,
                "completed_at": iso(o.completed_at),
                "yield_quantity": o.yield_quantity,
                "scrap_quantity": o.scrap_quantity,
            }
            for o in e.operations
        ],
    }


class Mes:
    """The MES state, its production (announced through `events`) and request handlers."""

    def __init__(self, dataset: Dataset, events: Emitter) -> None:
        self.events = events
        self.materials = dataset.materials  # master data with BOMs, as MES receives it from ERP
        self.plants = set(dataset.plants)
        # The lots MES knows (the batch master it was seeded with, what it produced, what it was told it consumed):
        # lot -> (material, plant).
        self.directory = {lot.id: (lot.material, lot.plant) for lot in dataset.lots.values()}
        self.last_lot = max(int(lot[3:]) for lot in dataset.lots)  # lot ids are B26 + a serial
        self.executions = {e.order_id: render_execution(e) for e in dataset.executions.values()}
        self.order_of_lot = {e.lot: e.order_id for e in dataset.executions.values()}
        self.lots = {
            lot.id: {
                "lot_id": lot.id,
                "material": lot.material,
                "plant": lot.plant,
                "status": MES_STATUS[dataset.status_in("mes", lot.id)],
            }
            for lot in dataset.lots.values()
            if lot.tier > 0
        }
        self.links: dict[str, dict[str, list[dict[str, Any]]]] = {d: {} for d in DIRECTIONS}
        for link in dataset.links:
            self.link(link.consumed_lot, link.produced_lot, link.quantity, link.unit, link.order_id, link.consumed_at)

    def link(self, consumed: str, produced: str, quantity: float, unit: str, order_id: str, at: datetime) -> None:
        """Record one genealogy edge, pre-rendered, in both indexes."""
        consumed_material, consumed_plant = self.directory[consumed]
        produced_material, produced_plant = self.directory[produced]
        rendered = {
            "consumed_lot": consumed,
            "consumed_material": consumed_material,
            "consumed_plant": consumed_plant,
            "produced_lot": produced,
            "produced_material": produced_material,
            "produced_plant": produced_plant,
            "quantity": quantity,
            "unit": unit,
            "order_id": order_id,
            "consumed_at": iso(at),
        }
        self.links["consumed"].setdefault(consumed, []).append(rendered)
        self.links["produced"].setdefault(produced, []).append(rendered)

    def routes(self) -> list[Route]:
        return [
            Route("/api/executions", self.get_executions, methods=["GET"]),
            Route("/api/lots", self.get_lots, methods=["GET"]),
            Route("/api/genealogy", self.get_genealogy, methods=["GET"]),
            Route("/api/genealogy/search", self.search_genealogy, methods=["POST"]),
            Route("/api/confirmations", self.post_confirmation, methods=["POST"]),
            Route("/api/lots/{lot_id}/scrap", self.post_scrap, methods=["POST"]),
        ]

    async def get_executions(self, request: Request) -> Response:
        orders = split_keys(request.query_params.get("order_ids"))
        lots = split_keys(request.query_params.get("lot_ids"))
        if not orders and not lots:
            raise HTTPException(400, "give order_ids or lot_ids")
        chosen = dict.fromkeys([*orders, *(self.order_of_lot[lot] for lot in lots if lot in self.order_of_lot)])
        return JSONResponse({"executions": [self.executions[o] for o in chosen if o in self.executions]})

    async def get_lots(self, request: Request) -> Response:
        ids = split_keys(request.query_params.get("ids"))
        if not ids:
            raise HTTPException(400, "give ids")
        return JSONResponse({"lots": [self.lots[i] for i in ids if i in self.lots]})

    def genealogy(self, query: dict[str, Any]) -> Response:
        given = [d for d in DIRECTIONS if query.get(d)]
        if len(given) != 1:
            raise HTTPException(400, "give exactly one of consumed or produced")
        index = self.links[given[0]]
        lots: Iterable[str] = dict.fromkeys(query[given[0]])
        return JSONResponse({"links": [link for lot in lots for link in index.get(lot, ())]})

    async def get_genealogy(self, request: Request) -> Response:
        return self.genealogy({d: split_keys(request.query_params.get(d)) for d in DIRECTIONS})

    async def search_genealogy(self, request: Request) -> Response:
        body = await json_object(request)
        for direction in DIRECTIONS:
            lots = body.get(direction)
            if lots is not None and not (isinstance(lots, list) and all(isinstance(x, str) for x in lots)):
                raise HTTPException(400, f"{direction} must be a list of lot ids")
        return self.genealogy(body)

    def complete(
        self,
        order_id: str,
        material: str,
        plant: str,
        line: str,
        quantity: float,
        consumed: Iterable[Mapping[str, Any]],
    ) -> dict[str, Any]:
        """Confirm the completion of ERP's released order `order_id`: a new lot, a COMPLETED execution and the
        genealogy of the consumed lots (`{"lot_id", "quantity"}`, plus `material` and optionally `plant` for a lot
        MES does not know yet, e.g. a delivery the warehouse received); announced as `production.completed`.
        Answers what the event carries. An order completes once (409 after)."""
        if not isinstance(order_id, str) or not order_id:
            raise HTTPException(400, "order_id must be a non-empty string")
        if order_id in self.executions:
            raise HTTPException(
                409, f"order {order_id} was already completed (lot {self.executions[order_id]['produced_lot']})"
            )
        produced = self.materials.get(material)
        if produced is None or produced.tier == 0:
            raise HTTPException(400, f"{material} is not a material MES produces")
        if plant not in self.plants:
            raise HTTPException(400, f"plant {plant} does not exist")
        if not LINE.fullmatch(line):
            raise HTTPException(400, "line must be 1 to 40 letters, digits, '_', '.' or '-'")
        quantity = _quantity(quantity, produced.unit, "quantity")
        consumption = [self.consumption(entry, plant) for entry in consumed]
        if not consumption or len({c.lot for c in consumption}) != len(consumption):
            raise HTTPException(400, "consumed must name each consumed lot once, and at least one")
        completion = Completion(
            order_id=order_id,
            lot=f"B26{self.last_lot + 1:05d}",
            material=produced,
            plant=plant,
            line=line,
            quantity=quantity,
            completed_at=datetime.now(UTC),
            consumed=tuple(consumption),
        )
        self.record(completion)
        rendered = render_completion(completion)
        lots = (completion.lot, *(used.lot for used in completion.consumed))
        self.events.emit("production.completed", plant, rendered, topic="production/completed", lots=lots)
        return rendered

    def consumption(self, entry: Mapping[str, Any], plant: str) -> Consumption:
        """One consumed lot of a completion: a lot MES knows, or one whose entry names its material (and plant,
        else the producing plant's)."""
        lot = entry.get("lot_id")
        if not isinstance(lot, str) or not lot:
            raise HTTPException(400, "every consumed lot needs a lot_id")
        named = entry.get("material"), entry.get("plant", plant)
        if not all(isinstance(value, str | None) for value in named):
            raise HTTPException(400, f"the material and plant of consumed lot {lot} must be strings")
        if lot in self.directory:
            lot_material, lot_plant = self.directory[lot]
            if named[0] is not None and named[0] != lot_material:
                raise HTTPException(400, f"consumed lot {lot} is {lot_material}, not {named[0]}")
        elif named[0] in self.materials and named[1] in self.plants:
            lot_material, lot_plant = named
        else:
            raise HTTPException(400, f"consumed lot {lot} is unknown to MES: name its material and plant")
        unit = self.materials[lot_material].unit
        return Consumption(
            lot, lot_material, lot_plant, _quantity(entry.get("quantity"), unit, f"quantity of {lot}"), unit
        )

    def record(self, c: Completion) -> None:
        """Keep an accepted completion: its execution (every operation done), the new lot and its genealogy."""
        self.last_lot = int(c.lot[3:])
        at, m = c.completed_at, c.material
        operations = tuple(
            Operation(f"{(k + 1) * 10:04d}", description, f"{center}-{c.plant[1]}{c.line[-1]}", at, c.quantity, 0.0)
            for k, (description, center) in enumerate(ROUTINGS[m.tier])
        )
        execution = Execution(
            c.order_id, c.lot, m.id, c.plant, c.line, "COMPLETED", at, at, c.quantity, 0.0, m.unit, operations
        )
        self.executions[c.order_id] = render_execution(execution)
        self.order_of_lot[c.lot] = c.order_id
        self.directory[c.lot] = (m.id, c.plant)
        self.lots[c.lot] = {"lot_id": c.lot, "material": m.id, "plant": c.plant, "status": "QC_PENDING"}
        for used in c.consumed:
            self.directory.setdefault(used.lot, (used.material, used.plant))
            self.link(used.lot, c.lot, used.quantity, used.unit, c.order_id, at)

    def scrap(self, lot_id: str, quantity: float, reason: str) -> dict[str, Any]:
        """Scrap part of a produced lot on its execution (good quantity down, scrap up); announced as
        `production.scrapped`."""
        order_id = self.order_of_lot.get(lot_id)
        if order_id is None:
            raise HTTPException(404, f"lot {lot_id} has no production execution in MES")
        execution = self.executions[order_id]
        quantity = _quantity(quantity, execution["unit"], "quantity")
        if quantity > execution["good_quantity"]:
            raise HTTPException(400, f"lot {lot_id} has only {execution['good_quantity']} {execution['unit']} good")
        self.executions[order_id] = {
            **execution,
            "good_quantity": round(execution["good_quantity"] - quantity, 3),
            "scrap_quantity": round(execution["scrap_quantity"] + quantity, 3),
        }
        scrapped = {
            "lot_id": lot_id,
            "order_id": order_id,
            "material": execution["material"],
            "plant": execution["plant"],
            "line": execution["line"],
            "quantity": quantity,
            "unit": execution["unit"],
            "reason": reason,
        }
        self.events.emit(
            "production.scrapped", execution["plant"], scrapped, topic="production/scrapped", lots=(lot_id,)
        )
        return scrapped

    async def post_confirmation(self, request: Request) -> Response:
        body = await json_object(request)
        texts = [body.get(f) for f in ("order_id", "material", "plant", "line")]
        if not all(isinstance(t, str) and t for t in texts):
            raise HTTPException(400, "order_id, material, plant and line must be non-empty strings")
        consumed = body.get("consumed")
        if not isinstance(consumed, list) or not all(isinstance(c, dict) for c in consumed):
            raise HTTPException(400, 'consumed must be a list of {"lot_id", "quantity"[, "material", "plant"]}')
        done = self.complete(*texts, body.get("quantity"), consumed)
        return JSONResponse(done, status_code=201)

    async def post_scrap(self, request: Request) -> Response:
        body = await json_object(request)
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason:
            raise HTTPException(400, "reason must be a non-empty string")
        scrapped = self.scrap(request.path_params["lot_id"], body.get("quantity"), reason)
        return JSONResponse(scrapped, status_code=201)

    def lot_state(self, lot_id: str) -> dict[str, Any] | None:
        lot = self.lots.get(lot_id)
        consumed_in = [link["produced_lot"] for link in self.links["consumed"].get(lot_id, ())]
        if lot is None and not consumed_in:
            return None
        made_from = [link["consumed_lot"] for link in self.links["produced"].get(lot_id, ())]
        return {
            "lot": lot,
            "order_id": self.order_of_lot.get(lot_id),
            "made_from": made_from,
            "consumed_in": consumed_in,
        }


def create_app(dataset: Dataset, *, credentials: Credentials | None = None) -> Starlette:
    """The MES simulator; `credentials` makes it demand a token or API key. Its events are on the ISA-95 area
    `production`, on the line the event names."""
    mes = Mes(dataset, Emitter("mes", area="production", line="all"))
    app = build_app(mes.routes(), mes.lot_state, require_credentials=credentials, emitter=mes.events)
    app.state.mes = mes
    return app
