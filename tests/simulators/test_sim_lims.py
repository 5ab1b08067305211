"""The LIMS simulator as a router sees it: a Federation v2 subgraph whose `_entities` answers a whole batch of lots
in one request, with lab results that follow each lot's true quality status in the dataset, behind the same admin
API as the other simulators, and started beside them without moving their ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import httpx2
import pytest
from starlette.applications import Starlette

from gateway.demo import SIMULATORS, plant_group, subgraph_url
from gateway.servers import free_block
from simulators import Credentials, Dataset, create_apps
from simulators.lims import create_app

ENTITIES = """query($representations: [_Any!]!) { _entities(representations: $representations) {
  ... on Lot { id labSamples { id test result unit lowerLimit upperLimit withinSpec analyst sampledAt }
               certificateOfAnalysis { number issuedAt conforms } } } }"""
LAB_TESTS = {"ASSAY", "MOISTURE", "PH", "VISCOSITY"}


@pytest.fixture
async def lab(small: Dataset, connect: Callable[[Starlette], httpx2.AsyncClient]) -> AsyncIterator[httpx2.AsyncClient]:
    async with connect(create_app(small)) as client:
        yield client


async def entities(client: httpx2.AsyncClient, lot_ids: list[str]) -> list[dict | None]:
    representations = [{"__typename": "Lot", "id": lot_id} for lot_id in lot_ids]
    response = await client.post(
        "/graphql", json={"query": ENTITIES, "variables": {"representations": representations}}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert "errors" not in answer, answer["errors"]
    return answer["data"]["_entities"]


async def test_entities_answer_every_lot_of_a_batch_in_order_from_the_dataset(
    lab: httpx2.AsyncClient, small: Dataset
) -> None:
    """Every lot of the plant (2,000) in one request: each lot's samples are 2-4 distinct lab tests taken after it
    was made, their `withinSpec` is what the limits say, a rejected lot failed at least one, a released one passed
    all and has a conforming certificate; only released lots have a certificate. An unknown lot is null, in place."""
    lot_ids = [*small.lots, "B9999999"]
    answered = await entities(lab, lot_ids)
    assert len(answered) == len(lot_ids) and answered[-1] is None
    statuses = set()
    for lot_id, lot in zip(lot_ids, answered[:-1], strict=False):
        record = small.lots[lot_id]
        statuses.add(record.quality_status)
        assert lot is not None and lot["id"] == lot_id
        samples = lot["labSamples"]
        assert 2 <= len(samples) <= 4 and len({s["test"] for s in samples}) == len(samples) <= len(LAB_TESTS)
        assert {s["test"] for s in samples} <= LAB_TESTS
        assert [s["id"] for s in samples] == [f"{lot_id}-S{n}" for n in range(1, len(samples) + 1)]
        for s in samples:
            assert s["withinSpec"] == (s["lowerLimit"] <= s["result"] <= s["upperLimit"]), s
            taken = datetime.fromisoformat(s["sampledAt"])
            assert record.manufactured_at < taken < record.manufactured_at + timedelta(days=1)
        passed = all(s["withinSpec"] for s in samples)
        certificate = lot["certificateOfAnalysis"]
        if record.quality_status == "REJECTED":
            assert not passed, lot_id
        if record.quality_status == "RELEASED":
            assert passed and certificate and certificate["number"] == f"COA-{lot_id}" and certificate["conforms"]
            assert datetime.fromisoformat(certificate["issuedAt"]) > record.manufactured_at
        else:
            assert certificate is None, lot_id
    assert statuses == {"RELEASED", "IN_INSPECTION", "REJECTED", "ON_HOLD"}, "the batch covers every status"


async def test_the_same_dataset_gives_the_same_lab(
    small: Dataset, connect: Callable[[Starlette], httpx2.AsyncClient]
) -> None:
    lot_ids = list(small.lots)[-50:]
    answers = []
    for _ in range(2):
        async with connect(create_app(small)) as client:
            answers.append(await entities(client, lot_ids))
    assert answers[0] == answers[1]


async def test_the_sdl_declares_lot_an_entity_of_federation_2(lab: httpx2.AsyncClient) -> None:
    sdl = (await lab.post("/graphql", json={"query": "{ _service { sdl } }"})).json()["data"]["_service"]["sdl"]
    assert '@link(url: "https://specs.apollo.dev/federation/v2.7"' in sdl
    assert 'type Lot @key(fields: "id")' in sdl


async def test_stats_count_each_entities_request_once_and_a_down_lims_answers_503(
    lab: httpx2.AsyncClient, small: Dataset
) -> None:
    await lab.delete("/_admin/stats")
    for size in (1, 300):
        await entities(lab, list(small.lots)[:size])
    stats = (await lab.get("/_admin/stats")).json()
    assert stats == {"total": 2, "by_endpoint": {"POST /graphql": 2}}
    assert (await lab.post("/_admin/faults", json={"down": True})).status_code == 200
    response = await lab.post("/graphql", json={"query": "{ _service { sdl } }"})
    assert response.status_code == 503
    assert (await lab.delete("/_admin/faults")).status_code == 204
    assert len(await entities(lab, list(small.lots)[:3])) == 3


def test_the_plant_group_serves_the_lims_after_the_four_without_moving_them(small: Dataset) -> None:
    first = free_block(len(SIMULATORS) + 1)
    group = plant_group(small, "127.0.0.1", first, apps=create_apps(small, with_lims=True))
    assert [(listener.name, listener.port) for listener in group.listeners] == [
        *[(name.upper(), first + offset) for offset, name in enumerate(SIMULATORS)],
        ("LIMS", first + len(SIMULATORS)),
    ]
    lot = next(iter(small.lots))
    with group.running_in_thread():
        query = {"query": "query($lot: ID!) { labSamples(lotId: $lot) { id } }", "variables": {"lot": lot}}
        answer = httpx2.post(subgraph_url("127.0.0.1", first, "lims"), json=query, timeout=10)
        assert answer.json()["data"]["labSamples"][0]["id"] == f"{lot}-S1"
        assert httpx2.get(f"http://127.0.0.1:{first}/_admin/stats", timeout=10).status_code == 200  # ERP, as before
    assert [listener.name for listener in plant_group(small, "127.0.0.1", first).listeners] == [
        "ERP",
        "QMS",
        "WMS",
        "MES",
    ]


async def test_create_apps_gives_the_lims_the_plants_credentials(
    small: Dataset, connect: Callable[[Starlette], httpx2.AsyncClient]
) -> None:
    apps = create_apps(
        small, credentials=Credentials(client_id="lotgraph", client_secret="s3cret", api_key="lab-key"), with_lims=True
    )
    async with connect(apps["lims"]) as lab:
        sdl = {"query": "{ _service { sdl } }"}
        assert (await lab.post("/graphql", json=sdl)).status_code == 401
        assert (await lab.post("/graphql", json=sdl, headers={"X-API-Key": "lab-key"})).status_code == 200
        assert (await lab.get("/_admin/stats")).status_code == 200
