"""The ERP simulator, shaped like SAP S/4HANA OData v2 APIs.

It keeps its own copy of master data, batches, stock, production and purchase orders and material documents in
OData wire form, and exercises what makes SAP writes awkward for a gateway: CSRF tokens, ETag/If-Match on batches,
stock moves through material documents, refusals with SAP's own message ids (`CO/001`, `M7/022` ...), and a rate
limit answered with 429. It knows nothing of the other systems: planners release production orders and purchasing
creates purchase orders here, and whoever connects the plant posts their goods receipts (a production receipt with
its component issues, a receipt against a purchase order). ERP pushes nothing: a client that wants its changes reads
the change feed (`API_CHANGE_FEED_SRV/Changes`), one row per posted document item or batch change, from the last
sequence number it has seen.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simulators import odata_batch
from simulators.admin import build_app
from simulators.catalog import STORAGE_LOCATIONS
from simulators.credentials import Credentials
from simulators.dataset import BLOCKING, Dataset
from simulators.odata import EntitySet, Row, odata_error, to_date, to_decimal
from simulators.web import json_object

BASE = "/sap/opu/odata/sap"
WRITE_METHODS = {"POST", "PATCH", "PUT", "MERGE", "DELETE"}
# Movement type -> (from stock type, to stock type); None means the stock enters the books (a goods receipt) or
# leaves them (an issue to a production order, scrap).
MOVES: dict[str, tuple[str | None, str | None]] = {
    "101": (None, "02"),
    "261": ("01", None),
    "321": ("02", "01"),
    "322": ("01", "02"),
    "343": ("07", "01"),
    "344": ("01", "07"),
    "349": ("07", "02"),
    "350": ("02", "07"),
    "551": ("01", None),
    "553": ("02", None),
    "555": ("07", None),
}
# The movement types each goods movement code takes: 01 receipt against a purchase order, 02 receipt for a production
# order (with its component issues); any other code (04 transfer, 03 scrap) the stock moves in POSTABLE.
POSTABLE = ("321", "322", "343", "344", "349", "350", "551", "553", "555")
MOVEMENTS = {"01": ("101",), "02": ("101", "261")}
ITEM_FIELDS = ("GoodsMovementType", "Material", "Plant", "StorageLocation", "Batch", "QuantityInEntryUnit", "EntryUnit")
REFERENCES = {"01": ("PurchaseOrder", "PurchaseOrderItem"), "02": ("ManufacturingOrder",)}  # what items of a code name
STOCK_NAMES = {"01": "unrestricted", "02": "quality inspection", "07": "blocked"}
DEFAULT_TOLERANCE = 10.0  # percent over the ordered quantity a receipt may deliver
KEY_PAIR = re.compile(r"(\w+)='((?:[^']|'')*)'")
BATCH_PATH = re.compile(r"Batch\('((?:[^']|'')*)'\)")  # a batch's path inside a $batch request

STRING, NUMBER, BOOL, DECIMAL, DATE = "string", "number", "bool", "decimal", "date"


def _entity_sets() -> dict[str, EntitySet]:
    return {
        es.name: es
        for es in (
            EntitySet(
                "API_PLANT_SRV",
                "A_Plant",
                ("Plant",),
                {"Plant": STRING, "PlantName": STRING, "Country": STRING, "CityName": STRING},
            ),
            EntitySet(
                "API_PRODUCT_SRV",
                "A_Product",
                ("Product",),
                {
                    "Product": STRING,
                    "ProductType": STRING,
                    "ProductDescription": STRING,
                    "BaseUnit": STRING,
                    "ProductGroup": STRING,
                    "IsRegulated": BOOL,
                    "StandardPrice": DECIMAL,
                    "Currency": STRING,
                },
                indexed=("ProductType",),
            ),
            EntitySet(
                "API_BUSINESS_PARTNER",
                "A_Supplier",
                ("Supplier",),
                {"Supplier": STRING, "SupplierName": STRING, "Country": STRING},
            ),
            EntitySet(
                "API_BATCH_SRV",
                "Batch",
                ("Batch",),
                {
                    "Batch": STRING,
                    "Material": STRING,
                    "Plant": STRING,
                    "Supplier": STRING,
                    "SupplierBatch": STRING,
                    "ManufactureDate": DATE,
                    "ShelfLifeExpirationDate": DATE,
                    "MatlBatchIsInRstrcdUseStock": BOOL,
                    "CountryOfOrigin": STRING,
                    "PurchaseOrder": STRING,
                    "ManufacturingOrder": STRING,
                    "Customer": STRING,
                },
                indexed=("Material", "Plant", "Supplier", "ManufacturingOrder"),
            ),
            EntitySet(
                "API_MATERIAL_STOCK_SRV",
                "A_MatlStkInAcctMod",
                ("Material", "Plant", "StorageLocation", "Batch", "InventoryStockType"),
                {
                    "Material": STRING,
                    "Plant": STRING,
                    "StorageLocation": STRING,
                    "Batch": STRING,
                    "InventoryStockType": STRING,
                    "MatlWrhsStkQtyInMatlBaseUnit": DECIMAL,
                    "MaterialBaseUnit": STRING,
                },
                indexed=("Batch", "Material"),
            ),
            EntitySet(
                "API_PRODUCTION_ORDER_2_SRV",
                "A_ProductionOrder_2",
                ("ManufacturingOrder",),
                {
                    "ManufacturingOrder": STRING,
                    "Material": STRING,
                    "ProductionPlant": STRING,
                    "Batch": STRING,
                    "TotalQuantity": DECIMAL,
                    "ProductionUnit": STRING,
                    "OrderStatus": STRING,
                    "MfgOrderPlannedStartDate": DATE,
                    "MfgOrderActualReleaseDate": DATE,
                    "StorageLocation": STRING,  # where its goods receipt goes
                    "OverDeliveryTolerance": DECIMAL,  # percent
                    "GoodsReceiptQuantity": DECIMAL,
                },
                indexed=("Batch", "Material"),
            ),
            EntitySet(
                "API_PURCHASEORDER_PROCESS_SRV",
                "A_PurchaseOrderItem",
                ("PurchaseOrder", "PurchaseOrderItem"),
                {
                    "PurchaseOrder": STRING,
                    "PurchaseOrderItem": STRING,
                    "Material": STRING,
                    "Plant": STRING,
                    "Supplier": STRING,
                    "OrderQuantity": DECIMAL,
                    "PurchaseOrderQuantityUnit": STRING,
                    "StorageLocation": STRING,
                    "OverdelivTolrtdLmtRatioInPct": DECIMAL,
                    "GoodsReceiptQuantity": DECIMAL,
                    "IsCompletelyDelivered": BOOL,
                },
                indexed=("PurchaseOrder", "Material", "Supplier"),
            ),
            EntitySet(
                "API_MATERIAL_DOCUMENT_SRV",
                "A_MaterialDocumentItem",
                ("MaterialDocumentYear", "MaterialDocument", "MaterialDocumentItem"),
                {
                    "MaterialDocumentYear": STRING,
                    "MaterialDocument": STRING,
                    "MaterialDocumentItem": STRING,
                    "GoodsMovementType": STRING,
                    "Material": STRING,
                    "Plant": STRING,
                    "StorageLocation": STRING,
                    "Batch": STRING,
                    "QuantityInEntryUnit": DECIMAL,
                    "EntryUnit": STRING,
                    "PostingDate": DATE,
                    "PurchaseOrder": STRING,
                    "ManufacturingOrder": STRING,
                    "MaterialDocumentItemText": STRING,
                },
                indexed=("MaterialDocument", "Batch", "Material", "ManufacturingOrder"),
            ),
            EntitySet(
                "API_MATERIAL_DOCUMENT_SRV",
                "A_MaterialDocumentHeader",
                ("MaterialDocumentYear", "MaterialDocument"),
                {
                    "MaterialDocumentYear": STRING,
                    "MaterialDocument": STRING,
                    "GoodsMovementCode": STRING,
                    "PostingDate": DATE,
                },
            ),
            EntitySet(
                "API_CHANGE_FEED_SRV",
                "Changes",
                ("ChangeSequence",),
                {
                    "ChangeSequence": NUMBER,
                    "ChangeType": STRING,  # GOODS_MOVEMENT / BATCH_CHANGE
                    "MaterialDocument": STRING,
                    "GoodsMovementType": STRING,
                    "Material": STRING,
                    "Plant": STRING,
                    "Batch": STRING,
                    "QuantityInEntryUnit": DECIMAL,
                    "EntryUnit": STRING,
                    "StockType": STRING,  # after the movement; "" when the stock left the books
                    "BatchRestricted": BOOL,
                    "PostedAt": DATE,
                },
            ),
        )
    }


def _load(sets: dict[str, EntitySet], dataset: Dataset) -> None:
    """Copy the dataset into ERP's own rows, in the shape and vocabulary SAP would answer with."""
    for p in dataset.plants.values():
        sets["A_Plant"].put({"Plant": p.id, "PlantName": p.name, "Country": p.country, "CityName": p.city})
    for m in dataset.materials.values():
        sets["A_Product"].put(
            {
                "Product": m.id,
                "ProductType": m.type,
                "ProductDescription": m.description,
                "BaseUnit": m.unit,
                "ProductGroup": m.group,
                "IsRegulated": m.regulated,
                "StandardPrice": to_decimal(m.price, 2),
                "Currency": m.currency,
            }
        )
    for s in dataset.suppliers.values():
        sets["A_Supplier"].put({"Supplier": s.id, "SupplierName": s.name, "Country": s.country})
    for lot in dataset.lots.values():
        sets["Batch"].put(
            {
                "Batch": lot.id,
                "Material": lot.material,
                "Plant": lot.plant,
                "Supplier": lot.supplier,
                "SupplierBatch": lot.supplier_batch,
                "ManufactureDate": to_date(lot.manufactured_at),
                "ShelfLifeExpirationDate": to_date(lot.expires_at),
                "MatlBatchIsInRstrcdUseStock": dataset.status_in("erp", lot.id) in BLOCKING,
                "CountryOfOrigin": lot.country_of_origin,
                "PurchaseOrder": lot.purchase_order,
                "ManufacturingOrder": lot.order_id,
                "Customer": lot.customer,
            }
        )
    for row in dataset.stock:
        sets["A_MatlStkInAcctMod"].put(
            {
                "Material": row.material,
                "Plant": row.plant,
                "StorageLocation": row.storage_location,
                "Batch": row.lot,
                "InventoryStockType": row.stock_type,
                "MatlWrhsStkQtyInMatlBaseUnit": to_decimal(row.quantity),
                "MaterialBaseUnit": row.unit,
            }
        )
    for o in dataset.orders.values():
        sets["A_ProductionOrder_2"].put(
            {
                "ManufacturingOrder": o.id,
                "Material": o.material,
                "ProductionPlant": o.plant,
                "Batch": o.lot,
                "TotalQuantity": to_decimal(o.quantity),
                "ProductionUnit": o.unit,
                "OrderStatus": o.status,
                "MfgOrderPlannedStartDate": to_date(o.planned_start),
                "MfgOrderActualReleaseDate": to_date(o.released_at),
                "StorageLocation": STORAGE_LOCATIONS[dataset.materials[o.material].tier],
                "OverDeliveryTolerance": to_decimal(DEFAULT_TOLERANCE, 1),
                "GoodsReceiptQuantity": to_decimal(dataset.lots[o.lot].quantity),
            }
        )
    for lot in dataset.lots.values():
        if lot.purchase_order:  # each supplied lot was the one delivery of its purchase order
            sets["A_PurchaseOrderItem"].put(
                {
                    "PurchaseOrder": lot.purchase_order,
                    "PurchaseOrderItem": "00010",
                    "Material": lot.material,
                    "Plant": lot.plant,
                    "Supplier": lot.supplier,
                    "OrderQuantity": to_decimal(lot.quantity),
                    "PurchaseOrderQuantityUnit": lot.unit,
                    "StorageLocation": STORAGE_LOCATIONS[dataset.materials[lot.material].tier],
                    "OverdelivTolrtdLmtRatioInPct": to_decimal(DEFAULT_TOLERANCE, 1),
                    "GoodsReceiptQuantity": to_decimal(lot.quantity),
                    "IsCompletelyDelivered": True,
                }
            )
    for i in dataset.material_documents:
        sets["A_MaterialDocumentItem"].put(
            {
                "MaterialDocumentYear": i.year,
                "MaterialDocument": i.document,
                "MaterialDocumentItem": i.item,
                "GoodsMovementType": i.movement_type,
                "Material": i.material,
                "Plant": i.plant,
                "StorageLocation": i.storage_location,
                "Batch": i.lot,
                "QuantityInEntryUnit": to_decimal(i.quantity),
                "EntryUnit": i.unit,
                "PostingDate": to_date(i.posted_at),
                "PurchaseOrder": i.purchase_order,
                "ManufacturingOrder": i.order_id,
                "MaterialDocumentItemText": "",
            }
        )


