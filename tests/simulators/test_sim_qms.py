"""The QMS simulator over HTTP: batch reads, plant dialects, status filter, holds."""

from __future__ import annotations

from collections.abc import Callable

import httpx2
import pytest
from starlette.applications import Starlette

from simulators import Dataset

LOT_CODES = {
    "IN_INSPECTION": ("10", "Under inspection"),
    "RELEASED": ("20", "Released"),
    "REJECTED": ("30", "Rejected"),
    "ON_HOLD": ("40", "Blocked"),
}


def native(plant: str, code: str, label: str) -> str:
    return code if plant == "P100" else label


def hold_body(lot_id: str, request_id: str | None = None) -> dict:
    body = {"lot_id": lot_id, "reason_code": "DEV", "reason": "Deviation", "placed_by": "tester"}
    return body if request_id is None else {**body, "request_id": request_id}


async def test_lots_by_ids_returns_exactly_the_existing_ones(qms_client: httpx2.AsyncClient, small: Dataset) -> None:
    wanted = list(small.lots)[5:40]
    body = (await qms_client.get("/api/v1/lots", params={"ids": ",".join([*wanted, "B2699999"])})).json()
    assert [item["lot_id"] for item in body["items"]] == sorted(wanted)
    assert body["total"] == len(wanted)
    for item in body["items"]:
        lot = small.lots[item["lot_id"]]
        assert (item["plant"], item["material"], item["supplier"]) == (lot.plant, lot.material, lot.supplier)
        assert item["status"] == native(lot.plant, *LOT_CODES[lot.quality_status])


async def test_p100_speaks_codes_where_p200_speaks_labels(qms_client: httpx2.AsyncClient, small: Dataset) -> None:
    def first(plant: str) -> str:
        return next(h.lot for h in small.holds.values() if h.plant == plant and h.status == "ACTIVE")

    p100, p200 = first("P100"), first("P200")
    lots = {
        i["lot_id"]: i for i in (await qms_client.get("/api/v1/lots", params={"ids": f"{p100},{p200}"})).json()["items"]
    }
    assert (lots[p100]["status"], lots[p200]["status"]) == ("40", "Blocked")
    holds = (await qms_client.get("/api/v1/holds", params={"lot_ids": f"{p100},{p200}"})).json()["items"]
    active = {h["lot_id"]: h["status"] for h in holds if h["status"] in ("1", "Active")}
    assert active == {p100: "1", p200: "Active"}
    inspections = (await qms_client.get("/api/v1/inspection-lots", params={"lot_ids": f"{p100},{p200}"})).json()
    assert {i["lot_id"]: i["status"] for i in inspections["items"]} == {p100: "3", p200: "Decision made"}


async def test_status_filter_takes_each_dialect(qms_client: httpx2.AsyncClient, small: Dataset) -> None:
    rejected = sorted(lot.id for lot in small.lots.values() if lot.quality_status == "REJECTED")
    body = (await qms_client.get("/api/v1/lots", params={"status": "30,Rejected", "limit": "1000"})).json()
    assert [i["lot_id"] for i in body["items"]] == rejected and body["total"] == len(rejected)
    only_p100 = (await qms_client.get("/api/v1/lots", params={"status": "30", "limit": "1000"})).json()["items"]
    assert {i["plant"] for i in only_p100} == {"P100"}
    page = (
        await qms_client.get(
            "/api/v1/lots", params={"status": "30,Rejected", "plant": "P200,P300", "limit": "3", "offset": "2"}
        )
    ).json()
    in_plants = [lot for lot in rejected if small.lots[lot].plant != "P100"]
    assert [i["lot_id"] for i in page["items"]] == in_plants[2:5] and page["total"] == len(in_plants)


