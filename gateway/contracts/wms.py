"""WMS contracts: stock positions by lot. Two API versions live side by side and both adapt to
the same canonical `StockPosition`; which one the gateway speaks is `sources.wms.version`."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from gateway.codes import WMS_V1_STATUS, WMS_V2_STATUS, translate
from gateway.contracts.base import BULK_ITEMS, Bulk, Contract, ContractStatus, Keys, Upstream, bulk_outcomes, register
from gateway.model import Received, Reduced, StockMoved, StockPosition, StockStatus
from gateway.sources.connector import SourceConnector


class V1Stock(Upstream):
    lot: str
    sku: str
    warehouse: str
    location: str
    handling_unit: str
    qty: float
    uom: str
    status: str


class V1StockList(Upstream):
    stock: list[V1Stock]


class V2Site(Upstream):
    warehouse: str
    zone: str


class V2Quantity(Upstream):
    value: float
    unit: str


class V2StockPosition(Upstream):
    lotId: str
    materialId: str
    site: V2Site
    bin: str
    handlingUnitId: str
    quantity: V2Quantity
    stockStatus: str


class V2StockPositions(Upstream):
    data: list[V2StockPosition]


async def _v1_send(wms: SourceConnector, request: Keys):
    return await wms.get_keyed("/v1/stock", "lots", request.keys)


async def _v2_send(wms: SourceConnector, request: Keys):
    return await wms.get_keyed("/v2/stock-positions", "lotIds", request.keys)


STOCK_READ_V1 = register(
    Contract(
        "wms", "stock.read", 1, "Stock by handling unit, by lot (WMS API v1)",
        request=Keys, response=V1StockList,
        send=_v1_send,
        adapt=lambda body: [
            StockPosition(
                lot_id=s.lot,
                material_id=s.sku,
                warehouse=s.warehouse,
                location=s.location,
                handling_unit=s.handling_unit,
                quantity=s.qty,
                unit=s.uom,
                status=translate(WMS_V1_STATUS, s.status, field="status"),
            )
            for s in body.stock
        ],
        status=ContractStatus.DEPRECATED,
        sunset=date(2027, 6, 30),
    )
)  # fmt: skip

STOCK_READ_V2 = register(
    Contract(
        "wms", "stock.read", 2, "Stock by handling unit, by lot (WMS API v2)",
        request=Keys, response=V2StockPositions,
        send=_v2_send,
        adapt=lambda body: [
            StockPosition(
                lot_id=p.lotId,
                material_id=p.materialId,
                warehouse=p.site.warehouse,
                location=f"{p.site.zone}/{p.bin}",
                handling_unit=p.handlingUnitId,
                quantity=p.quantity.value,
                unit=p.quantity.unit,
                status=translate(WMS_V2_STATUS, p.stockStatus, field="stockStatus"),
            )
            for p in body.data
        ],
    )
)  # fmt: skip


class StockMove(BaseModel):
    """Move every handling unit of a lot to one status (the quarantine move)."""

    model_config = ConfigDict(frozen=True)

    lot_id: str
    status: StockStatus
    reference: str


_V1_STATUS_OF = {StockStatus.AVAILABLE: "AVAILABLE", StockStatus.QUALITY_INSPECTION: "QUARANTINE",
                 StockStatus.BLOCKED: "BLOCKED"}  # fmt: skip


class V1Moved(Upstream):
    lot: str
    moved: int
    status: str


class V2Moved(Upstream):
    lotId: str
    handlingUnits: int
    stockStatus: str


async def _v1_move(wms: SourceConnector, request: StockMove):
    body = {"lot": request.lot_id, "to_status": _V1_STATUS_OF[request.status], "reference": request.reference}
    return await wms.post("/v1/moves", body)


def _v2_move_body(request: StockMove) -> dict[str, str]:
    return {"lotId": request.lot_id, "targetStatus": _V1_STATUS_OF[request.status].lower(),
            "reference": request.reference}  # fmt: skip


async def _v2_move(wms: SourceConnector, request: StockMove):
    return await wms.post("/v2/stock-moves", _v2_move_body(request))


class StockMoves(BaseModel):
    """Many lots' moves in one bulk request; the WMS moves or refuses each on its own."""

    model_config = ConfigDict(frozen=True)

    moves: tuple[StockMove, ...] = Field(min_length=1, max_length=BULK_ITEMS)


