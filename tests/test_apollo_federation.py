"""Proof with the real thing: Apollo's own composition, Apollo Gateway and a graphql-ws client (pinned in
tests/federation/package.json, installed by `make test`) against lotgraph and the LIMS subgraph on loopback.

Each test runs against a plain lotgraph and against one federating the LIMS itself (as `lotgraph demo` does): the
router composes that lotgraph beside the LIMS without a clash, because its `_service { sdl }` is its own schema,
never the fields it borrows, so the router still asks the LIMS for those directly. A third, test-local subgraph
(`watchlist`) returns bare `Lot` references, so the router's plans also call lotgraph's `_entities`."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import strawberry
from starlette.applications import Starlette
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.federation.schema_directives import Key

from gateway.servers import ServerGroup, free_block
from simulators import Dataset
from tests.conftest import Gateway, Lims, Plant, start_gateway
from tests.events import QmsEvents, Webhooks, event_settings, supplied_lots, until_subscriptions

HARNESS = Path(__file__).parent / "federation"
LOT = """query($id: ID!) { lot(id: $id) { id qualityStatus supplier { id name } material { id description }
  holds { id status } %s } }"""


def node(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", *args], cwd=HARNESS, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def harness() -> None:
    """The Node packages must be there: `make test` installs them (npm ci). Missing ones fail, never skip."""
    assert shutil.which("node"), "Node.js 20+ is needed for the federation tests: `make test` provides it"
    # Apollo Server 5 and graphql-ws 6 need Node 20; an older one (Debian 12's own nodejs is 18) fails here, saying so.
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert int(version.removeprefix("v").split(".")[0]) >= 20, (
        f"Node.js {version} is too old: the pinned Apollo packages need 20+"
    )
    assert (HARNESS / "node_modules" / "@apollo" / "gateway").is_dir(), (
        "tests/federation/node_modules is missing: run `make test` (it runs npm ci there)"
    )


@pytest.fixture(scope="module", params=["plain", "federating-lims"])
def federated(request: pytest.FixtureRequest, lims: Lims) -> dict[str, Any]:
    """The settings of a lotgraph that federates nothing, or the LIMS."""
    return {"subgraphs": {"lims": {"url": lims.graphql}}} if request.param == "federating-lims" else {}


@pytest.fixture(scope="module")
def lotgraph(plant: Plant, federated: dict[str, Any]) -> Iterator[Gateway]:
    """lotgraph as a subgraph, taking signed QMS webhooks (for the subscription test)."""
    with start_gateway(plant, events=event_settings(), **federated) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def behind_apollo_gateway(plant: Plant, federated: dict[str, Any]) -> Iterator[Gateway]:
    """lotgraph as Apollo Gateway for Node needs it: without @authenticated/@requiresScopes, which that gateway
    refuses because it cannot enforce them (lotgraph enforces its policies itself either way)."""
    with start_gateway(plant, router_directives=False, **federated) as gateway:
        yield gateway


@strawberry.federation.type(keys=[Key(fields="id", resolvable=False)])
class Lot:
    id: strawberry.ID


@strawberry.type
class WatchlistQuery:
    @strawberry.field
    def watched_lots(self, ids: list[strawberry.ID]) -> list[Lot]:
        return [Lot(id=i) for i in ids]


@pytest.fixture(scope="module")
def watchlist() -> Iterator[str]:
    """A subgraph that only names lots: everything else about them the router must ask lotgraph's `_entities`."""
    schema = strawberry.federation.Schema(query=WatchlistQuery, types=[Lot], federation_version="2.7")
    group = ServerGroup()
    listener = group.add("watchlist", Starlette(routes=[Route("/graphql", GraphQL(schema), methods=["POST"])]))
    with group.running_in_thread():
        yield f"{listener.url}/graphql"


def test_apollo_composition_accepts_lotgraph_and_the_lims(lotgraph: Gateway, lims: Lims) -> None:
    """With the router directives: the supergraph keeps `@requiresScopes` on Lot for Apollo Router to enforce, and
    `Lot.labSamples` is joined from the LIMS."""
    composed = node("compose.mjs", f"lotgraph={lotgraph.url}/graphql", f"lims={lims.graphql}")
    assert composed.returncode == 0, composed.stderr
    supergraph = composed.stdout
    assert "LOTGRAPH @join__graph" in supergraph and "LIMS @join__graph" in supergraph
    lot = supergraph[supergraph.index("type Lot") :]
    lot = lot[: lot.index("\n}")]
    assert "@requiresScopes" in lot and '@join__type(graph: LIMS, key: "id")' in lot
    assert "labSamples(limit: Int = null): [LabSample!]! @join__field(graph: LIMS)" in lot


