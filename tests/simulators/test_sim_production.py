"""Production and deliveries between independent systems: a completion in MES reaches no other system, and ERP's
orders and goods receipts (with their refusals), QMS's inspection lots, holds and nonconformances, and WMS's
receipts and reductions are each posted through that system's own API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from simulators import Dataset, create_apps
from simulators.catalog import STORAGE_LOCATIONS
from simulators.dataset import round_quantity

ROOT = "/sap/opu/odata/sap"
CHANGES = f"{ROOT}/API_CHANGE_FEED_SRV/Changes"
STOCK = f"{ROOT}/API_MATERIAL_STOCK_SRV/A_MatlStkInAcctMod"
DOCUMENTS = f"{ROOT}/API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentHeader"
ITEMS = f"{ROOT}/API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentItem"
ORDERS = f"{ROOT}/API_PRODUCTION_ORDER_2_SRV/A_ProductionOrder_2"
PURCHASE_ORDERS = f"{ROOT}/API_PURCHASEORDER_PROCESS_SRV/A_PurchaseOrderItem"
BATCHES = f"{ROOT}/API_BATCH_SRV/Batch"


@dataclass
class Site:
    dataset: Dataset
    apps: dict[str, Starlette]
    clients: dict[str, httpx2.AsyncClient]

    async def ok(self, system: str, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.clients[system].request(method, path, **kwargs)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    async def odata(self, path: str, **params: str) -> list[dict[str, Any]]:
        return (await self.ok("erp", "GET", path, params=params))["d"]["results"]

    async def changes(self, after: int = 0, **params: str) -> list[dict[str, Any]]:
        return await self.odata(CHANGES, **{"$filter": f"ChangeSequence gt '{after}'", **params})

    async def csrf(self) -> dict[str, str]:
        response = await self.clients["erp"].get(f"{ROOT}/API_BATCH_SRV/", headers={"x-csrf-token": "fetch"})
        return {"x-csrf-token": response.headers["x-csrf-token"]}

    async def erp_post(self, path: str, body: dict[str, Any], expect: int = 201) -> Any:
        return await self.ok("erp", "POST", path, expect, json=body, headers=await self.csrf())

    async def refused(self, path: str, body: dict[str, Any], code: str) -> str:
        """Post to ERP, expect a 400 with SAP message id `code`; answers the message."""
        error = (await self.erp_post(path, body, 400))["error"]
        assert error["code"] == code, error
        return error["message"]["value"]

    async def release(self, material: str, plant: str, quantity: float, **extra: Any) -> dict[str, Any]:
        body = {"Material": material, "ProductionPlant": plant, "TotalQuantity": str(quantity), **extra}
        return (await self.erp_post(ORDERS, body))["d"]

    async def stock(self, lot: str, stock_type: str) -> Decimal | None:
        rows = await self.odata(STOCK, **{"$filter": f"Batch eq '{lot}' and InventoryStockType eq '{stock_type}'"})
        return Decimal(rows[0]["MatlWrhsStkQtyInMatlBaseUnit"]) if rows else None


@pytest.fixture
async def site(small: Dataset, connect: Callable[[Starlette], httpx2.AsyncClient]) -> AsyncIterator[Site]:
    apps = create_apps(small)
    clients = {name: connect(app) for name, app in apps.items()}
    yield Site(small, apps, clients)
    for client in clients.values():
        await client.aclose()


def unrestricted(small: Dataset, material: str) -> list[tuple[str, float]]:
    """(lot, quantity) of the released lots of `material` with unrestricted stock, as the dataset left them."""
    return [
        (row.lot, row.quantity)
        for row in small.stock
        if row.material == material
        and row.stock_type == "01"
        and small.status_in("qms", row.lot) == "RELEASED"
        and small.status_in("erp", row.lot) == "RELEASED"
    ]


def producible(small: Dataset, tier: int = 3) -> tuple[str, list[tuple[str, float]]]:
    """A material of `tier` and one released lot with stock per component, taking a tenth of each."""
    for material in (m for m in small.materials.values() if m.tier == tier):
        lots = [unrestricted(small, component) for component in material.bom]
        if all(lots):
            units = [small.materials[component].unit for component in material.bom]
            return material.id, [
                (found[0][0], round_quantity(found[0][1] / 10, unit)) for found, unit in zip(lots, units, strict=True)
            ]
    raise AssertionError("no producible material")


def confirmation(small: Dataset, order: str, tier: int = 3, quantity: float = 480) -> dict[str, Any]:
    material, consumed = producible(small, tier)
    plant = small.materials[material].plant
    return {
        "order_id": order,
        "material": material,
        "plant": plant,
        "line": f"{plant}-L02",
        "quantity": quantity,
        "consumed": [{"lot_id": lot, "quantity": used} for lot, used in consumed],
    }


def production_receipt(small: Dataset, order: str, completed: dict[str, Any]) -> dict[str, Any]:
    """The code 02 document a client posts for MES's `completed` production of `order`: 101 and its 261s."""
    material = small.materials[completed["material"]]
    receipt = {
        "GoodsMovementType": "101",
        "ManufacturingOrder": order,
        "Material": material.id,
        "Plant": completed["plant"],
        "StorageLocation": STORAGE_LOCATIONS[material.tier],
        "Batch": completed["lot_id"],
        "QuantityInEntryUnit": str(completed["quantity"]),
        "EntryUnit": material.unit,
    }
    issues = [
        {
            "GoodsMovementType": "261",
            "ManufacturingOrder": order,
            "Material": small.lots[used["lot_id"]].material,
            "Plant": small.lots[used["lot_id"]].plant,
            "StorageLocation": small.lots[used["lot_id"]].storage_location,
            "Batch": used["lot_id"],
            "QuantityInEntryUnit": str(used["quantity"]),
            "EntryUnit": used["unit"],
        }
        for used in completed["consumed"]
    ]
    return {"GoodsMovementCode": "02", "to_MaterialDocumentItem": {"results": [receipt, *issues]}}


