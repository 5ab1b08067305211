"""lotgraph federating a remote subgraph (the LIMS simulator, a real Federation v2 subgraph on loopback): the
fields it adds to `Lot` join lotgraph's schema, each level of a query costs one batched `_entities` request,
answers equal what the LIMS says itself, its failures are partial results naming it, and lotgraph's policies
guard the borrowed fields before any request leaves."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.federation.client import FederationError
from gateway.servers import ServerGroup
from simulators import Dataset
from simulators.credentials import Credentials
from simulators.lims import create_app as lims_app
from tests.conftest import Gateway, Lims, Plant, start_gateway
from tests.events import supplied_lots

SAMPLES = "labSamples { id test result unit withinSpec }"
DIRECT = f"query($lot: ID!) {{ labSamples(lotId: $lot) {{ {SAMPLES.removeprefix('labSamples { ')} }}"


@pytest.fixture(scope="module")
def federating(plant: Plant, lims: Lims) -> Iterator[Gateway]:
    with start_gateway(plant, subgraphs={"lims": {"url": lims.graphql}}) as gateway:
        yield gateway


def served_during(lims: Lims, run: Any) -> tuple[Any, int]:
    before = lims.requests_served()
    result = run()
    return result, lims.requests_served() - before


def test_a_page_of_lots_costs_one_entities_request_and_equals_what_the_lims_says(
    federating: Gateway, lims: Lims
) -> None:
    node = f"id qualityStatus {SAMPLES} certificateOfAnalysis {{ number }}"
    query = f"{{ lots(first: 100) {{ edges {{ node {{ {node} }} }} }} }}"
    answer, requests = served_during(lims, lambda: federating.data(query))
    nodes = [edge["node"] for edge in answer["lots"]["edges"]]
    assert len(nodes) == 100 and requests == 1, f"{requests} LIMS requests for one level"
    for node in nodes[::25]:
        assert node["labSamples"] == lims.query(DIRECT, {"lot": node["id"]})["labSamples"], node["id"]
        assert node["labSamples"] and all(s["id"].startswith(node["id"]) for s in node["labSamples"])
    released = [n for n in nodes if n["qualityStatus"] == "RELEASED"]
    assert released and all(n["certificateOfAnalysis"] == {"number": f"COA-{n['id']}"} for n in released)


def test_each_level_of_a_query_is_one_request_whatever_the_page_size(
    federating: Gateway, lims: Lims, dataset: Dataset
) -> None:
    """Lots made in-house, then the lots their orders produced: two levels of `Lot`, so at most two requests
    (one, when the second level resolves from cache in the same tick), and the same number for 10 lots as for 60."""
    query = """query($n: Int!, $material: String!) { lots(first: $n, filter: {material: $material}) { edges {
        node { id labSamples { test } productionOrder { producedLot { id labSamples(limit: 1) { test } } } } } } }"""
    material = Counter(lot.material for lot in dataset.lots.values() if lot.order_id).most_common(1)[0][0]
    counts = []
    for size in (10, 60):
        variables = {"n": size, "material": material}
        answer, requests = served_during(lims, lambda variables=variables: federating.data(query, variables))
        nodes = [edge["node"] for edge in answer["lots"]["edges"]]
        assert len(nodes) == size
        counts.append(requests)
    assert counts[0] == counts[1] and 1 <= counts[1] <= 2, counts
    produced = [n for n in nodes if n["productionOrder"]]
    assert len(produced) == 60 and all(
        n["productionOrder"]["producedLot"]["labSamples"] == n["labSamples"][:1] for n in produced
    ), "the second level is the same lots, asked for one sample"


def test_aliases_variables_and_fragments_are_planned_exactly(federating: Gateway, lims: Lims, dataset: Dataset) -> None:
    lot = next(iter(supplied_lots(dataset)))
    query = """query($lot: ID!, $n: Int!) { lot(id: $lot) {
        first: labSamples(limit: $n) { t: test r: result }
        all: labSamples { ...Sample } } }
      fragment Sample on LabSample { id withinSpec }"""
    answer = federating.data(query, {"lot": lot.id, "n": 1})["lot"]
    direct = lims.query(DIRECT, {"lot": lot.id})["labSamples"]
    assert answer["first"] == [{"t": direct[0]["test"], "r": direct[0]["result"]}]
    assert answer["all"] == [{"id": s["id"], "withinSpec": s["withinSpec"]} for s in direct]


def test_a_lims_outage_fails_only_its_fields(federating: Gateway, lims: Lims) -> None:
    lims.admin("POST", "faults", json={"down": True})
    answer = federating.execute("{ lots(first: 3) { edges { node { id qualityStatus labSamples { test } } } } }")
    nodes = [edge["node"] for edge in answer["data"]["lots"]["edges"]]
    assert len(nodes) == 3 and all(n["qualityStatus"] and n["labSamples"] is None for n in nodes)
    assert {(e["extensions"]["code"], e["extensions"]["source"]) for e in answer["errors"]} == {
        ("UPSTREAM_UNAVAILABLE", "lims")
    }
    assert sorted(e["path"][-1] for e in answer["errors"]) == ["labSamples"] * 3


def test_an_error_the_lims_reports_is_a_subgraph_error_on_that_field(federating: Gateway, dataset: Dataset) -> None:
    """The LIMS refuses a negative limit: that field is null with SUBGRAPH_ERROR and the LIMS's message. Its
    sibling in the same `_entities` request came back null too (the LIMS nulled the whole entity, as its schema
    says): it carries the same error rather than a silent null. lotgraph's own fields are untouched."""
    lot = next(iter(supplied_lots(dataset)))
    answer = federating.execute(
        "query($lot: ID!) { lot(id: $lot) { id bad: labSamples(limit: -1) { test } sibling: labSamples { test } } }",
        {"lot": lot.id},
    )
    assert answer["data"]["lot"] == {"id": lot.id, "bad": None, "sibling": None}
    errors = {tuple(error["path"]): error for error in answer["errors"]}
    assert set(errors) == {("lot", "bad"), ("lot", "sibling")}
    for error in errors.values():
        assert error["extensions"]["code"] == "SUBGRAPH_ERROR" and error["extensions"]["source"] == "lims"
        assert "limit must not be negative" in error["message"]