async def _v2_move_many(wms: SourceConnector, request: StockMoves):
    return await wms.post("/v2/stock-moves/bulk", {"moves": [_v2_move_body(m) for m in request.moves]})


def _v2_moved(m: V2Moved) -> StockMoved:
    return StockMoved(lot_id=m.lotId, handling_units=m.handlingUnits,
                      status=translate(WMS_V2_STATUS, m.stockStatus, field="stockStatus"))  # fmt: skip


STOCK_MOVE_V1 = register(
    Contract(
        "wms", "stock.move", 1, "Move a lot's handling units to a stock status (WMS API v1)",
        request=StockMove, response=V1Moved,
        send=_v1_move,
        adapt=lambda m: [
            StockMoved(lot_id=m.lot, handling_units=m.moved, status=translate(WMS_V1_STATUS, m.status, field="status"))
        ],
        status=ContractStatus.DEPRECATED,
        sunset=date(2027, 6, 30),
    )
)  # fmt: skip

STOCK_MOVE_V2 = register(
    Contract(
        "wms", "stock.move", 2, "Move a lot's handling units to a stock status (WMS API v2)",
        request=StockMove, response=V2Moved,
        send=_v2_move,
        adapt=lambda m: [_v2_moved(m)],
    )
)  # fmt: skip

STOCK_MOVE_MANY_V2 = register(
    Contract(
        "wms", "stock.move_many", 2, "Move many lots' handling units in one bulk request (WMS API v2)",
        request=StockMoves, response=Bulk[V2Moved],
        send=_v2_move_many,
        adapt=lambda body: bulk_outcomes("wms", body, _v2_moved),
    )
)  # fmt: skip


class StockClosure(BaseModel):
    """Take every handling unit of a scrapped lot off the books."""

    model_config = ConfigDict(frozen=True)

    lot_id: str
    reference: str


class V1Closed(Upstream):
    closed: int


class V2Closed(Upstream):
    handlingUnits: int


async def _v1_close(wms: SourceConnector, request: StockClosure):
    return await wms.post("/v1/closures", {"lot": request.lot_id, "reference": request.reference})


async def _v2_close(wms: SourceConnector, request: StockClosure):
    return await wms.post("/v2/stock-closures", {"lotId": request.lot_id, "reference": request.reference})


STOCK_CLOSE_V1 = register(
    Contract(
        "wms", "stock.close", 1, "Close a scrapped lot's stock (WMS API v1)",
        request=StockClosure, response=V1Closed,
        send=_v1_close,
        adapt=lambda c: [c.closed],
        status=ContractStatus.DEPRECATED,
        sunset=date(2027, 6, 30),
    )
)  # fmt: skip

STOCK_CLOSE_V2 = register(
    Contract(
        "wms", "stock.close", 2, "Close a scrapped lot's stock (WMS API v2)",
        request=StockClosure, response=V2Closed,
        send=_v2_close,
        adapt=lambda c: [c.handlingUnits],
    )
)  # fmt: skip


class HandlingUnitReceipt(BaseModel):
    """A lot arriving in the warehouse: its handling units, received into one stock status (idempotent by reference:
    the WMS answers a repeated reference with the first receipt)."""

    model_config = ConfigDict(frozen=True)

    lot_id: str
    material_id: str
    plant: str
    quantity: float = Field(gt=0)
    unit: str
    status: StockStatus
    reference: str


class V1Received(Upstream):
    lot: str
    handling_units: list[str]
    status: str


