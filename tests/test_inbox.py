"""Nothing is lost between acknowledgement and effect: an inbound event is in the inbox before the sender is
answered, its reactions run from there. A gateway SIGKILLed right after a webhook's 202, before its containment
reaction had done anything, contains the lot after a restart (SQLite and PostgreSQL); a redelivered event is a
duplicate with one effect. A reaction failing for good parks the event in the exception queue (listed in its
plant only), from where it is retried once the cause is fixed, or discarded with a reason."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.events.dispatcher import Dispatcher
from gateway.events.envelope import Event, EventType, LotRef
from gateway.events.settings import EventSettings, MqttSettings
from gateway.store import Store
from simulators import Dataset
from tests.conftest import Gateway, Plant, eventually, gateway_process, plant_of_its_own, start_gateway
from tests.events import SECRET, sign
from tests.test_operation_recovery import _post, _token
from tests.test_quality_holds import USED, _blocked_everywhere, _releasable
from tests.test_workflows import _in_inspection_everywhere, _produce, _state

FIRST = 16_000  # lots of this module's own (see tests/test_divergence.py)
ERP_REFUSES_BATCHES = {"error_rate": 1.0, "status": 422, "paths": ["*/API_BATCH_SRV/Batch*"]}
EVENTS = """query($lot: String!) { exceptions(filter: {kind: EVENT, lotId: $lot}) {
  totalCount edges { cursor node { id state subject reasonCode reason attempts plants lotId payload resolvedBy
  resolution } } pageInfo { hasNextPage endCursor } } }"""
RETRY = "mutation($id: ID!) { retryException(id: $id) { state resolvedBy } }"
DISCARD = """mutation($id: ID!, $why: String!) {
  discardException(id: $id, reason: $why) { state resolvedBy resolution } }"""


def failed_inspection(plant: Plant, dataset: Dataset, lot_id: str) -> dict[str, Any]:
    """A native QMS `inspection.completed` webhook body: the lot's inspection as QMS renders it, rejected."""
    items = httpx2.get(f"{plant.url('qms')}/api/v1/inspection-lots", params={"lot_ids": lot_id}).json()["items"]
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    inspection = {**items[0], "usage_decision": {"code": "R", "decided_by": "lab-tech-7", "decided_at": now}}
    lot = httpx2.get(f"{plant.url('qms')}/api/v1/lots", params={"ids": lot_id}).json()["items"][0]
    return {"id": f"QMS-EVT-{uuid.uuid4().hex[:16].upper()}", "type": "inspection.completed", "source": "qms",
            "occurred_at": now, "plant": dataset.lots[lot_id].plant,
            "data": {"inspection": inspection, "lot": lot}}  # fmt: skip


def post(url: str, body: dict[str, Any]) -> httpx2.Response:
    text = json.dumps(body)
    return httpx2.post(f"{url}/webhooks/qms", content=text, headers=sign(SECRET, text), timeout=30)


def containment_holds(plant: Plant, lot_id: str) -> list[dict[str, Any]]:
    holds = httpx2.get(f"{plant.url('qms')}/api/v1/holds", params={"lot_ids": lot_id}).json()["items"]
    return [hold for hold in holds if hold["placed_by"] == "svc-containment"]


def until(check: Any, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.25)
    return result


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


def test_an_acknowledged_event_takes_effect_after_the_gateway_is_killed(
    plant: Plant, dataset: Dataset, tmp_path: Path, store_url: str
) -> None:
    lot = _releasable(dataset, USED, regulated=False, start=FIRST)
    event = failed_inspection(plant, dataset, lot)
    settings = {"STORE_URL": store_url, "EVENTS__WEBHOOK_SECRETS": json.dumps({"qms": SECRET}),
                "EVENTS__ERP_POLL_SECONDS": "0", "EVENTS__DISPATCH_SECONDS": "0.3"}  # fmt: skip
    plant.fault("erp", latency_ms=5000)  # containment's first read (the lot's batch) is slow: it never ends
    with gateway_process(plant, tmp_path, **settings) as running:
        running.wait_ready("/healthz")
        answer = post(running.url, event)
        assert answer.status_code == 202, answer.text
    # SIGKILLed right after the 202: the reaction had only started.
    plant.clear_faults()
    assert containment_holds(plant, lot) == [] and not _blocked_everywhere(plant, lot)
    with gateway_process(plant, tmp_path, **settings) as running:
        running.wait_ready("/healthz")
        until(lambda: _blocked_everywhere(plant, lot))
        again = post(running.url, event)
        assert (again.status_code, again.json()["status"]) == (200, "duplicate"), "the inbox remembers across restarts"
        token = _token(tmp_path, "qa_manager")
        listed = _post(running.url, EVENTS, {"lot": lot}, token)["data"]["exceptions"]
        assert listed["totalCount"] == 0, "nothing was parked"
    (hold,) = containment_holds(plant, lot)
    assert hold["reason_code"] == "CONTAINMENT"


