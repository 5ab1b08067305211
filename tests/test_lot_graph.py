"""The lot graph resolved across ERP, QMS, WMS and MES, checked against the simulated plant's own state."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from simulators import Dataset
from tests.conftest import Gateway, Plant, start_gateway

LIST_QUERY = """
query($first: Int!) {
  lots(first: $first) {
    edges { node { id material { id description } stockPositions { handlingUnit status quantity }
                   inspections { id status } holds { id status } } }
  }
}
"""


def test_one_lot_across_all_systems(gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    lot = next(lot for lot in dataset.lots.values() if lot.order_id and lot.remaining > 0)
    data = gateway.data(
        """query($id: ID!) { lot(id: $id) {
             id material { id } plant { id } qualityStatus
             productionOrder { id producedLot { id } execution { status operations { operation } } }
             bookedStock { status quantity } stockPositions { handlingUnit quantity }
             inspections { id lot { id } } } }""",
        {"id": lot.id},
    )["lot"]
    assert data["id"] == lot.id
    assert data["material"]["id"] == lot.material
    assert data["plant"]["id"] == lot.plant
    assert data["productionOrder"]["id"] == lot.order_id
    assert data["productionOrder"]["producedLot"]["id"] == lot.id
    assert data["productionOrder"]["execution"]["operations"]
    erp_state = plant.admin("erp", "GET", f"lots/{lot.id}").json()
    assert erp_state, "the ERP simulator knows the lot"
    assert sum(s["quantity"] for s in data["stockPositions"]) == pytest.approx(lot.remaining, rel=1e-3)
    assert all(inspection["lot"]["id"] == lot.id for inspection in data["inspections"])


@pytest.mark.parametrize("sizes", [(10, 100)])
def test_list_upstream_requests_do_not_grow_with_list_size(
    gateway: Gateway, plant: Plant, sizes: tuple[int, int]
) -> None:
    served = []
    for size in sizes:
        plant.reset_stats()
        edges = gateway.data(LIST_QUERY, {"first": size})["lots"]["edges"]
        assert len(edges) == size
        assert all(edge["node"]["material"]["id"] for edge in edges)
        served.append(plant.served())
    small, large = served
    assert small == large, f"upstream requests grew with the list: {small} -> {large}"
    assert large["erp"] <= 2 and large["qms"] <= 2 and large["wms"] <= 1 and large["mes"] == 0, large


def test_a_page_answers_its_lots_batch_fields_from_the_erp_page(
    gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    supplier = next(lot.supplier for lot in dataset.lots.values() if lot.supplier)
    plant.reset_stats()
    edges = gateway.data(
        """query($supplier: String) { lots(first: 5, filter: {supplier: $supplier}) { edges { node {
             id supplierBatch purchaseOrder countryOfOrigin manufacturedOn expiresOn restricted customer } } } }""",
        {"supplier": supplier},
    )["lots"]["edges"]
    assert plant.served() == {"erp": 1, "qms": 0, "wms": 0, "mes": 0}, "the page's batches answer every field"
    assert len(edges) == 5
    for node in (edge["node"] for edge in edges):
        lot = dataset.lots[node["id"]]
        assert (node["supplierBatch"], node["purchaseOrder"]) == (lot.supplier_batch, lot.purchase_order)
        assert node["countryOfOrigin"] == lot.country_of_origin
        assert node["manufacturedOn"] < node["expiresOn"]
        assert node["restricted"] in (True, False) and node["customer"] is None


RESULTS = """inspections { id passed
  results { characteristic description unit lowerLimit upperLimit value passed } }"""


def test_inspection_results_are_the_qms_characteristics_in_a_page_and_alone(gateway: Gateway, plant: Plant) -> None:
    """A page of lots makes its inspections' results only when asked, in the plain lists' loop; they are QMS's."""
    page = gateway.data(f"{{ lots(first: 40) {{ edges {{ node {{ id {RESULTS} }} }} }} }}")["lots"]["edges"]
    answered = {edge["node"]["id"]: edge["node"]["inspections"] for edge in page}
    params = {"lot_ids": ",".join(answered)}
    items = httpx2.get(f"{plant.url('qms')}/api/v1/inspection-lots", params=params).json()["items"]
    expected: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for item in items:
        expected.setdefault(item["lot_id"], {})[item["id"]] = [
            {"characteristic": c["code"], "description": c["description"], "unit": c["unit"],
             "lowerLimit": c["lower_limit"], "upperLimit": c["upper_limit"], "value": c["result"],
             "passed": None if c["valuation"] is None else c["valuation"] == "A"}
            for c in item["characteristics"]
        ]  # fmt: skip
    got = {lot: {i["id"]: i["results"] for i in inspections} for lot, inspections in answered.items() if inspections}
    assert got == expected and sum(len(r) for i in got.values() for r in i.values()) > 40
    lot = next(iter(got))
    alone = gateway.data(f"query($id: ID!) {{ lot(id: $id) {{ {RESULTS} }} }}", {"id": lot})["lot"]["inspections"]
    assert {i["id"]: i["results"] for i in alone} == got[lot]
    verdicts = {i["id"]: i["passed"] for inspections in answered.values() for i in inspections}
    undecided = [i for i in items if i["usage_decision"] is None and any(c["valuation"] for c in i["characteristics"])]
    for item in undecided:
        assert verdicts[item["id"]] == all(c["valuation"] == "A" for c in item["characteristics"] if c["valuation"])