def test_apollo_composition_refuses_a_subgraph_that_redefines_a_lotgraph_field(
    lotgraph: Gateway, tmp_path: Path
) -> None:
    conflicting = tmp_path / "conflicting.graphql"
    conflicting.write_text(
        'extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key"])\n'
        'type Lot @key(fields: "id") { id: ID! qualityStatus: Int }\ntype Query { ping: String }\n'
    )
    composed = node("compose.mjs", f"lotgraph={lotgraph.url}/graphql", f"conflicting=@{conflicting}")
    assert composed.returncode == 1
    assert "Lot.qualityStatus" in composed.stderr, composed.stderr


@pytest.fixture(scope="module")
def apollo_gateway(behind_apollo_gateway: Gateway, lims: Lims, watchlist: str) -> Iterator[str]:
    port = free_block(1)
    subgraphs = [f"lotgraph={behind_apollo_gateway.url}/graphql", f"lims={lims.graphql}", f"watchlist={watchlist}"]
    process = subprocess.Popen(
        ["node", "gateway.mjs", str(port), *subgraphs],
        cwd=HARNESS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        ready = process.stdout.readline() if process.stdout else ""
        assert ready.startswith("ready "), f"Apollo Gateway did not start: {ready}{process.communicate(timeout=10)}"
        yield ready.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=30)


