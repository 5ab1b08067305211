"""Genealogy up and down equals the simulated plant's ground truth, in requests bounded by depth."""

from __future__ import annotations

from collections import defaultdict

import pytest

from simulators import Dataset
from tests.conftest import Gateway, Plant, start_gateway

QUERY = """query($id: ID!, $direction: GenealogyDirection!, $depth: Int!) {
  lot(id: $id) { genealogy(direction: $direction, maxDepth: $depth) {
    root depthReached nodes { id } edges { from to quantity unit } } } }"""


def ground_truth(dataset: Dataset, root: str, downstream: bool, depth: int) -> tuple[set[str], set[tuple[str, str]]]:
    """Breadth-first walk over the dataset's own links: the lots reached and the links followed."""
    neighbours: dict[str, list[str]] = defaultdict(list)
    for link in dataset.links:
        if downstream:
            neighbours[link.consumed_lot].append(link.produced_lot)
        else:
            neighbours[link.produced_lot].append(link.consumed_lot)
    nodes, edges, frontier = {root}, set(), [root]
    for _ in range(depth):
        reached = []
        for lot in frontier:
            for other in neighbours[lot]:
                edges.add((lot, other) if downstream else (other, lot))
                if other not in nodes:
                    nodes.add(other)
                    reached.append(other)
        frontier = reached
    return nodes, edges


def _deepest(dataset: Dataset, tier: int) -> str:
    return next(lot.id for lot in dataset.lots.values() if lot.tier == tier)


@pytest.mark.parametrize(("direction", "tier"), [("DOWNSTREAM", 0), ("UPSTREAM", 6)])
def test_genealogy_to_depth_six_equals_ground_truth(
    gateway: Gateway, plant: Plant, dataset: Dataset, direction: str, tier: int
) -> None:
    root = _deepest(dataset, tier)
    plant.reset_stats()
    graph = gateway.data(QUERY, {"id": root, "direction": direction, "depth": 6})["lot"]["genealogy"]
    mes_requests = plant.requests_served("mes")
    nodes, edges = ground_truth(dataset, root, direction == "DOWNSTREAM", 6)
    assert len(nodes) > 1, "the chosen lot has a genealogy"
    assert graph["nodes"][0]["id"] == root
    assert {node["id"] for node in graph["nodes"]} == nodes
    assert len(graph["nodes"]) == len(nodes), "no lot twice"
    assert {(edge["from"], edge["to"]) for edge in graph["edges"]} == edges
    assert mes_requests <= 6, "one MES request per level"


