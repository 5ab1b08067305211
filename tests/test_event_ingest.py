"""`POST /webhooks/{source}`: every refusal says why (401, 400, 403, 404) and is counted; a duplicate is answered
200 and stored once; in a mixed burst exactly the valid events reach the bus and a subscriber, none dropped."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from simulators import Dataset
from tests.conftest import Gateway, Plant, start_gateway
from tests.events import (
    QUALITY_EVENTS,
    SECRET,
    Counters,
    QmsEvents,
    Webhooks,
    WsClient,
    event_settings,
    sign,
    supplied_lots,
    until_subscriptions,
)

OTHER_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY="
INGESTED = "lotgraph_events_ingested_total"
REJECTED = "lotgraph_events_rejected_total"


@pytest.fixture(scope="module")
def gateway(plant: Plant) -> Iterator[Gateway]:
    """One gateway for the module, taking webhooks from QMS only; tests read counter increments (`Counters`)."""
    with start_gateway(plant, events=event_settings(webhook_secrets={"qms": SECRET}, erp_poll_seconds=0)) as gw:
        yield gw


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as http:
        yield http


@pytest.fixture
async def counted(gateway: Gateway, client: httpx2.AsyncClient) -> Counters:
    """Counter increments on the module's gateway since the test began."""
    return await Counters.now(client, gateway.url)


@pytest.fixture
def qms(dataset: Dataset) -> QmsEvents:
    return QmsEvents(dataset)


@pytest.fixture
def lot_ids(dataset: Dataset) -> list[str]:
    """Purchased lots of every plant, so both QMS dialects (P100 numeric, P200/P300 labels) are sent."""
    return [lot.id for plant in ("P100", "P200", "P300") for lot in list(supplied_lots(dataset, plant=plant))[:10]]


def refusal(response: httpx2.Response) -> tuple[int, str, str]:
    error = response.json()["errors"][0]
    return response.status_code, error["extensions"]["code"], error["message"]


async def test_bad_signatures_are_refused_401_and_nothing_is_ingested(
    gateway: Gateway, client: httpx2.AsyncClient, counted: Counters, qms: QmsEvents, lot_ids: list[str]
) -> None:
    """A foreign secret, a signature that is not base64, a body changed after signing and no signature at all
    are each 401 BAD_SIGNATURE, counted as such, and never reach the bus."""
    hooks = Webhooks(client, gateway.url)
    body = json.dumps(qms.status_changed(lot_ids[0]))
    foreign = await hooks.post("qms", body, secret=OTHER_SECRET)
    headers = sign(SECRET, body)
    garbled = await client.post(f"{gateway.url}/webhooks/qms", content=body,
                                headers={**headers, "webhook-signature": "v1,not*base64!"})  # fmt: skip
    tampered = await client.post(f"{gateway.url}/webhooks/qms", content=body.replace(lot_ids[0], lot_ids[1]),
                                 headers=headers)  # fmt: skip
    unsigned = await client.post(f"{gateway.url}/webhooks/qms", content=body)
    for response in (foreign, garbled, tampered, unsigned):
        status, code, message = refusal(response)
        assert (status, code) == (401, "BAD_SIGNATURE"), response.text
        assert message.startswith("webhook refused")
    assert await counted(REJECTED, source="qms", code="BAD_SIGNATURE") == 4
    assert await counted(INGESTED) == 0
    accepted = await client.post(f"{gateway.url}/webhooks/qms", content=body, headers=headers)
    assert accepted.status_code == 202, "the same body with its own signature is accepted: the refusals were real"


@pytest.mark.parametrize("offset", [timedelta(minutes=-10), timedelta(minutes=10)], ids=["old", "future"])
async def test_a_timestamp_outside_five_minutes_is_stale(
    gateway: Gateway,
    client: httpx2.AsyncClient,
    counted: Counters,
    qms: QmsEvents,
    lot_ids: list[str],
    offset: timedelta,
) -> None:
    """A correctly signed webhook whose timestamp is 10 minutes off (a replay, or a wrong clock) is 401
    STALE_WEBHOOK; the same event signed now is accepted."""
    hooks = Webhooks(client, gateway.url)
    event = qms.status_changed(lot_ids[0])
    stale = await hooks.post("qms", event, at=datetime.now(UTC) + offset)
    status, code, message = refusal(stale)
    assert (status, code) == (401, "STALE_WEBHOOK") and "timestamp" in message
    assert await counted(REJECTED, source="qms", code="STALE_WEBHOOK") == 1
    assert (await hooks.post("qms", event, at=datetime.now(UTC) - timedelta(minutes=4))).status_code == 202


