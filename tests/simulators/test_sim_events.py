"""Plant events over real loopback HTTP and MQTT: what QMS and MES emit, and how their outboxes deliver it.

Each test serves a fresh small plant and a webhook receiver on loopback (one uvicorn group in a thread); the
receiver verifies every Standard Webhooks signature and answers whatever status the test queued.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import httpx2
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.servers import ServerGroup, free_port
from simulators import Dataset, create_apps
from tests.services import mosquitto

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@dataclass
class Receiver:
    """A webhook endpoint: verifies signatures, answers the queued statuses (then 204), records every attempt."""

    secret: str = field(default_factory=lambda: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
    answers: deque[int] = field(default_factory=deque)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # {"id", "status", "event"}
    forged: list[bytes] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            try:
                event = Webhook(self.secret).verify(body, dict(request.headers))
            except WebhookVerificationError:
                self.forged.append(body)
                return Response("bad signature", status_code=401)
            status = self.answers.popleft() if self.answers else 204
            self.attempts.append({"id": request.headers["webhook-id"], "status": status, "event": event})
            return Response("refused by the test" if status >= 400 else None, status_code=status)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def delivered(self) -> list[dict[str, Any]]:
        return [a["event"] for a in self.attempts if a["status"] < 300]


@dataclass
class Live:
    dataset: Dataset
    apps: dict[str, Starlette]
    urls: dict[str, str]
    receiver: Receiver
    hook_url: str
    http: httpx2.AsyncClient

    async def call(self, system: str, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.http.request(method, f"{self.urls[system]}{path}", **kwargs)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    async def webhook(self, system: str) -> None:
        await self.call(
            system, "PUT", "/_admin/events", json={"webhook": {"url": self.hook_url, "secret": self.receiver.secret}}
        )

    async def events(self, system: str) -> dict[str, Any]:
        return await self.call(system, "GET", "/_admin/events")

    async def settled(self, system: str) -> dict[str, Any]:
        """The outbox's figures once nothing is pending: the receiver records an event before the sender has
        read its answer and counted it delivered."""
        await until(lambda: self.apps[system].state.events.stats()["pending"] == 0)
        return await self.events(system)

    async def delivered(self, count: int) -> list[dict[str, Any]]:
        """Wait until the receiver took `count` events; answer them (and insist nothing more arrives meanwhile)."""
        await until(lambda: len(self.receiver.delivered()) >= count)
        assert not self.receiver.forged
        events = self.receiver.delivered()
        assert len(events) == count, [e["type"] for e in events]
        return events


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def live(small: Dataset) -> AsyncIterator[Live]:
    apps = create_apps(small)
    receiver = Receiver()
    group = ServerGroup()
    urls = {name: group.add(name, app).url for name, app in apps.items()}
    hook = group.add("receiver", receiver.app())
    with group.running_in_thread():
        async with httpx2.AsyncClient(timeout=10) as http:
            yield Live(small, apps, urls, receiver, f"{hook.url}/hook", http)


def in_inspection(small: Dataset, plant: str, skip: int = 0) -> tuple[str, str]:
    """(inspection lot id, lot id) of an undecided inspection of a lot in inspection at `plant`, without holds."""
    held = {h.lot for h in small.holds.values()}
    found = [
        (i.id, i.lot)
        for i in small.inspection_lots.values()
        if i.plant == plant and i.status != "DECIDED" and i.lot not in held
    ]
    return found[skip]


def results_for(small: Dataset, inspection_id: str, failing: str | None = None) -> list[dict[str, Any]]:
    """A result inside the limits for each characteristic, except `failing`, which is above its upper limit."""
    return [
        {"code": c.code, "result": c.upper_limit + 1 if c.code == failing else (c.lower_limit + c.upper_limit) / 2}
        for c in small.inspection_lots[inspection_id].characteristics
    ]


def envelope_ok(event: dict[str, Any], source: str, plant: str) -> None:
    assert set(event) == {"id", "type", "source", "occurred_at", "plant", "data"}
    assert re.fullmatch(rf"{source.upper()}-EVT-\d{{12}}", event["id"]) and event["source"] == source
    assert event["plant"] == plant and ISO_MS.fullmatch(event["occurred_at"])


# ---------------------------------------------------------------------------------------------------- QMS events


async def test_inspection_results_announce_completion_then_status_change_in_the_plant_dialect(live: Live) -> None:
    await live.webhook("qms")
    passing, lot_p100 = in_inspection(live.dataset, "P100")
    failing, lot_p200 = in_inspection(live.dataset, "P200")
    body = {"results": results_for(live.dataset, passing), "decided_by": "QA.TEST"}
    decided = await live.call("qms", "POST", f"/api/v1/inspection-lots/{passing}/results", json=body)
    assert decided["status"] == "3" and decided["usage_decision"]["code"] == "A"
    assert {c["valuation"] for c in decided["characteristics"]} == {"A"}
    bad = live.dataset.inspection_lots[failing].characteristics[0].code
    body = {"results": results_for(live.dataset, failing, failing=bad), "decided_by": "QA.TEST"}
    rejected = await live.call("qms", "POST", f"/api/v1/inspection-lots/{failing}/results", json=body)
    assert rejected["status"] == "Decision made" and rejected["usage_decision"]["code"] == "R"
    assert {c["code"]: c["valuation"] for c in rejected["characteristics"]}[bad] == "R"

    events = await live.delivered(4)
    assert [e["type"] for e in events] == ["inspection.completed", "lot.status_changed"] * 2
    assert [e["id"] for e in events] == [f"QMS-EVT-{n:012d}" for n in range(1, 5)]
    for event, (plant, lot) in zip(events, [("P100", lot_p100)] * 2 + [("P200", lot_p200)] * 2, strict=True):
        envelope_ok(event, "qms", plant)
        assert event["data"]["lot"]["lot_id"] == lot
    assert events[0]["data"]["inspection"] == decided and events[0]["data"]["lot"]["status"] == "20"
    assert (events[1]["data"]["lot"]["status"], events[1]["data"]["previous_status"]) == ("20", "10")
    assert events[2]["data"]["inspection"] == rejected
    assert (events[3]["data"]["lot"]["status"], events[3]["data"]["previous_status"]) == (
        "Rejected",
        "Under inspection",
    )
    lots = await live.call("qms", "GET", "/api/v1/lots", params={"ids": f"{lot_p100},{lot_p200}"})
    assert [lot["status"] for lot in lots["items"]] == ["20", "Rejected"]
    stats = await live.settled("qms")
    assert (stats["emitted"], stats["delivered"], stats["pending"], stats["dropped"]) == (4, 4, 0, 0)
    assert stats["recent"] == [{"id": e["id"], "type": e["type"], "lots": [e["data"]["lot"]["lot_id"]]} for e in events]


async def test_results_are_checked_before_anything_changes(live: Live) -> None:
    inspection, _ = in_inspection(live.dataset, "P300")
    path = f"/api/v1/inspection-lots/{inspection}/results"
    complete = results_for(live.dataset, inspection)
    await live.call(
        "qms",
        "POST",
        "/api/v1/inspection-lots/049999999999/results",
        404,
        json={"results": complete, "decided_by": "qa"},
    )
    for bad in (
        {"results": complete[1:], "decided_by": "qa"},  # a characteristic left out
        {"results": [*complete, {"code": "NOPE", "result": 1}], "decided_by": "qa"},
        {"results": [*complete, complete[0]], "decided_by": "qa"},
        {"results": [{**complete[0], "result": "high"}, *complete[1:]], "decided_by": "qa"},
        {"results": complete},
        {"results": "all fine", "decided_by": "qa"},
    ):
        await live.call("qms", "POST", path, 400, json=bad)
    assert (await live.events("qms"))["emitted"] == 0
    await live.call("qms", "POST", path, json={"results": complete, "decided_by": "qa"})
    await live.call("qms", "POST", path, 409, json={"results": complete, "decided_by": "qa"})
    decided = next(i for i in live.dataset.inspection_lots.values() if i.status == "DECIDED")
    body = {"results": results_for(live.dataset, decided.id), "decided_by": "qa"}
    await live.call("qms", "POST", f"/api/v1/inspection-lots/{decided.id}/results", 409, json=body)


async def test_a_held_lot_stays_blocked_through_its_decision_until_the_hold_is_released(live: Live) -> None:
    await live.webhook("qms")
    inspection, lot = in_inspection(live.dataset, "P300")
    placement = {"lot_id": lot, "reason_code": "DEV", "reason": "Deviation", "placed_by": "qa"}
    hold = await live.call("qms", "POST", "/api/v1/holds", 201, json=placement)
    results = {"results": results_for(live.dataset, inspection), "decided_by": "qa"}
    await live.call("qms", "POST", f"/api/v1/inspection-lots/{inspection}/results", json=results)
    release = {"released_by": "qa", "justification": "no impact"}
    await live.call("qms", "POST", f"/api/v1/holds/{hold['id']}/release", json=release)
    events = await live.delivered(5)
    assert [e["type"] for e in events] == [
        "hold.placed",
        "lot.status_changed",
        "inspection.completed",  # no status change: the lot stays blocked under its hold
        "hold.released",
        "lot.status_changed",
    ]
    assert events[0]["data"]["hold"] == hold and events[0]["data"]["lot"]["status"] == "Blocked"
    assert (events[1]["data"]["lot"]["status"], events[1]["data"]["previous_status"]) == ("Blocked", "Under inspection")
    assert events[2]["data"]["lot"]["status"] == "Blocked"
    assert events[3]["data"]["hold"]["status"] == "Released" and events[3]["data"]["lot"]["status"] == "Released"
    assert (events[4]["data"]["lot"]["status"], events[4]["data"]["previous_status"]) == ("Released", "Blocked")


async def test_a_disposition_announces_the_holds_it_releases_then_the_status(live: Live) -> None:
    await live.webhook("qms")
    lot = next(h.lot for h in live.dataset.holds.values() if h.status == "ACTIVE" and h.plant == "P100")
    held = [h.id for h in live.dataset.holds.values() if h.lot == lot and h.status == "ACTIVE"]
    decision = {"decision": "RELEASE", "reason": "investigated", "decided_by": "qa", "request_id": "d-1"}
    await live.call("qms", "POST", f"/api/v1/lots/{lot}/disposition", json=decision)
    await live.call("qms", "POST", f"/api/v1/lots/{lot}/disposition", json=decision)  # a retry: no new event
    scrap = {**decision, "decision": "SCRAP", "request_id": "d-2"}
    await live.call("qms", "POST", f"/api/v1/lots/{lot}/disposition", json=scrap)
    events = await live.delivered(len(held) + 2)
    assert [e["type"] for e in events] == ["hold.released"] * len(held) + ["lot.status_changed"] * 2
    assert [e["data"]["hold"]["id"] for e in events[: len(held)]] == held
    assert all(e["data"]["hold"]["status"] == "2" for e in events[: len(held)])
    changes = [(e["data"]["previous_status"], e["data"]["lot"]["status"]) for e in events[len(held) :]]
    assert changes == [("40", "20"), ("20", "30")]


async def test_nonconformances_open_and_close_once(live: Live) -> None:
    await live.webhook("qms")
    lot = next(lot for lot in live.dataset.lots.values() if lot.plant == "P200")
    nc = {"lot_id": lot.id, "category": "Contamination", "severity": "major", "description": "Particles found"}
    opened = await live.call("qms", "POST", "/api/v1/nonconformances", 201, json=nc)
    assert (opened["state"], opened["lot_id"], opened["closed_at"]) == ("Open", lot.id, None)
    assert opened["id"] == f"NC-{len(live.dataset.nonconformances) + 1:06d}"
    closed = await live.call("qms", "POST", f"/api/v1/nonconformances/{opened['id']}/close", json={"closed_by": "qa"})
    again = await live.call("qms", "POST", f"/api/v1/nonconformances/{opened['id']}/close", json={"closed_by": "x"})
    assert closed["state"] == "Closed" and closed["closed_at"] and again == closed
    listed = await live.call("qms", "GET", "/api/v1/nonconformances", params={"ids": opened["id"]})
    assert listed["items"] == [closed]
    events = await live.delivered(2)
    assert [e["type"] for e in events] == ["nonconformance.opened", "nonconformance.closed"]
    assert events[0]["data"]["nonconformance"] == opened and events[1]["data"]["nonconformance"] == closed
    assert all(e["data"]["lot"]["lot_id"] == lot.id for e in events)
    state = await live.call("qms", "GET", f"/_admin/lots/{lot.id}")
    assert {"id": opened["id"], "state": "CLOSED", "closed_by": "qa"} in state["nonconformances"]
    await live.call("qms", "POST", "/api/v1/nonconformances", 404, json={**nc, "lot_id": "B2699999"})
    await live.call("qms", "POST", "/api/v1/nonconformances", 400, json={**nc, "severity": "catastrophic"})
    await live.call("qms", "POST", "/api/v1/nonconformances", 400, json={**nc, "description": ""})
    await live.call("qms", "POST", "/api/v1/nonconformances/NC-999999/close", 404, json={"closed_by": "qa"})
    assert (await live.events("qms"))["emitted"] == 2


# ------------------------------------------------------------------------------------------------------ delivery


async def open_nc(live: Live, lot: str) -> str:
    body = {"lot_id": lot, "category": "Labelling error", "severity": "minor", "description": "test"}
    return (await live.call("qms", "POST", "/api/v1/nonconformances", 201, json=body))["id"]


async def test_server_errors_are_retried_with_the_same_id_and_order_is_kept(live: Live) -> None:
    await live.webhook("qms")
    live.receiver.answers.extend([500, 503, 429])
    lot = next(iter(live.dataset.lots))
    first, second = await open_nc(live, lot), await open_nc(live, lot)
    events = await live.delivered(2)
    assert [e["data"]["nonconformance"]["id"] for e in events] == [first, second]
    assert [(a["id"], a["status"]) for a in live.receiver.attempts] == [
        ("QMS-EVT-000000000001", 500),
        ("QMS-EVT-000000000001", 503),
        ("QMS-EVT-000000000001", 429),
        ("QMS-EVT-000000000001", 204),
        ("QMS-EVT-000000000002", 204),
    ]
    stats = await live.settled("qms")
    assert (stats["delivered"], stats["rejected"], stats["pending"]) == (2, 0, 0)


async def test_a_refused_event_is_counted_and_skipped(live: Live) -> None:
    await live.webhook("qms")
    live.receiver.answers.append(422)
    lot = next(iter(live.dataset.lots))
    await open_nc(live, lot)
    kept = await open_nc(live, lot)
    events = await live.delivered(1)
    assert events[0]["data"]["nonconformance"]["id"] == kept
    stats = await live.settled("qms")
    assert (stats["delivered"], stats["rejected"], stats["pending"]) == (1, 1, 0)
    assert stats["last_rejection"] == {"id": "QMS-EVT-000000000001", "status": 422, "body": "refused by the test"}


async def test_without_a_target_events_are_dropped_and_never_replayed(live: Live) -> None:
    lot = next(iter(live.dataset.lots))
    await open_nc(live, lot)
    stats = await live.events("qms")
    assert (stats["target"], stats["emitted"], stats["dropped"], stats["pending"]) == (None, 1, 1, 0)
    await live.webhook("qms")
    later = await open_nc(live, lot)
    events = await live.delivered(1)
    assert (events[0]["id"], events[0]["data"]["nonconformance"]["id"]) == ("QMS-EVT-000000000002", later)
    live.receiver.answers.extend([500] * 1000)  # the receiver is down: events pile up
    await open_nc(live, lot)
    await until(lambda: len(live.receiver.attempts) > 2)
    assert (await live.events("qms"))["pending"] == 1
    assert await live.call("qms", "PUT", "/_admin/events", json={}) == {"target": None}
    stats = await live.events("qms")
    assert (stats["dropped"], stats["pending"], stats["delivered"]) == (2, 0, 1)
    live.receiver.answers.clear()
    await live.webhook("qms")
    await asyncio.sleep(0.3)
    assert len(live.receiver.delivered()) == 1, "an event dropped when events were turned off came back"


async def test_the_admin_api_validates_targets_and_never_shows_the_secret(live: Live) -> None:
    secret = live.receiver.secret
    answer = await live.call("qms", "PUT", "/_admin/events", json={"webhook": {"url": live.hook_url, "secret": secret}})
    assert answer == {"target": {"webhook": {"url": live.hook_url}}}
    stats = await live.http.get(f"{live.urls['qms']}/_admin/events")
    assert secret not in stats.text and secret[6:] not in stats.text
    for bad in (
        {"webhook": {"url": live.hook_url, "secret": "whsec_!!not base64!!"}},
        {"webhook": {"url": "ftp://example.org", "secret": secret}},
        {"webhook": {"url": live.hook_url}},
        {"mqtt": {"url": "http://127.0.0.1:1883"}},
        {"mqtt": {"url": "mqtt://127.0.0.1:1883", "enterprise": "a/b"}},
        {"webhook": {"url": live.hook_url, "secret": secret}, "mqtt": {"url": "mqtt://127.0.0.1:1883"}},
        {"kafka": {}},
    ):
        response = await live.http.put(f"{live.urls['qms']}/_admin/events", json=bad)
        assert response.status_code == 400, bad
        assert "!!not base64!!" not in response.text and secret not in response.text
    assert (await live.events("qms"))["target"] == {"webhook": {"url": live.hook_url}}, "a bad target replaced it"
    mqtt = {"mqtt": {"url": "mqtt://plant:s3cret@127.0.0.1:1883", "enterprise": "acme"}}
    answer = await live.call("mes", "PUT", "/_admin/events", json=mqtt)
    assert answer == {"target": {"mqtt": {"url": "mqtt://plant@127.0.0.1:1883", "enterprise": "acme"}}}
    await live.call("erp", "GET", "/_admin/events", 404)  # ERP offers a change feed instead


def test_create_apps_takes_initial_targets(small: Dataset) -> None:
    target = {"webhook": {"url": "http://127.0.0.1:9/hook", "secret": Receiver().secret}}
    apps = create_apps(small, events={"qms": target, "wms": target})
    assert apps["qms"].state.events.public_target() == {"webhook": {"url": "http://127.0.0.1:9/hook"}}
    assert apps["wms"].state.events.public_target() == {"webhook": {"url": "http://127.0.0.1:9/hook"}}
    assert apps["mes"].state.events.public_target() is None
    with pytest.raises(ValueError, match="erp emits no events"):
        create_apps(small, events={"erp": target})


# ---------------------------------------------------------------------------------------------------- MES events


def released_component(small: Dataset, plant: str | None = None) -> tuple[str, str, float]:
    """(material, lot, unrestricted quantity) of a released lot with unrestricted stock."""
    return next(
        (row.material, row.lot, row.quantity)
        for row in small.stock
        if row.stock_type == "01" and small.lots[row.lot].quality_status == "RELEASED" and plant in (None, row.plant)
    )


def confirmation(small: Dataset) -> dict[str, Any]:
    material = next(m for m in small.materials.values() if m.tier == 2)
    _, lot, quantity = released_component(small)
    return {
        "order_id": "1900001",  # ERP's released order: MES takes it on trust
        "material": material.id,
        "plant": material.plant,
        "line": f"{material.plant}-L03",
        "quantity": 250,
        "consumed": [{"lot_id": lot, "quantity": min(quantity, 5.0)}],
    }


async def test_production_is_published_as_mes_events(live: Live) -> None:
    await live.webhook("mes")
    body = confirmation(live.dataset)
    done = await live.call("mes", "POST", "/api/confirmations", 201, json=body)
    scrap = {"quantity": 10, "reason": "Damaged in handling"}
    scrapped = await live.call("mes", "POST", f"/api/lots/{done['lot_id']}/scrap", 201, json=scrap)
    events = await live.delivered(2)
    assert [e["type"] for e in events] == ["production.completed", "production.scrapped"]
    assert [e["id"] for e in events] == ["MES-EVT-000000000001", "MES-EVT-000000000002"]
    for event in events:
        envelope_ok(event, "mes", body["plant"])
    assert events[0]["data"] == done
    unit = live.dataset.materials[body["material"]].unit
    expected = {"order_id": body["order_id"], "material": body["material"], "line": body["line"], "quantity": 250}
    assert done == {**done, **expected, "unit": unit}
    consumed_material = live.dataset.lots[body["consumed"][0]["lot_id"]].material
    assert done["consumed"] == [
        {**body["consumed"][0], "material": consumed_material, "unit": live.dataset.materials[consumed_material].unit}
    ]
    assert (
        events[1]["data"]
        == scrapped
        == {
            "lot_id": done["lot_id"],
            "order_id": done["order_id"],
            "material": body["material"],
            "plant": body["plant"],
            "line": body["line"],
            "quantity": 10,
            "unit": unit,
            "reason": "Damaged in handling",
        }
    )


# ---------------------------------------------------------------------------------------------------- WMS events


async def test_the_warehouse_dock_announces_each_delivery_it_receives(live: Live, broker: str) -> None:
    """The dock sees a supplier delivery first: `goods.received` names the lot id it gave it and what it took in."""
    await live.webhook("wms")
    raw = next(m for m in live.dataset.materials.values() if m.tier == 0)
    wms = live.apps["wms"].state.wms
    received = wms.receive_delivery("4500009999", "00010", raw.id, "P300", "17300004", "K100200", 125)
    [event] = await live.delivered(1)
    envelope_ok(event, "wms", "P300")
    assert event["type"] == "goods.received" and event["data"] == received
    assert received == {
        "lot_id": "R2600001",
        "material": raw.id,
        "plant": "P300",
        "quantity": 125,
        "unit": raw.unit,
        "purchase_order": "4500009999",
        "purchase_order_item": "00010",
        "supplier": "17300004",
        "supplier_batch": "K100200",
        "handling_units": received["handling_units"],
        "received_at": received["received_at"],
    }
    [position] = (await live.call("wms", "GET", "/v1/stock", params={"lots": "R2600001"}))["stock"]
    assert [position["handling_unit"]] == received["handling_units"] and position["status"] == "QUARANTINE"
    async with subscriber(broker) as client:
        await client.subscribe("acme/#", qos=1)
        await live.call("wms", "PUT", "/_admin/events", json={"mqtt": {"url": broker, "enterprise": "acme"}})
        body = {"purchaseOrder": "4500009999", "purchaseOrderItem": "00010", "materialId": raw.id, "plant": "P100",
                "supplier": "17300004", "quantity": 5}  # fmt: skip
        await live.call("wms", "POST", "/v2/inbound-deliveries/receipts", 201, json=body)
        async with asyncio.timeout(10):
            message = await anext(client.messages)
    assert str(message.topic) == "acme/P100/warehouse/dock/goods/received"
    assert json.loads(message.payload)["data"]["supplier_batch"] == ""


# ---------------------------------------------------------------------------------------------------------- MQTT


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """A Mosquitto of its own (started, and installed if missing, by tests.services)."""
    with mosquitto() as url:
        yield url


def subscriber(broker: str) -> aiomqtt.Client:
    parts = urlsplit(broker)
    return aiomqtt.Client(
        parts.hostname or "",
        parts.port or 1883,
        username=parts.username,
        password=parts.password,
        identifier=f"test-{secrets.token_hex(4)}",
    )


async def test_mes_publishes_on_the_isa95_topic_and_catches_up_after_a_broker_outage(live: Live, broker: str) -> None:
    async with subscriber(broker) as client:
        await client.subscribe("acme/#", qos=1)
        nowhere = f"mqtt://127.0.0.1:{free_port()}"
        await live.call("mes", "PUT", "/_admin/events", json={"mqtt": {"url": nowhere, "enterprise": "acme"}})
        body = confirmation(live.dataset)
        done = await live.call("mes", "POST", "/api/confirmations", 201, json=body)
        await live.call("mes", "POST", f"/api/lots/{done['lot_id']}/scrap", 201, json={"quantity": 1, "reason": "x"})
        await asyncio.sleep(0.2)
        assert (await live.events("mes"))["pending"] == 2, "no broker, yet the events left the outbox"
        await live.call("mes", "PUT", "/_admin/events", json={"mqtt": {"url": broker, "enterprise": "acme"}})
        received = []
        async with asyncio.timeout(10):
            async for message in client.messages:
                received.append((str(message.topic), json.loads(message.payload)))
                if len(received) == 2:
                    break
    prefix = f"acme/{body['plant']}/production/{body['line']}/production"
    assert [topic for topic, _ in received] == [f"{prefix}/completed", f"{prefix}/scrapped"]
    assert [event["type"] for _, event in received] == ["production.completed", "production.scrapped"]
    assert received[0][1]["data"] == done
    await until(lambda: live.apps["mes"].state.events.stats()["delivered"] == 2)
    assert (await live.events("mes"))["pending"] == 0


async def test_qms_events_go_to_the_quality_lab_topic(live: Live, broker: str) -> None:
    lot = next(lot for lot in live.dataset.lots.values() if lot.plant == "P100")
    async with subscriber(broker) as client:
        await client.subscribe("plant9/#", qos=1)
        await live.call("qms", "PUT", "/_admin/events", json={"mqtt": {"url": broker, "enterprise": "plant9"}})
        await open_nc(live, lot.id)
        async with asyncio.timeout(10):
            message = await anext(client.messages)
    assert str(message.topic) == "plant9/P100/quality/lab/nonconformance/opened"
    assert json.loads(message.payload)["data"]["lot"]["lot_id"] == lot.id
