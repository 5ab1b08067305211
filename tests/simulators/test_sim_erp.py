"""The ERP simulator over HTTP: OData collections, CSRF, ETag/If-Match, material documents, rate limit."""

from __future__ import annotations

import re
from collections.abc import Callable

import aiohttp
import httpx2
from starlette.applications import Starlette

from simulators import Dataset, erp

ROOT = "/sap/opu/odata/sap"
BATCHES = f"{ROOT}/API_BATCH_SRV/Batch"
STOCK = f"{ROOT}/API_MATERIAL_STOCK_SRV/A_MatlStkInAcctMod"
DOCUMENTS = f"{ROOT}/API_MATERIAL_DOCUMENT_SRV"


def any_of(field: str, keys: list[str]) -> str:
    return " or ".join(f"{field} eq '{key}'" for key in keys)


async def results(client: httpx2.AsyncClient, path: str, **params: str) -> list[dict]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()["d"]["results"]


async def csrf_token(client: httpx2.AsyncClient) -> str:
    response = await client.get(f"{ROOT}/API_BATCH_SRV/", headers={"x-csrf-token": "fetch"})
    assert response.status_code == 200
    return response.headers["x-csrf-token"]


async def test_batch_lookup_returns_exactly_the_existing_keys(erp_client: httpx2.AsyncClient, small: Dataset) -> None:
    wanted = list(small.lots)[::7]
    rows = await results(erp_client, BATCHES, **{"$filter": any_of("Batch", [*wanted, "B2699999", "nope"])})
    assert sorted(row["Batch"] for row in rows) == sorted(wanted)
    row = next(r for r in rows if r["Batch"] == wanted[0])
    lot = small.lots[wanted[0]]
    assert row["Material"] == lot.material and row["Plant"] == lot.plant
    assert re.fullmatch(r"/Date\(\d+\)/", row["ManufactureDate"])
    assert row["__metadata"]["uri"].endswith(f"API_BATCH_SRV/Batch('{lot.id}')") and row["__metadata"]["etag"]


async def test_collections_answer_in_sap_shapes(erp_client: httpx2.AsyncClient, small: Dataset) -> None:
    lot = next(lot for lot in small.lots.values() if lot.remaining > 0)
    stock = await results(erp_client, STOCK, **{"$filter": f"Batch eq '{lot.id}'"})
    assert [(s["Material"], s["Plant"]) for s in stock] == [(lot.material, lot.plant)]
    assert re.fullmatch(r"\d+\.\d{3}", stock[0]["MatlWrhsStkQtyInMatlBaseUnit"])
    products = await results(erp_client, f"{ROOT}/API_PRODUCT_SRV/A_Product", **{"$filter": "ProductType eq 'ROH'"})
    assert {p["Product"] for p in products} == {m.id for m in small.materials.values() if m.type == "ROH"}
    assert all(isinstance(p["IsRegulated"], bool) for p in products)
    order = small.orders[lot.order_id] if lot.order_id else next(iter(small.orders.values()))
    orders = await results(
        erp_client,
        f"{ROOT}/API_PRODUCTION_ORDER_2_SRV/A_ProductionOrder_2",
        **{"$filter": f"ManufacturingOrder eq '{order.id}'"},
    )
    assert orders[0]["Batch"] == order.lot and orders[0]["OrderStatus"] in ("REL", "TECO")
    plants = await results(erp_client, f"{ROOT}/API_PLANT_SRV/A_Plant")
    assert [p["Plant"] for p in plants] == ["P100", "P200", "P300"]


async def test_query_options_page_count_select_and_order(erp_client: httpx2.AsyncClient, small: Dataset) -> None:
    material = small.lots[small.recall_lot].material
    expected = sorted(
        (lot for lot in small.lots.values() if lot.material == material),
        key=lambda lot: lot.manufactured_at,
        reverse=True,
    )
    response = await erp_client.get(
        BATCHES,
        params={
            "$filter": f"Material eq '{material}'",
            "$orderby": "ManufactureDate desc",
            "$top": "3",
            "$skip": "1",
            "$select": "Batch,Plant",
            "$inlinecount": "allpages",
        },
    )
    body = response.json()["d"]
    assert body["__count"] == str(len(expected))
    assert [r["Batch"] for r in body["results"]] == [lot.id for lot in expected[1:4]]
    assert all(set(r) == {"__metadata", "Batch", "Plant"} for r in body["results"])