def _without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    target = event
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return event


MALFORMED = {
    "not JSON": (lambda qms, lot: "{not json", "body"),
    "no occurred_at": (lambda qms, lot: _without(qms.status_changed(lot), "occurred_at"), "occurred_at"),
    "no plant": (lambda qms, lot: _without(qms.status_changed(lot), "plant"), "plant"),
    "bad occurred_at": (lambda qms, lot: {**qms.status_changed(lot), "occurred_at": "yesterday"}, "occurred_at"),
    "no lot material": (lambda qms, lot: _without(qms.status_changed(lot), "data", "lot", "material"), "material"),
    "no hold": (lambda qms, lot: _without(qms.hold_placed(lot), "data", "hold"), "hold"),
    "unknown status": (lambda qms, lot: _code(qms.status_changed(lot), "99", "data", "lot", "status"), "status"),
    "unknown previous status": (
        lambda qms, lot: _code(qms.status_changed(lot), "99", "data", "previous_status"),
        "previous_status",
    ),
}


def _code(event: dict[str, Any], code: str, *path: str) -> dict[str, Any]:
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = code
    return event


def names(message: str, field: str) -> bool:
    """The refusal locates the problem at `field` ("field: ..." or "....field: ...")."""
    return re.search(rf"(^|[\s.]){re.escape(field)}: ", message) is not None


@pytest.mark.parametrize("case", MALFORMED)
async def test_malformed_events_are_400_naming_the_field(
    gateway: Gateway, client: httpx2.AsyncClient, counted: Counters, qms: QmsEvents, dataset: Dataset, case: str
) -> None:
    """A body that is not JSON, lacks or garbles a field, or carries a status code QMS does not define for
    the lot's plant (P100: "99") is 400 MALFORMED_EVENT naming the field; nothing is ingested."""
    build, field = MALFORMED[case]
    lot = next(iter(supplied_lots(dataset, plant="P100")))
    response = await Webhooks(client, gateway.url).post("qms", build(qms, lot.id))
    status, code, message = refusal(response)
    assert (status, code) == (400, "MALFORMED_EVENT"), response.text
    assert await counted(REJECTED, source="qms", code="MALFORMED_EVENT") == 1
    assert await counted(INGESTED) == 0
    assert names(message, field), f"{field} is not named in: {message}"


async def test_a_status_in_another_plants_dialect_is_refused(
    gateway: Gateway, client: httpx2.AsyncClient, qms: QmsEvents, dataset: Dataset
) -> None:
    """P200 speaks labels: its lot arriving with P100's numeric "30" is 400 MALFORMED_EVENT, never guessed."""
    lot = next(iter(supplied_lots(dataset, plant="P200")))
    event = qms.status_changed(lot.id)
    event["data"]["lot"]["status"] = "30"
    status, code, message = refusal(await Webhooks(client, gateway.url).post("qms", event))
    assert (status, code) == (400, "MALFORMED_EVENT") and "'30'" in message


async def test_an_unknown_event_type_is_400_naming_it(
    gateway: Gateway, client: httpx2.AsyncClient, counted: Counters, qms: QmsEvents, lot_ids: list[str]
) -> None:
    """A well-formed event of a type the gateway does not know is 400 UNKNOWN_EVENT_TYPE, naming the type and
    the known ones."""
    event = {**qms.status_changed(lot_ids[0]), "type": "lot.teleported"}
    status, code, message = refusal(await Webhooks(client, gateway.url).post("qms", event))
    assert (status, code) == (400, "UNKNOWN_EVENT_TYPE")
    assert "lot.teleported" in message and "lot.status_changed" in message
    assert await counted(REJECTED, source="qms", code="UNKNOWN_EVENT_TYPE") == 1


