"""The MES simulator over HTTP: genealogy (GET and POST search), executions, MES's own lot view."""

from __future__ import annotations

import httpx2

from simulators import Dataset

MES_STATUS = {"RELEASED": "RELEASED", "ON_HOLD": "HOLD", "IN_INSPECTION": "QC_PENDING", "REJECTED": "REJECTED"}


def edges(links: list[dict]) -> set[tuple[str, str, str]]:
    return {(link["consumed_lot"], link["produced_lot"], link["order_id"]) for link in links}


async def test_get_genealogy_one_level_down_and_up(mes_client: httpx2.AsyncClient, small: Dataset) -> None:
    lots = list(small.lots)[:25]
    down = (await mes_client.get("/api/genealogy", params={"consumed": ",".join(lots)})).json()["links"]
    assert edges(down) == {(k.consumed_lot, k.produced_lot, k.order_id) for k in small.links if k.consumed_lot in lots}
    produced = [link.produced_lot for link in small.links[:10]]
    up = (await mes_client.get("/api/genealogy", params={"produced": ",".join(produced)})).json()["links"]
    assert edges(up) == {
        (k.consumed_lot, k.produced_lot, k.order_id) for k in small.links if k.produced_lot in produced
    }
    link = small.links[0]
    rendered = next(r for r in up if (r["consumed_lot"], r["produced_lot"]) == (link.consumed_lot, link.produced_lot))
    consumed, made = small.lots[link.consumed_lot], small.lots[link.produced_lot]
    assert rendered["consumed_material"] == consumed.material and rendered["produced_plant"] == made.plant
    assert rendered["quantity"] == link.quantity and rendered["unit"] == link.unit


async def test_post_search_agrees_with_get_and_answers_the_whole_plant(
    mes_client: httpx2.AsyncClient, small: Dataset
) -> None:
    lots = list(small.lots)[:25]
    got = (await mes_client.get("/api/genealogy", params={"consumed": ",".join(lots)})).json()["links"]
    posted = (await mes_client.post("/api/genealogy/search", json={"consumed": lots})).json()["links"]
    assert posted == got
    everything = await mes_client.post("/api/genealogy/search", json={"produced": [*small.lots, "B2699999"]})
    assert edges(everything.json()["links"]) == {(k.consumed_lot, k.produced_lot, k.order_id) for k in small.links}
    assert len(everything.json()["links"]) == len(small.links)


async def test_genealogy_needs_exactly_one_direction(mes_client: httpx2.AsyncClient) -> None:
    assert (await mes_client.get("/api/genealogy")).status_code == 400
    both = {"consumed": ["B2600001"], "produced": ["B2600002"]}
    assert (await mes_client.post("/api/genealogy/search", json=both)).status_code == 400
    assert (await mes_client.post("/api/genealogy/search", json={"consumed": "B2600001"})).status_code == 400


async def test_executions_by_order_or_produced_lot(mes_client: httpx2.AsyncClient, small: Dataset) -> None:
    orders = list(small.orders.values())[:5]
    by_order = (await mes_client.get("/api/executions", params={"order_ids": ",".join(o.id for o in orders)})).json()
    by_lot = (await mes_client.get("/api/executions", params={"lot_ids": ",".join(o.lot for o in orders)})).json()
    assert by_order == by_lot
    assert [(e["order_id"], e["produced_lot"]) for e in by_order["executions"]] == [(o.id, o.lot) for o in orders]
    execution = by_order["executions"][0]
    assert [op["operation"] for op in execution["operations"]] == [
        f"{10 * n:04d}" for n in range(1, len(execution["operations"]) + 1)
    ]
    assert (execution["status"] == "RUNNING") == (execution["completed_at"] is None)


async def test_mes_knows_only_the_lots_it_produced(mes_client: httpx2.AsyncClient, small: Dataset) -> None:
    raw = [lot.id for lot in small.lots.values() if lot.tier == 0][:10]
    made = [lot.id for lot in small.lots.values() if lot.tier > 0][:40]
    lots = (await mes_client.get("/api/lots", params={"ids": ",".join(raw + made)})).json()["lots"]
    assert [lot["lot_id"] for lot in lots] == made
    for lot in lots:
        assert lot["status"] == MES_STATUS[small.status_in("mes", lot["lot_id"])]