def test_a_produced_lots_movements_are_its_receipt_and_its_issues(gateway: Gateway, dataset: Dataset) -> None:
    lot = next(lot for lot in dataset.lots.values() if lot.order_id and lot.remaining > 0)
    movements = gateway.data(
        "query($id: ID!) { lot(id: $id) { movements { movementType quantity productionOrderId } } }", {"id": lot.id}
    )["lot"]["movements"]
    receipt = next(m for m in movements if m["movementType"] == "101")
    assert (receipt["quantity"], receipt["productionOrderId"]) == (pytest.approx(lot.quantity), lot.order_id)
    issued = sum(m["quantity"] for m in movements if m["movementType"] == "261")
    assert issued == pytest.approx(lot.quantity - lot.remaining, rel=1e-3)


def test_pages_walk_the_whole_filtered_list(gateway: Gateway, dataset: Dataset) -> None:
    supplier = next(lot.supplier for lot in dataset.lots.values() if lot.supplier)
    expected = sorted(lot.id for lot in dataset.lots.values() if lot.supplier == supplier)
    seen: list[str] = []
    after = None
    while True:
        page = gateway.data(
            """query($supplier: String!, $after: String) {
                 lots(filter: {supplier: $supplier}, first: 7, after: $after) {
                   totalCount edges { cursor node { id supplier { id } } } pageInfo { hasNextPage endCursor } } }""",
            {"supplier": supplier, "after": after},
        )["lots"]
        assert page["totalCount"] == len(expected)
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert all(edge["node"]["supplier"]["id"] == supplier for edge in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == expected


def test_quality_status_filter_returns_only_lots_in_that_status(gateway: Gateway, dataset: Dataset) -> None:
    edges = gateway.data(
        '{ lots(filter: {qualityStatus: REJECTED, plant: "P200"}, first: 50) { totalCount edges { node { id } } } }'
    )["lots"]
    truth = {lot.id for lot in dataset.lots.values() if lot.plant == "P200" and lot.quality_status == "REJECTED"}
    diverged = set(dataset.divergent)
    returned = {edge["node"]["id"] for edge in edges["edges"]}
    assert returned, "the plant has rejected lots"
    assert returned - diverged <= truth


def test_consistency_spells_out_divergence(gateway: Gateway, dataset: Dataset) -> None:
    diverged_id, what = next((lot, what) for lot, what in dataset.divergent.items() if not what.startswith("mes"))
    clean = next(
        lot for lot in dataset.lots.values()
        if lot.id not in dataset.divergent and lot.quality_status == "RELEASED" and lot.remaining > 0
    )  # fmt: skip
    query = """query($id: ID!) { lot(id: $id) { consistency {
                 consistent disagreements systems { system qualityStatus stockStatus reachable } } } }"""
    diverged = gateway.data(query, {"id": diverged_id})["lot"]["consistency"]
    assert diverged["consistent"] is False, what
    assert diverged["disagreements"]
    consistent = gateway.data(query, {"id": clean.id})["lot"]["consistency"]
    assert consistent["consistent"] is True
    assert consistent["disagreements"] == []
    views = {view["system"]: view for view in consistent["systems"]}
    assert views["QMS"]["qualityStatus"] == "RELEASED"
    assert views["ERP"]["stockStatus"] == views["WMS"]["stockStatus"] == "AVAILABLE"


def test_wms_v1_and_v2_give_identical_canonical_answers(gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    lot_ids = [lot.id for lot in dataset.lots.values() if lot.remaining > 0][:25]  # within the alias limit
    query = (
        "{ "
        + " ".join(
            f'l{i}: lot(id: "{lot_id}") {{ stockPositions {{ warehouse handlingUnit quantity unit status }} }}'
            for i, lot_id in enumerate(lot_ids)
        )
        + " }"
    )
    plant.reset_stats()
    v2 = gateway.data(query)
    v2_routes = plant.admin("wms", "GET", "stats").json()["by_endpoint"]
    with start_gateway(plant, sources={"wms": {"version": 1}}) as v1_gateway:
        plant.reset_stats()
        v1 = v1_gateway.data(query)
        v1_routes = plant.admin("wms", "GET", "stats").json()["by_endpoint"]
    assert any("/v2/" in route for route in v2_routes) and not any("/v1/" in route for route in v2_routes)
    assert any("/v1/" in route for route in v1_routes) and not any("/v2/" in route for route in v1_routes)
    assert any(entry["stockPositions"] for entry in v2.values())
    normalize = {key: sorted(entry["stockPositions"], key=lambda p: p["handlingUnit"]) for key, entry in v2.items()}
    assert {k: sorted(e["stockPositions"], key=lambda p: p["handlingUnit"]) for k, e in v1.items()} == normalize


def test_contracts_are_listed_with_version_and_status(gateway: Gateway) -> None:
    contracts = {c["name"]: c for c in gateway.data("{ contracts { name version status sunset inUse } }")["contracts"]}
    assert contracts["wms.stock.read@1"]["status"] == "DEPRECATED"
    assert contracts["wms.stock.read@1"]["sunset"]
    assert contracts["wms.stock.read@1"]["inUse"] is False
    assert contracts["wms.stock.read@2"] | {"name": None} == {
        "name": None, "version": 2, "status": "ACTIVE", "sunset": None, "inUse": True
    }  # fmt: skip
    assert contracts["erp.batch.read@1"]["inUse"] is True