async def test_sources_without_a_secret_or_unknown_are_refused(
    gateway: Gateway, client: httpx2.AsyncClient, counted: Counters, qms: QmsEvents, lot_ids: list[str]
) -> None:
    """MES is a push source but has no secret here: 403 WEBHOOK_NOT_CONFIGURED (even correctly signed with
    QMS's secret); a source that pushes nothing (erp) or does not exist is 404 UNKNOWN_SOURCE."""
    hooks = Webhooks(client, gateway.url)
    event = qms.status_changed(lot_ids[0])
    assert refusal(await hooks.post("mes", event))[:2] == (403, "WEBHOOK_NOT_CONFIGURED")
    assert refusal(await hooks.post("erp", event))[:2] == (404, "UNKNOWN_SOURCE")
    assert refusal(await hooks.post("nonsense", event))[:2] == (404, "UNKNOWN_SOURCE")
    assert await counted(REJECTED, source="mes", code="WEBHOOK_NOT_CONFIGURED") == 1
    assert await counted(INGESTED) == 0


async def test_a_duplicate_id_is_answered_200_and_stored_once(
    gateway: Gateway, client: httpx2.AsyncClient, counted: Counters, qms: QmsEvents, lot_ids: list[str]
) -> None:
    """The same event id posted again (a sender's retry, even with a changed body) is 200 duplicate; replaying
    the whole bus finds it once."""
    hooks = Webhooks(client, gateway.url)
    event = qms.status_changed(lot_ids[0])
    first = await hooks.publish(event)
    again = await hooks.post("qms", event)
    changed = await hooks.post("qms", qms.status_changed(lot_ids[1], "RELEASED", event_id=event["id"]))
    assert again.status_code == 200 and again.json() == {"status": "duplicate", "id": first["id"]}
    assert changed.status_code == 200 and changed.json()["status"] == "duplicate"
    fence = await hooks.publish(qms.status_changed(lot_ids[2]))
    async with WsClient.connect(gateway.url, gateway.token("quality_engineer")) as ws:
        await ws.acknowledged()
        await ws.subscribe("all", QUALITY_EVENTS, {"after": "0-0"})  # the whole bus, then live
        replayed = await ws.events_until("all", lambda e: e["id"] == fence["id"])
    ours = [e for e in replayed if e["id"] in (first["id"], fence["id"])]
    assert [e["id"] for e in ours] == [first["id"], fence["id"]]
    assert ours[0]["lotId"] == lot_ids[0] and ours[0]["cursor"] == first["cursor"], "the first version is kept"
    assert await counted(INGESTED, source="qms", outcome="accepted") == 2
    assert await counted(INGESTED, source="qms", outcome="duplicate") == 2


async def test_a_mixed_burst_ingests_exactly_the_valid_events(
    gateway: Gateway, client: httpx2.AsyncClient, counted: Counters, qms: QmsEvents, lot_ids: list[str]
) -> None:
    """30 valid events posted concurrently, shuffled with retries of some and with bad, stale, malformed,
    unknown and misrouted posts: exactly the 30 are accepted (metrics), each reaches a live subscriber once,
    and every refusal is counted under its code."""
    hooks = Webhooks(client, gateway.url)
    valid = [qms.status_changed(lot, random.choice(["RELEASED", "REJECTED", "ON_HOLD"])) for lot in lot_ids]
    posts: list[tuple[str, str, Any, str | None, datetime | None]] = [("ok", "qms", e, None, None) for e in valid]
    posts += [("duplicate", "qms", e, None, None) for e in valid[:5]]
    posts += [("BAD_SIGNATURE", "qms", qms.status_changed(lot_ids[i]), OTHER_SECRET, None) for i in range(3)]
    stale = datetime.now(UTC) - timedelta(minutes=10)
    posts += [("STALE_WEBHOOK", "qms", qms.status_changed(lot_ids[i]), None, stale) for i in range(2)]
    posts += [("MALFORMED_EVENT", "qms", _without(qms.status_changed(lot_ids[i]), "data", "lot"), None, None)
              for i in range(3)]  # fmt: skip
    posts += [("UNKNOWN_EVENT_TYPE", "qms", {**qms.status_changed(lot_ids[i]), "type": "lot.moved"}, None, None)
              for i in range(2)]  # fmt: skip
    posts += [("WEBHOOK_NOT_CONFIGURED", "mes", qms.status_changed(lot_ids[0]), None, None)]
    random.Random(7).shuffle(posts)
    gate = asyncio.Semaphore(8)

    async def send(source: str, body: Any, secret: str | None, at: datetime | None) -> httpx2.Response:
        async with gate:
            return await hooks.post(source, body, secret=secret, at=at)

    async with WsClient.connect(gateway.url, gateway.token("quality_engineer")) as ws:
        await ws.acknowledged()
        await until_subscriptions(client, gateway.url, 0)  # earlier tests' subscriptions are gone
        await ws.subscribe("live", QUALITY_EVENTS)
        await until_subscriptions(client, gateway.url, 1)
        answers = await asyncio.gather(*(send(source, body, secret, at) for _, source, body, secret, at in posts))
        outcomes: dict[str, list[int]] = {}
        for (expected, *_), response in zip(posts, answers, strict=True):
            outcomes.setdefault(expected, []).append(response.status_code)
        assert await counted(INGESTED, outcome="accepted") == len(valid)
        fence = await hooks.publish(qms.status_changed(lot_ids[-1]))
        received = await ws.events_until("live", lambda e: e["id"] == fence["id"])
    # A retry racing its original may be the one accepted: of each pair exactly one is 202.
    assert sorted(outcomes["ok"] + outcomes["duplicate"]) == [200] * 5 + [202] * len(valid)
    assert set(outcomes["BAD_SIGNATURE"]) == set(outcomes["STALE_WEBHOOK"]) == {401}
    assert set(outcomes["MALFORMED_EVENT"]) == set(outcomes["UNKNOWN_EVENT_TYPE"]) == {400}
    assert outcomes["WEBHOOK_NOT_CONFIGURED"] == [403]
    ids = [e["id"] for e in received]
    assert sorted(ids[:-1]) == sorted(f"qms:{e['id']}" for e in valid) and ids[-1] == fence["id"], "all, once"
    assert await counted(INGESTED, outcome="duplicate") == 5
    for code, count in {"BAD_SIGNATURE": 3, "STALE_WEBHOOK": 2, "MALFORMED_EVENT": 3, "UNKNOWN_EVENT_TYPE": 2}.items():
        assert await counted(REJECTED, source="qms", code=code) == count, code
    assert await counted(REJECTED, source="mes", code="WEBHOOK_NOT_CONFIGURED") == 1


