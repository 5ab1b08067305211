"""The ERP simulator, shaped like SAP S/4HANA OData v2 APIs.

It keeps its own copy of master data, batches, stock and material documents in OData wire form, and
exercises what makes SAP writes awkward for a gateway: CSRF tokens, ETag/If-Match on batches, stock moves
through material documents, and a rate limit answered with 429. ERP pushes nothing: a client that wants its
changes reads the change feed (`API_CHANGE_FEED_SRV/Changes`), one row per posted document item or batch change,
from the last sequence number it has seen.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simulators.admin import build_app
from simulators.catalog import STORAGE_LOCATIONS
from simulators.credentials import Credentials
from simulators.dataset import BLOCKING, Dataset
from simulators.odata import EntitySet, Row, odata_error, to_date, to_decimal
from simulators.records import Material
from simulators.web import json_object

BASE = "/sap/opu/odata/sap"
WRITE_METHODS = {"POST", "PATCH", "PUT", "MERGE", "DELETE"}
# Movement type -> (from stock type, to stock type); None means the stock enters the books (a goods receipt) or
# leaves them (an issue to a production order, scrap).
MOVES: dict[str, tuple[str | None, str | None]] = {
    "101": (None, "02"),
    "261": ("01", None),
    "321": ("02", "01"),
    "343": ("07", "01"),
    "344": ("01", "07"),
    "350": ("02", "07"),
    "551": ("01", None),
    "553": ("02", None),
    "555": ("07", None),
}
# What clients may post; receipts from and issues to production orders come from the plant's integration.
POSTABLE = ("321", "343", "344", "350", "551", "553", "555")
ITEM_FIELDS = ("GoodsMovementType", "Material", "Plant", "StorageLocation", "Batch", "QuantityInEntryUnit", "EntryUnit")

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
                },
                indexed=("Batch", "Material"),
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


class Erp:
    """The ERP's state and request handlers."""

    def __init__(self, dataset: Dataset) -> None:
        self.sets = _entity_sets()
        _load(self.sets, dataset)
        documents = self.sets["A_MaterialDocumentItem"].rows
        self.last_document = max((int(key[1]) for key in documents), default=4900000000)
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
            if len(es.key) == 1:
                routes.append(Route(f"{BASE}/{es.service}/{es.name}('{{key}}')", self.entity(es), methods=["GET"]))
        routes.append(Route(f"{BASE}/API_BATCH_SRV/Batch('{{key}}')", self.patch_batch, methods=["PATCH"]))
        routes.append(
            Route(f"{BASE}/API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentHeader", self.post_document, methods=["POST"])
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
        key = (request.path_params["key"].replace("''", "'"),)
        if key not in es.rows:
            raise HTTPException(404, f"{es.name}('{key[0]}') does not exist")
        return key

    async def patch_batch(self, request: Request) -> Response:
        batches = self.sets["Batch"]
        key = self.existing(batches, request)
        if_match = request.headers.get("if-match")
        if if_match is None:
            raise HTTPException(428, "If-Match header required")
        if if_match != batches.etag(key):
            raise HTTPException(412, "ETag mismatch: the batch was changed by someone else")
        body = await json_object(request)
        if set(body) != {"MatlBatchIsInRstrcdUseStock"} or not isinstance(body["MatlBatchIsInRstrcdUseStock"], bool):
            raise HTTPException(400, "only MatlBatchIsInRstrcdUseStock (boolean) can be changed")
        row = {**batches.rows[key], **body}
        batches.put(row)
        self.record_change("BATCH_CHANGE", row, datetime.now(UTC))
        return Response(status_code=204, headers={"ETag": batches.etag(key)})

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

    async def post_document(self, request: Request) -> Response:
        body = await json_object(request)
        navigation = body.get("to_MaterialDocumentItem")
        items = navigation.get("results") if isinstance(navigation, dict) else None
        if not isinstance(items, list) or not items:
            raise HTTPException(400, "to_MaterialDocumentItem.results must list at least one item")
        moves = [self.parse_item(item) for item in items]
        year, document = self.post(moves, str(body.get("GoodsMovementCode", "04")))
        base = self.base(request)
        entity = self.sets["A_MaterialDocumentHeader"].render((year, document), base)
        keys = [(year, document, f"{n:04d}") for n in range(1, len(moves) + 1)]
        entity["to_MaterialDocumentItem"] = {
            "results": [self.sets["A_MaterialDocumentItem"].render(k, base) for k in keys]
        }
        return JSONResponse({"d": entity}, status_code=201)

    def post(self, moves: list[tuple[Row, Decimal]], code: str, order: str = "") -> tuple[str, str]:
        """Post one material document, every item or none (400 when stock cannot cover them), each item also a
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
                "PurchaseOrder": "",
                "ManufacturingOrder": order,
            }
            self.sets["A_MaterialDocumentItem"].put(row)
            self.record_change(
                "GOODS_MOVEMENT", {**row, "StockType": MOVES[item["GoodsMovementType"]][1] or ""}, posted
            )
        return year, document

    def record_production(
        self,
        order: str,
        batch: str,
        material: Material,
        plant: str,
        quantity: float,
        at: datetime,
        issues: Iterable[tuple[str, float]],
    ) -> str:
        """A production order confirmed complete (what the plant's integration posts): one material document that
        receives the new batch into quality inspection stock (101) and issues each consumed batch from unrestricted
        stock (261), then the batch and the technically completed order. Nothing is recorded if unrestricted stock
        cannot cover an issue (400). Returns the material document number."""
        storage = STORAGE_LOCATIONS[material.tier]
        moves = [self.item("101", material.id, plant, storage, batch, quantity, material.unit)]
        stock = self.sets["A_MatlStkInAcctMod"]
        for consumed, used in issues:
            unrestricted = sorted(key for key in stock.indexes["Batch"].get(consumed, ()) if key[4] == "01")
            if not unrestricted:
                raise HTTPException(400, f"batch {consumed} has no unrestricted stock to issue")
            row = stock.rows[unrestricted[0]]
            material_id, plant_id, location, unit = (
                row[f] for f in ("Material", "Plant", "StorageLocation", "MaterialBaseUnit")
            )
            moves.append(self.item("261", material_id, plant_id, location, consumed, used, unit))
        _, document = self.post(moves, "02", order)
        country = self.sets["A_Plant"].rows[(plant,)]["Country"]
        self.sets["Batch"].put(
            {
                "Batch": batch,
                "Material": material.id,
                "Plant": plant,
                "Supplier": "",
                "SupplierBatch": "",
                "ManufactureDate": to_date(at),
                "ShelfLifeExpirationDate": to_date(at + timedelta(days=material.shelf_life_days)),
                "MatlBatchIsInRstrcdUseStock": False,
                "CountryOfOrigin": country,
                "PurchaseOrder": "",
                "ManufacturingOrder": order,
                "Customer": "",
            }
        )
        self.sets["A_ProductionOrder_2"].put(
            {
                "ManufacturingOrder": order,
                "Material": material.id,
                "ProductionPlant": plant,
                "Batch": batch,
                "TotalQuantity": to_decimal(quantity),
                "ProductionUnit": material.unit,
                "OrderStatus": "TECO",
                "MfgOrderPlannedStartDate": to_date(at),
                "MfgOrderActualReleaseDate": to_date(at),
            }
        )
        return document

    @staticmethod
    def item(
        movement: str, material: str, plant: str, storage: str, batch: str, quantity: float, unit: str
    ) -> tuple[Row, Decimal]:
        """One document item, as `parse_item` reads it from a request."""
        amount = to_decimal(quantity)
        row = {
            "GoodsMovementType": movement,
            "Material": material,
            "Plant": plant,
            "StorageLocation": storage,
            "Batch": batch,
            "QuantityInEntryUnit": amount,
            "EntryUnit": unit,
        }
        return row, Decimal(amount)

    @staticmethod
    def parse_item(item: Any) -> tuple[Row, Decimal]:
        if not isinstance(item, dict) or any(not isinstance(item.get(f), str | int | float) for f in ITEM_FIELDS):
            raise HTTPException(400, f"every item needs {', '.join(ITEM_FIELDS)}")
        row = {f: str(item[f]) for f in ITEM_FIELDS}
        if row["GoodsMovementType"] not in POSTABLE:
            raise HTTPException(
                400,
                f"goods movement type {row['GoodsMovementType']} is not supported here (only {', '.join(POSTABLE)})",
            )
        try:
            quantity = Decimal(row["QuantityInEntryUnit"])
        except InvalidOperation as exc:
            raise HTTPException(400, f"{row['QuantityInEntryUnit']!r} is not a quantity") from exc
        if not quantity.is_finite() or quantity <= 0:
            raise HTTPException(400, "QuantityInEntryUnit must be positive")
        return row, quantity

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
                raise HTTPException(400, f"deficit of {missing} in stock type {source[4]} of batch {source[3]}")

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
    app.state.erp = erp
    return app