async def test_bad_filter_is_an_odata_400(erp_client: httpx2.AsyncClient) -> None:
    for bad in ("Batch eq", "Colour eq 'red'"):
        response = await erp_client.get(BATCHES, params={"$filter": bad})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] and error["message"]["lang"] == "en" and error["message"]["value"]


async def test_single_entity_with_etag_and_404(erp_client: httpx2.AsyncClient, small: Dataset) -> None:
    lot_id = next(iter(small.lots))
    response = await erp_client.get(f"{BATCHES}('{lot_id}')")
    assert response.status_code == 200
    assert response.json()["d"]["Batch"] == lot_id
    assert response.headers["etag"] == response.json()["d"]["__metadata"]["etag"]
    missing = await erp_client.get(f"{BATCHES}('B2699999')")
    assert missing.status_code == 404 and missing.json()["error"]["message"]["value"]


async def test_writes_need_a_fetched_csrf_token(erp_client: httpx2.AsyncClient, small: Dataset) -> None:
    lot_id = next(iter(small.lots))
    etag = (await erp_client.get(f"{BATCHES}('{lot_id}')")).headers["etag"]
    body = {"MatlBatchIsInRstrcdUseStock": True}
    for headers in ({}, {"x-csrf-token": "made-up"}):
        refused = await erp_client.patch(f"{BATCHES}('{lot_id}')", json=body, headers={"If-Match": etag, **headers})
        assert refused.status_code == 403 and refused.headers["x-csrf-token"] == "Required"
    token = await csrf_token(erp_client)
    accepted = await erp_client.patch(
        f"{BATCHES}('{lot_id}')", json=body, headers={"If-Match": etag, "x-csrf-token": token}
    )
    assert accepted.status_code == 204


async def test_patch_batch_needs_the_current_etag(erp_client: httpx2.AsyncClient, small: Dataset) -> None:
    lot_id = next(lot.id for lot in small.lots.values() if lot.quality_status == "RELEASED")
    token = await csrf_token(erp_client)
    url, body = f"{BATCHES}('{lot_id}')", {"MatlBatchIsInRstrcdUseStock": True}
    etag = (await erp_client.get(url)).headers["etag"]
    missing = await erp_client.patch(url, json=body, headers={"x-csrf-token": token})
    assert missing.status_code == 428
    stale = await erp_client.patch(url, json=body, headers={"x-csrf-token": token, "If-Match": 'W/"stale"'})
    assert stale.status_code == 412
    done = await erp_client.patch(url, json=body, headers={"x-csrf-token": token, "If-Match": etag})
    assert done.status_code == 204 and done.headers["etag"] != etag
    again = await erp_client.patch(url, json=body, headers={"x-csrf-token": token, "If-Match": etag})
    assert again.status_code == 412
    current = await erp_client.get(url)
    assert current.json()["d"]["MatlBatchIsInRstrcdUseStock"] is True
    assert current.headers["etag"] == done.headers["etag"]
    unknown_field = await erp_client.patch(
        url, json={"Plant": "P999"}, headers={"x-csrf-token": token, "If-Match": done.headers["etag"]}
    )
    assert unknown_field.status_code == 400


async def test_material_document_moves_stock_between_types(erp_client: httpx2.AsyncClient, small: Dataset) -> None:
    row = next(r for r in small.stock if r.stock_type == "01" and r.quantity >= 2)
    token = await csrf_token(erp_client)
    item = {
        "GoodsMovementType": "344",
        "Material": row.material,
        "Plant": row.plant,
        "StorageLocation": row.storage_location,
        "Batch": row.lot,
        "QuantityInEntryUnit": "1.000",
        "EntryUnit": row.unit,
    }
    response = await erp_client.post(
        f"{DOCUMENTS}/A_MaterialDocumentHeader",
        headers={"x-csrf-token": token},
        json={"GoodsMovementCode": "04", "to_MaterialDocumentItem": {"results": [item]}},
    )
    assert response.status_code == 201, response.text
    document = response.json()["d"]
    assert document["to_MaterialDocumentItem"]["results"][0]["GoodsMovementType"] == "344"
    stock = {
        s["InventoryStockType"]: s["MatlWrhsStkQtyInMatlBaseUnit"]
        for s in await results(erp_client, STOCK, **{"$filter": f"Batch eq '{row.lot}'"})
    }
    assert stock == {"01": f"{row.quantity - 1:.3f}", "07": "1.000"}
    items = await results(
        erp_client,
        f"{DOCUMENTS}/A_MaterialDocumentItem",
        **{"$filter": f"MaterialDocument eq '{document['MaterialDocument']}'"},
    )
    assert [(i["Batch"], i["GoodsMovementType"]) for i in items] == [(row.lot, "344")]