async def test_inspection_lots_nonconformances_and_holds_by_keys(
    qms_client: httpx2.AsyncClient, small: Dataset
) -> None:
    lot = next(nc.lot for nc in small.nonconformances.values() if small.lots[nc.lot].quality_status == "REJECTED")
    inspections = (await qms_client.get("/api/v1/inspection-lots", params={"lot_ids": lot})).json()["items"]
    assert [i["lot_id"] for i in inspections] == [lot]
    assert inspections[0]["usage_decision"]["code"] == "R"
    assert "R" in {c["valuation"] for c in inspections[0]["characteristics"]}
    by_id = (await qms_client.get("/api/v1/inspection-lots", params={"ids": inspections[0]["id"]})).json()["items"]
    assert by_id == inspections
    ncs = (await qms_client.get("/api/v1/nonconformances", params={"lot_ids": lot})).json()["items"]
    assert {n["id"] for n in ncs} == {n.id for n in small.nonconformances.values() if n.lot == lot}
    assert all(n["severity"] in ("minor", "major", "critical") for n in ncs)
    some_holds = list(small.holds)[:5]
    holds = (await qms_client.get("/api/v1/holds", params={"ids": ",".join([*some_holds, "QH-999999"])})).json()
    assert [h["id"] for h in holds["items"]] == some_holds


@pytest.mark.parametrize("path", ["/api/v1/inspection-lots", "/api/v1/nonconformances", "/api/v1/holds"])
async def test_lists_need_keys(qms_client: httpx2.AsyncClient, path: str) -> None:
    response = await qms_client.get(path)
    assert response.status_code == 400 and response.json()["error"]["message"]


async def test_place_and_release_a_hold(qms_client: httpx2.AsyncClient, small: Dataset) -> None:
    lot = next(lot for lot in small.lots.values() if lot.quality_status == "RELEASED" and lot.plant == "P200")
    placed = await qms_client.post("/api/v1/holds", json=hold_body(lot.id, "req-1"))
    assert placed.status_code == 201
    hold = placed.json()
    assert hold["status"] == "Active" and hold["lot_id"] == lot.id and hold["id"].startswith("QH-")
    retried = await qms_client.post("/api/v1/holds", json=hold_body(lot.id, "req-1"))
    assert retried.status_code == 200 and retried.json()["id"] == hold["id"]
    status = (await qms_client.get("/api/v1/lots", params={"ids": lot.id})).json()["items"][0]["status"]
    assert status == "Blocked"
    released = await qms_client.post(
        f"/api/v1/holds/{hold['id']}/release", json={"released_by": "qa", "justification": "investigated, no impact"}
    )
    assert released.status_code == 200 and released.json()["status"] == "Released"
    assert released.json()["released_by"] == "qa"
    status = (await qms_client.get("/api/v1/lots", params={"ids": lot.id})).json()["items"][0]["status"]
    assert status == "Released"
    again = await qms_client.post(
        f"/api/v1/holds/{hold['id']}/release", json={"released_by": "someone else", "justification": "retry"}
    )
    assert again.status_code == 200 and again.json()["released_by"] == "qa"


async def test_lot_stays_blocked_until_its_last_hold_is_released(
    qms_client: httpx2.AsyncClient, small: Dataset
) -> None:
    lot = next(lot for lot in small.lots.values() if lot.quality_status == "REJECTED" and lot.plant == "P100")
    first = (await qms_client.post("/api/v1/holds", json=hold_body(lot.id))).json()
    second = (await qms_client.post("/api/v1/holds", json=hold_body(lot.id))).json()
    assert first["id"] != second["id"]
    release = {"released_by": "qa", "justification": "done"}

    async def status() -> str:
        return (await qms_client.get("/api/v1/lots", params={"ids": lot.id})).json()["items"][0]["status"]

    await qms_client.post(f"/api/v1/holds/{first['id']}/release", json=release)
    assert await status() == "40"
    await qms_client.post(f"/api/v1/holds/{second['id']}/release", json=release)
    assert await status() == "30", "a rejected lot goes back to rejected, not released"


async def test_hold_errors(qms_client: httpx2.AsyncClient, small: Dataset) -> None:
    assert (await qms_client.post("/api/v1/holds", json=hold_body("B2699999"))).status_code == 404
    incomplete = {"lot_id": next(iter(small.lots)), "reason": "x"}
    assert (await qms_client.post("/api/v1/holds", json=incomplete)).status_code == 400
    assert (await qms_client.post("/api/v1/holds", content=b"not json")).status_code == 400
    release = {"released_by": "qa", "justification": "x"}
    assert (await qms_client.post("/api/v1/holds/QH-999999/release", json=release)).status_code == 404