def post(url: str, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    answer = httpx2.post(url, json={"query": query, "variables": variables}, timeout=60,
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    return answer.json()


def test_apollo_gateway_answers_across_lotgraph_and_the_lims(
    apollo_gateway: str, behind_apollo_gateway: Gateway, lims: Lims, dataset: Dataset
) -> None:
    """One query needing both subgraphs: lotgraph's part equals what lotgraph answers directly, the LIMS part
    what the LIMS answers directly."""
    lot = next(lot for lot in supplied_lots(dataset) if lot.quality_status == "RELEASED")
    token = behind_apollo_gateway.token("quality_engineer")
    via_router = post(apollo_gateway, LOT % "labSamples { id test result } certificateOfAnalysis { number }",
                      {"id": lot.id}, token)  # fmt: skip
    assert "errors" not in via_router, via_router
    found = via_router["data"]["lot"]
    direct = behind_apollo_gateway.data(LOT % "", {"id": lot.id}, token=token)["lot"]
    assert {key: found[key] for key in direct} == direct
    samples = lims.query("query($lot: ID!) { labSamples(lotId: $lot) { id test result } }", {"lot": lot.id})
    assert found["labSamples"] == samples["labSamples"] and found["certificateOfAnalysis"] == {
        "number": f"COA-{lot.id}"
    }


def test_apollo_gateway_resolves_lots_another_subgraph_names_through_lotgraphs_entities(
    apollo_gateway: str, behind_apollo_gateway: Gateway, dataset: Dataset
) -> None:
    """The watchlist names lots, lotgraph's `_entities` supplies their fields: what lotgraph answers directly for a
    QA manager, and for a supplier its own lot with the foreign one refused FORBIDDEN and an unknown one NOT_FOUND
    (Apollo Gateway passes lotgraph's errors on, each at its lot's path)."""
    query = "query($ids: [ID!]!) { watchedLots(ids: $ids) { id qualityStatus supplier { id } material { id } } }"
    own = next(iter(supplied_lots(dataset)))
    foreign = next(lot for lot in supplied_lots(dataset) if lot.supplier != own.supplier)
    made = next(lot for lot in dataset.lots.values() if lot.order_id)
    single = "query($id: ID!) { lot(id: $id) { id qualityStatus supplier { id } material { id } } }"
    manager = behind_apollo_gateway.token("qa_manager")
    via_router = post(apollo_gateway, query, {"ids": [own.id, made.id]}, manager)
    assert "errors" not in via_router, via_router
    direct = [behind_apollo_gateway.data(single, {"id": i}, token=manager)["lot"] for i in (own.id, made.id)]
    assert via_router["data"]["watchedLots"] == direct
    supplier = behind_apollo_gateway.token("supplier", supplier=own.supplier, plants=())
    refused = post(apollo_gateway, query, {"ids": [own.id, foreign.id, "NO-SUCH-LOT"]}, supplier)
    assert refused["data"]["watchedLots"][0]["id"] == own.id, refused
    codes = {tuple(e["path"]): e["extensions"]["code"] for e in refused["errors"]}
    assert {path[:2]: code for path, code in codes.items()} == {("watchedLots", 1): "FORBIDDEN",
                                                               ("watchedLots", 2): "NOT_FOUND"}, refused  # fmt: skip


def test_apollo_gateway_passes_lotgraphs_refusal_through(
    apollo_gateway: str, behind_apollo_gateway: Gateway, dataset: Dataset
) -> None:
    """A supplier asking the router for another supplier's lot gets lotgraph's FORBIDDEN, not the lot."""
    own = next(iter(supplied_lots(dataset)))
    foreign = next(lot for lot in supplied_lots(dataset) if lot.supplier != own.supplier)
    token = behind_apollo_gateway.token("supplier", supplier=own.supplier, plants=())
    answer = post(apollo_gateway, LOT % "labSamples { test }", {"id": foreign.id}, token)
    assert answer["data"]["lot"] is None
    assert "FORBIDDEN" in json.dumps(answer["errors"]), answer["errors"]


async def test_a_graphql_ws_node_client_receives_lotgraphs_quality_events(lotgraph: Gateway, dataset: Dataset) -> None:
    """The reference graphql-ws client (Node) subscribes to lotgraph with its token in connection_init and gets
    the normalized event a signed QMS webhook produced."""
    lot = next(iter(supplied_lots(dataset, plant="P200")))
    query = "subscription { qualityEvents(filter: {types: [LOT_STATUS_CHANGED]}) { id type lotId payload } }"
    ws_url = lotgraph.url.replace("http://", "ws://") + "/graphql"
    client = await asyncio.create_subprocess_exec(
        "node", "subscribe.mjs", ws_url, lotgraph.token("quality_engineer"), "1", query,
        cwd=HARNESS, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx2.AsyncClient(timeout=30) as http:
            await until_subscriptions(http, lotgraph.url, 1)
            event = QmsEvents(dataset).status_changed(lot.id, "REJECTED")
            published = await Webhooks(http, lotgraph.url).publish(event)
        out, err = await asyncio.wait_for(client.communicate(), timeout=30)
    finally:
        if client.returncode is None:
            client.kill()
    assert client.returncode == 0, err.decode()
    received = json.loads(out.decode().splitlines()[0])["data"]["qualityEvents"]
    assert (received["id"], received["type"], received["lotId"]) == (published["id"], "LOT_STATUS_CHANGED", lot.id)
    assert received["payload"]["qualityStatus"] == "REJECTED"


def test_apollo_gateway_fetches_a_pages_lab_samples_in_one_entities_request(
    apollo_gateway: str, behind_apollo_gateway: Gateway, lims: Lims, dataset: Dataset
) -> None:
    """Apollo's query plan over lotgraph's page of 50 lots asks the LIMS once (its `_entities` for all 50, counted
    by the LIMS's own stats), lotgraph's part of the page is what lotgraph answers directly, and each lot's lab
    results failed a test exactly when the dataset says the lot is truly rejected."""
    page = "{ lots(first: 50) { edges { node { id qualityStatus %s } } } }"
    token = behind_apollo_gateway.token("quality_engineer")
    lims.admin("DELETE", "stats")
    via_router = post(apollo_gateway, page % "labSamples { test withinSpec }", {}, token)
    assert "errors" not in via_router, via_router
    assert lims.admin("GET", "stats").json() == {"total": 1, "by_endpoint": {"POST /graphql": 1}}
    nodes = [edge["node"] for edge in via_router["data"]["lots"]["edges"]]
    direct = behind_apollo_gateway.data(page % "", token=token)["lots"]["edges"]
    assert [{"id": n["id"], "qualityStatus": n["qualityStatus"]} for n in nodes] == [e["node"] for e in direct]
    assert len(nodes) == 50 and all(n["labSamples"] for n in nodes)
    failed = {n["id"] for n in nodes if not all(sample["withinSpec"] for sample in n["labSamples"])}
    assert failed == {n["id"] for n in nodes if dataset.lots[n["id"]].quality_status == "REJECTED"}


def test_apollo_gateway_with_the_lims_down_keeps_lotgraphs_fields_where_graphql_allows(
    apollo_gateway: str, behind_apollo_gateway: Gateway, lims: Lims, dataset: Dataset
) -> None:
    """The LIMS answering 503 (its `down` fault): the router still returns lotgraph's part of the lot with the LIMS's
    nullable certificate null and the 503 as an error; the LIMS's non-null `labSamples` failing nulls the whole lot,
    as GraphQL's null propagation demands (which is why lotgraph, federating the LIMS itself, makes them nullable)."""
    lot = next(lot for lot in supplied_lots(dataset) if lot.quality_status == "RELEASED")
    token = behind_apollo_gateway.token("quality_engineer")
    direct = behind_apollo_gateway.data(LOT % "", {"id": lot.id}, token=token)["lot"]
    lims.admin("POST", "faults", json={"down": True})
    partial = post(apollo_gateway, LOT % "certificateOfAnalysis { number }", {"id": lot.id}, token)
    assert partial["data"]["lot"] == direct | {"certificateOfAnalysis": None}
    assert [e["extensions"]["response"]["status"] for e in partial["errors"]] == [503], partial["errors"]
    nulled = post(apollo_gateway, LOT % "labSamples { test }", {"id": lot.id}, token)
    assert nulled["data"] == {"lot": None} and "503" in nulled["errors"][0]["message"], nulled