async def test_material_document_is_refused_without_enough_stock_or_a_known_move(
    erp_client: httpx2.AsyncClient, small: Dataset
) -> None:
    row = next(r for r in small.stock if r.stock_type == "01")
    token = await csrf_token(erp_client)
    item = {
        "GoodsMovementType": "344",
        "Material": row.material,
        "Plant": row.plant,
        "StorageLocation": row.storage_location,
        "Batch": row.lot,
        "QuantityInEntryUnit": str(row.quantity + 1),
        "EntryUnit": row.unit,
    }
    for bad in (
        item,
        {**item, "GoodsMovementType": "999", "QuantityInEntryUnit": "1"},
        {**item, "QuantityInEntryUnit": "-1"},
    ):
        response = await erp_client.post(
            f"{DOCUMENTS}/A_MaterialDocumentHeader",
            headers={"x-csrf-token": token},
            json={"to_MaterialDocumentItem": {"results": [bad]}},
        )
        assert response.status_code == 400, bad
    stock = await results(erp_client, STOCK, **{"$filter": f"Batch eq '{row.lot}'"})
    assert [s["InventoryStockType"] for s in stock] == ["01"]


async def test_rate_limit_answers_429_with_retry_after(
    small: Dataset, connect: Callable[[Starlette], httpx2.AsyncClient]
) -> None:
    async with connect(erp.create_app(small, rate_limit_rps=3)) as client:
        statuses = [(await client.get(f"{ROOT}/API_PLANT_SRV/A_Plant")).status_code for _ in range(3)]
        throttled = await client.get(f"{ROOT}/API_PLANT_SRV/A_Plant")
        admin = await client.get("/_admin/stats")
    assert statuses == [200, 200, 200]
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert admin.status_code == 200, "the admin API is never throttled"


async def test_admin_lot_state_shows_the_batch_and_its_stock(erp_client: httpx2.AsyncClient, small: Dataset) -> None:
    row = small.stock[0]
    state = (await erp_client.get(f"/_admin/lots/{row.lot}")).json()
    assert state["batch"]["Batch"] == row.lot
    assert [s["InventoryStockType"] for s in state["stock"]] == [row.stock_type]


async def test_batch_request_applies_or_refuses_each_change_set_alone(
    erp_client: httpx2.AsyncClient, small: Dataset
) -> None:
    lots = list(small.lots)[:2]
    etags = [(await erp_client.get(f"{BATCHES}('{lot}')")).headers["etag"] for lot in lots]
    batch = aiohttp.MultipartWriter("mixed")
    for lot, etag in ((lots[0], etags[0]), (lots[1], 'W/"stale"'), ("B0000000", etags[0])):
        request = f"PATCH Batch('{lot}') HTTP/1.1\r\nIf-Match: {etag}\r\nContent-Type: application/json\r\n\r\n"
        changeset = aiohttp.MultipartWriter("mixed")
        changeset.append(request.encode() + b'{"MatlBatchIsInRstrcdUseStock": true}',
                         {"Content-Type": "application/http", "Content-Transfer-Encoding": "binary"})  # fmt: skip
        batch.append(changeset)
    url, body = f"{ROOT}/API_BATCH_SRV/$batch", await batch.as_bytes()
    headers = {"Content-Type": batch.headers["Content-Type"]}
    assert (await erp_client.post(url, content=body, headers=headers)).status_code == 403, "a write: CSRF"
    answer = await erp_client.post(url, content=body, headers={**headers, "x-csrf-token": await csrf_token(erp_client)})
    assert answer.status_code == 202 and answer.headers["content-type"].startswith("multipart/mixed")
    assert re.findall(r"HTTP/1.1 (\d{3})", answer.text) == ["204", "412", "404"], "one answer per change set, in order"
    states = [(await erp_client.get(f"/_admin/lots/{lot}")).json()["batch"] for lot in lots]
    assert [state["MatlBatchIsInRstrcdUseStock"] for state in states] == [True, False]
