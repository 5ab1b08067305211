"""Plant events end to end, on a plant of its own (these tests change lots the shared plant's tests rely on):
a failed QMS inspection reaches subscribers and is contained across WMS and ERP; a MES completion arrives over
real MQTT and the new lot is queryable with its genealogy; a hold's ERP postings come back through the polled
change feed."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest

from gateway.events.settings import EventSettings, MqttSettings
from simulators import Dataset
from simulators.shift import Shift
from tests.conftest import Plant, eventually, plant_of_its_own, start_gateway
from tests.events import QUALITY_EVENTS, SECRET, WsClient
from tests.services import mqtt_connect

WEBHOOKS = {"qms": SECRET, "mes": SECRET, "wms": SECRET}


@pytest.fixture(scope="module")
def own_plant() -> Iterator[tuple[Plant, Shift]]:
    with plant_of_its_own(seed=7) as own:
        yield own


def _send_events(plant: Plant, system: str, target: dict[str, Any]) -> None:
    plant.admin(system, "PUT", "events", json=target)


def _record(plant: Plant, inspection_id: str, results: dict[str, Any]) -> None:
    """An inspector records results in the QMS (the state change the QMS then reports)."""
    response = httpx2.post(f"{plant.url('qms')}/api/v1/inspection-lots/{inspection_id}/results", json=results)
    assert response.status_code == 200, response.text


def _failing_results(dataset: Dataset, shift: Shift) -> tuple[str, str, dict[str, Any]]:
    """An inspection still undecided in the QMS, of a lot in stock, and results failing its first characteristic."""
    inspection = next(
        i for i in dataset.inspection_lots.values()
        if shift.qms.inspection_lots[i.id].usage_decision is None and dataset.lots[i.lot].remaining > 0
        and i.lot not in dataset.divergent
    )  # fmt: skip
    first, *rest = inspection.characteristics
    results = [{"code": first.code, "result": first.upper_limit + (first.upper_limit - first.lower_limit)}]
    results += [{"code": c.code, "result": (c.lower_limit + c.upper_limit) / 2} for c in rest]
    return inspection.id, inspection.lot, {"results": results, "decided_by": "lab-tech-7"}


LOT_STATE = """query($id: ID!) { lot(id: $id) { qualityStatus holds { status placedBy reasonCode }
  stockPositions { status } consistency { consistent disagreements } } }"""


async def test_a_failed_inspection_reaches_subscribers_and_is_contained(own_plant: tuple[Plant, Shift]) -> None:
    plant, shift = own_plant
    inspection_id, lot_id, results = _failing_results(plant.dataset, shift)
    with start_gateway(plant, events=EventSettings(webhook_secrets=WEBHOOKS)) as gateway:
        _send_events(plant, "qms", {"webhook": {"url": f"{gateway.url}/webhooks/qms", "secret": SECRET}})
        try:
            token = gateway.token("quality_engineer")
            async with WsClient.connect(gateway.url, token) as ws:
                await ws.acknowledged()
                types = ["INSPECTION_COMPLETED", "LOT_STATUS_CHANGED", "HOLD_PLACED"]
                await ws.subscribe("q", QUALITY_EVENTS, {"filter": {"types": types}})
                await asyncio.sleep(0.3)
                _record(plant, inspection_id, results)
                inspected = await ws.event("q")
                assert (inspected["type"], inspected["source"]) == ("INSPECTION_COMPLETED", "qms")
                assert inspected["lotId"] == lot_id
                assert inspected["payload"]["passed"] is False and inspected["payload"]["id"] == inspection_id
                changed = await ws.event("q")
                assert changed["type"] == "LOT_STATUS_CHANGED" and changed["payload"]["qualityStatus"] == "REJECTED"
                # Containment: the hold placed by the service principal shows up as events too.
                later = await ws.events_until("q", lambda e: e["type"] == "HOLD_PLACED" and e["source"] == "lotgraph")
                assert all(e["lotId"] == lot_id for e in later)

            def contained() -> dict[str, Any] | None:
                lot = gateway.data(LOT_STATE, {"id": lot_id})["lot"]
                return lot if lot["consistency"]["consistent"] else None

            lot = await eventually(contained)
            assert {"status": "ACTIVE", "placedBy": "svc-containment", "reasonCode": "CONTAINMENT"} in lot["holds"]
            assert lot["qualityStatus"] == "ON_HOLD"
            assert lot["stockPositions"] and {p["status"] for p in lot["stockPositions"]} == {"BLOCKED"}
            erp = plant.admin("erp", "GET", f"lots/{lot_id}").json()
            held = [row for row in erp["stock"] if float(row["MatlWrhsStkQtyInMatlBaseUnit"]) > 0]
            assert held and {row["InventoryStockType"] for row in held} == {"07"}, erp["stock"]
        finally:
            _send_events(plant, "qms", {})


async def test_a_refused_containment_is_blocked_and_listed(own_plant: tuple[Plant, Shift]) -> None:
    """Containment limited to another plant: Cedar refuses, and the hold waits, visibly, for a person."""
    plant, shift = own_plant
    dataset = plant.dataset
    inspection_id, lot_id, results = _failing_results(dataset, shift)
    elsewhere = next(p for p in ("P100", "P200", "P300") if p != dataset.lots[lot_id].plant)
    events = EventSettings(webhook_secrets=WEBHOOKS, containment={"plants": [elsewhere]})
    with start_gateway(plant, events=events) as gateway:
        _send_events(plant, "qms", {"webhook": {"url": f"{gateway.url}/webhooks/qms", "secret": SECRET}})
        try:
            _record(plant, inspection_id, results)
            token = gateway.token("qa_manager")
            query = "{ pendingOperations { kind state actor error lotIds } }"

            def blocked() -> list[dict[str, Any]]:
                ops = gateway.data(query, token=token)["pendingOperations"]
                return [op for op in ops if lot_id in op["lotIds"] and op["state"] == "BLOCKED"]

            (op,) = await eventually(blocked)
            assert op["actor"] == "svc-containment" and op["kind"] == "placeQualityHold"
            assert op["error"].startswith("FORBIDDEN")
            holds = gateway.data(LOT_STATE, {"id": lot_id})["lot"]["holds"]
            assert not [h for h in holds if h["placedBy"] == "svc-containment"], "a refused hold did nothing"
        finally:
            _send_events(plant, "qms", {})


async def test_a_mes_completion_over_mqtt_is_streamed_and_the_new_lot_is_queryable(
    own_plant: tuple[Plant, Shift], mqtt_server: str
) -> None:
    plant, shift = own_plant
    mqtt = MqttSettings(url=mqtt_server, client_id=f"lotgraph-test-{uuid.uuid4().hex[:8]}")
    with start_gateway(plant, events=EventSettings(webhook_secrets=WEBHOOKS, mqtt=mqtt)) as gateway:
        await eventually(lambda: httpx2.get(f"{gateway.url}/readyz").json()["feeds"].get("mqtt") == "subscribed")
        _send_events(plant, "mes", {"mqtt": {"url": mqtt_server, "enterprise": "acme"}})
        try:
            material = next(m for m in shift.erp.materials.values() if m.tier == 3 and shift.components(m))
            consumed = [(c["lot_id"], c["quantity"]) for c in shift.components(material) or []]
            assert consumed
            order = shift.erp.release_order(material.id, material.plant, 100)  # the planner, in the ERP
            body = {"order_id": order, "material": material.id, "plant": material.plant, "quantity": 100,
                    "line": f"{material.plant}-L01",
                    "consumed": [{"lot_id": lot, "quantity": qty} for lot, qty in consumed]}  # fmt: skip
            async with WsClient.connect(gateway.url, gateway.token("plant_operator")) as ws:
                await ws.acknowledged()
                await ws.subscribe("p", QUALITY_EVENTS, {"filter": {"types": ["PRODUCTION_COMPLETED"]}})
                await asyncio.sleep(0.3)
                async with httpx2.AsyncClient() as client:
                    confirmed = await client.post(f"{plant.url('mes')}/api/confirmations", json=body)
                assert confirmed.status_code == 201, confirmed.text
                new_lot = confirmed.json()["lot_id"]
                event = await ws.event("p")
            assert (event["type"], event["source"], event["lotId"], event["plant"]) == (
                "PRODUCTION_COMPLETED", "mes", new_lot, material.plant)  # fmt: skip
            assert {c["lotId"] for c in event["payload"]["consumed"]} == {lot for lot, _ in consumed}
            query = """query($id: ID!) { lot(id: $id) { id material { id } qualityStatus
                         genealogy(direction: UPSTREAM, maxDepth: 1) { nodes { id } } } }"""

            def received() -> dict[str, Any] | None:  # the production receipt workflow brings it into ERP and QMS
                read = gateway.execute(query, {"id": new_lot})
                lot = read["data"]["lot"] if read.get("data") else None
                return lot if lot and lot["qualityStatus"] else None  # ERP's receipt comes first, QMS's last

            lot = await eventually(received)
            assert lot["material"]["id"] == material.id and lot["qualityStatus"] == "IN_INSPECTION"
            assert {lot for lot, _ in consumed} <= {node["id"] for node in lot["genealogy"]["nodes"]}
        finally:
            _send_events(plant, "mes", {})


async def test_each_mqtt_outage_is_retried_from_the_shortest_wait(
    own_plant: tuple[Plant, Shift], mqtt_server: str
) -> None:
    """Another client taking the gateway's client id ends its session; the gateway takes it back after its retry
    wait, which closes the other client's connection. The wait must start over after every session that was up,
    not keep doubling across outages (0.5, 1, 2, 4, 8 s...) so that a plant's tenth blip costs 30 s of MES events."""
    plant, _ = own_plant
    client_id = f"lotgraph-test-{uuid.uuid4().hex[:8]}"
    address = urlsplit(mqtt_server)
    mqtt = MqttSettings(url=mqtt_server, client_id=client_id)
    with start_gateway(plant, events=EventSettings(webhook_secrets=WEBHOOKS, mqtt=mqtt)) as gateway:
        waits = []
        for _ in range(5):
            await eventually(lambda: httpx2.get(f"{gateway.url}/readyz").json()["feeds"].get("mqtt") == "subscribed")
            with socket.create_connection((address.hostname, address.port), timeout=20) as other:
                mqtt_connect(other, client_id)
                started = time.monotonic()
                assert await asyncio.to_thread(other.recv, 1) == b"", "the gateway took its client id back"
                waits.append(time.monotonic() - started)
    assert max(waits) < 2, f"seconds until each reconnection: {waits}"


