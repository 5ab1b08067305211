"""Production in MES reaching ERP, QMS and WMS through the plant's integration, scrap, and ERP's change feed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from simulators import Dataset, create_apps
from simulators.dataset import round_quantity

ROOT = "/sap/opu/odata/sap"
CHANGES = f"{ROOT}/API_CHANGE_FEED_SRV/Changes"
STOCK = f"{ROOT}/API_MATERIAL_STOCK_SRV/A_MatlStkInAcctMod"
DOCUMENTS = f"{ROOT}/API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentHeader"


@dataclass
class Site:
    dataset: Dataset
    apps: dict[str, Starlette]
    clients: dict[str, httpx.AsyncClient]

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


@pytest.fixture
async def site(small: Dataset, connect: Callable[[Starlette], httpx.AsyncClient]) -> AsyncIterator[Site]:
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


def confirmation(small: Dataset, tier: int = 3, quantity: float = 480) -> dict[str, Any]:
    material, consumed = producible(small, tier)
    plant = small.materials[material].plant
    return {
        "material": material,
        "plant": plant,
        "line": f"{plant}-L02",
        "quantity": quantity,
        "consumed": [{"lot_id": lot, "quantity": used} for lot, used in consumed],
    }


async def test_a_confirmed_lot_is_visible_in_every_system(site: Site) -> None:
    small, body = site.dataset, confirmation(site.dataset)
    material = small.materials[body["material"]]
    done = await site.ok("mes", "POST", "/api/confirmations", 201, json=body)
    lot, order = done["lot_id"], done["order_id"]
    assert lot == f"B26{len(small.lots) + 1:05d}" and lot not in small.lots
    assert order == str(max(int(o) for o in small.orders) + 1)
    expected = {**body, "quantity": 480, "unit": material.unit}
    assert {key: done[key] for key in ("material", "plant", "line", "quantity", "unit")} == {
        key: expected[key] for key in ("material", "plant", "line", "quantity", "unit")
    }

    [batch] = await site.odata(f"{ROOT}/API_BATCH_SRV/Batch", **{"$filter": f"Batch eq '{lot}'"})
    assert [batch[f] for f in ("Material", "Plant", "Supplier", "ManufacturingOrder")] == [
        material.id,
        body["plant"],
        "",
        order,
    ]
    assert batch["MatlBatchIsInRstrcdUseStock"] is False
    [stock] = await site.odata(STOCK, **{"$filter": f"Batch eq '{lot}'"})
    assert (stock["InventoryStockType"], Decimal(stock["MatlWrhsStkQtyInMatlBaseUnit"])) == ("02", Decimal(480))
    for used in body["consumed"]:
        before = next(r.quantity for r in small.stock if r.lot == used["lot_id"] and r.stock_type == "01")
        [after] = await site.odata(STOCK, **{"$filter": f"Batch eq '{used['lot_id']}' and InventoryStockType eq '01'"})
        assert Decimal(after["MatlWrhsStkQtyInMatlBaseUnit"]) == Decimal(str(before)) - Decimal(str(used["quantity"]))
    orders = await site.odata(
        f"{ROOT}/API_PRODUCTION_ORDER_2_SRV/A_ProductionOrder_2", **{"$filter": f"ManufacturingOrder eq '{order}'"}
    )
    assert [(o["Batch"], o["OrderStatus"]) for o in orders] == [(lot, "TECO")]
    items = await site.odata(
        f"{ROOT}/API_MATERIAL_DOCUMENT_SRV/A_MaterialDocumentItem", **{"$filter": f"ManufacturingOrder eq '{order}'"}
    )
    assert [(i["GoodsMovementType"], i["Batch"]) for i in items] == [("101", lot)] + [
        ("261", used["lot_id"]) for used in body["consumed"]
    ]

    [quality] = (await site.ok("qms", "GET", "/api/v1/lots", params={"ids": lot}))["items"]
    in_inspection = "10" if body["plant"] == "P100" else "Under inspection"
    assert (quality["status"], quality["material"], quality["supplier"]) == (in_inspection, material.id, "")
    [inspection] = (await site.ok("qms", "GET", "/api/v1/inspection-lots", params={"lot_ids": lot}))["items"]
    assert inspection["origin"] == "04" and inspection["id"].startswith("04")
    assert inspection["status"] == ("1" if body["plant"] == "P100" else "Created")
    assert inspection["usage_decision"] is None
    plan = next((i.characteristics for i in small.inspection_lots.values() if i.material == material.id), None)
    codes = [c["code"] for c in inspection["characteristics"]]
    assert 2 <= len(codes) <= 4 and all(c["result"] is None for c in inspection["characteristics"])
    if plan is not None:
        assert codes == [c.code for c in plan], "a material keeps its inspection plan"

    [position] = (await site.ok("wms", "GET", "/v1/stock", params={"lots": lot}))["stock"]
    assert (position["status"], position["qty"], position["sku"]) == ("QUARANTINE", 480, material.id)
    assert len(position["handling_unit"]) == 18
    [v2] = (await site.ok("wms", "GET", "/v2/stock-positions", params={"lotIds": lot}))["data"]
    assert v2["stockStatus"] == "quarantine"

    [mes_lot] = (await site.ok("mes", "GET", "/api/lots", params={"ids": lot}))["lots"]
    assert mes_lot["status"] == "QC_PENDING"
    [execution] = (await site.ok("mes", "GET", "/api/executions", params={"lot_ids": lot}))["executions"]
    assert (execution["order_id"], execution["status"], execution["good_quantity"]) == (order, "COMPLETED", 480)
    assert execution["operations"] and all(op["completed_at"] for op in execution["operations"])
    up = (await site.ok("mes", "GET", "/api/genealogy", params={"produced": lot}))["links"]
    assert [(link["consumed_lot"], link["quantity"]) for link in up] == [
        (used["lot_id"], used["quantity"]) for used in body["consumed"]
    ]
    first = body["consumed"][0]["lot_id"]
    down = (await site.ok("mes", "POST", "/api/genealogy/search", json={"consumed": [first]}))["links"]
    assert lot in {link["produced_lot"] for link in down}


async def test_the_change_feed_lists_the_confirmation_and_filters_by_sequence(site: Site) -> None:
    assert await site.changes() == []
    body = confirmation(site.dataset)
    first = await site.ok("mes", "POST", "/api/confirmations", 201, json=body)
    rows = await site.changes(**{"$orderby": "ChangeSequence"})
    assert [int(r["ChangeSequence"]) for r in rows] == list(range(1, len(body["consumed"]) + 2))
    assert {r["ChangeType"] for r in rows} == {"GOODS_MOVEMENT"} and len({r["MaterialDocument"] for r in rows}) == 1
    assert [(r["GoodsMovementType"], r["Batch"], r["StockType"]) for r in rows] == [("101", first["lot_id"], "02")] + [
        ("261", used["lot_id"], "") for used in body["consumed"]
    ]
    assert Decimal(rows[0]["QuantityInEntryUnit"]) == 480 and rows[0]["EntryUnit"] == first["unit"]
    assert rows[0]["PostedAt"].startswith("/Date(")

    for _ in range(5):  # sequence numbers pass 9, so '10' must sort and compare after '9'
        small_batch = {**body, "consumed": body["consumed"][:1], "quantity": 1}
        await site.ok("mes", "POST", "/api/confirmations", 201, json=small_batch)
    everything = await site.changes(**{"$orderby": "ChangeSequence"})
    sequences = [int(r["ChangeSequence"]) for r in everything]
    assert sequences == list(range(1, len(everything) + 1)) and len(everything) > 10
    newer = await site.changes(after=9, **{"$orderby": "ChangeSequence"})
    assert [int(r["ChangeSequence"]) for r in newer] == sequences[9:]
    page = await site.changes(after=2, **{"$orderby": "ChangeSequence", "$top": "3"})
    assert [r["ChangeSequence"] for r in page] == ["3", "4", "5"]
    assert await site.changes(after=len(everything)) == []
    single = await site.ok("erp", "GET", f"{CHANGES}('1')")
    assert single["d"]["ChangeSequence"] == "1"


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
    entity = await site.clients["erp"].get(f"{ROOT}/API_BATCH_SRV/Batch('{row.lot}')")
    restrict = {
        "json": {"MatlBatchIsInRstrcdUseStock": True},
        "headers": {**headers, "If-Match": entity.headers["etag"]},
    }
    await site.ok("erp", "PATCH", f"{ROOT}/API_BATCH_SRV/Batch('{row.lot}')", 204, **restrict)
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
    receipt = {
        "GoodsMovementCode": "02",
        "to_MaterialDocumentItem": {"results": [{**item, "GoodsMovementType": "101"}]},
    }
    await site.ok("erp", "POST", DOCUMENTS, 400, json=receipt, headers=headers)  # receipts come from production only
    assert len(await site.changes()) == 3


async def test_confirmations_are_validated_and_a_refused_one_leaves_no_trace(site: Site) -> None:
    body = confirmation(site.dataset)
    raw = next(m.id for m in site.dataset.materials.values() if m.tier == 0)
    first = body["consumed"][0]
    for bad in (
        {**body, "material": "SF-99999"},
        {**body, "material": raw},
        {**body, "plant": "P900"},
        {**body, "line": "P100/L01"},
        {**body, "line": ""},
        {**body, "quantity": 0},
        {**body, "quantity": "lots"},
        {**body, "consumed": []},
        {**body, "consumed": [{"lot_id": "B2699999", "quantity": 1}]},
        {**body, "consumed": [first, first]},
        {**body, "consumed": [{**first, "quantity": -1}]},
        {**body, "consumed": "B2600001"},
    ):
        response = await site.clients["mes"].post("/api/confirmations", json=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["message"]
    pieces = confirmation(site.dataset, tier=5)  # finished goods are counted in pieces
    response = await site.clients["mes"].post("/api/confirmations", json={**pieces, "quantity": 10.5})
    assert response.status_code == 400 and "whole" in response.json()["error"]["message"]

    stock = next(r.quantity for r in site.dataset.stock if r.lot == first["lot_id"] and r.stock_type == "01")
    too_much = {**body, "consumed": [{**first, "quantity": stock + 1}]}
    response = await site.clients["mes"].post("/api/confirmations", json=too_much)
    assert response.status_code == 400 and "deficit" in response.json()["error"]["message"]
    next_lot = f"B26{len(site.dataset.lots) + 1:05d}"
    assert (await site.ok("mes", "GET", "/api/lots", params={"ids": next_lot}))["lots"] == []
    assert (await site.ok("qms", "GET", "/api/v1/lots", params={"ids": next_lot}))["items"] == []
    assert await site.changes() == []
    assert site.apps["mes"].state.events.stats()["emitted"] == 0
    done = await site.ok("mes", "POST", "/api/confirmations", 201, json=body)
    assert done["lot_id"] == next_lot, "a refused confirmation used up a lot number"


async def test_scrap_is_recorded_on_the_execution(site: Site) -> None:
    done = await site.ok("mes", "POST", "/api/confirmations", 201, json=confirmation(site.dataset))
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