def items(document: dict[str, Any]) -> list[dict[str, Any]]:
    return document["to_MaterialDocumentItem"]["results"]


async def produce(site: Site, quantity: float = 480, ordered: float = 480) -> tuple[str, dict[str, Any]]:
    """ERP releases an order and MES completes it: (order number, MES's answer)."""
    small = site.dataset
    body = confirmation(small, "", quantity=quantity)
    order = await site.release(body["material"], body["plant"], ordered)
    done = await site.ok(
        "mes", "POST", "/api/confirmations", 201, json={**body, "order_id": order["ManufacturingOrder"]}
    )
    return order["ManufacturingOrder"], done


# ------------------------------------------------------------------------------------------- independence


async def test_a_completion_in_mes_leaves_erp_qms_and_wms_untouched(site: Site) -> None:
    small = site.dataset
    body = confirmation(small, "")
    order = await site.release(body["material"], body["plant"], 480)
    assert order["ManufacturingOrder"] == str(max(int(o) for o in small.orders) + 1)
    material = small.materials[body["material"]]
    assert {k: order[k] for k in ("Material", "ProductionPlant", "Batch", "TotalQuantity", "ProductionUnit")} == {
        "Material": material.id,
        "ProductionPlant": body["plant"],
        "Batch": "",
        "TotalQuantity": "480.000",
        "ProductionUnit": material.unit,
    }
    assert (order["OrderStatus"], order["OverDeliveryTolerance"], order["GoodsReceiptQuantity"]) == (
        "REL",
        "10.0",
        "0.000",
    )
    changes_before = await site.changes()

    done = await site.ok(
        "mes", "POST", "/api/confirmations", 201, json={**body, "order_id": order["ManufacturingOrder"]}
    )
    lot = done["lot_id"]
    assert lot == f"B26{len(small.lots) + 1:05d}" and lot not in small.lots
    assert done["order_id"] == order["ManufacturingOrder"]
    assert [c["material"] for c in done["consumed"]] == [small.lots[c["lot_id"]].material for c in body["consumed"]]

    await site.ok("erp", "GET", f"{BATCHES}('{lot}')", 404)
    assert await site.odata(STOCK, **{"$filter": f"Batch eq '{lot}'"}) == []
    for used in body["consumed"]:
        before = next(r.quantity for r in small.stock if r.lot == used["lot_id"] and r.stock_type == "01")
        assert await site.stock(used["lot_id"], "01") == Decimal(str(before)), "nothing was issued in ERP"
    unchanged = (await site.ok("erp", "GET", f"{ORDERS}('{order['ManufacturingOrder']}')"))["d"]
    assert (unchanged["OrderStatus"], unchanged["GoodsReceiptQuantity"], unchanged["Batch"]) == ("REL", "0.000", "")
    assert await site.changes() == changes_before == []
    assert (await site.ok("qms", "GET", "/api/v1/lots", params={"ids": lot}))["items"] == []
    assert (await site.ok("qms", "GET", "/api/v1/inspection-lots", params={"lot_ids": lot}))["items"] == []
    assert (await site.ok("wms", "GET", "/v1/stock", params={"lots": lot}))["stock"] == []
    assert (await site.ok("wms", "GET", "/v2/stock-positions", params={"lotIds": lot}))["data"] == []
    for system in ("qms", "wms"):
        assert site.apps[system].state.events.stats()["emitted"] == 0

    [mes_lot] = (await site.ok("mes", "GET", "/api/lots", params={"ids": lot}))["lots"]
    assert mes_lot["status"] == "QC_PENDING"
    [execution] = (await site.ok("mes", "GET", "/api/executions", params={"lot_ids": lot}))["executions"]
    assert (execution["order_id"], execution["status"], execution["good_quantity"]) == (
        done["order_id"],
        "COMPLETED",
        480,
    )
    assert execution["operations"] and all(op["completed_at"] for op in execution["operations"])
    up = (await site.ok("mes", "GET", "/api/genealogy", params={"produced": lot}))["links"]
    assert [(link["consumed_lot"], link["quantity"]) for link in up] == [
        (used["lot_id"], used["quantity"]) for used in body["consumed"]
    ]
    again = await site.clients["mes"].post("/api/confirmations", json={**body, "order_id": order["ManufacturingOrder"]})
    assert again.status_code == 409 and lot in again.json()["error"]["message"], "an order completes once"


