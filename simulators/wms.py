"""The WMS simulator: handling units per lot, served by two API versions side by side.

`/v1` and `/v2` describe the same handling units with different names and shapes (flat vs nested, upper- vs
lower-case statuses), the way a warehouse system mid-migration does; both move stock the same way.
"""

from __future__ import annotations

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
from simulators.records import Material
from simulators.web import iso, json_object, split_keys

STATUSES = ("AVAILABLE", "QUARANTINE", "BLOCKED", "DAMAGED")


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


class Wms:
    """The WMS state (handling units indexed by lot) and request handlers."""

    def __init__(self, dataset: Dataset) -> None:
        self.units: dict[str, HandlingUnit] = {hu.id: hu for hu in dataset.handling_units}
        self.by_lot: dict[str, list[str]] = {}
        for hu in dataset.handling_units:
            self.by_lot.setdefault(hu.lot, []).append(hu.id)
        self.moves: dict[str, list[dict[str, Any]]] = {}  # lot -> moves applied through the API
        self.closed: set[str] = set()  # lots whose stock was closed (scrapped)
        self.last_serial = max((int(hu.id[8:17]) for hu in dataset.handling_units), default=0)  # of the SSCCs

    def routes(self) -> list[Route]:
        return [
            Route("/v1/stock", self.stock(render_v1, "lots", "stock"), methods=["GET"]),
            Route("/v1/moves", self.move_v1, methods=["POST"]),
            Route("/v2/stock-positions", self.stock(render_v2, "lotIds", "data", counted=True), methods=["GET"]),
            Route("/v2/stock-moves", self.move_v2, methods=["POST"]),
            Route("/v1/closures", self.close_v1, methods=["POST"]),
            Route("/v2/stock-closures", self.close_v2, methods=["POST"]),
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

    async def move_v2(self, request: Request) -> Response:
        body = await json_object(request)
        target = body.get("targetStatus")
        moved = self.move(body.get("lotId"), target.upper() if isinstance(target, str) else None, body.get("reference"))
        return JSONResponse({"lotId": body["lotId"], "handlingUnits": moved, "stockStatus": target.lower()})

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

    def receive(self, lot: str, material: Material, plant: str, quantity: float, at: datetime) -> HandlingUnit:
        """A produced lot arrives (the plant's integration): one handling unit in the plant's warehouse, in
        quarantine until quality releases it."""
        self.last_serial += 1
        zone, n = ZONES[material.tier], self.last_serial
        location = f"{zone}-{n % 24 + 1:02d}-{n % 8 + 1:02d}-{n % 4 + 1}"
        hu = HandlingUnit(
            sscc(n), lot, material.id, WAREHOUSES[plant], zone, location, quantity, material.unit, "QUARANTINE", at
        )
        self.units[hu.id] = hu
        self.by_lot.setdefault(lot, []).append(hu.id)
        return hu

    def lot_state(self, lot_id: str) -> dict[str, Any] | None:
        if lot_id not in self.by_lot and lot_id not in self.closed:
            return None
        return {
            "handling_units": [render_v1(self.units[hu]) for hu in self.by_lot.get(lot_id, ())],
            "moves": self.moves.get(lot_id, []),
        }


def create_app(dataset: Dataset, *, credentials: Credentials | None = None) -> Starlette:
    """The WMS simulator; `credentials` makes it demand a token or API key."""
    wms = Wms(dataset)
    app = build_app(wms.routes(), wms.lot_state, require_credentials=credentials)
    app.state.wms = wms
    return app