# --------------------------------------------------------------------------- writes lotgraph posts to QMS


def inspection_body(request_id: str, **changes: object) -> dict:
    body = {
        "lot_id": "R2600001",
        "material": "RM-10005",
        "plant": "P300",
        "origin": "01",
        "supplier": "17300002",
        "quantity": 250.5,
        "unit": "KG",
        "request_id": request_id,
    }
    return {**body, **changes}


async def test_an_inspection_lot_for_a_new_lot_enters_it_in_inspection(
    build: Callable[[str], Starlette], connect: Callable[[Starlette], httpx2.AsyncClient], small: Dataset
) -> None:
    app = build("qms")
    async with connect(app) as client:
        response = await client.post("/api/v1/inspection-lots", json=inspection_body("gr-1"))
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["id"] == f"01{len(small.inspection_lots) + 1:010d}", "numbered after the seeded ones"
        assert {k: created[k] for k in ("lot_id", "material", "plant", "origin", "status", "quantity", "unit")} == {
            "lot_id": "R2600001",
            "material": "RM-10005",
            "plant": "P300",
            "origin": "01",
            "status": "Created",
            "quantity": 250.5,
            "unit": "KG",
        }
        assert created["usage_decision"] is None and 2 <= len(created["characteristics"]) <= 4
        assert all(c["result"] is None for c in created["characteristics"])
        [listed] = (await client.get("/api/v1/inspection-lots", params={"lot_ids": "R2600001"})).json()["items"]
        assert listed == created, "rendered as GET renders it"
        [lot] = (await client.get("/api/v1/lots", params={"ids": "R2600001"})).json()["items"]
        assert (lot["status"], lot["supplier"], lot["material"]) == ("Under inspection", "17300002", "RM-10005")

        again = await client.post("/api/v1/inspection-lots", json=inspection_body("gr-1"))
        assert again.status_code == 200 and again.json() == created
        twice = await client.post("/api/v1/inspection-lots", json=inspection_body("gr-2"))
        assert twice.status_code == 409 and created["id"] in twice.json()["error"]["message"]
        production = await client.post("/api/v1/inspection-lots", json=inspection_body("pr-1", origin="04"))
        assert production.status_code == 201, "another origin is another inspection"
        for bad in (
            inspection_body("x", origin="02"),
            inspection_body("x", material="RM-99999"),
            inspection_body("x", plant="P900"),
            inspection_body("x", quantity=0),
            inspection_body("x", lot_id=next(iter(small.lots))),  # QMS knows it as another material or plant
            {k: v for k, v in inspection_body("x").items() if k != "request_id"},
        ):
            assert (await client.post("/api/v1/inspection-lots", json=bad)).status_code == 400, bad
    types = [e["type"] for e in app.state.events.stats()["recent"]]
    assert types == ["lot.status_changed"], "only a lot new to QMS changes status"


async def test_a_known_lot_gets_its_production_inspection_lot(qms_client: httpx2.AsyncClient, small: Dataset) -> None:
    lot = next(lot for lot in small.lots.values() if lot.tier == 3 and lot.quality_status == "RELEASED")
    body = {"lot_id": lot.id, "material": lot.material, "plant": lot.plant, "origin": "04", "request_id": "p-1"}
    response = await qms_client.post("/api/v1/inspection-lots", json=body)
    assert response.status_code == 201 and response.json()["id"].startswith("04")
    assert (response.json()["quantity"], response.json()["unit"]) == (None, None)
    [record] = (await qms_client.get("/api/v1/lots", params={"ids": lot.id})).json()["items"]
    assert record["status"] == native(lot.plant, *LOT_CODES["RELEASED"]), "a known lot keeps its status"