async def test_confirmations_are_validated_and_a_refused_one_leaves_no_trace(site: Site) -> None:
    body = confirmation(site.dataset, "1900001")
    raw = next(m.id for m in site.dataset.materials.values() if m.tier == 0)
    first = body["consumed"][0]
    for bad in (
        {**body, "order_id": ""},
        {key: value for key, value in body.items() if key != "order_id"},
        {**body, "material": "SF-99999"},
        {**body, "material": raw},
        {**body, "plant": "P900"},
        {**body, "line": "P100/L01"},
        {**body, "line": ""},
        {**body, "quantity": 0},
        {**body, "quantity": "lots"},
        {**body, "consumed": []},
        {**body, "consumed": [{"lot_id": "B2699999", "quantity": 1}]},
        {**body, "consumed": [{"lot_id": "R2600001", "quantity": 1, "material": "RM-99999"}]},
        {
            **body,
            "consumed": [{**first, "material": raw if site.dataset.lots[first["lot_id"]].material != raw else "x"}],
        },
        {**body, "consumed": [first, first]},
        {**body, "consumed": [{**first, "quantity": -1}]},
        {**body, "consumed": "B2600001"},
    ):
        response = await site.clients["mes"].post("/api/confirmations", json=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["message"]
    pieces = confirmation(site.dataset, "1900002", tier=5)  # finished goods are counted in pieces
    response = await site.clients["mes"].post("/api/confirmations", json={**pieces, "quantity": 10.5})
    assert response.status_code == 400 and "whole" in response.json()["error"]["message"]
    next_lot = f"B26{len(site.dataset.lots) + 1:05d}"
    assert (await site.ok("mes", "GET", "/api/lots", params={"ids": next_lot}))["lots"] == []
    assert site.apps["mes"].state.events.stats()["emitted"] == 0
    done = await site.ok("mes", "POST", "/api/confirmations", 201, json=body)
    assert done["lot_id"] == next_lot, "a refused confirmation used up a lot number"


async def test_a_consumed_lot_mes_does_not_know_is_taken_when_named_with_its_material(site: Site) -> None:
    """A delivery the dock received (an R26 lot) can go into production before MES ever heard of it."""
    body = confirmation(site.dataset, "1900003")
    raw = next(m for m in site.dataset.materials.values() if m.tier == 0 and m.unit == "KG")
    delivered = {"lot_id": "R2600001", "quantity": 2.5, "material": raw.id, "plant": "P200"}
    done = await site.ok(
        "mes", "POST", "/api/confirmations", 201, json={**body, "consumed": [*body["consumed"], delivered]}
    )
    assert done["consumed"][-1] == {"lot_id": "R2600001", "material": raw.id, "quantity": 2.5, "unit": "KG"}
    [link] = (await site.ok("mes", "GET", "/api/genealogy", params={"consumed": "R2600001"}))["links"]
    assert (link["produced_lot"], link["consumed_material"], link["consumed_plant"]) == (done["lot_id"], raw.id, "P200")


async def test_scrap_is_recorded_on_the_execution(site: Site) -> None:
    _, done = await produce(site)
    lot = done["lot_id"]
    scrapped = await site.ok("mes", "POST", f"/api/lots/{lot}/scrap", 201, json={"quantity": 30.5, "reason": "Spill"})
    assert (scrapped["quantity"], scrapped["order_id"], scrapped["reason"]) == (30.5, done["order_id"], "Spill")
    [execution] = (await site.ok("mes", "GET", "/api/executions", params={"lot_ids": lot}))["executions"]
    assert (execution["good_quantity"], execution["scrap_quantity"]) == (449.5, 30.5)
    produced = next(o.lot for o in site.dataset.orders.values())
    await site.ok("mes", "POST", f"/api/lots/{produced}/scrap", 201, json={"quantity": 1, "reason": "Sampling"})
    raw = next(lot.id for lot in site.dataset.lots.values() if lot.tier == 0)
    await site.ok("mes", "POST", f"/api/lots/{raw}/scrap", 404, json={"quantity": 1, "reason": "x"})
    await site.ok("mes", "POST", f"/api/lots/{lot}/scrap", 400, json={"quantity": 450, "reason": "x"})
    await site.ok("mes", "POST", f"/api/lots/{lot}/scrap", 400, json={"quantity": 1})
    recent = site.apps["mes"].state.events.stats()["recent"]
    assert [e["type"] for e in recent] == ["production.completed", "production.scrapped", "production.scrapped"]


# ------------------------------------------------------------------------------- ERP: production receipts


async def test_a_production_receipt_posts_101_and_261_in_one_document(site: Site) -> None:
    small = site.dataset
    order, done = await produce(site, quantity=480, ordered=1000)
    lot, document = done["lot_id"], production_receipt(small, order, done)
    posted = (await site.erp_post(DOCUMENTS, document))["d"]
    assert posted["GoodsMovementCode"] == "02"
    assert [(i["GoodsMovementType"], i["Batch"], i["ManufacturingOrder"]) for i in items(posted)] == [
        ("101", lot, order)
    ] + [("261", used["lot_id"], order) for used in done["consumed"]]
    batch = (await site.ok("erp", "GET", f"{BATCHES}('{lot}')"))["d"]
    assert [batch[f] for f in ("Material", "Plant", "Supplier", "ManufacturingOrder", "PurchaseOrder")] == [
        done["material"],
        done["plant"],
        "",
        order,
        "",
    ]
    assert await site.stock(lot, "02") == Decimal(480) and await site.stock(lot, "01") is None
    for used in done["consumed"]:
        before = next(r.quantity for r in small.stock if r.lot == used["lot_id"] and r.stock_type == "01")
        assert await site.stock(used["lot_id"], "01") == Decimal(str(before)) - Decimal(str(used["quantity"]))
    rows = await site.changes(**{"$orderby": "ChangeSequence"})
    assert [(r["GoodsMovementType"], r["Batch"], r["StockType"]) for r in rows] == [("101", lot, "02")] + [
        ("261", used["lot_id"], "") for used in done["consumed"]
    ]
    assert {r["MaterialDocument"] for r in rows} == {posted["MaterialDocument"]}
    released = (await site.ok("erp", "GET", f"{ORDERS}('{order}')"))["d"]
    assert (released["OrderStatus"], released["GoodsReceiptQuantity"], released["Batch"]) == ("REL", "480.000", lot)

    rest = {**document, "to_MaterialDocumentItem": {"results": [{**items(document)[0], "QuantityInEntryUnit": "600"}]}}
    again = (await site.erp_post(DOCUMENTS, rest))["d"]  # ERP has no idempotency: each post posts
    assert again["MaterialDocument"] != posted["MaterialDocument"]
    assert await site.stock(lot, "02") == Decimal(1080)
    delivered = (await site.ok("erp", "GET", f"{ORDERS}('{order}')"))["d"]
    assert (delivered["OrderStatus"], delivered["GoodsReceiptQuantity"]) == ("DLV", "1080.000"), "within the 10 %"
    message = await site.refused(DOCUMENTS, rest, "CO/002")
    assert message == f"Order {order} is not released (status DLV)"


async def test_a_production_receipt_erp_refuses_posts_nothing(site: Site) -> None:
    small = site.dataset
    order, done = await produce(site, quantity=100, ordered=100)
    document = production_receipt(small, order, done)
    receipt, *issues = items(document)

    def variant(first: dict[str, Any] | None = None, rest: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        results = [receipt if first is None else first, *(issues if rest is None else rest)]
        return {**document, "to_MaterialDocumentItem": {"results": results}}

    unknown = {**receipt, "ManufacturingOrder": "1999999"}
    unknown_rest = [{**i, "ManufacturingOrder": "1999999"} for i in issues]
    assert await site.refused(DOCUMENTS, variant(unknown, unknown_rest), "CO/001") == "Order 1999999 does not exist"
    teco = next(o for o in small.orders.values() if o.status == "TECO")
    closed = variant({**receipt, "ManufacturingOrder": teco.id}, [{**i, "ManufacturingOrder": teco.id} for i in issues])
    assert await site.refused(DOCUMENTS, closed, "CO/002") == f"Order {teco.id} is not released (status TECO)"
    other_plant = next(p for p in small.plants if p != done["plant"])
    assert "does not match order" in await site.refused(DOCUMENTS, variant({**receipt, "Plant": other_plant}), "CO/003")
    other = next(m.id for m in small.materials.values() if m.tier == 3 and m.id != done["material"])
    await site.refused(DOCUMENTS, variant({**receipt, "Material": other}), "CO/003")
    over = variant({**receipt, "QuantityInEntryUnit": "110.001"})
    assert "exceeds the order quantity" in await site.refused(DOCUMENTS, over, "M7/022")
    deficit = [{**issues[0], "QuantityInEntryUnit": "99999999"}, *issues[1:]]
    assert "in unrestricted stock of batch" in await site.refused(DOCUMENTS, variant(rest=deficit), "M7/021")
    seeded = next(lot for lot in small.lots.values() if lot.tier == 3)
    await site.refused(DOCUMENTS, variant({**receipt, "Batch": seeded.id}), "M7/023")
    for bad in (variant(rest=[*issues, receipt]), variant({**receipt, "GoodsMovementType": "321"})):
        await site.erp_post(DOCUMENTS, bad, 400)  # one 101 item, and only 101 and 261 in a production receipt

    assert await site.changes() == []
    await site.ok("erp", "GET", f"{BATCHES}('{done['lot_id']}')", 404)
    unchanged = (await site.ok("erp", "GET", f"{ORDERS}('{order}')"))["d"]
    assert (unchanged["OrderStatus"], unchanged["GoodsReceiptQuantity"]) == ("REL", "0.000")
    await site.erp_post(DOCUMENTS, variant({**receipt, "QuantityInEntryUnit": "110"}))  # the tolerance's limit


async def test_orders_are_released_only_for_what_erp_knows(site: Site) -> None:
    material = next(m for m in site.dataset.materials.values() if m.tier == 2)
    raw = next(m for m in site.dataset.materials.values() if m.tier == 0)
    good = {"Material": material.id, "ProductionPlant": material.plant, "TotalQuantity": "10"}
    for bad in (
        {**good, "Material": "SF-99999"},
        {**good, "Material": raw.id},
        {**good, "ProductionPlant": "P900"},
        {**good, "TotalQuantity": "0"},
        {**good, "TotalQuantity": "many"},
        {**good, "OverDeliveryTolerance": "-1"},
    ):
        await site.erp_post(ORDERS, bad, 400)
    response = await site.clients["erp"].post(ORDERS, json=good)
    assert response.status_code == 403, "CSRF like every ERP write"
    order = (await site.erp_post(ORDERS, {**good, "OverDeliveryTolerance": 0}))["d"]
    assert (order["TotalQuantity"], order["OverDeliveryTolerance"], order["OrderStatus"]) == ("10.000", "0.0", "REL")
    [listed] = await site.odata(ORDERS, **{"$filter": f"ManufacturingOrder eq '{order['ManufacturingOrder']}'"})
    assert listed == order


# --------------------------------------------------------------------------- ERP: purchase orders, receipts


def purchase_receipt(order: dict[str, Any], batch: str, quantity: str, **changes: str) -> dict[str, Any]:
    item = {
        "GoodsMovementType": "101",
        "PurchaseOrder": order["PurchaseOrder"],
        "PurchaseOrderItem": order["PurchaseOrderItem"],
        "Material": order["Material"],
        "Plant": order["Plant"],
        "StorageLocation": "RM01",
        "Batch": batch,
        "SupplierBatch": "K123456",
        "QuantityInEntryUnit": quantity,
        "EntryUnit": order["PurchaseOrderQuantityUnit"],
        **changes,
    }
    return {"GoodsMovementCode": "01", "to_MaterialDocumentItem": {"results": [item]}}


async def test_seeded_purchase_orders_are_completely_delivered(site: Site) -> None:
    lot = next(lot for lot in site.dataset.lots.values() if lot.purchase_order)
    key = f"(PurchaseOrder='{lot.purchase_order}',PurchaseOrderItem='00010')"
    item = (await site.ok("erp", "GET", f"{PURCHASE_ORDERS}{key}"))["d"]
    assert (item["Material"], item["Plant"], item["Supplier"], item["IsCompletelyDelivered"]) == (
        lot.material,
        lot.plant,
        lot.supplier,
        True,
    )
    assert Decimal(item["GoodsReceiptQuantity"]) == Decimal(item["OrderQuantity"]) == Decimal(str(lot.quantity))
    by_supplier = await site.odata(PURCHASE_ORDERS, **{"$filter": f"Supplier eq '{lot.supplier}'"})
    assert lot.purchase_order in {i["PurchaseOrder"] for i in by_supplier}
    assert {i["Supplier"] for i in by_supplier} == {lot.supplier}
    await site.ok("erp", "GET", f"{PURCHASE_ORDERS}(PurchaseOrder='4599999999',PurchaseOrderItem='00010')", 404)
    await site.ok("erp", "GET", f"{PURCHASE_ORDERS}(PurchaseOrder='{lot.purchase_order}')", 400)


async def test_a_receipt_against_a_purchase_order(site: Site) -> None:
    small = site.dataset
    raw = next(m for m in small.materials.values() if m.tier == 0 and m.unit == "KG")
    supplier = next(iter(small.suppliers.values()))
    body = {"Material": raw.id, "Plant": "P200", "Supplier": supplier.id, "OrderQuantity": 1000}
    order = (await site.erp_post(PURCHASE_ORDERS, body))["d"]
    last = max(int(lot.purchase_order) for lot in small.lots.values() if lot.purchase_order)
    assert (order["PurchaseOrder"], order["PurchaseOrderItem"]) == (str(last + 1), "00010")
    assert (order["GoodsReceiptQuantity"], order["IsCompletelyDelivered"], order["PurchaseOrderQuantityUnit"]) == (
        "0.000",
        False,
        "KG",
    )
    assert order["OverdelivTolrtdLmtRatioInPct"] == "10.0"
    for bad in (
        {**body, "Supplier": "99999999"},
        {**body, "OrderQuantity": -1},
        {**body, "PurchaseOrderQuantityUnit": "L"},
    ):
        await site.erp_post(PURCHASE_ORDERS, bad, 400)

    posted = (await site.erp_post(DOCUMENTS, purchase_receipt(order, "R2600001", "600")))["d"]
    [item] = items(posted)
    assert (item["GoodsMovementType"], item["PurchaseOrder"], item["Batch"]) == (
        "101",
        order["PurchaseOrder"],
        "R2600001",
    )
    batch = (await site.ok("erp", "GET", f"{BATCHES}('R2600001')"))["d"]
    assert [
        batch[f] for f in ("Supplier", "SupplierBatch", "PurchaseOrder", "ManufacturingOrder", "CountryOfOrigin")
    ] == [
        supplier.id,
        "K123456",
        order["PurchaseOrder"],
        "",
        supplier.country,
    ]
    assert await site.stock("R2600001", "02") == Decimal(600)
    key = f"(PurchaseOrder='{order['PurchaseOrder']}',PurchaseOrderItem='00010')"
    partial = (await site.ok("erp", "GET", f"{PURCHASE_ORDERS}{key}"))["d"]
    assert (partial["GoodsReceiptQuantity"], partial["IsCompletelyDelivered"]) == ("600.000", False)
    await site.erp_post(DOCUMENTS, purchase_receipt(order, "R2600001", "400"))
    complete = (await site.ok("erp", "GET", f"{PURCHASE_ORDERS}{key}"))["d"]
    assert (complete["GoodsReceiptQuantity"], complete["IsCompletelyDelivered"]) == ("1000.000", True)

    changes = len(await site.changes())
    missing = purchase_receipt({**order, "PurchaseOrder": "4599999999"}, "R2600002", "1")
    assert await site.refused(DOCUMENTS, missing, "ME/001") == "Purchase order item 4599999999/00010 does not exist"
    await site.refused(DOCUMENTS, purchase_receipt(order, "R2600002", "1", Plant="P100"), "ME/003")
    other = next(m.id for m in small.materials.values() if m.tier == 0 and m.unit == "KG" and m.id != raw.id)
    await site.refused(DOCUMENTS, purchase_receipt(order, "R2600002", "1", Material=other), "ME/003")
    await site.refused(DOCUMENTS, purchase_receipt(order, "R2600002", "100.001"), "M7/022")
    seeded = next(lot.id for lot in small.lots.values() if lot.purchase_order)
    await site.refused(DOCUMENTS, purchase_receipt(order, seeded, "1"), "M7/023")
    await site.erp_post(DOCUMENTS, purchase_receipt(order, "R2600002", "1", GoodsMovementType="261"), 400)
    assert len(await site.changes()) == changes
    await site.ok("erp", "GET", f"{BATCHES}('R2600002')", 404)


async def test_posted_documents_and_batch_changes_are_in_the_change_feed(site: Site) -> None:
    row = next(r for r in site.dataset.stock if r.stock_type == "01" and r.quantity >= 2 and r.unit != "EA")
    item = {
        "Material": row.material,
        "Plant": row.plant,
        "StorageLocation": row.storage_location,
        "Batch": row.lot,
        "QuantityInEntryUnit": "1",
        "EntryUnit": row.unit,
    }
    headers = await site.csrf()
    moves = [{**item, "GoodsMovementType": "344"}, {**item, "GoodsMovementType": "551"}]
    document = {"GoodsMovementCode": "04", "to_MaterialDocumentItem": {"results": moves}}
    posted = await site.ok("erp", "POST", DOCUMENTS, 201, json=document, headers=headers)
    entity = await site.clients["erp"].get(f"{BATCHES}('{row.lot}')")
    restrict = {
        "json": {"MatlBatchIsInRstrcdUseStock": True},
        "headers": {**headers, "If-Match": entity.headers["etag"]},
    }
    await site.ok("erp", "PATCH", f"{BATCHES}('{row.lot}')", 204, **restrict)
    rows = await site.changes(**{"$orderby": "ChangeSequence"})
    assert [(r["ChangeSequence"], r["ChangeType"], r["GoodsMovementType"], r["StockType"]) for r in rows] == [
        ("1", "GOODS_MOVEMENT", "344", "07"),
        ("2", "GOODS_MOVEMENT", "551", ""),  # scrapped: the stock left the books
        ("3", "BATCH_CHANGE", "", ""),
    ]
    assert rows[0]["MaterialDocument"] == rows[1]["MaterialDocument"] == posted["d"]["MaterialDocument"]
    assert [r["BatchRestricted"] for r in rows] == [False, False, True]
    assert all((r["Batch"], r["Material"], r["Plant"]) == (row.lot, row.material, row.plant) for r in rows)
    batch_changes = await site.odata(CHANGES, **{"$filter": "ChangeType eq 'BATCH_CHANGE'"})
    assert [r["ChangeSequence"] for r in batch_changes] == ["3"]
    transfer = {
        "GoodsMovementCode": "04",
        "to_MaterialDocumentItem": {"results": [{**item, "GoodsMovementType": "101"}]},
    }
    await site.ok("erp", "POST", DOCUMENTS, 400, json=transfer, headers=headers)  # receipts name their order
    too_much = {**document, "to_MaterialDocumentItem": {"results": [{**moves[1], "QuantityInEntryUnit": "99999999"}]}}
    error = (await site.ok("erp", "POST", DOCUMENTS, 400, json=too_much, headers=headers))["error"]
    assert error["code"] == "M7/021" and error["message"]["value"].startswith("Deficit of ")
    assert len(await site.changes()) == 3


async def test_the_change_feed_filters_by_sequence(site: Site) -> None:
    small = site.dataset
    for _ in range(4):  # sequence numbers pass 9, so '10' must sort and compare after '9'
        order, done = await produce(site, quantity=1, ordered=1)
        await site.erp_post(DOCUMENTS, production_receipt(small, order, done))
    everything = await site.changes(**{"$orderby": "ChangeSequence"})
    sequences = [int(r["ChangeSequence"]) for r in everything]
    assert sequences == list(range(1, len(everything) + 1)) and len(everything) > 10
    assert {r["ChangeType"] for r in everything} == {"GOODS_MOVEMENT"}
    assert everything[0]["PostedAt"].startswith("/Date(")
    newer = await site.changes(after=9, **{"$orderby": "ChangeSequence"})
    assert [int(r["ChangeSequence"]) for r in newer] == sequences[9:]
    page = await site.changes(after=2, **{"$orderby": "ChangeSequence", "$top": "3"})
    assert [r["ChangeSequence"] for r in page] == ["3", "4", "5"]
    assert await site.changes(after=len(everything)) == []
    single = await site.ok("erp", "GET", f"{CHANGES}('1')")
    assert single["d"]["ChangeSequence"] == "1"