def test_borrowed_fields_are_guarded_before_anything_is_asked(
    federating: Gateway, lims: Lims, dataset: Dataset
) -> None:
    """A supplier asking for another supplier's lot's lab results is FORBIDDEN by lotgraph's readLot policy,
    and the LIMS never hears of it; its own lot's results come through."""
    own = next(iter(supplied_lots(dataset)))
    foreign = next(lot for lot in supplied_lots(dataset) if lot.supplier != own.supplier)
    token = federating.token("supplier", supplier=own.supplier, plants=())
    query = "query($lot: ID!) { lot(id: $lot) { labSamples { test } } }"
    refused, requests = served_during(lims, lambda: federating.execute(query, {"lot": foreign.id}, token=token))
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN" and requests == 0
    allowed = federating.execute(query, {"lot": own.id}, token=token)
    assert "errors" not in allowed and allowed["data"]["lot"]["labSamples"]


def test_lotgraphs_own_fields_answer_as_without_federation(
    federating: Gateway, gateway: Gateway, dataset: Dataset
) -> None:
    """Extending the schema must not change lotgraph's own fields: enum arguments (a genealogy's direction, a
    status filter) still reach the resolvers as the enums they compare against, and enum results still print."""
    query = """query($lot: ID!) {
      lot(id: $lot) { genealogy(direction: DOWNSTREAM, maxDepth: 3) { depthReached nodes { id } } }
      lots(first: 5, filter: {qualityStatus: REJECTED}) { edges { node { id qualityStatus } } } }"""
    variables = {"lot": dataset.recall_lot}
    federated, plain = federating.data(query, variables), gateway.data(query, variables)
    assert federated == plain
    assert len(federated["lot"]["genealogy"]["nodes"]) > 1, "DOWNSTREAM of a raw lot reaches what it went into"
    assert {e["node"]["qualityStatus"] for e in federated["lots"]["edges"]} == {"REJECTED"}


def test_lotgraphs_own_sdl_does_not_claim_borrowed_fields(federating: Gateway) -> None:
    sdl = federating.data("{ _service { sdl } }")["_service"]["sdl"]
    assert "type Lot" in sdl and "labSamples" not in sdl and "LabSample" not in sdl


def test_the_supergraph_command_prints_the_composed_schema(lims: Lims, tmp_path: Path) -> None:
    env = dict(os.environ, LOTGRAPH_DATA_DIR=str(tmp_path), LOTGRAPH_SUBGRAPHS__LIMS__URL=lims.graphql)
    lotgraph = str(Path(sys.executable).parent / "lotgraph")
    ran = subprocess.run([lotgraph, "supergraph"], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    lot = ran.stdout[ran.stdout.index("type Lot ") :]
    lot = lot[: lot.index("\n}")]
    assert "labSamples(limit: Int = null): [LabSample!]\n" in lot and "qualityStatus: QualityStatus" in lot
    assert "type LabSample {" in ran.stdout and "certificateOfAnalysis: Certificate" in lot


CREDENTIALS = Credentials(client_id="lotgraph", client_secret="lims-secret", api_key="lims-api-key")


@pytest.fixture(scope="module")
def guarded_lims(dataset: Dataset) -> Iterator[str]:
    """A LIMS that demands an OAuth2 token or an API key."""
    group = ServerGroup()
    listener = group.add("lims", lims_app(dataset, credentials=CREDENTIALS))
    with group.running_in_thread():
        yield listener.url


@pytest.mark.parametrize(
    "access",
    [
        {"auth": {"kind": "oauth2", "client_id": "lotgraph", "client_secret": "lims-secret"}},
        {"headers": {"X-API-Key": "lims-api-key"}},
    ],
    ids=["oauth2", "api-key-header"],
)
def test_a_subgraph_that_wants_credentials_gets_them(
    plant: Plant, guarded_lims: str, dataset: Dataset, access: dict[str, Any]
) -> None:
    if "auth" in access:
        access = {"auth": {**access["auth"], "token_url": f"{guarded_lims}/oauth/token"}}
    lot = next(iter(supplied_lots(dataset)))
    with start_gateway(plant, subgraphs={"lims": {"url": f"{guarded_lims}/graphql", **access}}) as gateway:
        answer = gateway.data("query($id: ID!) { lot(id: $id) { labSamples { test } } }", {"id": lot.id})
    assert answer["lot"]["labSamples"], "the SDL was read and the entities fetched with the credentials"


def test_a_subgraph_refusing_lotgraph_stops_the_start(plant: Plant, guarded_lims: str) -> None:
    with (
        pytest.raises(FederationError) as refused,
        start_gateway(plant, subgraphs={"lims": {"url": f"{guarded_lims}/graphql"}}),
    ):
        pass
    assert "subgraph lims" in str(refused.value) and "401" in str(refused.value)