async def test_a_hold_comes_back_through_the_erp_change_feed(own_plant: tuple[Plant, Shift]) -> None:
    """The hold's own event is published by the mutation; the ERP's postings for it arrive by polling."""
    plant, _ = own_plant
    lot = next(
        lot for lot in plant.dataset.lots.values()
        if lot.quality_status == "RELEASED" and lot.remaining > 0 and lot.id not in plant.dataset.divergent
    )  # fmt: skip
    with start_gateway(plant, events=EventSettings(webhook_secrets=WEBHOOKS, erp_poll_seconds=0.3)) as gateway:
        async with WsClient.connect(gateway.url, gateway.token("quality_engineer")) as ws:
            await ws.acknowledged()
            await ws.subscribe("s", QUALITY_EVENTS, {"filter": {"types": ["LOT_STATUS_CHANGED", "HOLD_PLACED"]}})
            await asyncio.sleep(0.3)
            hold = """mutation($lot: ID!) { placeQualityHold(input: {lotId: $lot, reasonCode: "QH01",
                      reason: "feed test", idempotencyKey: "feed-test"}) { state } }"""
            placed = gateway.data(hold, {"lot": lot.id}, token=gateway.token("quality_engineer"))
            assert placed["placeQualityHold"]["state"] == "COMPLETED"
            # The feed is read from its start: earlier tests' postings (other lots) may come first. The hold's
            # own event and the ERP's come from two sources: either may arrive first.
            seen: list[dict] = []

            def both_arrived(event: dict) -> bool:
                seen.append(event)
                return {("lotgraph", "HOLD_PLACED"), ("erp", "LOT_STATUS_CHANGED")} <= {
                    (e["source"], e["type"]) for e in seen if e["lotId"] == lot.id
                }

            await ws.events_until("s", both_arrived)
        erp = next(e for e in seen if e["source"] == "erp" and e["lotId"] == lot.id)
        assert erp["lotId"] == lot.id and erp["type"] == "LOT_STATUS_CHANGED" and erp["supplier"] == lot.supplier
        assert erp["payload"]["stockStatus"] == "BLOCKED" or erp["payload"].get("batchRestricted") is True