def test_recall_sized_genealogy_costs_one_request_per_level(gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    plant.reset_stats()
    graph = gateway.data(QUERY, {"id": dataset.recall_lot, "direction": "DOWNSTREAM", "depth": 6})["lot"]["genealogy"]
    nodes, _ = ground_truth(dataset, dataset.recall_lot, True, 6)
    assert len(graph["nodes"]) == len(nodes) > 1000
    assert plant.requests_served("mes") <= 6


def test_depth_limits_the_walk(gateway: Gateway, dataset: Dataset) -> None:
    root = _deepest(dataset, 0)
    for depth in (1, 2):
        graph = gateway.data(QUERY, {"id": root, "direction": "DOWNSTREAM", "depth": depth})["lot"]["genealogy"]
        assert {node["id"] for node in graph["nodes"]} == ground_truth(dataset, root, True, depth)[0]


def test_depth_out_of_range_is_bad_user_input(gateway: Gateway, dataset: Dataset) -> None:
    result = gateway.execute(QUERY, {"id": dataset.recall_lot, "direction": "UPSTREAM", "depth": 0})
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


NESTED = """query($id: ID!) { lot(id: $id) { genealogy(direction: DOWNSTREAM, maxDepth: 3) {
  nodes { genealogy(direction: UPSTREAM, maxDepth: 1) { depthReached } } } } }"""
PAGE = """query($n: Int!, $depth: Int!) { lots(first: $n) { edges { node { id
  genealogy(direction: UPSTREAM, maxDepth: $depth) { depthReached nodes { id } } } } } }"""


def test_genealogy_under_genealogy_nodes_is_refused_before_any_upstream_request(
    gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    """One walk per lot reached (11,000 lots three levels below the recall lot) is refused as such, whatever
    the depths; nothing is asked upstream."""
    plant.reset_stats()
    result = gateway.execute(NESTED, {"id": dataset.recall_lot})
    assert result["errors"][0]["extensions"]["code"] == "NESTED_GENEALOGY", result
    assert "data" not in result or result["data"] is None
    assert sum(plant.served().values()) == 0


def test_a_page_of_deep_genealogies_is_priced_by_its_levels(gateway: Gateway, plant: Plant) -> None:
    """Each lot's walk is upstream requests of its own: 300 lots walked 20 levels deep is refused as too costly
    before any upstream request; 100 lots one level deep is admitted and makes one MES request per lot."""
    plant.reset_stats()
    costly = gateway.execute(PAGE, {"n": 300, "depth": 20})
    assert costly["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY", costly
    assert costly["errors"][0]["extensions"]["measured"] > 300 * 20 * 1000
    assert sum(plant.served().values()) == 0
    page = gateway.data(PAGE, {"n": 100, "depth": 1})["lots"]["edges"]
    assert len(page) == 100 and all(edge["node"]["genealogy"]["depthReached"] <= 1 for edge in page)
    assert plant.requests_served("mes") <= 100 + 5


def test_a_trace_that_leaves_lots_out_says_so_unasked(gateway: Gateway, dataset: Dataset) -> None:
    """The README's recall, by a quality engineer of P100 and P200: the data comes with a GENEALOGY_REDACTED error
    counting the lots left out, though the query did not select `redactedCount`; an all-plants caller gets none."""
    query = """query($id: ID!) { lot(id: $id) { genealogy(direction: DOWNSTREAM, maxDepth: 6) { nodes { id } } } }"""
    scoped = gateway.execute(
        query, {"id": dataset.recall_lot}, token=gateway.token("quality_engineer", plants=("P100", "P200"))
    )
    everyone = gateway.data(query, {"id": dataset.recall_lot}, token=gateway.token("qa_manager"))
    shown, total = len(scoped["data"]["lot"]["genealogy"]["nodes"]), len(everyone["lot"]["genealogy"]["nodes"])
    assert 0 < shown < total
    (notice,) = scoped["errors"]
    assert notice["extensions"] == {"code": "GENEALOGY_REDACTED", "redactedCount": total - shown}
    assert notice["path"] == ["lot", "genealogy"] and f"{total - shown} of {total} lots" in notice["message"]


MATERIALS = """query($id: ID!) { lot(id: $id) { genealogy(direction: DOWNSTREAM, maxDepth: 2) {
  nodes { id material { id } } edges { from to } } } }"""


def test_genealogy_nodes_name_their_materials_and_a_failed_material_read_fails_only_those_fields(
    plant: Plant, dataset: Dataset
) -> None:
    """Each node's material is its lot's; with the ERP's material master down the lots and links still come back,
    each node's `material` null with its own error (a gateway of its own: no material in its read cache)."""
    with start_gateway(plant) as gateway:
        plant.fault("erp", error_rate=1.0, status=503, paths=["/sap/opu/odata/sap/API_PRODUCT_SRV/*"])
        try:
            failed = gateway.execute(MATERIALS, {"id": dataset.recall_lot})
        finally:
            plant.clear_faults()
        graph = gateway.data(MATERIALS, {"id": dataset.recall_lot})["lot"]["genealogy"]
    assert len(graph["nodes"]) > 100
    assert all(node["material"]["id"] == dataset.lots[node["id"]].material for node in graph["nodes"])
    traced = failed["data"]["lot"]["genealogy"]
    assert {node["id"] for node in traced["nodes"]} == {node["id"] for node in graph["nodes"]}
    assert traced["edges"] == graph["edges"]
    assert all(node["material"] is None for node in traced["nodes"])
    assert len(failed["errors"]) == len(graph["nodes"])
    assert {error["path"][-1] for error in failed["errors"]} == {"material"}
    assert all(error["extensions"]["code"].startswith("UPSTREAM") for error in failed["errors"]), failed["errors"][0]
