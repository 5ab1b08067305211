"""Two gateway processes (`lotgraph run`) on one Redis share one event stream: an event ingested by either is
delivered to the subscribers of both, and the same event posted to both is stored and delivered once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway.auth import AuthSettings, DevSigner
from gateway.events.bus import position
from simulators import Dataset
from tests.conftest import GatewayProcess, Plant, gateway_process, start_gateway
from tests.events import (
    EVENT_FIELDS,
    QUALITY_EVENTS,
    SECRET,
    Counters,
    QmsEvents,
    Webhooks,
    WsClient,
    event_settings,
    fresh_redis,
    supplied_lots,
    until_subscriptions,
)

INGESTED = "lotgraph_events_ingested_total"
REDIS_DB = 11  # a Redis database of this module's own, emptied when it starts


@dataclass
class Replica:
    running: GatewayProcess
    data_dir: Path

    @property
    def url(self) -> str:
        return self.running.url

    def token(self, *roles: str, supplier: str | None = None) -> str:
        """A development token this replica trusts (each signs with the dev key in its own data directory); a
        supplier's sees no plant of its own, only its material."""
        auth = AuthSettings()
        signer = DevSigner.load_or_create(auth.dev_key_path(self.data_dir))
        plants = () if supplier else ("*",)
        return signer.mint(f"test-{roles[0]}", roles=roles, plants=plants, supplier_id=supplier,
                           issuer=auth.issuer, audience=auth.audience)  # fmt: skip


@contextmanager
def replica(plant: Plant, data_dir: Path, redis_url: str, store_url: str) -> Iterator[Replica]:
    """`lotgraph run` in a process of its own, on Redis and the replicas' shared store (whose inbox deduplicates
    inbound events), taking signed QMS webhooks; killed afterwards."""
    with gateway_process(
        plant, data_dir, REDIS_URL=redis_url, STORE_URL=store_url, EVENTS__WEBHOOK_SECRETS=json.dumps({"qms": SECRET}),
        EVENTS__CONTAINMENT__ENABLED="false", EVENTS__ERP_POLL_SECONDS="0",
    ) as running:  # fmt: skip
        yield Replica(running, data_dir)


@pytest.fixture(scope="module")
def redis_url(redis_server: str) -> str:
    return fresh_redis(redis_server, REDIS_DB)


@pytest.fixture(scope="module")
def replicas(plant: Plant, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Replica]]:
    """Two replicas, started side by side, each with its own data directory, sharing Redis and one store (a SQLite
    file both open, as `tests/test_shared_sqlite.py` does; PostgreSQL in production)."""
    store_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('replicas-store') / 'store.db'}"
    with ExitStack() as stack:
        started = [stack.enter_context(replica(plant, tmp_path_factory.mktemp(f"replica-{n}"), redis_url, store_url))
                   for n in "ab"]  # fmt: skip
        for each in started:
            each.running.wait_ready()
        yield started


@pytest.fixture
async def client(replicas: list[Replica]) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as http:
        for each in replicas:
            await until_subscriptions(http, each.url, 0)
        yield http


async def test_an_event_ingested_by_one_replica_reaches_subscribers_of_both(
    replicas: list[Replica], client: httpx2.AsyncClient, dataset: Dataset
) -> None:
    """An event posted to replica A reaches a subscriber of replica B (and of A), with the cursor A answered:
    both read the one Redis stream."""
    a, b = replicas
    lot = next(iter(supplied_lots(dataset, plant="P100")))
    async with (
        WsClient.connect(a.url, a.token("quality_engineer")) as on_a,
        WsClient.connect(b.url, b.token("quality_engineer")) as on_b,
    ):
        for ws, each in ((on_a, a), (on_b, b)):
            await ws.acknowledged()
            await ws.subscribe("q", QUALITY_EVENTS)
            await until_subscriptions(client, each.url, 1)
        answer = await Webhooks(client, a.url).publish(QmsEvents(dataset).status_changed(lot.id, "REJECTED"))
        received = [await on_b.event("q"), await on_a.event("q")]
    for event in received:
        assert (event["id"], event["cursor"], event["lotId"]) == (answer["id"], answer["cursor"], lot.id)
        assert event["payload"]["qualityStatus"] == "REJECTED"
    assert position(answer["cursor"])[0] > 0, "a Redis stream id (milliseconds, sequence)"


HOLD = """mutation($lot: ID!, $key: String!) {
  placeQualityHold(input: {lotId: $lot, reasonCode: "QH01", reason: "replica test", idempotencyKey: $key}) {
    id state } }"""
HOLDS = f"""subscription {{ qualityEvents(filter: {{types: [HOLD_PLACED]}}) {{ {EVENT_FIELDS} }} }}"""