class CsrfMiddleware:
    """SAP's CSRF handshake: `x-csrf-token: fetch` on a GET hands out a token; writes without one get 403."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.tokens: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_admin"):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"x-csrf-token", b"").decode("latin-1")
        if scope["method"] in WRITE_METHODS and header not in self.tokens:
            response = JSONResponse(
                odata_error(403, "CSRF token validation failed"), status_code=403, headers={"x-csrf-token": "Required"}
            )
            await response(scope, receive, send)
            return
        if scope["method"] != "GET" or header.lower() != "fetch":
            await self.app(scope, receive, send)
            return
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)

        async def send_token(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-csrf-token", token.encode())]}
            await send(message)

        await self.app(scope, receive, send_token)


class SapError(HTTPException):
    """A refusal carrying SAP's message id (message class/number, e.g. `CO/001`) as its OData error code, so a
    client can tell why ERP refused a posting without reading the text."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(status, message)
        self.code = code


async def sap_refusal(request: Request, exc: Exception) -> Response:
    """The OData error body of a `SapError` (the handler is registered for that class only)."""
    refusal = cast(SapError, exc)
    return JSONResponse(odata_error(refusal.status_code, refusal.detail, refusal.code), refusal.status_code)


def _amount(value: Any, field: str, zero: bool = False) -> Decimal:
    """A quantity from a request: a number or an Edm.Decimal string, positive (or zero where `zero`)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise HTTPException(400, f"{field} must be a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise HTTPException(400, f"{value!r} is not a quantity") from exc
    if not amount.is_finite() or amount < 0 or (amount == 0 and not zero):
        raise HTTPException(400, f"{field} must be {'zero or ' if zero else ''}positive")
    return amount


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise HTTPException(400, f"{field} must be a non-empty string")
    return value


class Erp:
    """The ERP's state and request handlers."""

    def __init__(self, dataset: Dataset) -> None:
        self.sets = _entity_sets()
        _load(self.sets, dataset)
        self.materials = dataset.materials  # master data: the shelf life of the batches receipts create
        documents = self.sets["A_MaterialDocumentItem"].rows
        self.last_document = max((int(key[1]) for key in documents), default=4900000000)
        self.last_order = max((int(key[0]) for key in self.sets["A_ProductionOrder_2"].rows), default=1000000)
        purchases = self.sets["A_PurchaseOrderItem"].rows
        self.last_purchase_order = max((int(key[0]) for key in purchases), default=4500000000)
        self.last_change = 0  # the change feed starts with this ERP: it records what happens from now on

    @staticmethod
    def base(request: Request) -> str:
        return f"{str(request.base_url).rstrip('/')}{BASE}/"

    def routes(self) -> list[Route]:
        routes = [Route(f"{BASE}/{{service}}/", self.service_document, methods=["GET"])]
        for es in self.sets.values():
            if es.name == "A_MaterialDocumentHeader":
                continue
            routes.append(Route(f"{BASE}/{es.service}/{es.name}", self.collection(es), methods=["GET"]))
            key = "('{key}')" if len(es.key) == 1 else "({key})"
            routes.append(Route(f"{BASE}/{es.service}/{es.name}{key}", self.entity(es), methods=["GET"]))
        routes.append(Route(f"{BASE}/API_BATCH_SRV/Batch('{{key}}')", self.patch_batch, methods=["PATCH"]))
        routes.append(Route(f"{BASE}/API_BATCH_SRV/$batch", self.batch, methods=["POST"]))
        routes.append(
            Route(f"{BASE}/API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentHeader", self.post_document, methods=["POST"])
        )
        routes.append(
            Route(f"{BASE}/API_PRODUCTION_ORDER_2_SRV/A_ProductionOrder_2", self.post_order, methods=["POST"])
        )
        routes.append(
            Route(
                f"{BASE}/API_PURCHASEORDER_PROCESS_SRV/A_PurchaseOrderItem", self.post_purchase_order, methods=["POST"]
            )
        )
        return routes

    async def service_document(self, request: Request) -> Response:
        names = [es.name for es in self.sets.values() if es.service == request.path_params["service"]]
        if not names:
            raise HTTPException(404, f"service {request.path_params['service']} does not exist")
        return JSONResponse({"d": {"EntitySets": names}})

    def collection(self, es: EntitySet) -> Callable[[Request], Any]:
        async def get(request: Request) -> Response:
            return JSONResponse(es.query(request.query_params, self.base(request)))

        return get

    def entity(self, es: EntitySet) -> Callable[[Request], Any]:
        async def get(request: Request) -> Response:
            key = self.existing(es, request)
            return JSONResponse({"d": es.render(key, self.base(request))}, headers={"ETag": es.etag(key)})

        return get

    @staticmethod
    def existing(es: EntitySet, request: Request) -> tuple[str, ...]:
        """The key in the request's path: `('value')`, or `(Field='value',...)` naming every key field of a
        composite key; 404 if there is no such entity."""
        text = request.path_params["key"]
        if len(es.key) == 1:
            key = (text.replace("''", "'"),)
            if key not in es.rows:
                raise HTTPException(404, f"{es.name}('{text}') does not exist")
            return key
        pairs = KEY_PAIR.findall(text)
        named = {field: value.replace("''", "'") for field, value in pairs}
        if ",".join(f"{field}='{value}'" for field, value in pairs) != text or sorted(named) != sorted(es.key):
            raise HTTPException(400, f"the key of {es.name} is ({', '.join(f'{f}=...' for f in es.key)})")
        key = tuple(named[field] for field in es.key)
        if key not in es.rows:
            raise HTTPException(404, f"{es.name}({text}) does not exist")
        return key

    async def patch_batch(self, request: Request) -> Response:
        key = self.existing(self.sets["Batch"], request)
        etag = self.change_batch(key, request.headers.get("if-match"), await json_object(request))
        return Response(status_code=204, headers={"ETag": etag})

    def change_batch(self, key: tuple[str, ...], if_match: str | None, body: dict[str, Any]) -> str:
        """Set the batch's restricted flag, if `if_match` is its current ETag; returns the new ETag."""
        batches = self.sets["Batch"]
        if if_match is None:
            raise HTTPException(428, "If-Match header required")
        if if_match != batches.etag(key):
            raise HTTPException(412, "ETag mismatch: the batch was changed by someone else")
        if set(body) != {"MatlBatchIsInRstrcdUseStock"} or not isinstance(body["MatlBatchIsInRstrcdUseStock"], bool):
            raise HTTPException(400, "only MatlBatchIsInRstrcdUseStock (boolean) can be changed")
        row = {**batches.rows[key], **body}
        batches.put(row)
        self.record_change("BATCH_CHANGE", row, datetime.now(UTC))
        return batches.etag(key)

    async def batch(self, request: Request) -> Response:
        """`POST API_BATCH_SRV/$batch`: batch PATCHes (`Batch('B…')`), one per change set (`odata_batch`)."""
        return await odata_batch.answer(request, self.batched)

    async def batched(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        match = BATCH_PATH.fullmatch(path)
        if method != "PATCH" or match is None:
            raise HTTPException(400, f"$batch of API_BATCH_SRV takes PATCH Batch('…'), not {method} {path}")
        key = (match.group(1).replace("''", "'"),)
        if key not in self.sets["Batch"].rows:
            raise HTTPException(404, f"Batch('{match.group(1)}') does not exist")
        try:
            changes = json.loads(body)
        except ValueError as exc:
            raise HTTPException(400, f"request body is not valid JSON: {exc}") from exc
        if not isinstance(changes, dict):
            raise HTTPException(400, "request body must be a JSON object")
        return 204, {"ETag": self.change_batch(key, headers.get("if-match"), changes)}, b""

    def record_change(self, change_type: str, fields: Row, at: datetime) -> None:
        """Append to the change feed: `fields` names the batch (and, for a goods movement, the document item)."""
        self.last_change += 1
        batch = self.sets["Batch"].rows.get((fields["Batch"],), {})
        self.sets["Changes"].put(
            {
                "ChangeSequence": str(self.last_change),
                "ChangeType": change_type,
                "MaterialDocument": fields.get("MaterialDocument", ""),
                "GoodsMovementType": fields.get("GoodsMovementType", ""),
                "Material": fields["Material"],
                "Plant": fields["Plant"],
                "Batch": fields["Batch"],
                "QuantityInEntryUnit": fields.get("QuantityInEntryUnit", to_decimal(0)),
                "EntryUnit": fields.get("EntryUnit", ""),
                "StockType": fields.get("StockType", ""),
                "BatchRestricted": batch.get("MatlBatchIsInRstrcdUseStock", False),
                "PostedAt": to_date(at),
            }
        )

    # -- orders

    def release_order(
        self, material: str, plant: str, quantity: float, tolerance_percent: float = DEFAULT_TOLERANCE
    ) -> str:
        """The planner releases a production order (status REL) for MES to execute; returns its number."""
        product = self.sets["A_Product"].rows.get((material,))
        if product is None:
            raise HTTPException(400, f"material {material} does not exist")
        if product["ProductType"] == "ROH":
            raise HTTPException(400, f"material {material} is a raw material: it is purchased, not produced")
        if (plant,) not in self.sets["A_Plant"].rows:
            raise HTTPException(400, f"plant {plant} does not exist")
        if not quantity > 0 or not tolerance_percent >= 0:
            raise HTTPException(400, "the quantity must be positive and the tolerance not negative")
        self.last_order += 1
        now = datetime.now(UTC)
        self.sets["A_ProductionOrder_2"].put(
            {
                "ManufacturingOrder": str(self.last_order),
                "Material": material,
                "ProductionPlant": plant,
                "Batch": "",
                "TotalQuantity": to_decimal(quantity),
                "ProductionUnit": product["BaseUnit"],
                "OrderStatus": "REL",
                "MfgOrderPlannedStartDate": to_date(now),
                "MfgOrderActualReleaseDate": to_date(now),
                "StorageLocation": STORAGE_LOCATIONS[self.materials[material].tier],
                "OverDeliveryTolerance": to_decimal(tolerance_percent, 1),
                "GoodsReceiptQuantity": to_decimal(0),
            }
        )
        return str(self.last_order)

    def create_purchase_order(
        self, material: str, plant: str, supplier: str, quantity: float, tolerance_percent: float = DEFAULT_TOLERANCE
    ) -> tuple[str, str]:
        """Purchasing orders `quantity` of `material` from `supplier` for `plant`: one purchase order with one item;
        returns (PurchaseOrder, PurchaseOrderItem)."""
        product = self.sets["A_Product"].rows.get((material,))
        if product is None:
            raise HTTPException(400, f"material {material} does not exist")
        if (plant,) not in self.sets["A_Plant"].rows:
            raise HTTPException(400, f"plant {plant} does not exist")
        if (supplier,) not in self.sets["A_Supplier"].rows:
            raise HTTPException(400, f"supplier {supplier} does not exist")
        if not quantity > 0 or not tolerance_percent >= 0:
            raise HTTPException(400, "the quantity must be positive and the tolerance not negative")
        self.last_purchase_order += 1
        key = (str(self.last_purchase_order), "00010")
        self.sets["A_PurchaseOrderItem"].put(
            {
                "PurchaseOrder": key[0],
                "PurchaseOrderItem": key[1],
                "Material": material,
                "Plant": plant,
                "Supplier": supplier,
                "OrderQuantity": to_decimal(quantity),
                "PurchaseOrderQuantityUnit": product["BaseUnit"],
                "StorageLocation": STORAGE_LOCATIONS[self.materials[material].tier],
                "OverdelivTolrtdLmtRatioInPct": to_decimal(tolerance_percent, 1),
                "GoodsReceiptQuantity": to_decimal(0),
                "IsCompletelyDelivered": False,
            }
        )
        return key

    async def post_order(self, request: Request) -> Response:
        body = await json_object(request)
        quantity = _amount(body.get("TotalQuantity"), "TotalQuantity")
        tolerance = _amount(body.get("OverDeliveryTolerance", DEFAULT_TOLERANCE), "OverDeliveryTolerance", zero=True)
        order = self.release_order(
            _text(body, "Material"), _text(body, "ProductionPlant"), float(quantity), float(tolerance)
        )
        rendered = self.sets["A_ProductionOrder_2"].render((order,), self.base(request))
        return JSONResponse({"d": rendered}, status_code=201)

    async def post_purchase_order(self, request: Request) -> Response:
        body = await json_object(request)
        quantity = _amount(body.get("OrderQuantity"), "OrderQuantity")
        tolerance = _amount(
            body.get("OverdelivTolrtdLmtRatioInPct", DEFAULT_TOLERANCE), "OverdelivTolrtdLmtRatioInPct", zero=True
        )
        material = _text(body, "Material")
        unit = body.get("PurchaseOrderQuantityUnit")
        product = self.sets["A_Product"].rows.get((material,))
        if unit is not None and product is not None and unit != product["BaseUnit"]:
            raise HTTPException(400, f"material {material} is ordered in {product['BaseUnit']}, not {unit}")
        key = self.create_purchase_order(
            material, _text(body, "Plant"), _text(body, "Supplier"), float(quantity), float(tolerance)
        )
        rendered = self.sets["A_PurchaseOrderItem"].render(key, self.base(request))
        return JSONResponse({"d": rendered}, status_code=201)

    # -- goods movements

    async def post_document(self, request: Request) -> Response:
        body = await json_object(request)
        navigation = body.get("to_MaterialDocumentItem")
        items = navigation.get("results") if isinstance(navigation, dict) else None
        if not isinstance(items, list) or not items:
            raise HTTPException(400, "to_MaterialDocumentItem.results must list at least one item")
        code = str(body.get("GoodsMovementCode", "04"))
        moves = [self.parse_item(item, code) for item in items]
        if code == "02":
            year, document = self.receive_production(moves)
        elif code == "01":
            year, document = self.receive_purchase(moves)
        else:
            year, document = self.post(moves, code)
        base = self.base(request)
        entity = self.sets["A_MaterialDocumentHeader"].render((year, document), base)
        keys = [(year, document, f"{n:04d}") for n in range(1, len(moves) + 1)]
        entity["to_MaterialDocumentItem"] = {
            "results": [self.sets["A_MaterialDocumentItem"].render(k, base) for k in keys]
        }
        return JSONResponse({"d": entity}, status_code=201)

    def receive_production(self, moves: list[tuple[Row, Decimal]]) -> tuple[str, str]:
        """A goods receipt for a production order (code 02): its one 101 item receives the produced batch into
        quality inspection stock, each 261 item issues a component from unrestricted stock. ERP refuses (nothing
        posted) an unknown or unreleased order, another material or plant than the order's, more than the order
        and its over-delivery tolerance allow, a batch of another order, or components short of stock. The batch
        is created; the order counts what it received and is delivered (DLV) once that reaches its quantity."""
        receipts = [move for move in moves if move[0]["GoodsMovementType"] == "101"]
        if len(receipts) != 1:
            raise HTTPException(400, "a receipt for a production order has exactly one 101 item")
        receipt, quantity = receipts[0]
        order_id = receipt["ManufacturingOrder"]
        if any(item["ManufacturingOrder"] != order_id for item, _ in moves):
            raise HTTPException(400, f"every item must name order {order_id}")
        orders = self.sets["A_ProductionOrder_2"]
        order = orders.rows.get((order_id,))
        if order is None:
            raise SapError("CO/001", f"Order {order_id} does not exist")
        if order["OrderStatus"] != "REL":
            raise SapError("CO/002", f"Order {order_id} is not released (status {order['OrderStatus']})")
        if (receipt["Material"], receipt["Plant"]) != (order["Material"], order["ProductionPlant"]):
            raise SapError(
                "CO/003",
                f"Material/plant {receipt['Material']}/{receipt['Plant']} does not match order {order_id} "
                f"({order['Material']}/{order['ProductionPlant']})",
            )
        if receipt["EntryUnit"] != order["ProductionUnit"]:
            raise HTTPException(
                400, f"order {order_id} is kept in {order['ProductionUnit']}, not {receipt['EntryUnit']}"
            )
        received = self.delivered(
            order["GoodsReceiptQuantity"], quantity, order["TotalQuantity"], order["OverDeliveryTolerance"]
        )
        self.check_batch(receipt["Batch"], "ManufacturingOrder", order_id, f"order {order_id}")
        posted = self.post(moves, "02")
        self.create_batch(receipt)
        orders.put(
            {
                **order,
                "Batch": order["Batch"] or receipt["Batch"],
                "GoodsReceiptQuantity": to_decimal(received),
                "OrderStatus": "DLV" if received >= Decimal(order["TotalQuantity"]) else "REL",
            }
        )
        return posted

    def receive_purchase(self, moves: list[tuple[Row, Decimal]]) -> tuple[str, str]:
        """A goods receipt against a purchase order (code 01): one 101 item into quality inspection stock. ERP
        refuses an unknown purchase order item, another material or plant than ordered, more than the order and
        its tolerance allow, or a batch of another purchase order. The batch is created with the supplier's data;
        the item counts what it received and is completely delivered once that reaches the ordered quantity."""
        if len(moves) != 1:
            raise HTTPException(400, "a receipt for a purchase order has exactly one item")
        [(receipt, quantity)] = moves
        items = self.sets["A_PurchaseOrderItem"]
        key = (receipt["PurchaseOrder"], receipt["PurchaseOrderItem"])
        ordered = items.rows.get(key)
        if ordered is None:
            raise SapError("ME/001", f"Purchase order item {key[0]}/{key[1]} does not exist")
        if (receipt["Material"], receipt["Plant"]) != (ordered["Material"], ordered["Plant"]):
            raise SapError(
                "ME/003",
                f"Material/plant {receipt['Material']}/{receipt['Plant']} does not match purchase order item "
                f"{key[0]}/{key[1]} ({ordered['Material']}/{ordered['Plant']})",
            )
        if receipt["EntryUnit"] != ordered["PurchaseOrderQuantityUnit"]:
            raise HTTPException(
                400,
                f"{key[0]}/{key[1]} is ordered in {ordered['PurchaseOrderQuantityUnit']}, not {receipt['EntryUnit']}",
            )
        received = self.delivered(
            ordered["GoodsReceiptQuantity"], quantity, ordered["OrderQuantity"], ordered["OverdelivTolrtdLmtRatioInPct"]
        )
        self.check_batch(receipt["Batch"], "PurchaseOrder", key[0], f"purchase order {key[0]}")
        posted = self.post(moves, "01")
        self.create_batch(receipt, ordered["Supplier"])
        items.put(
            {
                **ordered,
                "GoodsReceiptQuantity": to_decimal(received),
                "IsCompletelyDelivered": received >= Decimal(ordered["OrderQuantity"]),
            }
        )
        return posted

    @staticmethod
    def delivered(already: str, quantity: Decimal, ordered: str, tolerance: str) -> Decimal:
        """What an order will have received with `quantity` more; M7/022 past its over-delivery tolerance."""
        total = Decimal(already) + quantity
        if total > Decimal(ordered) * (1 + Decimal(tolerance) / 100):
            raise SapError(
                "M7/022",
                f"Quantity {to_decimal(total)} exceeds the order quantity {ordered} by more than the tolerance "
                f"({tolerance} %)",
            )
        return total

    def check_batch(self, batch: str, field: str, owner: str, what: str) -> None:
        """M7/023 when `batch` already exists from another order than `owner` (`field` names which kind)."""
        existing = self.sets["Batch"].rows.get((batch,))
        if existing is not None and existing[field] != owner:
            raise SapError("M7/023", f"Batch {batch} already exists and does not belong to {what}")

    def create_batch(self, receipt: Row, supplier: str = "") -> None:
        """The batch a receipt brings into the books, unless an earlier receipt of the same order created it."""
        batches = self.sets["Batch"]
        if (receipt["Batch"],) in batches.rows:
            return
        at = datetime.now(UTC)
        material = self.materials[receipt["Material"]]
        origin = (
            self.sets["A_Supplier"].rows[(supplier,)] if supplier else self.sets["A_Plant"].rows[(receipt["Plant"],)]
        )
        batches.put(
            {
                "Batch": receipt["Batch"],
                "Material": material.id,
                "Plant": receipt["Plant"],
                "Supplier": supplier,
                "SupplierBatch": receipt.get("SupplierBatch", ""),
                "ManufactureDate": to_date(at),
                "ShelfLifeExpirationDate": to_date(at + timedelta(days=material.shelf_life_days)),
                "MatlBatchIsInRstrcdUseStock": False,
                "CountryOfOrigin": origin["Country"],
                "PurchaseOrder": receipt.get("PurchaseOrder", ""),
                "ManufacturingOrder": receipt.get("ManufacturingOrder", ""),
                "Customer": "",
            }
        )

    def post(self, moves: list[tuple[Row, Decimal]], code: str) -> tuple[str, str]:
        """Post one material document, every item or none (M7/021 when stock cannot cover them), each item also a
        GOODS_MOVEMENT in the change feed; returns the document's year and number."""
        self.check_stock(moves)
        posted = datetime.now(UTC)
        self.last_document += 1
        year, document = str(posted.year), str(self.last_document)
        header = {
            "MaterialDocumentYear": year,
            "MaterialDocument": document,
            "GoodsMovementCode": code,
            "PostingDate": to_date(posted),
        }
        self.sets["A_MaterialDocumentHeader"].put(header)
        for n, (item, quantity) in enumerate(moves, start=1):
            self.move(item, quantity)
            row = {
                "MaterialDocumentYear": year,
                "MaterialDocument": document,
                "MaterialDocumentItem": f"{n:04d}",
                **{f: item[f] for f in ITEM_FIELDS},
                "QuantityInEntryUnit": to_decimal(quantity),
                "PostingDate": header["PostingDate"],
                "PurchaseOrder": item.get("PurchaseOrder", ""),
                "ManufacturingOrder": item.get("ManufacturingOrder", ""),
                "MaterialDocumentItemText": item.get("MaterialDocumentItemText", ""),
            }
            self.sets["A_MaterialDocumentItem"].put(row)
            self.record_change(
                "GOODS_MOVEMENT", {**row, "StockType": MOVES[item["GoodsMovementType"]][1] or ""}, posted
            )
        return year, document

    @staticmethod
    def parse_item(item: Any, code: str) -> tuple[Row, Decimal]:
        """One document item of a document with goods movement `code`: the fields every item has, the order
        items of that code reference, and (receipts against a purchase order) an optional SupplierBatch."""
        fields = (*ITEM_FIELDS, *REFERENCES.get(code, ()))
        if not isinstance(item, dict) or any(not isinstance(item.get(f), str | int | float) for f in fields):
            raise HTTPException(400, f"every item needs {', '.join(fields)}")
        row = {f: str(item[f]) for f in fields}
        allowed = MOVEMENTS.get(code, POSTABLE)
        if row["GoodsMovementType"] not in allowed:
            raise HTTPException(
                400,
                f"goods movement type {row['GoodsMovementType']} is not supported with goods movement code {code} "
                f"(only {', '.join(allowed)})",
            )
        if code == "01":
            supplier_batch = item.get("SupplierBatch", "")
            if not isinstance(supplier_batch, str):
                raise HTTPException(400, "SupplierBatch must be a string")
            row["SupplierBatch"] = supplier_batch
        text = item.get("MaterialDocumentItemText", "")
        if not isinstance(text, str) or len(text) > 50:
            raise HTTPException(400, "MaterialDocumentItemText must be a string of at most 50 characters")
        row["MaterialDocumentItemText"] = text
        return row, _amount(item["QuantityInEntryUnit"], "QuantityInEntryUnit")

    def check_stock(self, moves: list[tuple[Row, Decimal]]) -> None:
        """All items must be coverable before any is posted (a document posts completely or not at all)."""
        needed: dict[tuple[str, ...], Decimal] = {}
        stock = self.sets["A_MatlStkInAcctMod"]
        for item, quantity in moves:
            source_type = MOVES[item["GoodsMovementType"]][0]
            if source_type is None:
                continue  # a receipt needs no stock
            source = self.stock_key(item, source_type)
            needed[source] = needed.get(source, Decimal(0)) + quantity
            row = stock.rows.get(source)
            if row is not None and row["MaterialBaseUnit"] != item["EntryUnit"]:
                raise HTTPException(
                    400, f"batch {item['Batch']} is kept in {row['MaterialBaseUnit']}, not {item['EntryUnit']}"
                )
        for source, quantity in needed.items():
            row = stock.rows.get(source)
            available = Decimal(row["MatlWrhsStkQtyInMatlBaseUnit"]) if row else Decimal(0)
            if available < quantity:
                missing = to_decimal(quantity - available)
                raise SapError("M7/021", f"Deficit of {missing} in {STOCK_NAMES[source[4]]} stock of batch {source[3]}")

    @staticmethod
    def stock_key(item: Row, stock_type: str) -> tuple[str, ...]:
        return (item["Material"], item["Plant"], item["StorageLocation"], item["Batch"], stock_type)

    def move(self, item: Row, quantity: Decimal) -> None:
        stock = self.sets["A_MatlStkInAcctMod"]
        source_type, target_type = MOVES[item["GoodsMovementType"]]
        if source_type is not None:
            source = self.stock_key(item, source_type)
            left = Decimal(stock.rows[source]["MatlWrhsStkQtyInMatlBaseUnit"]) - quantity
            if left > 0:
                stock.put({**stock.rows[source], "MatlWrhsStkQtyInMatlBaseUnit": to_decimal(left)})
            else:
                stock.delete(source)
        if target_type is not None:
            target = self.stock_key(item, target_type)
            row = stock.rows.get(target)
            held = Decimal(row["MatlWrhsStkQtyInMatlBaseUnit"]) if row else Decimal(0)
            stock.put(
                {
                    "Material": item["Material"],
                    "Plant": item["Plant"],
                    "StorageLocation": item["StorageLocation"],
                    "Batch": item["Batch"],
                    "InventoryStockType": target_type,
                    "MatlWrhsStkQtyInMatlBaseUnit": to_decimal(held + quantity),
                    "MaterialBaseUnit": item["EntryUnit"],
                }
            )

    def lot_state(self, lot_id: str) -> dict[str, Any] | None:
        batches, stock = self.sets["Batch"], self.sets["A_MatlStkInAcctMod"]
        if (lot_id,) not in batches.rows:
            return None
        rows = [stock.rows[key] for key in sorted(stock.indexes["Batch"].get(lot_id, ()))]
        return {"batch": batches.rows[(lot_id,)], "etag": batches.etag((lot_id,)), "stock": rows}


def create_app(
    dataset: Dataset, *, rate_limit_rps: float | None = None, credentials: Credentials | None = None
) -> Starlette:
    """The ERP simulator; `rate_limit_rps` makes it answer 429 with Retry-After above that rate,
    `credentials` makes it demand a token or API key."""
    erp = Erp(dataset)
    app = build_app(
        erp.routes(),
        erp.lot_state,
        error_body=odata_error,
        rate_limit_rps=rate_limit_rps,
        middleware=[Middleware(CsrfMiddleware)],
        require_credentials=credentials,
    )
    app.add_exception_handler(SapError, sap_refusal)
    app.state.erp = erp
    return app