LOT = "query($id: ID!) { lot(id: $id) { id qualityStatus } }"
BATCH_MISSES = {"contract": "erp.batch.read", "result": "miss"}


async def test_an_event_drops_the_cached_reads_of_its_lot(
    gateway: Gateway, client: httpx2.AsyncClient, counted: Counters, qms: QmsEvents, lot_ids: list[str]
) -> None:
    """The ERP batch is cached (60 s) and a second query of the lot is served from cache; after a status event
    for that lot the next query asks the ERP again, while another lot's cached batch stays cached."""
    lot, other = lot_ids[0], lot_ids[1]
    token = gateway.token("quality_engineer")

    async def query(lot_id: str) -> dict[str, Any]:
        response = await client.post(f"{gateway.url}/graphql", json={"query": LOT, "variables": {"id": lot_id}},
                                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        body = response.json()
        assert "errors" not in body, body
        return body["data"]["lot"]

    for lot_id in (lot, other):
        await query(lot_id)
    cached = await counted("lotgraph_cache_lookups_total", **BATCH_MISSES)
    await query(lot)
    await query(other)
    assert await counted("lotgraph_cache_lookups_total", **BATCH_MISSES) == cached, "cached"
    await Webhooks(client, gateway.url).publish(qms.status_changed(lot))
    after = await query(lot)
    assert after["id"] == lot
    assert await counted("lotgraph_cache_lookups_total", **BATCH_MISSES) == cached + 1
    await query(other)
    assert await counted("lotgraph_cache_lookups_total", **BATCH_MISSES) == cached + 1


def test_every_payload_speaks_one_naming_style() -> None:
    """Whoever builds a payload (a canonical record dumped, a hand-made dict, an operation's input), subscribers
    read camelCase keys, like the rest of the API; the schema version says so."""
    from datetime import UTC, datetime

    from gateway.events.envelope import SCHEMA_VERSION, Event, EventType

    event = Event(id="x", type=EventType.OPERATION_UPDATED, source="lotgraph", plant=None, lot=None,
                  occurred=datetime.now(UTC), payload={"operation_id": "o", "reasonCode": "QH01",
                                                        "consumed": [{"lot_id": "B1", "quantity": 1.0}]})  # fmt: skip
    assert event.payload == {"operationId": "o", "reasonCode": "QH01", "consumed": [{"lotId": "B1", "quantity": 1.0}]}
    assert event.schema_version == SCHEMA_VERSION == 2
