"""ERP contracts (SAP S/4HANA-style OData v2): batch master, materials, stock, orders, material documents."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, TypeVar

import httpx2
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from gateway.codes import ERP_MATERIAL_TYPE, ERP_STOCK_TYPE, translate
from gateway.contracts.base import BULK_ITEMS, Bulk, Contract, Keys, Upstream, bulk_outcomes, register
from gateway.model import (
    ErpPosting,
    ErpStock,
    GoodsMovement,
    Lot,
    Material,
    Plant,
    PostedDocument,
    ProductionOrder,
    PurchaseOrderItem,
    Supplier,
)
from gateway.sources.erp import ErpConnector, all_equal, any_of, quote
from gateway.sources.odata_batch import BatchAnswer, BatchPart

R = TypeVar("R")
_ODATA_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")


def _odata_date(value: Any) -> Any:
    """`/Date(1767225600000)/` -> date; empty -> None; anything else left for pydantic to reject."""
    if value in (None, ""):
        return None
    if isinstance(value, str) and (match := _ODATA_DATE.match(value)):
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC).date()
    return value


ODataDate = Annotated[date | None, BeforeValidator(_odata_date)]


def _blank_to_none(value: str) -> str | None:
    return value or None


class Results(Upstream, Generic[R]):
    results: list[R]
    count: str | None = Field(default=None, alias="__count")


class OData(Upstream, Generic[R]):
    """The OData v2 collection envelope `{"d": {"results": [...]}}`."""

    d: Results[R]


class ErpPlant(Upstream):
    Plant: str
    PlantName: str
    Country: str
    CityName: str


class ErpProduct(Upstream):
    Product: str
    ProductType: str
    ProductDescription: str
    BaseUnit: str
    ProductGroup: str
    IsRegulated: bool
    StandardPrice: float
    Currency: str


class ErpSupplier(Upstream):
    Supplier: str
    SupplierName: str
    Country: str


class ErpBatch(Upstream):
    Batch: str
    Material: str
    Plant: str
    Supplier: str
    SupplierBatch: str
    ManufactureDate: ODataDate
    ShelfLifeExpirationDate: ODataDate
    MatlBatchIsInRstrcdUseStock: bool
    CountryOfOrigin: str
    PurchaseOrder: str
    ManufacturingOrder: str
    Customer: str

    def canonical(self) -> Lot:
        return Lot(
            id=self.Batch,
            material_id=self.Material,
            plant_id=self.Plant,
            supplier_id=_blank_to_none(self.Supplier),
            supplier_batch=_blank_to_none(self.SupplierBatch),
            manufactured_on=self.ManufactureDate,
            expires_on=self.ShelfLifeExpirationDate,
            restricted=self.MatlBatchIsInRstrcdUseStock,
            country_of_origin=_blank_to_none(self.CountryOfOrigin),
            purchase_order=_blank_to_none(self.PurchaseOrder),
            production_order_id=_blank_to_none(self.ManufacturingOrder),
            customer=_blank_to_none(self.Customer),
        )


class ErpStockRow(Upstream):
    Material: str
    Plant: str
    StorageLocation: str
    Batch: str
    InventoryStockType: str
    MatlWrhsStkQtyInMatlBaseUnit: float
    MaterialBaseUnit: str


class ErpOrder(Upstream):
    ManufacturingOrder: str
    Material: str
    ProductionPlant: str
    Batch: str
    TotalQuantity: float
    ProductionUnit: str
    OrderStatus: str
    MfgOrderPlannedStartDate: ODataDate
    MfgOrderActualReleaseDate: ODataDate
    StorageLocation: str
    OverDeliveryTolerance: float
    GoodsReceiptQuantity: float


class ErpMaterialDocumentItem(Upstream):
    MaterialDocumentYear: str
    MaterialDocument: str
    MaterialDocumentItem: str
    GoodsMovementType: str
    Material: str
    Plant: str
    Batch: str
    QuantityInEntryUnit: float
    EntryUnit: str
    PostingDate: ODataDate
    PurchaseOrder: str = ""
    ManufacturingOrder: str = ""
    MaterialDocumentItemText: str = ""


class BatchQuery(BaseModel):
    """One page of batches matching the lot filter, ordered by batch number; `plants`: any of them (none: all);
    `after`: only batch numbers after this one (a sweep's cursor, which lots arriving meanwhile cannot shift)."""

    model_config = ConfigDict(frozen=True)

    plants: tuple[str, ...] = ()
    material: str | None = None
    supplier: str | None = None
    after: str | None = None
    top: int = Field(ge=1)
    skip: int = Field(ge=0)


class LotPage(BaseModel):
    lots: list[Lot]
    total: int


def _fields(row: type[Upstream]) -> list[str]:
    """`$select` of exactly the fields the contract reads, so the ERP sends nothing more."""
    return list(row.model_fields)


def _keys_of(entity_set: str, key_field: str, row: type[Upstream]):
    async def send(erp: ErpConnector, request: Keys):
        return await erp.read_by_keys(entity_set, key_field, request.keys, select=_fields(row))

    return send


async def _list_batches(erp: ErpConnector, request: BatchQuery):
    conditions = all_equal({"Material": request.material, "Supplier": request.supplier})
    terms = [any_of("Plant", request.plants)] if request.plants else []
    if request.after is not None:
        terms.append(f"Batch gt {quote(request.after)}")
    return await erp.query(
        "API_BATCH_SRV/Batch",
        filter=" and ".join([*terms, *([conditions] if conditions else [])]) or None,
        top=request.top,
        skip=request.skip,
        orderby="Batch",
        select=_fields(ErpBatch),
        count=True,
    )


def _batch_page(body: OData[ErpBatch]) -> list[LotPage]:
    total = int(body.d.count) if body.d.count is not None else len(body.d.results)
    return [LotPage(lots=[row.canonical() for row in body.d.results], total=total)]


def _plants(body: OData[ErpPlant]) -> list[Plant]:
    return [Plant(id=p.Plant, name=p.PlantName, country=p.Country, city=p.CityName) for p in body.d.results]


PLANT_READ = register(
    Contract(
        "erp", "plant.read", 1, "Plants by plant code",
        request=Keys, response=OData[ErpPlant],
        send=_keys_of("API_PLANT_SRV/A_Plant", "Plant", ErpPlant),
        adapt=_plants,
    )
)  # fmt: skip


class AllOf(BaseModel):
    """Every entity of a small set (the plant's plants)."""

    model_config = ConfigDict(frozen=True)


async def _list_plants(erp: ErpConnector, request: AllOf):
    return await erp.query("API_PLANT_SRV/A_Plant", orderby="Plant", select=_fields(ErpPlant))


PLANT_LIST = register(
    Contract(
        "erp", "plant.list", 1, "Every plant, by plant code",
        request=AllOf, response=OData[ErpPlant],
        send=_list_plants,
        adapt=_plants,
    )
)  # fmt: skip

MATERIAL_READ = register(
    Contract(
        "erp", "material.read", 1, "Material master (A_Product) by material number",
        request=Keys, response=OData[ErpProduct],
        send=_keys_of("API_PRODUCT_SRV/A_Product", "Product", ErpProduct),
        adapt=lambda body: [
            Material(
                id=p.Product,
                description=p.ProductDescription,
                material_class=translate(ERP_MATERIAL_TYPE, p.ProductType, field="ProductType"),
                base_unit=p.BaseUnit,
                group=p.ProductGroup,
                regulated=p.IsRegulated,
                standard_price=p.StandardPrice,
                currency=p.Currency,
            )
            for p in body.d.results
        ],
    )
)  # fmt: skip

SUPPLIER_READ = register(
    Contract(
        "erp", "supplier.read", 1, "Suppliers by supplier number",
        request=Keys, response=OData[ErpSupplier],
        send=_keys_of("API_BUSINESS_PARTNER/A_Supplier", "Supplier", ErpSupplier),
        adapt=lambda body: [
            Supplier(id=s.Supplier, name=s.SupplierName, country=s.Country) for s in body.d.results
        ],
    )
)  # fmt: skip

BATCH_READ = register(
    Contract(
        "erp", "batch.read", 1, "Batch master by batch number",
        request=Keys, response=OData[ErpBatch],
        send=_keys_of("API_BATCH_SRV/Batch", "Batch", ErpBatch),
        adapt=lambda body: [row.canonical() for row in body.d.results],
    )
)  # fmt: skip

BATCH_LIST = register(
    Contract(
        "erp", "batch.list", 1, "A page of batches filtered by plant, material and supplier",
        request=BatchQuery, response=OData[ErpBatch],
        send=_list_batches,
        adapt=_batch_page,
    )
)  # fmt: skip

STOCK_READ = register(
    Contract(
        "erp", "stock.read", 1, "Booked stock per storage location and stock type, by batch",
        request=Keys, response=OData[ErpStockRow],
        send=_keys_of("API_MATERIAL_STOCK_SRV/A_MatlStkInAcctMod", "Batch", ErpStockRow),
        adapt=lambda body: [
            ErpStock(
                lot_id=row.Batch,
                material_id=row.Material,
                plant_id=row.Plant,
                storage_location=row.StorageLocation,
                status=translate(ERP_STOCK_TYPE, row.InventoryStockType, field="InventoryStockType"),
                quantity=row.MatlWrhsStkQtyInMatlBaseUnit,
                unit=row.MaterialBaseUnit,
            )
            for row in body.d.results
        ],
    )
)  # fmt: skip

ORDER_READ = register(
    Contract(
        "erp", "production_order.read", 1, "Production order headers by order number",
        request=Keys, response=OData[ErpOrder],
        send=_keys_of("API_PRODUCTION_ORDER_2_SRV/A_ProductionOrder_2", "ManufacturingOrder", ErpOrder),
        adapt=lambda body: [
            ProductionOrder(
                id=o.ManufacturingOrder,
                material_id=o.Material,
                plant_id=o.ProductionPlant,
                lot_id=o.Batch or None,
                planned_quantity=o.TotalQuantity,
                unit=o.ProductionUnit,
                status=o.OrderStatus,
                planned_start=o.MfgOrderPlannedStartDate,
                released_on=o.MfgOrderActualReleaseDate,
                storage_location=o.StorageLocation,
                over_delivery_tolerance=o.OverDeliveryTolerance,
                received_quantity=o.GoodsReceiptQuantity,
            )
            for o in body.d.results
        ],
    )
)  # fmt: skip

MOVEMENT_READ = register(
    Contract(
        "erp", "material_document.read", 1, "Goods movements (material document items) by batch",
        request=Keys, response=OData[ErpMaterialDocumentItem],
        send=_keys_of("API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentItem", "Batch", ErpMaterialDocumentItem),
        adapt=lambda body: [
            GoodsMovement(
                document=m.MaterialDocument,
                year=m.MaterialDocumentYear,
                item=m.MaterialDocumentItem,
                movement_type=m.GoodsMovementType,
                lot_id=m.Batch,
                material_id=m.Material,
                plant_id=m.Plant,
                quantity=m.QuantityInEntryUnit,
                unit=m.EntryUnit,
                posted_on=m.PostingDate,
                purchase_order=m.PurchaseOrder or None,
                production_order_id=m.ManufacturingOrder or None,
                text=m.MaterialDocumentItemText,
            )
            for m in body.d.results
        ],
    )
)  # fmt: skip


class PostingItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    movement_type: str = Field(pattern=r"^(321|343|344|350|551|553|555)$")
    material: str
    plant: str
    storage_location: str
    lot_id: str
    quantity: float = Field(gt=0)
    unit: str


class GoodsMovementPosting(BaseModel):
    """One material document: every item posts, or none does."""

    model_config = ConfigDict(frozen=True)

    items: tuple[PostingItem, ...] = Field(min_length=1)
    reference: str = Field(default="", max_length=50, description="Item text: how a repeated posting is found.")


class ErpDocumentItems(Upstream):
    results: list[dict[str, Any]]


class ErpDocument(Upstream):
    MaterialDocument: str
    MaterialDocumentYear: str
    to_MaterialDocumentItem: ErpDocumentItems


class ErpPosted(Upstream):
    d: ErpDocument


class BatchRestriction(BaseModel):
    model_config = ConfigDict(frozen=True)

    lot_id: str
    restricted: bool
    etag: str | None = Field(default=None, description="The ETag just read (`batch.etag.read`); else read first.")


class BatchRestrictions(BaseModel):
    """Many batches' flags in one OData `$batch`, each with the ETag just read."""

    model_config = ConfigDict(frozen=True)

    restrictions: tuple[BatchRestriction, ...] = Field(min_length=1, max_length=BULK_ITEMS)


class ErpEntityMetadata(Upstream):
    etag: str


class ErpBatchEtag(Upstream):
    Batch: str
    metadata: ErpEntityMetadata = Field(alias="__metadata")


async def _batch_etags(erp: ErpConnector, request: Keys):
    return await erp.read_by_keys("API_BATCH_SRV/Batch", "Batch", request.keys, select=["Batch"])


class NoContent(Upstream):
    """A write the ERP acknowledges with 204 and no body."""


def _item(movement: str, lot_id: str, material: str, plant: str, location: str, quantity: float, unit: str,
          **references: str) -> dict[str, str]:  # fmt: skip
    return {"GoodsMovementType": movement, "Material": material, "Plant": plant, "StorageLocation": location,
            "Batch": lot_id, "QuantityInEntryUnit": f"{quantity:.3f}", "EntryUnit": unit, **references}  # fmt: skip


async def _post_document(erp: ErpConnector, request: GoodsMovementPosting):
    text = {"MaterialDocumentItemText": request.reference} if request.reference else {}
    items = [_item(i.movement_type, i.lot_id, i.material, i.plant, i.storage_location, i.quantity, i.unit, **text)
             for i in request.items]  # fmt: skip
    body = {"GoodsMovementCode": "04", "to_MaterialDocumentItem": {"results": items}}
    return await erp.write("POST", "API_MATERIAL_DOCUMENT_SRV", "A_MaterialDocumentHeader", body)


async def _restrict_batch(erp: ErpConnector, request: BatchRestriction):
    path = f"Batch({quote(request.lot_id)})"
    return await erp.patch_with_etag("API_BATCH_SRV", path, {"MatlBatchIsInRstrcdUseStock": request.restricted},
                                     etag=request.etag)  # fmt: skip


async def _restrict_batches(erp: ErpConnector, request: BatchRestrictions):
    """The `$batch` answers in the bulk shape every bulk write has (`Bulk`): each PATCH's status and SAP error."""
    bodies = {flag: json.dumps({"MatlBatchIsInRstrcdUseStock": flag}).encode() for flag in (False, True)}
    parts = [BatchPart("PATCH", f"Batch({quote(r.lot_id)})", {"If-Match": r.etag} if r.etag else {},
                       bodies[r.restricted]) for r in request.restrictions]  # fmt: skip
    answers = await erp.batch("API_BATCH_SRV", parts)
    return httpx2.Response(200, json={"items": [_bulk_item(answer) for answer in answers]})


def _bulk_item(answer: BatchAnswer) -> dict[str, Any]:
    if answer.status < 300:
        return {"status": answer.status, "result": {}}
    try:
        error = json.loads(answer.body)["error"]
        code, message = str(error["code"]), str(error["message"]["value"])
    except (ValueError, KeyError, TypeError):
        code, message = str(answer.status), answer.body[:200].decode("utf-8", "replace")
    return {"status": answer.status, "error": {"code": code, "message": f"{code} {message}"}}


GOODS_MOVEMENT_POST = register(
    Contract(
        "erp", "goods_movement.post", 1, "Post a material document moving stock between stock types (CSRF)",
        request=GoodsMovementPosting, response=ErpPosted,
        send=_post_document,
        adapt=lambda body: _posted(body),
    )
)  # fmt: skip

BATCH_RESTRICT_MANY = register(
    Contract(
        "erp", "batch.restrict_many", 1,
        "Flag many batches restricted or unrestricted in one OData $batch, one change set each (CSRF, If-Match)",
        request=BatchRestrictions, response=Bulk[NoContent],
        send=_restrict_batches,
        adapt=lambda body: bulk_outcomes("erp", body, lambda _: None),
    )
)  # fmt: skip

BATCH_ETAG_READ = register(
    Contract(
        "erp", "batch.etag.read", 1, "The ETag of each batch (the If-Match of its restriction), by batch number",
        request=Keys, response=OData[ErpBatchEtag],
        send=_batch_etags,
        adapt=lambda body: [(row.Batch, row.metadata.etag) for row in body.d.results],
    )
)  # fmt: skip

BATCH_RESTRICT = register(
    Contract(
        "erp", "batch.restrict", 1, "Flag a batch restricted or unrestricted (CSRF, If-Match)",
        request=BatchRestriction, response=NoContent,
        send=_restrict_batch,
        adapt=lambda body: [],
    )
)  # fmt: skip


def _odata_moment(value: Any) -> Any:
    """`/Date(1767225600000)/` -> aware datetime; anything else left for pydantic."""
    if isinstance(value, str) and (match := _ODATA_DATE.match(value)):
        return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    return value


class ErpChange(Upstream):
    ChangeSequence: int
    ChangeType: str
    Material: str
    Plant: str
    Batch: str
    MaterialDocument: str = ""
    GoodsMovementType: str = ""
    QuantityInEntryUnit: float | None = None
    EntryUnit: str = ""
    StockType: str = ""
    BatchRestricted: bool | None = None
    PostedAt: Annotated[datetime, BeforeValidator(_odata_moment)]

    def canonical(self) -> ErpPosting:
        return ErpPosting(
            sequence=self.ChangeSequence, kind=self.ChangeType, lot_id=self.Batch, material_id=self.Material,
            plant_id=self.Plant, movement_type=self.GoodsMovementType or None, quantity=self.QuantityInEntryUnit,
            unit=self.EntryUnit or None, batch_restricted=self.BatchRestricted,
            stock_status=translate(ERP_STOCK_TYPE, self.StockType, field="StockType") if self.StockType else None,
            document=self.MaterialDocument or None, posted_at=self.PostedAt,
        )  # fmt: skip


class ChangeQuery(BaseModel):
    """The next page of the change feed after a sequence number."""

    model_config = ConfigDict(frozen=True)

    after: int = Field(ge=0)
    limit: int = Field(default=500, ge=1, le=5000)


async def _changes(erp: ErpConnector, request: ChangeQuery):
    return await erp.query(
        "API_CHANGE_FEED_SRV/Changes", filter=f"ChangeSequence gt '{request.after}'", orderby="ChangeSequence",
        top=request.limit,
    )  # fmt: skip


CHANGE_READ = register(
    Contract(
        "erp", "change.read", 1, "Postings and batch changes after a sequence number (the ERP's change feed)",
        request=ChangeQuery, response=OData[ErpChange], send=_changes,
        adapt=lambda body: [c.canonical() for c in body.d.results],
    )
)  # fmt: skip


class ComponentIssue(BaseModel):
    """A consumed batch issued to the production order (261, out of unrestricted stock)."""

    model_config = ConfigDict(frozen=True)

    lot_id: str
    material: str
    plant: str
    storage_location: str
    quantity: float = Field(gt=0)
    unit: str


class ProductionReceipt(BaseModel):
    """The goods receipt of a production order (101 into quality-inspection stock) with its component issues, in
    one material document: all of it posts, or none."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    lot_id: str
    material: str
    plant: str
    storage_location: str
    quantity: float = Field(gt=0)
    unit: str
    issues: tuple[ComponentIssue, ...] = ()


class PurchaseReceipt(BaseModel):
    """The goods receipt of supplier material against a purchase order item (101 into quality-inspection stock)."""

    model_config = ConfigDict(frozen=True)

    purchase_order: str
    purchase_order_item: str
    lot_id: str
    supplier_batch: str = ""
    material: str
    plant: str
    storage_location: str
    quantity: float = Field(gt=0)
    unit: str


async def _post_production_receipt(erp: ErpConnector, request: ProductionReceipt):
    order = {"ManufacturingOrder": request.order_id}
    items = [
        _item("101", request.lot_id, request.material, request.plant, request.storage_location, request.quantity,
              request.unit, **order),
        *(_item("261", i.lot_id, i.material, i.plant, i.storage_location, i.quantity, i.unit, **order)
          for i in request.issues),
    ]  # fmt: skip
    body = {"GoodsMovementCode": "02", "to_MaterialDocumentItem": {"results": items}}
    return await erp.write("POST", "API_MATERIAL_DOCUMENT_SRV", "A_MaterialDocumentHeader", body)


async def _post_purchase_receipt(erp: ErpConnector, request: PurchaseReceipt):
    item = _item("101", request.lot_id, request.material, request.plant, request.storage_location, request.quantity,
                 request.unit, PurchaseOrder=request.purchase_order, PurchaseOrderItem=request.purchase_order_item,
                 SupplierBatch=request.supplier_batch)  # fmt: skip
    body = {"GoodsMovementCode": "01", "to_MaterialDocumentItem": {"results": [item]}}
    return await erp.write("POST", "API_MATERIAL_DOCUMENT_SRV", "A_MaterialDocumentHeader", body)


def _posted(body: ErpPosted) -> list[PostedDocument]:
    return [PostedDocument(document=body.d.MaterialDocument, year=body.d.MaterialDocumentYear,
                           items=len(body.d.to_MaterialDocumentItem.results))]  # fmt: skip


PRODUCTION_RECEIPT_POST = register(
    Contract(
        "erp", "production_receipt.post", 1,
        "Post a production order's goods receipt (101 into quality inspection) with its component issues (261)",
        request=ProductionReceipt, response=ErpPosted,
        send=_post_production_receipt,
        adapt=_posted,
    )
)  # fmt: skip

PURCHASE_RECEIPT_POST = register(
    Contract(
        "erp", "purchase_receipt.post", 1,
        "Post a goods receipt against a purchase order item (101 into quality inspection)",
        request=PurchaseReceipt, response=ErpPosted,
        send=_post_purchase_receipt,
        adapt=_posted,
    )
)  # fmt: skip


class ErpPurchaseOrderItem(Upstream):
    PurchaseOrder: str
    PurchaseOrderItem: str
    Material: str
    Plant: str
    Supplier: str
    StorageLocation: str
    OrderQuantity: float
    PurchaseOrderQuantityUnit: str
    OverdelivTolrtdLmtRatioInPct: float
    GoodsReceiptQuantity: float


PURCHASE_ORDER_READ = register(
    Contract(
        "erp", "purchase_order.read", 1, "Purchase order items by purchase order number",
        request=Keys, response=OData[ErpPurchaseOrderItem],
        send=_keys_of("API_PURCHASEORDER_PROCESS_SRV/A_PurchaseOrderItem", "PurchaseOrder", ErpPurchaseOrderItem),
        adapt=lambda body: [
            PurchaseOrderItem(
                purchase_order=i.PurchaseOrder,
                item=i.PurchaseOrderItem,
                material_id=i.Material,
                plant_id=i.Plant,
                supplier_id=i.Supplier,
                storage_location=i.StorageLocation,
                quantity=i.OrderQuantity,
                unit=i.PurchaseOrderQuantityUnit,
                over_delivery_tolerance=i.OverdelivTolrtdLmtRatioInPct,
                received_quantity=i.GoodsReceiptQuantity,
            )
            for i in body.d.results
        ],
    )
)  # fmt: skip