async def test_a_hold_placed_through_one_replica_reaches_a_supplier_on_the_other(
    replicas: list[Replica], client: httpx2.AsyncClient, dataset: Dataset
) -> None:
    """placeQualityHold on replica A: the lot's supplier, subscribed on replica B, receives the HoldPlaced event
    the completed operation announces, naming the operation; another supplier subscribed on B receives nothing
    of it (it reads up to a hold on its own lot instead)."""
    a, b = replicas
    candidates = list(supplied_lots(dataset, plant="P200"))[::-1]  # far from the lots other tests change
    lot = candidates[0]
    theirs = next(other for other in candidates if other.supplier != lot.supplier)
    engineer = a.token("quality_engineer")

    async def hold(lot_id: str) -> dict[str, Any]:
        variables = {"lot": lot_id, "key": uuid.uuid4().hex}
        answer = await client.post(f"{a.url}/graphql", json={"query": HOLD, "variables": variables},
                                   headers={"Authorization": f"Bearer {engineer}"})  # fmt: skip
        op = answer.json()["data"]["placeQualityHold"]
        assert op["state"] == "COMPLETED", answer.text
        return op

    async with (
        WsClient.connect(b.url, b.token("supplier", supplier=lot.supplier)) as supplier_ws,
        WsClient.connect(b.url, b.token("supplier", supplier=theirs.supplier)) as other_ws,
    ):
        for ws in (supplier_ws, other_ws):
            await ws.acknowledged()
            await ws.subscribe("holds", HOLDS)
        await until_subscriptions(client, b.url, 2)
        op = await hold(lot.id)
        received = await supplier_ws.event("holds")
        other_op = await hold(theirs.id)
        other_received = await other_ws.event("holds")
    assert (received["type"], received["lotId"], received["source"]) == ("HOLD_PLACED", lot.id, "lotgraph")
    assert received["supplier"] == lot.supplier and received["payload"]["operationId"] == op["id"]
    assert (other_received["lotId"], other_received["payload"]["operationId"]) == (theirs.id, other_op["id"])


async def test_the_same_event_posted_to_both_replicas_is_delivered_once(
    replicas: list[Replica], client: httpx2.AsyncClient, dataset: Dataset
) -> None:
    """A sender delivering one event to both replicas at once (a retry through the load balancer) gets one 202
    and one 200 duplicate; each replica's subscriber receives it once, and the next event right after it."""
    qms = QmsEvents(dataset)
    lots = [lot.id for lot, _ in zip(supplied_lots(dataset, plant="P200"), range(2), strict=False)]
    event = qms.status_changed(lots[0], "ON_HOLD")
    counted = [await Counters.now(client, each.url) for each in replicas]
    async with (
        WsClient.connect(replicas[0].url, replicas[0].token("quality_engineer")) as on_a,
        WsClient.connect(replicas[1].url, replicas[1].token("quality_engineer")) as on_b,
    ):
        for ws, each in ((on_a, replicas[0]), (on_b, replicas[1])):
            await ws.acknowledged()
            await ws.subscribe("q", QUALITY_EVENTS)
            await until_subscriptions(client, each.url, 1)
        answers = await asyncio.gather(*(Webhooks(client, each.url).post("qms", event) for each in replicas))
        after = await Webhooks(client, replicas[1].url).publish(qms.status_changed(lots[1]))
        received = [await ws.events_until("q", lambda e: e["id"] == after["id"]) for ws in (on_a, on_b)]
    assert sorted(a.status_code for a in answers) == [200, 202]
    (accepted,) = (a.json() for a in answers if a.status_code == 202)
    assert [a.json()["status"] for a in answers if a.status_code == 200] == ["duplicate"]
    for events in received:
        assert [(e["id"], e["cursor"]) for e in events] == [
            (accepted["id"], accepted["cursor"]),
            (after["id"], after["cursor"]),
        ]
    assert sum([await c(INGESTED, outcome="accepted") for c in counted]) == 2
    assert sum([await c(INGESTED, outcome="duplicate") for c in counted]) == 1


async def test_a_replica_started_after_events_were_published_joins_the_stream(
    replicas: list[Replica], redis_url: str, client: httpx2.AsyncClient, plant: Plant, dataset: Dataset
) -> None:
    """A replica starting (a restart, a scale-up) while the shared stream already holds events comes up and
    delivers the events ingested after it started, whichever replica ingested them."""
    qms = QmsEvents(dataset)
    lots = [lot.id for lot, _ in zip(supplied_lots(dataset, plant="P300"), range(2), strict=False)]
    await Webhooks(client, replicas[0].url).publish(qms.status_changed(lots[0]))  # the stream exists now
    with start_gateway(plant, redis_url=redis_url, events=event_settings(erp_poll_seconds=0)) as late:
        async with WsClient.connect(late.url, late.token("quality_engineer")) as ws:
            await ws.acknowledged()
            await ws.subscribe("q", QUALITY_EVENTS)
            await until_subscriptions(client, late.url, 1)
            answer = await Webhooks(client, replicas[0].url).publish(qms.status_changed(lots[1]))
            assert (await ws.event("q"))["id"] == answer["id"]
        await until_subscriptions(client, late.url, 0)  # gone before the gateway stops
