"""The MES simulator: production executions, its own view of produced lots, and the genealogy.

Genealogy links are indexed both ways (by consumed and by produced lot) and pre-rendered, because a recall
walks thousands of lots per level and `POST /api/genealogy/search` must answer such a frontier at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.admin import build_app
from simulators.credentials import Credentials
from simulators.dataset import Dataset, Execution, QualityStatus
from simulators.web import iso, json_object, split_keys

MES_STATUS = {
    QualityStatus.RELEASED: "RELEASED",
    QualityStatus.ON_HOLD: "HOLD",
    QualityStatus.IN_INSPECTION: "QC_PENDING",
    QualityStatus.REJECTED: "REJECTED",
}
DIRECTIONS = ("consumed", "produced")


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
    """The MES state and request handlers."""

    def __init__(self, dataset: Dataset) -> None:
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
        lots = dataset.lots
        for link in dataset.links:
            consumed, produced = lots[link.consumed_lot], lots[link.produced_lot]
            rendered = {
                "consumed_lot": consumed.id,
                "consumed_material": consumed.material,
                "consumed_plant": consumed.plant,
                "produced_lot": produced.id,
                "produced_material": produced.material,
                "produced_plant": produced.plant,
                "quantity": link.quantity,
                "unit": link.unit,
                "order_id": link.order_id,
                "consumed_at": iso(link.consumed_at),
            }
            self.links["consumed"].setdefault(consumed.id, []).append(rendered)
            self.links["produced"].setdefault(produced.id, []).append(rendered)

    def routes(self) -> list[Route]:
        return [
            Route("/api/executions", self.get_executions, methods=["GET"]),
            Route("/api/lots", self.get_lots, methods=["GET"]),
            Route("/api/genealogy", self.get_genealogy, methods=["GET"]),
            Route("/api/genealogy/search", self.search_genealogy, methods=["POST"]),
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
    """The MES simulator; `credentials` makes it demand a token or API key."""
    mes = Mes(dataset)
    app = build_app(mes.routes(), mes.lot_state, require_credentials=credentials)
    app.state.mes = mes
    return app
