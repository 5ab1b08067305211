"""The WMS simulator over HTTP: /v1 and /v2 side by side, and stock moves."""

from __future__ import annotations

import httpx
import pytest

from simulators import Dataset


def stocked(small: Dataset, count: int) -> list[str]:
    return list(dict.fromkeys(hu.lot for hu in small.handling_units))[:count]


async def v1(client: httpx.AsyncClient, lots: list[str]) -> list[dict]:
    response = await client.get("/v1/stock", params={"lots": ",".join(lots)})
    assert response.status_code == 200
    return response.json()["stock"]


async def v2(client: httpx.AsyncClient, lots: list[str]) -> list[dict]:
    response = await client.get("/v2/stock-positions", params={"lotIds": ",".join(lots)})
    assert response.status_code == 200
    body = response.json()
    assert body["meta"]["count"] == len(body["data"])
    return body["data"]


async def test_batch_returns_the_requested_lots_positions(wms_client: httpx.AsyncClient, small: Dataset) -> None:
    lots = stocked(small, 30)
    consumed = next(lot.id for lot in small.lots.values() if lot.remaining == 0)
    positions = await v1(wms_client, [*lots, consumed, "B2699999"])
    assert {p["lot"] for p in positions} == set(lots)
    assert sorted(p["handling_unit"] for p in positions) == sorted(
        hu.id for hu in small.handling_units if hu.lot in lots
    )
    for lot in lots:
        assert sum(p["qty"] for p in positions if p["lot"] == lot) == pytest.approx(small.lots[lot].remaining)


async def test_v1_and_v2_describe_the_same_positions(wms_client: httpx.AsyncClient, small: Dataset) -> None:
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


async def test_v1_move_is_seen_by_v2(wms_client: httpx.AsyncClient, small: Dataset) -> None:
    lot = next(hu.lot for hu in small.handling_units if hu.status == "AVAILABLE")
    count = sum(hu.lot == lot for hu in small.handling_units)
    moved = await wms_client.post("/v1/moves", json={"lot": lot, "to_status": "QUARANTINE", "reference": "QH-1"})
    assert moved.status_code == 200
    assert moved.json() == {"lot": lot, "moved": count, "status": "QUARANTINE"}
    assert {p["stockStatus"] for p in await v2(wms_client, [lot])} == {"quarantine"}
    state = (await wms_client.get(f"/_admin/lots/{lot}")).json()
    assert state["moves"][-1]["reference"] == "QH-1"


async def test_v2_move_is_seen_by_v1(wms_client: httpx.AsyncClient, small: Dataset) -> None:
    lot = next(hu.lot for hu in small.handling_units if hu.status == "BLOCKED")
    moved = await wms_client.post(
        "/v2/stock-moves", json={"lotId": lot, "targetStatus": "available", "reference": "release"}
    )
    assert moved.status_code == 200
    assert moved.json()["stockStatus"] == "available" and moved.json()["handlingUnits"] >= 1
    assert {p["status"] for p in await v1(wms_client, [lot])} == {"AVAILABLE"}


async def test_move_errors(wms_client: httpx.AsyncClient, small: Dataset) -> None:
    lot = small.handling_units[0].lot
    bad_status = await wms_client.post("/v1/moves", json={"lot": lot, "to_status": "LOST", "reference": "x"})
    assert bad_status.status_code == 400
    no_stock = await wms_client.post("/v2/stock-moves", json={"lotId": "B2699999", "targetStatus": "blocked"})
    assert no_stock.status_code == 404
    assert (await wms_client.get("/v1/stock")).status_code == 400