async def test_a_repeated_nonconformance_request_answers_the_first(
    build: Callable[[str], Starlette], connect: Callable[[Starlette], httpx2.AsyncClient], small: Dataset
) -> None:
    app = build("qms")
    lot = next(iter(small.lots))
    body = {"lot_id": lot, "category": "Contamination", "severity": "major", "description": "d", "request_id": "nc-1"}
    async with connect(app) as client:
        first = await client.post("/api/v1/nonconformances", json=body)
        again = await client.post("/api/v1/nonconformances", json={**body, "description": "retried"})
        other = await client.post("/api/v1/nonconformances", json={**body, "request_id": "nc-2"})
        plain = await client.post("/api/v1/nonconformances", json={k: v for k, v in body.items() if k != "request_id"})
    assert (first.status_code, again.status_code, other.status_code, plain.status_code) == (201, 200, 201, 201)
    assert again.json() == first.json() and other.json()["id"] != first.json()["id"]
    types = [e["type"] for e in app.state.events.stats()["recent"]]
    assert types == ["nonconformance.opened"] * 3


async def test_holds_carry_who_placed_them(
    build: Callable[[str], Starlette], connect: Callable[[Starlette], httpx2.AsyncClient], small: Dataset
) -> None:
    app = build("qms")
    lot = next(lot.id for lot in small.lots.values() if lot.quality_status == "RELEASED" and lot.plant == "P200")
    async with connect(app) as client:
        by_lotgraph = await client.post("/api/v1/holds", json={**hold_body(lot, "h-1"), "origin": "lotgraph"})
        in_qms = await client.post("/api/v1/holds", json=hold_body(lot))
        assert (by_lotgraph.status_code, in_qms.status_code) == (201, 201)
        assert (by_lotgraph.json()["origin"], in_qms.json()["origin"]) == ("lotgraph", "QMS")
        holds = (await client.get("/api/v1/holds", params={"lot_ids": lot})).json()["items"]
        assert [h["origin"] for h in holds] == ["lotgraph", "QMS"]
        seeded = next(h for h in small.holds.values() if h.status == "ACTIVE")
        [listed] = (await client.get("/api/v1/holds", params={"ids": seeded.id})).json()["items"]
        assert listed["origin"] == "QMS"
        release = {"released_by": "QA.KELLY", "justification": "cleared"}
        released = await client.post(f"/api/v1/holds/{by_lotgraph.json()['id']}/release", json=release)
        assert released.json()["status"] == "Released" and released.json()["origin"] == "lotgraph"
        assert (await client.post("/api/v1/holds", json={**hold_body(lot), "origin": 7})).status_code == 400
    qms = app.state.qms
    hold = qms.place_hold(lot, "OOS", "Out-of-specification result", "QA.MARTIN")
    assert (hold.origin, qms.lots[lot].status) == ("QMS", "BLOCKED")
    assert qms.release_hold(hold.id, "QA.MARTIN", "retest passed").status == "RELEASED"
    assert qms.lots[lot].status == "BLOCKED", "the other hold placed in QMS still blocks it"
    placed = [e for e in app.state.events.stats()["recent"] if e["type"] == "hold.placed"]
    assert len(placed) == 3


async def test_bulk_placement_answers_each_hold_in_order(qms_client: httpx2.AsyncClient, small: Dataset) -> None:
    first, second = list(small.lots)[:2]
    holds = [hold_body(first, "r1"), hold_body("B0000000", "r2"), hold_body(second), hold_body(first, "r1")]
    answer = await qms_client.post("/api/v1/holds/bulk", json={"holds": holds})
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [item["status"] for item in items] == [201, 404, 201, 200]
    assert items[3]["result"] == items[0]["result"], "a repeated request id answers the first hold"
    assert items[1]["error"]["code"] == "NOT_FOUND" and "B0000000" in items[1]["error"]["message"]
    assert [items[0]["result"]["lot_id"], items[2]["result"]["lot_id"]] == [first, second]
    for body in ({}, {"holds": []}, {"holds": [1]}, {"holds": [hold_body(first)] * 501}):
        assert (await qms_client.post("/api/v1/holds/bulk", json=body)).status_code == 400