@pytest.fixture(scope="module")
def gateway(plant: Plant) -> Any:
    events = EventSettings(webhook_secrets={"qms": SECRET}, erp_poll_seconds=0, dispatch_seconds=0.3)
    with start_gateway(plant, events=events) as gw:
        yield gw


def _parked(gateway: Gateway, plant: Plant, dataset: Dataset) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A failed inspection whose containment the ERP refuses (422 on batch reads): (lot, event, exception entry)."""
    lot = _releasable(dataset, USED, regulated=False, start=FIRST)
    event = failed_inspection(plant, dataset, lot)
    plant.fault("erp", **ERP_REFUSES_BATCHES)
    assert post(gateway.url, event).status_code == 202
    manager = gateway.token("qa_manager", plants=(dataset.lots[lot].plant,))
    edges = until(lambda: gateway.data(EVENTS, {"lot": lot}, token=manager)["exceptions"]["edges"])
    return lot, event, edges[0]["node"]


def test_a_reaction_failing_for_good_parks_the_event_until_it_is_retried(
    gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot, event, entry = _parked(gateway, plant, dataset)
    home = dataset.lots[lot].plant
    assert entry["state"] == "OPEN" and entry["subject"] == f"qms:{event['id']}"
    assert (entry["reasonCode"], entry["attempts"], entry["plants"], entry["lotId"]) == ("UPSTREAM_REJECTED", 1,
                                                                                         [home], lot)  # fmt: skip
    assert entry["reason"].startswith("reaction containment: UPSTREAM_REJECTED")
    assert entry["payload"]["type"] == "InspectionCompleted" and entry["payload"]["lot"]["id"] == lot
    elsewhere = next(p for p in ("P100", "P200", "P300") if p != home)
    others = gateway.data(EVENTS, {"lot": lot}, token=gateway.token("qa_manager", plants=(elsewhere,)))
    assert others["exceptions"] == {"totalCount": 0, "edges": [], "pageInfo": {"hasNextPage": False,
                                                                               "endCursor": None}}  # fmt: skip
    refused = gateway.execute(EVENTS, {"lot": lot}, token=gateway.token("quality_engineer"))
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    duplicate = post(gateway.url, event)
    assert (duplicate.status_code, duplicate.json()["status"]) == (200, "duplicate")
    assert containment_holds(plant, lot) == []
    plant.clear_faults()
    operator = gateway.token("plant_operator", sub="ops-7", plants=(home,))
    retried = gateway.data(RETRY, {"id": entry["id"]}, token=operator)["retryException"]
    assert retried == {"state": "RETRIED", "resolvedBy": "ops-7"}
    until(lambda: _blocked_everywhere(plant, lot))
    manager = gateway.token("qa_manager", plants=(home,))
    (done,) = gateway.data(EVENTS, {"lot": lot}, token=manager)["exceptions"]["edges"]
    assert (done["node"]["state"], done["node"]["resolvedBy"]) == ("RESOLVED", "ops-7")
    assert len(containment_holds(plant, lot)) == 1
    again = gateway.execute(RETRY, {"id": entry["id"]}, token=manager)
    assert again["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", "only an OPEN entry is retried"


def test_a_parked_event_is_discarded_with_a_reason_audited_by_whom_may(
    gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot, _event, entry = _parked(gateway, plant, dataset)
    plant.clear_faults()
    home = dataset.lots[lot].plant
    manager = gateway.token("qa_manager", sub="qa-3", plants=(home,))
    no_reason = gateway.execute(DISCARD, {"id": entry["id"], "why": ""}, token=manager)
    assert no_reason["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "reason"}
    elsewhere = next(p for p in ("P100", "P200", "P300") if p != home)
    for token in (gateway.token("quality_engineer"), gateway.token("qa_manager", plants=(elsewhere,))):
        refused = gateway.execute(DISCARD, {"id": entry["id"], "why": "not ours"}, token=token)
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    unknown = gateway.execute(DISCARD, {"id": "999999999", "why": "x"}, token=manager)
    assert unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    discarded = gateway.data(DISCARD, {"id": entry["id"], "why": "lab re-tested: false alarm"}, token=manager)
    assert discarded["discardException"] == {"state": "DISCARDED", "resolvedBy": "qa-3",
                                             "resolution": "lab re-tested: false alarm"}  # fmt: skip
    assert containment_holds(plant, lot) == [], "a discarded event has no effect"
    audit = gateway.data(
        'query($r: String!) { auditLog(filter: {resource: $r}) { entries { actor action decision details } } }',
        {"r": f"ExceptionEntry::{entry['id']}"}, token=gateway.token("auditor"),
    )["auditLog"]["entries"]  # fmt: skip
    assert [(e["action"], e["decision"]) for e in audit] == [("discardException", "DENY")] * 2 + [
        ("discardException", "ALLOW")
    ]
    assert audit[-1]["actor"] == "qa-3" and audit[-1]["details"]["reason"] == "lab re-tested: false alarm"


def test_the_backlog_is_on_metrics(gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    _parked(gateway, plant, dataset)
    text = httpx2.get(f"{gateway.url}/metrics").text
    open_events = next(line for line in text.splitlines() if line.startswith('lotgraph_exceptions_open{kind="EVENT"}'))
    assert float(open_events.split()[-1]) >= 1
    assert 'lotgraph_exceptions_open{kind="NOTIFICATION"} 0.0' in text
    assert any(line.startswith("lotgraph_inbox_pending ") for line in text.splitlines())


@asynccontextmanager
async def inbox_refusing(store_url: str) -> AsyncIterator[None]:
    """The store takes everything but new inbox rows (a trigger refuses them) until the block ends: the inbox
    failing while the rest of the gateway works."""
    engine = create_async_engine(store_url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE FUNCTION refuse_inbox() RETURNS trigger LANGUAGE plpgsql AS "
                                "$$ BEGIN RAISE EXCEPTION 'the inbox is refused by the test'; END $$"))  # fmt: skip
        await conn.execute(
            text("CREATE TRIGGER refuse BEFORE INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION refuse_inbox()")
        )
    try:
        yield
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TRIGGER refuse ON inbox"))
        await engine.dispose()


def _feed(gateway: Gateway, name: str) -> str:
    return httpx2.get(f"{gateway.url}/readyz", timeout=10).json()["feeds"].get(name, "")


async def test_an_mqtt_message_is_acknowledged_only_once_the_inbox_has_it(mqtt_server: str, postgres_url: str) -> None:
    """MES publishes a completion while the inbox cannot store it: the gateway does not PUBACK it and drops the
    session, the broker delivers it again on reconnecting, and once the inbox takes it the lot is received in
    every system. Had the message been acknowledged first, it would be gone."""
    with plant_of_its_own(seed=23) as (plant, shift):
        # A group of its own: the session it leaves behind at the broker must not take other tests' messages.
        unique = uuid.uuid4().hex[:8]
        mqtt = MqttSettings(url=mqtt_server, client_id=f"lotgraph-test-{unique}", shared_group=f"test-{unique}")
        events = EventSettings(mqtt=mqtt, erp_poll_seconds=0, dispatch_seconds=0.3)
        with start_gateway(plant, store_url=postgres_url, events=events, operation_retry_seconds=0.5) as gateway:
            await eventually(lambda: _feed(gateway, "mqtt") == "subscribed")
            plant.admin("mes", "PUT", "events", json={"mqtt": {"url": mqtt_server, "enterprise": "acme"}})
            try:
                async with inbox_refusing(postgres_url):
                    lot = _produce(plant, shift)["lot_id"]
                    await eventually(
                        lambda: plant.admin("mes", "GET", "events").json()["pending"] == 0
                    )  # at the broker
                    await eventually(lambda: _feed(gateway, "mqtt") == "connecting")  # refused, session dropped
                    assert [_state(plant, s, lot) for s in ("erp", "wms")] == [None, None]
                await eventually(lambda: _in_inspection_everywhere(plant, lot), within=60)
            finally:
                plant.admin("mes", "PUT", "events", json={})


async def test_the_erp_feed_cursor_moves_only_past_postings_the_inbox_has(plant: Plant, postgres_url: str) -> None:
    """While the inbox refuses the ERP's events, the polled page is read again and again, its cursor left where it
    was; once the inbox takes them the page's events are stored (the hold's 344 transfer among them). Had the
    cursor been saved first, the page would have been skipped for good."""
    lot = _releasable(plant.dataset, USED, regulated=False, start=FIRST + 200)
    events = EventSettings(erp_poll_seconds=0.3)
    engine = create_async_engine(postgres_url)

    async def one(query: str, **params: str) -> Any:
        async with engine.connect() as conn:
            return (await conn.execute(text(query), params)).scalar()

    try:
        with start_gateway(plant, store_url=postgres_url, events=events) as gateway:
            await eventually(lambda: _feed(gateway, "erp_poll") == "ok")
            async with inbox_refusing(postgres_url):
                before = await one("SELECT cursor FROM ingest_cursors WHERE source = 'erp'")
                hold = """mutation($lot: ID!, $key: String!) { placeQualityHold(input: {lotId: $lot, reasonCode: "QH01",
                          reason: "feed test", idempotencyKey: $key}) { state } }"""
                placed = gateway.data(hold, {"lot": lot, "key": uuid.uuid4().hex}, token=gateway.token("qa_manager"))
                assert placed["placeQualityHold"]["state"] == "COMPLETED"
                await eventually(lambda: _feed(gateway, "erp_poll").startswith("failing"))
                await asyncio.sleep(1.0)  # a few polls more, each refused
                assert await one("SELECT cursor FROM ingest_cursors WHERE source = 'erp'") == before
            stored = "SELECT count(*) FROM inbox WHERE source = 'erp' AND event -> 'lot' ->> 'id' = :lot"
            for _ in range(120):
                if await one(stored, lot=lot):
                    break
                await asyncio.sleep(0.25)
            assert await one(stored, lot=lot), "the page's events reached the inbox"
            for _ in range(40):  # saved once the whole page is in (events after this lot's may still be going in)
                if await one("SELECT cursor FROM ingest_cursors WHERE source = 'erp'") != before:
                    break
                await asyncio.sleep(0.25)
            assert await one("SELECT cursor FROM ingest_cursors WHERE source = 'erp'") != before
    finally:
        await engine.dispose()


async def test_an_event_runs_on_the_replica_that_took_it_in_or_after_its_lease_on_another(tmp_path: Path) -> None:
    """An event stored by one process is leased to it and handed to its dispatcher (which need not look in the
    store for it), so a replica polling the same store never runs it too; one whose taker died (never handed
    over) is claimed by the replica once its lease runs out, and run there once."""
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}")
    ran: list[tuple[str, str]] = []
    published: list[str] = []

    def dispatcher(name: str, poll_seconds: float) -> Dispatcher:
        async def react(event: Event) -> None:
            ran.append((name, event.id))

        async def publish(event: Event) -> None:
            published.append(event.id)

        return Dispatcher(store.inbox, store.exceptions, {"record": react}, publish, poll_seconds=poll_seconds,
                          attempts=3, retention=timedelta(days=1))  # fmt: skip

    def event(event_id: str) -> Event:
        return Event(id=event_id, type=EventType.LOT_STATUS_CHANGED, source="qms", plant="P100", lot=LotRef(id="L1"),
                     occurred=datetime.now(UTC))  # fmt: skip

    taker, other = dispatcher("taker", poll_seconds=600), dispatcher("other", poll_seconds=0.05)
    for d in (taker, other):
        d.start()
    try:
        taken = event("qms:taken")
        entry = await store.inbox.accept(taken.id, taken.type.value, "qms", taken.model_dump(mode="json"),
                                         owner=taker.owner, seconds=30)  # fmt: skip
        assert entry is not None
        await asyncio.sleep(0.3)  # the other replica polls the store six times meanwhile
        taker.take(entry, taken)
        orphan = event("qms:orphan")
        await store.inbox.accept(orphan.id, orphan.type.value, "qms", orphan.model_dump(mode="json"), owner="dead",
                                 seconds=0.5)  # fmt: skip
        assert await eventually(lambda: len(ran) == 2, within=10)
        await asyncio.sleep(0.3)  # nothing runs twice
        assert await store.inbox.count_pending() == 0
    finally:
        for d in (taker, other):
            await d.aclose()
        await store.aclose()
    assert sorted(ran) == [("other", "qms:orphan"), ("taker", "qms:taken")]
    assert published == ["qms:taken", "qms:orphan"], "each entry is put on the bus before its reactions"