class V2Received(Upstream):
    lotId: str
    handlingUnits: list[str]
    stockStatus: str


async def _v1_receive(wms: SourceConnector, request: HandlingUnitReceipt):
    body = {"lot": request.lot_id, "sku": request.material_id, "plant": request.plant, "qty": request.quantity,
            "uom": request.unit, "status": _V1_STATUS_OF[request.status], "reference": request.reference}  # fmt: skip
    return await wms.post("/v1/receipts", body)


async def _v2_receive(wms: SourceConnector, request: HandlingUnitReceipt):
    body = {"lotId": request.lot_id, "materialId": request.material_id, "plant": request.plant,
            "quantity": {"value": request.quantity, "unit": request.unit},
            "stockStatus": _V1_STATUS_OF[request.status].lower(), "reference": request.reference}  # fmt: skip
    return await wms.post("/v2/handling-units", body)


HANDLING_UNITS_RECEIVE_V1 = register(
    Contract(
        "wms", "handling_units.receive", 1, "Receive a lot's handling units into a stock status (WMS API v1)",
        request=HandlingUnitReceipt, response=V1Received,
        send=_v1_receive,
        adapt=lambda r: [
            Received(lot_id=r.lot, handling_units=tuple(r.handling_units),
                     status=translate(WMS_V1_STATUS, r.status, field="status"))
        ],
        status=ContractStatus.DEPRECATED,
        sunset=date(2027, 6, 30),
    )
)  # fmt: skip

HANDLING_UNITS_RECEIVE_V2 = register(
    Contract(
        "wms", "handling_units.receive", 2, "Receive a lot's handling units into a stock status (WMS API v2)",
        request=HandlingUnitReceipt, response=V2Received,
        send=_v2_receive,
        adapt=lambda r: [
            Received(lot_id=r.lotId, handling_units=tuple(r.handlingUnits),
                     status=translate(WMS_V2_STATUS, r.stockStatus, field="stockStatus"))
        ],
    )
)  # fmt: skip


class StockReduction(BaseModel):
    """Take a quantity of a lot off its handling units (scrap); idempotent by reference."""

    model_config = ConfigDict(frozen=True)

    lot_id: str
    quantity: float = Field(gt=0)
    unit: str
    reason: str = Field(min_length=1)
    reference: str


class V1Reduced(Upstream):
    lot: str
    reduced: float
    remaining: float


class V2Reduced(Upstream):
    lotId: str
    reduced: float
    remaining: float


async def _v1_reduce(wms: SourceConnector, request: StockReduction):
    body = {"lot": request.lot_id, "qty": request.quantity, "uom": request.unit, "reason": request.reason,
            "reference": request.reference}  # fmt: skip
    return await wms.post("/v1/reductions", body)


async def _v2_reduce(wms: SourceConnector, request: StockReduction):
    body = {"lotId": request.lot_id, "quantity": {"value": request.quantity, "unit": request.unit},
            "reason": request.reason, "reference": request.reference}  # fmt: skip
    return await wms.post("/v2/stock-reductions", body)


STOCK_REDUCE_V1 = register(
    Contract(
        "wms", "stock.reduce", 1, "Reduce a lot's quantity on hand (scrap; WMS API v1)",
        request=StockReduction, response=V1Reduced,
        send=_v1_reduce,
        adapt=lambda r: [Reduced(lot_id=r.lot, reduced=r.reduced, remaining=r.remaining)],
        status=ContractStatus.DEPRECATED,
        sunset=date(2027, 6, 30),
    )
)  # fmt: skip

STOCK_REDUCE_V2 = register(
    Contract(
        "wms", "stock.reduce", 2, "Reduce a lot's quantity on hand (scrap; WMS API v2)",
        request=StockReduction, response=V2Reduced,
        send=_v2_reduce,
        adapt=lambda r: [Reduced(lot_id=r.lotId, reduced=r.reduced, remaining=r.remaining)],
    )
)  # fmt: skip
