"""The WMS simulator over HTTP: /v1 and /v2 side by side, and stock moves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import httpx2
import pytest
from starlette.applications import Starlette

from simulators import Dataset


def stocked(small: Dataset, count: int) -> list[str]:
    return list(dict.fromkeys(hu.lot for hu in small.handling_units))[:count]


async def v1(client: httpx2.AsyncClient, lots: list[str]) -> list[dict]:
    response = await client.get("/v1/stock", params={"lots": ",".join(lots)})
    assert response.status_code == 200
    return response.json()["stock"]


async def v2(client: httpx2.AsyncClient, lots: list[str]) -> list[dict]:
    response = await client.get("/v2/stock-positions", params={"lotIds": ",".join(lots)})
    assert response.status_code == 200
    body = response.json()
    assert body["meta"]["count"] == len(body["data"])
    return body["data"]


async def test_batch_returns_the_requested_lots_positions(wms_client: httpx2.AsyncClient, small: Dataset) -> None:
    lots = stocked(small, 30)
    consumed = next(lot.id for lot in small.lots.values() if lot.remaining == 0)
    positions = await v1(wms_client, [*lots, consumed, "B2699999"])
    assert {p["lot"] for p in positions} == set(lots)
    assert sorted(p["handling_unit"] for p in positions) == sorted(
        hu.id for hu in small.handling_units if hu.lot in lots
    )
    for lot in lots:
        assert sum(p["qty"] for p in positions if p["lot"] == lot) == pytest.approx(small.lots[lot].remaining)


async def test_v1_and_v2_describe_the_same_positions(wms_client: httpx2.AsyncClient, small: Dataset) -> None:
    lots = stocked(small, 50)
    old = {p["handling_unit"]: p for p in await v1(wms_client, lots)}
    new = {p["handlingUnitId"]: p for p in await v2(wms_client, lots)}
    assert set(old) == set(new)
    for hu, p in old.items():
        q = new[hu]
        assert (p["lot"], p["sku"], p["warehouse"], p["location"], p["qty"], p["uom"]) == (
            q["lotId"],
            q["materialId"],
            q["site"]["warehouse"],
            q["bin"],
            q["quantity"]["value"],
            q["quantity"]["unit"],
        )
        assert p["status"].lower() == q["stockStatus"]


async def test_v1_move_is_seen_by_v2(wms_client: httpx2.AsyncClient, small: Dataset) -> None:
    lot = next(hu.lot for hu in small.handling_units if hu.status == "AVAILABLE")
    count = sum(hu.lot == lot for hu in small.handling_units)
    moved = await wms_client.post("/v1/moves", json={"lot": lot, "to_status": "QUARANTINE", "reference": "QH-1"})
    assert moved.status_code == 200
    assert moved.json() == {"lot": lot, "moved": count, "status": "QUARANTINE"}
    assert {p["stockStatus"] for p in await v2(wms_client, [lot])} == {"quarantine"}
    state = (await wms_client.get(f"/_admin/lots/{lot}")).json()
    assert state["moves"][-1]["reference"] == "QH-1"


async def test_v2_move_is_seen_by_v1(wms_client: httpx2.AsyncClient, small: Dataset) -> None:
    lot = next(hu.lot for hu in small.handling_units if hu.status == "BLOCKED")
    moved = await wms_client.post(
        "/v2/stock-moves", json={"lotId": lot, "targetStatus": "available", "reference": "release"}
    )
    assert moved.status_code == 200
    assert moved.json()["stockStatus"] == "available" and moved.json()["handlingUnits"] >= 1
    assert {p["status"] for p in await v1(wms_client, [lot])} == {"AVAILABLE"}


async def test_move_errors(wms_client: httpx2.AsyncClient, small: Dataset) -> None:
    lot = small.handling_units[0].lot
    bad_status = await wms_client.post("/v1/moves", json={"lot": lot, "to_status": "LOST", "reference": "x"})
    assert bad_status.status_code == 400
    no_stock = await wms_client.post("/v2/stock-moves", json={"lotId": "B2699999", "targetStatus": "blocked"})
    assert no_stock.status_code == 404
    assert (await wms_client.get("/v1/stock")).status_code == 400


# ------------------------------------------------------------------------ receipts, reductions and the dock


def v2_receipt(reference: str, **changes: object) -> dict:
    body = {
        "lotId": "B2609001",
        "materialId": "SF-20001",
        "plant": "P100",
        "quantity": {"value": 480, "unit": "KG"},
        "stockStatus": "quarantine",
        "reference": reference,
    }
    return {**body, **changes}


async def test_handling_units_are_received_once_per_reference(wms_client: httpx2.AsyncClient, small: Dataset) -> None:
    unit = small.materials["SF-20001"].unit
    body = v2_receipt("MD-4900000001", quantity={"value": 480, "unit": unit})
    first = await wms_client.post("/v2/handling-units", json=body)
    assert first.status_code == 201, first.text
    [hu] = first.json()["handlingUnits"]
    assert first.json() == {"lotId": "B2609001", "handlingUnits": [hu], "stockStatus": "quarantine"}
    again = await wms_client.post("/v2/handling-units", json=body)
    assert (again.status_code, again.json()) == (200, first.json())
    [position] = await v1(wms_client, ["B2609001"])
    assert (position["handling_unit"], position["qty"], position["status"], position["warehouse"]) == (
        hu,
        480,
        "QUARANTINE",
        "WH10",
    )
    assert len(hu) == 18 and hu not in {h.id for h in small.handling_units}

    v1_body = {"lot": "B2609001", "sku": "SF-20001", "plant": "P100", "qty": 20, "uom": unit, "status": "AVAILABLE"}
    second = await wms_client.post("/v1/receipts", json={**v1_body, "reference": "MD-2"})
    assert second.status_code == 201
    assert second.json() == {
        "lot": "B2609001",
        "handling_units": second.json()["handling_units"],
        "status": "AVAILABLE",
    }
    assert len(await v2(wms_client, ["B2609001"])) == 2
    for bad in (
        v2_receipt("r", plant="P900"),
        v2_receipt("r", quantity={"value": 0, "unit": unit}),
        v2_receipt("r", quantity={"value": 1, "unit": "EA"}),
        v2_receipt("r", quantity=480),
        v2_receipt("r", stockStatus="lost"),
        v2_receipt("r", materialId="SF-99999"),
        {k: v for k, v in v2_receipt("r").items() if k != "reference"},
    ):
        assert (await wms_client.post("/v2/handling-units", json=bad)).status_code == 400, bad
    assert (
        await wms_client.post("/v1/receipts", json={**v1_body, "status": "DAMAGED", "reference": "d"})
    ).status_code == 400


async def test_a_reduction_takes_from_the_newest_handling_units_once_per_reference(
    wms_client: httpx2.AsyncClient, small: Dataset
) -> None:
    counts = Counter(hu.lot for hu in small.handling_units)
    lot = next(lot for lot, count in counts.items() if count >= 3 and small.lots[lot].unit == "KG")
    units = [hu for hu in small.handling_units if hu.lot == lot]
    on_hand = round(sum(hu.quantity for hu in units), 3)
    take = round(units[-1].quantity + 1, 3)  # empties the newest unit and takes 1 from the one before
    body = {"lotId": lot, "quantity": {"value": take, "unit": "KG"}, "reason": "Spill", "reference": "SCRAP-1"}
    first = await wms_client.post("/v2/stock-reductions", json=body)
    assert first.status_code == 200, first.text
    remaining = round(on_hand - take, 3)
    assert first.json() == {"lotId": lot, "reduced": take, "remaining": remaining, "handlingUnits": len(units) - 1}
    again = await wms_client.post("/v2/stock-reductions", json=body)
    assert (again.status_code, again.json()) == (200, first.json())
    left = {p["handling_unit"]: p["qty"] for p in await v1(wms_client, [lot])}
    assert units[-1].id not in left and left[units[-2].id] == pytest.approx(units[-2].quantity - 1)
    assert sum(left.values()) == pytest.approx(remaining), "the repeated reference reduced nothing more"

    v1_body = {"lot": lot, "qty": 1, "uom": "KG", "reason": "Sampling", "reference": "SCRAP-2"}
    reduced = await wms_client.post("/v1/reductions", json=v1_body)
    assert reduced.json() == {"lot": lot, "reduced": 1, "remaining": round(remaining - 1, 3)}
    too_much = {**v1_body, "qty": remaining, "reference": "SCRAP-3"}
    assert (await wms_client.post("/v1/reductions", json=too_much)).status_code == 400
    assert (await wms_client.post("/v1/reductions", json={**v1_body, "uom": "L", "reference": "x"})).status_code == 400
    no_stock = {**v1_body, "lot": "B2699999", "reference": "SCRAP-4"}
    assert (await wms_client.post("/v1/reductions", json=no_stock)).status_code == 404
    rest = {**v1_body, "qty": round(remaining - 1, 3), "reference": "SCRAP-5"}
    assert (await wms_client.post("/v1/reductions", json=rest)).json()["remaining"] == 0
    assert await v1(wms_client, [lot]) == [], "emptied units are removed"
    state = (await wms_client.get(f"/_admin/lots/{lot}")).json()
    assert [m["reference"] for m in state["moves"]] == ["SCRAP-1", "SCRAP-2", "SCRAP-5"]


async def test_the_dock_receives_a_delivery_under_a_lot_id_of_its_own(
    build: Callable[[str], Starlette], connect: Callable[[Starlette], httpx2.AsyncClient], small: Dataset
) -> None:
    app = build("wms")
    raw = next(m for m in small.materials.values() if m.tier == 0)
    body = {
        "purchaseOrder": "4500009999",
        "purchaseOrderItem": "00010",
        "materialId": raw.id,
        "plant": "P200",
        "supplier": "17300003",
        "supplierBatch": "K777777",
        "quantity": 300,
    }
    async with connect(app) as client:
        first = (await client.post("/v2/inbound-deliveries/receipts", json=body)).json()
        second = (await client.post("/v2/inbound-deliveries/receipts", json=body)).json()
        assert (first["lotId"], second["lotId"]) == ("R2600001", "R2600002"), "each delivery is a new lot"
        assert first["quantity"] == {"value": 300, "unit": raw.unit} and first["purchaseOrder"] == "4500009999"
        [position] = await v2(client, ["R2600001"])
        assert (position["handlingUnitId"], position["stockStatus"]) == (first["handlingUnits"][0], "quarantine")
        for bad in ({**body, "plant": "P900"}, {**body, "quantity": -1}, {**body, "supplier": ""}):
            assert (await client.post("/v2/inbound-deliveries/receipts", json=bad)).status_code == 400, bad
    assert [e["type"] for e in app.state.events.stats()["recent"]] == ["goods.received", "goods.received"]


async def test_bulk_moves_answer_each_lot_in_order(wms_client: httpx2.AsyncClient, small: Dataset) -> None:
    lots = stocked(small, 2)
    consumed = next(lot.id for lot in small.lots.values() if lot.remaining == 0)
    moves = [{"lotId": lot, "targetStatus": "blocked", "reference": "r"} for lot in (lots[0], consumed, lots[1])]
    answer = await wms_client.post("/v2/stock-moves/bulk", json={"moves": moves})
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [item["status"] for item in items] == [200, 404, 200]
    assert [items[0]["result"]["lotId"], items[2]["result"]["lotId"]] == lots
    assert {p["stockStatus"] for p in await v2(wms_client, lots)} == {"blocked"}
    assert (await wms_client.post("/v2/stock-moves/bulk", json={"moves": "all"})).status_code == 400
