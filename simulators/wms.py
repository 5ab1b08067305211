"""The WMS simulator: handling units per lot, served by two API versions side by side.

`/v1` and `/v2` describe the same handling units with different names and shapes (flat vs nested, upper- vs
lower-case statuses), the way a warehouse system mid-migration does; both receive, move and reduce stock the same
way, and a receipt or reduction repeated with its `reference` answers the first result. The receiving dock is where
a supplier delivery enters the plant first: the warehouse gives it a lot id of its own (`R26...`) and announces it
as a `goods.received` event (`simulators.events`); WMS tells no other system itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.admin import build_app
from simulators.catalog import WAREHOUSES, ZONES
from simulators.credentials import Credentials
from simulators.dataset import Dataset, HandlingUnit, sscc
from simulators.events import Emitter
from simulators.web import bulk, iso, json_object, split_keys

STATUSES = ("AVAILABLE", "QUARANTINE", "BLOCKED", "DAMAGED")
RECEIVABLE = ("AVAILABLE", "QUARANTINE", "BLOCKED")


def render_v1(hu: HandlingUnit) -> dict[str, Any]:
    return {
        "lot": hu.lot,
        "sku": hu.material,
        "warehouse": hu.warehouse,
        "location": hu.bin,
        "handling_unit": hu.id,
        "qty": hu.quantity,
        "uom": hu.unit,
        "status": hu.status,
    }


def render_v2(hu: HandlingUnit) -> dict[str, Any]:
    return {
        "lotId": hu.lot,
        "materialId": hu.material,
        "site": {"warehouse": hu.warehouse, "zone": hu.zone},
        "bin": hu.bin,
        "handlingUnitId": hu.id,
        "quantity": {"value": hu.quantity, "unit": hu.unit},
        "stockStatus": hu.status.lower(),
        "updatedAt": iso(hu.updated_at),
    }


def _quantity(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise HTTPException(400, f"{field} must be a positive number")
    return round(float(value), 3)


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise HTTPException(400, f"{field} must be a non-empty string")
    return value


def _v2_quantity(body: dict[str, Any]) -> tuple[Any, Any]:
    """`quantity: {"value", "unit"}` of a v2 request, as (value, unit)."""
    quantity = body.get("quantity")
    if not isinstance(quantity, dict):
        raise HTTPException(400, 'quantity must be {"value", "unit"}')
    return quantity.get("value"), quantity.get("unit")


class Wms:
    """The WMS state (handling units indexed by lot), its receiving dock (announced through `events`) and request
    handlers."""

    def __init__(self, dataset: Dataset, events: Emitter) -> None:
        self.events = events
        self.materials = dataset.materials  # master data: the unit and the storage zone of what is received
        self.units: dict[str, HandlingUnit] = {hu.id: hu for hu in dataset.handling_units}
        self.by_lot: dict[str, list[str]] = {}
        for hu in dataset.handling_units:
            self.by_lot.setdefault(hu.lot, []).append(hu.id)
        self.moves: dict[str, list[dict[str, Any]]] = {}  # lot -> moves applied through the API
        self.closed: set[str] = set()  # lots whose stock was closed (scrapped)
        self.last_serial = max((int(hu.id[8:17]) for hu in dataset.handling_units), default=0)  # of the SSCCs
        self.last_delivery = 0  # the dock's lot ids: R26 + a serial, never one of MES's B26 lots
        self.receipts: dict[str, dict[str, Any]] = {}  # reference -> the receipt's answer
        self.reductions: dict[str, dict[str, Any]] = {}  # reference -> the reduction's answer

    def routes(self) -> list[Route]:
        return [
            Route("/v1/stock", self.stock(render_v1, "lots", "stock"), methods=["GET"]),
            Route("/v1/moves", self.move_v1, methods=["POST"]),
            Route("/v2/stock-positions", self.stock(render_v2, "lotIds", "data", counted=True), methods=["GET"]),
            Route("/v2/stock-moves", self.move_v2, methods=["POST"]),
            Route("/v2/stock-moves/bulk", self.move_v2_bulk, methods=["POST"]),
            Route("/v1/closures", self.close_v1, methods=["POST"]),
            Route("/v2/stock-closures", self.close_v2, methods=["POST"]),
            Route("/v1/receipts", self.receive_v1, methods=["POST"]),
            Route("/v2/handling-units", self.receive_v2, methods=["POST"]),
            Route("/v1/reductions", self.reduce_v1, methods=["POST"]),
            Route("/v2/stock-reductions", self.reduce_v2, methods=["POST"]),
            Route("/v2/inbound-deliveries/receipts", self.post_delivery, methods=["POST"]),
        ]

    def stock(
        self, render: Callable[[HandlingUnit], dict[str, Any]], param: str, envelope: str, counted: bool = False
    ) -> Callable[[Request], Any]:
        async def get(request: Request) -> Response:
            lots = split_keys(request.query_params.get(param))
            if not lots:
                raise HTTPException(400, f"give {param}")
            positions = [render(self.units[hu]) for lot in lots for hu in self.by_lot.get(lot, ())]
            body: dict[str, Any] = {envelope: positions}
            if counted:
                body["meta"] = {"count": len(positions)}
            return JSONResponse(body)

        return get

    def move(self, lot: Any, status: Any, reference: Any) -> int:
        """Move every handling unit of `lot` to `status`; returns how many moved."""
        if not isinstance(lot, str) or not lot:
            raise HTTPException(400, "a lot id is required")
        if status not in STATUSES:
            raise HTTPException(400, f"status must be one of {', '.join(STATUSES)}")
        if reference is not None and not isinstance(reference, str):
            raise HTTPException(400, "reference must be a string")
        units = self.by_lot.get(lot)
        if not units:
            raise HTTPException(404, f"no stock for lot {lot}")
        now = datetime.now(UTC)
        for hu in units:
            self.units[hu] = replace(self.units[hu], status=status, updated_at=now)
        self.moves.setdefault(lot, []).append({"status": status, "reference": reference, "at": iso(now)})
        return len(units)

    async def move_v1(self, request: Request) -> Response:
        body = await json_object(request)
        moved = self.move(body.get("lot"), body.get("to_status"), body.get("reference"))
        return JSONResponse({"lot": body["lot"], "moved": moved, "status": body["to_status"]})

    def move_to(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A v2 stock move request (`lotId`, `targetStatus`, `reference`) and its answer."""
        target = body.get("targetStatus")
        moved = self.move(body.get("lotId"), target.upper() if isinstance(target, str) else None, body.get("reference"))
        return 200, {"lotId": body["lotId"], "handlingUnits": moved, "stockStatus": target.lower()}

    async def move_v2(self, request: Request) -> Response:
        return JSONResponse(self.move_to(await json_object(request))[1])

    async def move_v2_bulk(self, request: Request) -> Response:
        return await bulk(request, "moves", self.move_to, "lotId")

    def close(self, lot: Any, reference: Any) -> int:
        """Take every handling unit of `lot` off the books (scrapped); closing a closed lot closes nothing."""
        if not isinstance(lot, str) or not lot:
            raise HTTPException(400, "a lot id is required")
        units = self.by_lot.pop(lot, [])
        for hu in units:
            del self.units[hu]
        if units:
            self.moves.setdefault(lot, []).append(
                {"status": "CLOSED", "reference": reference, "at": iso(datetime.now(UTC))}
            )
        self.closed.add(lot)
        return len(units)

    async def close_v1(self, request: Request) -> Response:
        body = await json_object(request)
        return JSONResponse({"lot": body.get("lot"), "closed": self.close(body.get("lot"), body.get("reference"))})

    async def close_v2(self, request: Request) -> Response:
        body = await json_object(request)
        closed = self.close(body.get("lotId"), body.get("reference"))
        return JSONResponse({"lotId": body.get("lotId"), "handlingUnits": closed})

    def add_unit(self, lot: str, material: str, plant: str, quantity: float, status: str) -> HandlingUnit:
        """One new handling unit for `lot` in the plant's warehouse, in the zone of the material's tier."""
        self.last_serial += 1
        zone, n = ZONES[self.materials[material].tier], self.last_serial
        location = f"{zone}-{n % 24 + 1:02d}-{n % 8 + 1:02d}-{n % 4 + 1}"
        unit = self.materials[material].unit
        hu = HandlingUnit(
            sscc(n), lot, material, WAREHOUSES[plant], zone, location, quantity, unit, status, datetime.now(UTC)
        )
        self.units[hu.id] = hu
        self.by_lot.setdefault(lot, []).append(hu.id)
        return hu

    def check_receivable(self, material: Any, plant: Any) -> str:
        """The material's unit, if the plant has a warehouse here and the material is known (else 400)."""
        if not isinstance(plant, str) or plant not in WAREHOUSES:
            raise HTTPException(400, f"plant {plant} has no warehouse here")
        if not isinstance(material, str) or material not in self.materials:
            raise HTTPException(400, f"material {material} is unknown to WMS")
        return self.materials[material].unit

    def receive(
        self, lot: str, material: str, plant: str, quantity: float, unit: str, status: str, reference: str
    ) -> dict[str, Any]:
        """Put away `quantity` of a lot (produced or delivered) as one handling unit with `status`; answers
        `{"lot", "handling_units", "status"}`. A repeated `reference` answers the first receipt."""
        if _text(reference, "reference") in self.receipts:
            return self.receipts[reference]
        _text(lot, "lot")
        stored_in = self.check_receivable(material, plant)
        quantity = _quantity(quantity, "quantity")
        if unit != stored_in:
            raise HTTPException(400, f"{material} is stored in {stored_in}, not {unit}")
        if status not in RECEIVABLE:
            raise HTTPException(400, f"status must be one of {', '.join(RECEIVABLE)}")
        hu = self.add_unit(lot, material, plant, quantity, status)
        self.closed.discard(lot)
        self.moves.setdefault(lot, []).append({"status": status, "reference": reference, "at": iso(hu.updated_at)})
        answer = self.receipts[reference] = {"lot": lot, "handling_units": [hu.id], "status": status}
        return answer

    async def receive_v1(self, request: Request) -> Response:
        body = await json_object(request)
        fresh = _text(body.get("reference"), "reference") not in self.receipts
        fields = [body.get(f) for f in ("lot", "sku", "plant", "qty", "uom", "status", "reference")]
        return JSONResponse(self.receive(*fields), status_code=201 if fresh else 200)

    async def receive_v2(self, request: Request) -> Response:
        body = await json_object(request)
        fresh = _text(body.get("reference"), "reference") not in self.receipts
        value, unit = _v2_quantity(body)
        status = body.get("stockStatus")
        answer = self.receive(
            body.get("lotId"),
            body.get("materialId"),
            body.get("plant"),
            value,
            unit,
            status.upper() if isinstance(status, str) else status,
            body.get("reference"),
        )
        rendered = {"lotId": answer["lot"], "handlingUnits": answer["handling_units"]}
        return JSONResponse({**rendered, "stockStatus": answer["status"].lower()}, status_code=201 if fresh else 200)

    def reduce(self, lot: str, quantity: float, unit: str, reason: str, reference: str) -> dict[str, Any]:
        """Take `quantity` off the lot's handling units, newest first, removing each one emptied (scrap);
        answers `{"lot", "reduced", "remaining", "handling_units"}` (units left). A repeated `reference` answers
        the first reduction and reduces nothing more."""
        if _text(reference, "reference") in self.reductions:
            return self.reductions[reference]
        _text(reason, "reason")
        quantity = _quantity(quantity, "quantity")
        units = self.by_lot.get(_text(lot, "lot"))
        if not units:
            raise HTTPException(404, f"no stock for lot {lot}")
        held = self.units[units[0]].unit
        if unit != held:
            raise HTTPException(400, f"lot {lot} is stored in {held}, not {unit}")
        on_hand = round(sum(self.units[hu].quantity for hu in units), 3)
        if quantity > on_hand:
            raise HTTPException(400, f"lot {lot} has only {on_hand} {held} on hand")
        now, left = datetime.now(UTC), quantity
        for hu in reversed(list(units)):
            taken = min(left, self.units[hu].quantity)
            rest, left = round(self.units[hu].quantity - taken, 3), round(left - taken, 3)
            if rest > 0:
                self.units[hu] = replace(self.units[hu], quantity=rest, updated_at=now)
            else:
                units.remove(hu)
                del self.units[hu]
            if left <= 0:
                break
        if not units:
            del self.by_lot[lot]
            self.closed.add(lot)
        self.moves.setdefault(lot, []).append(
            {"status": "REDUCED", "quantity": quantity, "reason": reason, "reference": reference, "at": iso(now)}
        )
        remaining = round(on_hand - quantity, 3)
        answer = {"lot": lot, "reduced": quantity, "remaining": remaining, "handling_units": len(units)}
        self.reductions[reference] = answer
        return answer

    async def reduce_v1(self, request: Request) -> Response:
        body = await json_object(request)
        answer = self.reduce(*(body.get(f) for f in ("lot", "qty", "uom", "reason", "reference")))
        return JSONResponse({key: answer[key] for key in ("lot", "reduced", "remaining")})

    async def reduce_v2(self, request: Request) -> Response:
        body = await json_object(request)
        value, unit = _v2_quantity(body)
        answer = self.reduce(body.get("lotId"), value, unit, body.get("reason"), body.get("reference"))
        return JSONResponse(
            {
                "lotId": answer["lot"],
                "reduced": answer["reduced"],
                "remaining": answer["remaining"],
                "handlingUnits": answer["handling_units"],
            }
        )

    def receive_delivery(
        self,
        purchase_order: str,
        purchase_order_item: str,
        material: str,
        plant: str,
        supplier: str,
        supplier_batch: str,
        quantity: float,
    ) -> dict[str, Any]:
        """The dock receives a supplier delivery: a new lot id of the warehouse's own, one handling unit in
        quarantine, announced as `goods.received` (WMS checks nothing against ERP's purchase order: it is
        independent). Answers what the event carries."""
        for value, field in (
            (purchase_order, "purchase_order"),
            (purchase_order_item, "purchase_order_item"),
            (supplier, "supplier"),
        ):
            _text(value, field)
        if not isinstance(supplier_batch, str):
            raise HTTPException(400, "supplier_batch must be a string")
        self.check_receivable(material, plant)
        quantity = _quantity(quantity, "quantity")
        self.last_delivery += 1
        lot = f"R26{self.last_delivery:05d}"
        hu = self.add_unit(lot, material, plant, quantity, "QUARANTINE")
        at = iso(hu.updated_at)
        self.moves.setdefault(lot, []).append({"status": "QUARANTINE", "reference": purchase_order, "at": at})
        received = {
            "lot_id": lot,
            "material": material,
            "plant": plant,
            "quantity": quantity,
            "unit": hu.unit,
            "purchase_order": purchase_order,
            "purchase_order_item": purchase_order_item,
            "supplier": supplier,
            "supplier_batch": supplier_batch,
            "handling_units": [hu.id],
            "received_at": at,
        }
        self.events.emit("goods.received", plant, received, lots=(lot,))
        return received

    async def post_delivery(self, request: Request) -> Response:
        body = await json_object(request)
        fields = ("purchaseOrder", "purchaseOrderItem", "materialId", "plant", "supplier")
        received = self.receive_delivery(
            *(body.get(f) for f in fields), body.get("supplierBatch", ""), body.get("quantity")
        )
        return JSONResponse(
            {
                "lotId": received["lot_id"],
                "materialId": received["material"],
                "plant": received["plant"],
                "quantity": {"value": received["quantity"], "unit": received["unit"]},
                "purchaseOrder": received["purchase_order"],
                "purchaseOrderItem": received["purchase_order_item"],
                "supplier": received["supplier"],
                "supplierBatch": received["supplier_batch"],
                "handlingUnits": received["handling_units"],
                "receivedAt": received["received_at"],
            },
            status_code=201,
        )

    def lot_state(self, lot_id: str) -> dict[str, Any] | None:
        if lot_id not in self.by_lot and lot_id not in self.closed:
            return None
        return {
            "handling_units": [render_v1(self.units[hu]) for hu in self.by_lot.get(lot_id, ())],
            "moves": self.moves.get(lot_id, []),
        }


def create_app(dataset: Dataset, *, credentials: Credentials | None = None) -> Starlette:
    """The WMS simulator; `credentials` makes it demand a token or API key. Its events (the receiving dock's) are on
    the ISA-95 area `warehouse`, line `dock`."""
    wms = Wms(dataset, Emitter("wms", area="warehouse", line="dock"))
    app = build_app(wms.routes(), wms.lot_state, require_credentials=credentials, emitter=wms.events)
    app.state.wms = wms
    return app
