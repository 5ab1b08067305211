"""The plant's workflows end to end, on a plant of its own: the simulators are independent systems, and every
change that crosses from one to another is lotgraph's. Each test makes a change in one system through its own
API, the way the plant's people do, and checks the other systems through theirs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from standardwebhooks.webhooks import Webhook

from gateway.events.settings import EventSettings
from gateway.settings import Mode
from simulators.dataset import base_quantity
from simulators.shift import Shift
from tests.conftest import (
    Gateway,
    GatewayProcess,
    Plant,
    eventually,
    gateway_process,
    plant_of_its_own,
    production_auth,
    start_gateway,
)
from tests.events import SECRET
from tests.test_operation_recovery import _post, _token

SOURCES = ("qms", "mes", "wms")


@pytest.fixture(scope="module")
def own_plant() -> Iterator[tuple[Plant, Shift]]:
    with plant_of_its_own(seed=11) as own:
        yield own


EVENTS = EventSettings(webhook_secrets=dict.fromkeys(SOURCES, SECRET))


def _send_events_to(plant: Plant, gateway: Gateway | None) -> None:
    """Point the plant's QMS, MES and WMS dock at `gateway`'s webhooks (None: events off)."""
    for system in SOURCES:
        target = {"webhook": {"url": f"{gateway.url}/webhooks/{system}", "secret": SECRET}} if gateway else {}
        plant.admin(system, "PUT", "events", json=target)


@pytest.fixture(scope="module")
def gateway(own_plant: tuple[Plant, Shift]) -> Iterator[Gateway]:
    with _wired(own_plant[0]) as gateway:
        yield gateway


@contextmanager
def _wired(plant: Plant, **overrides: Any) -> Iterator[Gateway]:
    """A gateway the plant's systems push their events to, as signed webhooks (settings `overrides` beside)."""
    with start_gateway(plant, events=EVENTS, operation_retry_seconds=0.5, **overrides) as gateway:
        _send_events_to(plant, gateway)
        try:
            yield gateway
        finally:
            _send_events_to(plant, None)


def _state(plant: Plant, system: str, lot: str) -> dict[str, Any] | None:
    """What one system itself says about a lot (its admin view), None if it does not know the lot."""
    response = httpx2.get(f"{plant.url(system)}/_admin/lots/{lot}", timeout=10)
    return None if response.status_code == 404 else response.json()


OPERATION = """query($id: ID!) { operation(id: $id) { id kind state actor error
  steps { system action state lastError } } }"""
AUDIT = """query($action: String!) { auditLog(filter: {action: $action}, first: 200) {
  entries { resource decision details } } }"""


def _operation(gateway: Gateway, kind: str, lot: str, done: tuple[str, ...] = ("completed",)) -> dict[str, Any] | None:
    """The workflow operation of `kind` on `lot`, once the audit log says it ended (`done`)."""
    auditor = gateway.token("auditor")
    for outcome in done:
        entries = gateway.data(AUDIT, {"action": f"{kind}.{outcome}"}, token=auditor)["auditLog"]["entries"]
        for entry in entries:
            touched = {key.split(":", 1)[1] for key in (entry["details"].get("steps") or {})}
            touched |= {key.split(":", 1)[1] for key in entry["details"].get("failed") or []}
            if lot in touched:
                op_id = entry["resource"].split("::", 1)[1]
                return gateway.data(OPERATION, {"id": op_id}, token=gateway.token("qa_manager"))["operation"]
    return None


def _produce(plant: Plant, shift: Shift, quantity_factor: float = 1.0, regulated: bool = False) -> dict[str, Any]:
    """The planner releases an order in ERP and the line confirms it in MES, each over its own API."""
    made = (m for m in shift.erp.materials.values() if 1 <= m.tier <= 5 and m.regulated is regulated)
    for material in sorted(made, key=lambda m: m.id):
        consumed = shift.components(material)
        if consumed is None:
            continue
        quantity = base_quantity(shift.rng, material)
        order = httpx2.post(
            f"{plant.url('erp')}/sap/opu/odata/sap/API_PRODUCTION_ORDER_2_SRV/A_ProductionOrder_2",
            json={"Material": material.id, "ProductionPlant": material.plant, "TotalQuantity": str(quantity)},
            headers={"x-csrf-token": _csrf(plant)},
        )
        assert order.status_code == 201, order.text
        body = {
            "order_id": order.json()["d"]["ManufacturingOrder"], "material": material.id, "plant": material.plant,
            "line": f"{material.plant}-L01", "quantity": round(quantity * quantity_factor),
            "consumed": [{"lot_id": c["lot_id"], "quantity": c["quantity"]} for c in consumed],
        }  # fmt: skip
        done = httpx2.post(f"{plant.url('mes')}/api/confirmations", json=body)
        assert done.status_code == 201, done.text
        return {**done.json(), "consumed_lots": [c["lot_id"] for c in consumed]}
    raise AssertionError("no material with released components to produce")


def _csrf(plant: Plant) -> str:
    response = httpx2.get(f"{plant.url('erp')}/sap/opu/odata/sap/API_BATCH_SRV/", headers={"x-csrf-token": "fetch"})
    return response.headers["x-csrf-token"]


def _in_inspection_everywhere(plant: Plant, lot: str) -> bool:
    erp, wms, qms = (_state(plant, s, lot) for s in ("erp", "wms", "qms"))
    return bool(
        erp and wms and qms and qms["status"] == "IN_INSPECTION"
        and {row["InventoryStockType"] for row in erp["stock"]} == {"02"}
        and wms["handling_units"] and {hu["status"] for hu in wms["handling_units"]} == {"QUARANTINE"}
    )  # fmt: skip


LOT = """query($id: ID!) { lot(id: $id) { id qualityStatus consistency { consistent disagreements }
  genealogy(direction: UPSTREAM, maxDepth: 1) { nodes { id } } } }"""


async def test_a_completion_reaches_no_other_system_without_lotgraph(own_plant: tuple[Plant, Shift]) -> None:
    plant, shift = own_plant
    done = _produce(plant, shift)
    await asyncio.sleep(1.0)
    assert _state(plant, "mes", done["lot_id"]) is not None
    assert [_state(plant, s, done["lot_id"]) for s in ("erp", "wms", "qms")] == [None, None, None]


async def test_a_completion_is_received_in_every_system_and_reads_consistent(
    own_plant: tuple[Plant, Shift], gateway: Gateway
) -> None:
    plant, shift = own_plant
    done = _produce(plant, shift)
    lot = done["lot_id"]
    op = await eventually(lambda: _operation(gateway, "receiveProduction", lot))
    assert (op["state"], op["actor"]) == ("COMPLETED", "svc-workflows")
    assert [(s["system"], s["action"], s["state"]) for s in op["steps"]] == [
        ("ERP", "receive_production", "DONE"), ("WMS", "receive", "DONE"), ("QMS", "inspect", "DONE")
    ]  # fmt: skip
    assert _in_inspection_everywhere(plant, lot)
    assert [i["origin"] for i in _inspections(plant, lot)] == ["04"]
    read = gateway.data(LOT, {"id": lot})["lot"]
    assert read["qualityStatus"] == "IN_INSPECTION" and read["consistency"]["consistent"] is True, read
    assert {n["id"] for n in read["genealogy"]["nodes"]} >= set(done["consumed_lots"])


async def test_a_redelivered_completion_has_one_effect(own_plant: tuple[Plant, Shift], gateway: Gateway) -> None:
    """The same signed event again (a sender's retry), and the same completion under a new id (a MES resending
    it): one receipt in ERP, one set of handling units in WMS, one inspection lot in QMS."""
    plant, shift = own_plant
    done = _produce(plant, shift)
    lot = done["lot_id"]
    await eventually(lambda: _operation(gateway, "receiveProduction", lot))
    event_id = next(e["id"] for e in reversed(plant.admin("mes", "GET", "events").json()["recent"])
                    if e["type"] == "production.completed")  # fmt: skip
    data = {key: value for key, value in done.items() if key != "consumed_lots"}
    answers = [_post_signed(gateway, "mes", event_id, "production.completed", done["plant"], data) for _ in range(2)]
    assert answers == [200, 200], "both are duplicates of what the MES delivered"
    assert _post_signed(gateway, "mes", f"{event_id}-resent", "production.completed", done["plant"], data) == 202
    await eventually(lambda: len(_completed(gateway, "receiveProduction", lot)) == 2)
    erp = _state(plant, "erp", lot)
    receipts = [row for row in erp["stock"] if row["InventoryStockType"] == "02"]
    assert len(receipts) == 1 and float(receipts[0]["MatlWrhsStkQtyInMatlBaseUnit"]) == pytest.approx(done["quantity"])
    assert len(_state(plant, "wms", lot)["handling_units"]) == 1
    assert len(_inspections(plant, lot)) == 1


def _post_signed(gateway: Gateway | GatewayProcess, source: str, event_id: str, kind: str, plant: str,
                 data: dict[str, Any]) -> int:  # fmt: skip
    native = {"id": event_id, "type": kind, "occurred_at": datetime.now(UTC).isoformat(), "plant": plant, "data": data}
    body, sent_at = json.dumps(native), datetime.now(UTC)
    headers = {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(event_id, sent_at, body),
        "content-type": "application/json",
    }
    return httpx2.post(f"{gateway.url}/webhooks/{source}", content=body, headers=headers).status_code


def _completed(gateway: Gateway, kind: str, lot: str) -> list[str]:
    entries = gateway.data(AUDIT, {"action": f"{kind}.completed"}, token=gateway.token("auditor"))["auditLog"][
        "entries"
    ]
    return [e["resource"] for e in entries if f"erp:{lot}" in (e["details"].get("steps") or {})]


async def test_a_pass_releases_and_a_fail_contains_with_a_nonconformance(
    own_plant: tuple[Plant, Shift], gateway: Gateway
) -> None:
    plant, shift = own_plant
    lots = []
    for _ in range(2):
        done = _produce(plant, shift)
        await eventually(lambda lot=done["lot_id"]: _operation(gateway, "receiveProduction", lot))
        lots.append(done["lot_id"])
    passed, failed = lots
    for lot, within in ((passed, True), (failed, False)):
        (inspection,) = _inspections(plant, lot)
        _record(plant, inspection, within)
    await eventually(lambda: _operation(gateway, "releaseInspectedLot", passed))
    assert {hu["status"] for hu in _state(plant, "wms", passed)["handling_units"]} == {"AVAILABLE"}
    assert {row["InventoryStockType"] for row in _state(plant, "erp", passed)["stock"]} == {"01"}
    held = await eventually(lambda: _operation(gateway, "placeQualityHold", failed))
    assert [s["action"] for s in held["steps"]] == ["place_hold", "open_nonconformance", "block", "block"]
    assert {hu["status"] for hu in _state(plant, "wms", failed)["handling_units"]} == {"BLOCKED"}
    assert {row["InventoryStockType"] for row in _state(plant, "erp", failed)["stock"]} == {"07"}
    qms = _state(plant, "qms", failed)
    assert qms["status"] == "BLOCKED" and [nc["state"] for nc in qms["nonconformances"]] == ["OPEN"]
    assert len([h for h in qms["holds"] if h["status"] == "ACTIVE"]) == 1, "the nonconformance needed no second hold"


def _change(url: str, json: dict[str, Any]) -> httpx2.Response:
    """A person's change in one system, through that system's own API."""
    return httpx2.post(url, json=json, timeout=10)


def _inspections(plant: Plant, lot: str) -> list[dict[str, Any]]:
    return httpx2.get(f"{plant.url('qms')}/api/v1/inspection-lots", params={"lot_ids": lot}).json()["items"]


def _record(plant: Plant, inspection: dict[str, Any], within: bool) -> None:
    """A lab technician records results in the QMS: all within the limits, or all outside."""
    results = [{"code": c["code"], "result": _result(c, within)} for c in inspection["characteristics"]]
    recorded = httpx2.post(f"{plant.url('qms')}/api/v1/inspection-lots/{inspection['id']}/results",
                          json={"results": results, "decided_by": "lab-tech-3"})  # fmt: skip
    assert recorded.status_code == 200, recorded.text


def _result(characteristic: dict[str, Any], within: bool) -> float:
    low, high = characteristic["lower_limit"], characteristic["upper_limit"]
    return (low + high) / 2 if within else high + (high - low)


async def test_a_supplier_delivery_is_received_against_its_purchase_order(
    own_plant: tuple[Plant, Shift], gateway: Gateway
) -> None:
    plant, shift = own_plant
    material = sorted((m for m in shift.erp.materials.values() if m.tier == 0), key=lambda m: m.id)[0]
    supplier = sorted(shift.erp.sets["A_Supplier"].rows)[0][0]
    po, item = shift.erp.create_purchase_order(material.id, "P100", supplier, 500)  # purchasing, in ERP
    delivery = {"purchaseOrder": po, "purchaseOrderItem": item, "materialId": material.id, "plant": "P100",
                "supplier": supplier, "supplierBatch": "S-4711", "quantity": 500}  # fmt: skip
    received = _change(f"{plant.url('wms')}/v2/inbound-deliveries/receipts", json=delivery)  # the dock
    assert received.status_code == 201, received.text
    lot = received.json()["lotId"]
    op = await eventually(lambda: _operation(gateway, "receiveSupplierGoods", lot))
    assert op["state"] == "COMPLETED", op
    erp = _state(plant, "erp", lot)
    assert (erp["batch"]["Supplier"], erp["batch"]["SupplierBatch"], erp["batch"]["PurchaseOrder"]) == (
        supplier, "S-4711", po)  # fmt: skip
    assert {row["InventoryStockType"] for row in erp["stock"]} == {"02"}
    assert [i["origin"] for i in _inspections(plant, lot)] == ["01"]
    assert _in_inspection_everywhere(plant, lot)


async def test_a_hold_placed_in_the_qms_reaches_wms_and_erp_once_and_its_release_too(
    own_plant: tuple[Plant, Shift], gateway: Gateway
) -> None:
    plant, shift = own_plant
    lot = next(
        lot.id for lot in plant.dataset.lots.values()
        if lot.quality_status == "RELEASED" and lot.remaining > 0 and lot.id not in plant.dataset.divergent
        and not shift.erp.materials[lot.material].regulated and lot.id.startswith("B2")
    )  # fmt: skip
    placed = _change(f"{plant.url('qms')}/api/v1/holds", json={  # a quality engineer, in the QMS itself
        "lot_id": lot, "reason_code": "QH02", "reason": "customer complaint", "placed_by": "qe-mia"})  # fmt: skip
    assert placed.status_code == 201, placed.text
    carried = await eventually(lambda: _operation(gateway, "carryQmsHold", lot))
    assert carried["state"] == "COMPLETED"
    assert {hu["status"] for hu in _state(plant, "wms", lot)["handling_units"]} == {"BLOCKED"}
    assert {
        r["InventoryStockType"] for r in _state(plant, "erp", lot)["stock"] if float(r["MatlWrhsStkQtyInMatlBaseUnit"])
    } == {"07"}
    await asyncio.sleep(1.0)
    assert len(_completed(gateway, "carryQmsHold", lot)) == 1, "carried once"
    assert _completed(gateway, "placeQualityHold", lot) == [], "a QMS hold is not lotgraph's to place again"
    released = _change(f"{plant.url('qms')}/api/v1/holds/{placed.json()['id']}/release",
                          json={"released_by": "qe-mia", "justification": "complaint unfounded"})  # fmt: skip
    assert released.status_code == 200, released.text
    await eventually(lambda: _operation(gateway, "carryQmsRelease", lot))
    assert {hu["status"] for hu in _state(plant, "wms", lot)["handling_units"]} == {"AVAILABLE"}
    read = gateway.data(LOT, {"id": lot})["lot"]
    assert read["consistency"]["consistent"] is True, read


async def test_scrap_reported_by_mes_is_posted_in_erp_and_taken_off_wms(
    own_plant: tuple[Plant, Shift], gateway: Gateway
) -> None:
    plant, shift = own_plant
    done = _produce(plant, shift)
    lot = done["lot_id"]
    await eventually(lambda: _operation(gateway, "receiveProduction", lot))
    scrapped = _change(f"{plant.url('mes')}/api/lots/{lot}/scrap", json={"quantity": 10, "reason": "Line clearance"})
    assert scrapped.status_code == 201, scrapped.text
    op = await eventually(lambda: _operation(gateway, "reportScrap", lot))
    assert op["state"] == "COMPLETED", op
    erp = _state(plant, "erp", lot)
    (row,) = [r for r in erp["stock"] if r["InventoryStockType"] == "02"]
    assert float(row["MatlWrhsStkQtyInMatlBaseUnit"]) == pytest.approx(done["quantity"] - 10)
    assert sum(hu["qty"] for hu in _state(plant, "wms", lot)["handling_units"]) == pytest.approx(done["quantity"] - 10)


async def test_a_workflow_waits_while_a_system_is_down_and_fails_visibly_when_refused_for_good(
    own_plant: tuple[Plant, Shift], gateway: Gateway
) -> None:
    plant, shift = own_plant
    plant.fault("wms", error_rate=1.0, status=503)
    try:
        done = _produce(plant, shift)
        lot = done["lot_id"]
        await asyncio.sleep(2.0)
        assert _operation(gateway, "receiveProduction", lot) is None, "not completed while WMS is down"
        assert _state(plant, "erp", lot) is not None, "ERP received it; WMS waits"
    finally:
        plant.clear_faults()
    op = await eventually(lambda: _operation(gateway, "receiveProduction", lot))
    assert op["state"] == "COMPLETED" and _in_inspection_everywhere(plant, lot)
    # A receipt over the order's tolerance: the ERP's data rules it out, the operation FAILS with why.
    over = _produce(plant, shift, quantity_factor=1.5)
    failed = await eventually(lambda: _operation(gateway, "receiveProduction", over["lot_id"], done=("failed",)))
    assert failed["state"] == "FAILED" and "tolerance" in failed["error"], failed
    assert [_state(plant, s, over["lot_id"]) for s in ("erp", "wms", "qms")] == [None, None, None]


PENDING = "{ pendingOperations { id kind state error lotIds } }"
RELEASE = """mutation($lot: ID!, $key: String!) { dispositionLot(input: {lotId: $lot, decision: RELEASE,
  reason: "batch record reviewed", idempotencyKey: $key}) { state } }"""


async def test_a_passed_regulated_lot_waits_for_a_qualified_persons_signed_release(
    own_plant: tuple[Plant, Shift], gateway: Gateway
) -> None:
    plant, shift = own_plant
    done = _produce(plant, shift, regulated=True)
    lot = done["lot_id"]
    await eventually(lambda: _operation(gateway, "receiveProduction", lot))
    (inspection,) = _inspections(plant, lot)
    _record(plant, inspection, within=True)
    manager = gateway.token("qa_manager", sub="qp-olga", mfa=True)

    def waiting() -> list[dict[str, Any]]:
        ops = gateway.data(PENDING, token=manager)["pendingOperations"]
        return [op for op in ops if op["kind"] == "releaseInspectedLot" and lot in op["lotIds"]]

    (op,) = await eventually(waiting)
    assert op["state"] == "BLOCKED" and "qualified-person-releases-regulated-material" in op["error"], op
    assert {hu["status"] for hu in _state(plant, "wms", lot)["handling_units"]} == {"QUARANTINE"}, "not released"
    released = gateway.data(RELEASE, {"lot": lot, "key": f"qp-{lot}"}, token=manager)["dispositionLot"]
    assert released["state"] == "COMPLETED"
    assert {hu["status"] for hu in _state(plant, "wms", lot)["handling_units"]} == {"AVAILABLE"}
    assert {row["InventoryStockType"] for row in _state(plant, "erp", lot)["stock"]} == {"01"}
    settled = gateway.data(OPERATION, {"id": op["id"]}, token=manager)["operation"]
    assert settled["state"] == "COMPLETED" and not waiting(), "the signed release settles the automatic one"


def _metric(gateway: Gateway, series: str) -> float | None:
    """One series' value on /metrics (`name{label="value",...}` as exposed), None when it is not there."""
    for line in httpx2.get(f"{gateway.url}/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_the_quality_flow_is_measured() -> None:
    """The business KPIs follow the lots of a plant of their own: received lots await inspection until its outcome,
    a regulated pass waits for the qualified person, each release observes its cycle from the production
    completion, each workflow its event-to-effect latency, a QMS hold its propagation."""
    with plant_of_its_own(seed=12) as (plant, shift), _wired(plant) as gateway:
        plain, regulated = _produce(plant, shift), _produce(plant, shift, regulated=True)
        for done in (plain, regulated):
            await eventually(lambda lot=done["lot_id"]: _operation(gateway, "receiveProduction", lot))
        plants = {plain["plant"], regulated["plant"]}
        awaiting = sum(_metric(gateway, f'lotgraph_lots_awaiting_inspection{{plant="{p}"}}') or 0 for p in plants)
        assert awaiting == 2
        assert _metric(gateway, f'lotgraph_oldest_lot_awaiting_inspection_seconds{{plant="{plain["plant"]}"}}') > 0
        effect = 'lotgraph_workflow_effect_seconds_count{workflow="receiveProduction"}'
        assert _metric(gateway, effect) == 2
        for done in (plain, regulated):
            (inspection,) = _inspections(plant, done["lot_id"])
            _record(plant, inspection, within=True)
        await eventually(lambda: _operation(gateway, "releaseInspectedLot", plain["lot_id"]))
        waiting = f'lotgraph_lots_awaiting_qualified_person{{plant="{regulated["plant"]}"}}'
        assert await eventually(lambda: _metric(gateway, waiting) == 1)
        oldest = 'lotgraph_oldest_open_operation_seconds{{state="{}"}}'
        assert _metric(gateway, oldest.format("BLOCKED")) > 0, "the regulated lot's release waits, and for how long"
        assert _metric(gateway, oldest.format("FAILED")) == 0, "none failed: zero, not a missing series"
        assert all(_metric(gateway, f'lotgraph_lots_awaiting_inspection{{plant="{p}"}}') is None for p in plants)
        cycle = 'lotgraph_release_cycle_seconds_count{{plant="{}",workflow="receiveProduction"}}'
        assert _metric(gateway, cycle.format(plain["plant"])) == 1
        manager = gateway.token("qa_manager", sub="qp-olga", mfa=True)
        signed = gateway.data(RELEASE, {"lot": regulated["lot_id"], "key": "qp-kpi"}, token=manager)
        assert signed["dispositionLot"]["state"] == "COMPLETED"
        assert _metric(gateway, waiting) is None
        assert _metric(gateway, oldest.format("BLOCKED")) == 0
        cycles = sum(_metric(gateway, cycle.format(p)) or 0 for p in plants)
        assert cycles == 2, "the signed release ends the regulated lot's cycle"
        hold = {"lot_id": plain["lot_id"], "reason_code": "QH02", "reason": "complaint", "placed_by": "qe-mia"}
        placed = _change(f"{plant.url('qms')}/api/v1/holds", json=hold)
        assert placed.status_code == 201, placed.text
        await eventually(lambda: _operation(gateway, "carryQmsHold", plain["lot_id"]))
        assert _metric(gateway, 'lotgraph_hold_propagation_seconds_count{workflow="carryQmsHold"}') == 1


async def test_workflows_run_in_production_mode(
    own_plant: tuple[Plant, Shift], gateway: Gateway, tmp_path: Path
) -> None:
    """The default mode (real tokens from an identity provider, no anonymous callers, errors masked): a completion
    is received everywhere and a failed inspection contained with its nonconformance, as in development."""
    plant, shift = own_plant
    with start_gateway(plant, mode=Mode.PRODUCTION, auth=production_auth(tmp_path), events=EVENTS,
                       operation_retry_seconds=0.5) as production:  # fmt: skip
        _send_events_to(plant, production)
        try:
            assert production.execute(LOT, {"id": "B2600001"})["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            lot = _produce(plant, shift)["lot_id"]
            received = await eventually(lambda: _operation(production, "receiveProduction", lot))
            assert (received["state"], received["actor"]) == ("COMPLETED", "svc-workflows")
            assert _in_inspection_everywhere(plant, lot)
            read = production.data(LOT, {"id": lot}, token=production.token("quality_engineer"))["lot"]
            assert read["consistency"]["consistent"] is True, read
            (inspection,) = _inspections(plant, lot)
            _record(plant, inspection, within=False)
            held = await eventually(lambda: _operation(production, "placeQualityHold", lot))
        finally:
            _send_events_to(plant, gateway)
    assert (held["state"], held["actor"]) == ("COMPLETED", "svc-containment")
    assert [s["action"] for s in held["steps"]] == ["place_hold", "open_nonconformance", "block", "block"]
    assert {hu["status"] for hu in _state(plant, "wms", lot)["handling_units"]} == {"BLOCKED"}
    assert {row["InventoryStockType"] for row in _state(plant, "erp", lot)["stock"]} == {"07"}
    assert [nc["state"] for nc in _state(plant, "qms", lot)["nonconformances"]] == ["OPEN"]


def _point(plant: Plant, system: str, url: str) -> None:
    plant.admin(system, "PUT", "events", json={"webhook": {"url": f"{url}/webhooks/{system}", "secret": SECRET}})


async def test_two_processes_on_one_postgresql_store_give_each_workflow_effect_once(
    own_plant: tuple[Plant, Shift], gateway: Gateway, tmp_path: Path, postgres_url: str
) -> None:
    """Two `lotgraph run` processes sharing one PostgreSQL store: MES delivers to one, QMS to the other, and every
    completion is also delivered to the second (a sender's retry through the load balancer). Each workflow runs
    once: one receipt, one set of handling units, one inspection lot per lot; a pass released once, a fail held
    and with one nonconformance, counted in the systems themselves."""
    plant, shift = own_plant
    settings = {"STORE_URL": postgres_url, "EVENTS__WEBHOOK_SECRETS": json.dumps(dict.fromkeys(SOURCES, SECRET)),
                "EVENTS__ERP_POLL_SECONDS": "0", "EVENTS__DISPATCH_SECONDS": "0.3",
                "OPERATION_RETRY_SECONDS": "0.5"}  # fmt: skip
    with ExitStack() as stack:
        a, b = (stack.enter_context(gateway_process(plant, tmp_path / name, **settings)) for name in "ab")
        for replica in (a, b):
            replica.wait_ready()
        _point(plant, "mes", a.url)
        _point(plant, "qms", b.url)
        try:
            done = [_produce(plant, shift) for _ in range(4)]
            await eventually(lambda: plant.admin("mes", "GET", "events").json()["pending"] == 0)  # A has them
            completions = [e for e in plant.admin("mes", "GET", "events").json()["recent"]
                           if e["type"] == "production.completed"][-4:]  # fmt: skip
            for event, made in zip(completions, done, strict=True):
                data = {key: value for key, value in made.items() if key != "consumed_lots"}
                answer = _post_signed(b, "mes", event["id"], "production.completed", made["plant"], data)
                assert answer == 200, "B finds the event A stored in the shared inbox: a duplicate"
            lots = [made["lot_id"] for made in done]
            await eventually(lambda: all(_in_inspection_everywhere(plant, lot) for lot in lots), within=60)
            for lot, within in zip(lots, (True, False, True, False), strict=True):
                (inspection,) = _inspections(plant, lot)
                _record(plant, inspection, within)
            passed, failed = lots[::2], lots[1::2]

            def decided() -> bool:
                return all(_stock_types(plant, lot) == ({"01"}, {"AVAILABLE"}) for lot in passed) and all(
                    _stock_types(plant, lot) == ({"07"}, {"BLOCKED"}) for lot in failed)  # fmt: skip

            await eventually(decided, within=60)
            await asyncio.sleep(2.0)  # a second effect would have had time to happen
            auditor = _token(tmp_path / "a", "auditor")
            for kind, kind_lots in (("receiveProduction", lots), ("releaseInspectedLot", passed),
                                    ("placeQualityHold", failed)):  # fmt: skip
                entries = _post(a.url, AUDIT, {"action": f"{kind}.completed"}, auditor)["data"]["auditLog"]["entries"]
                for lot in kind_lots:
                    runs = [e for e in entries if f"erp:{lot}" in (e["details"].get("steps") or {})]
                    assert len(runs) == 1, (kind, lot, runs)
        finally:
            _send_events_to(plant, gateway)
    for made in done:
        lot = made["lot_id"]
        erp = _state(plant, "erp", lot)
        assert sum(float(row["MatlWrhsStkQtyInMatlBaseUnit"]) for row in erp["stock"]) == pytest.approx(
            made["quantity"]), "received once"  # fmt: skip
        assert len(_state(plant, "wms", lot)["handling_units"]) == 1 and len(_inspections(plant, lot)) == 1
    for lot in failed:
        qms = _state(plant, "qms", lot)
        assert len(qms["holds"]) == 1 and len(qms["nonconformances"]) == 1, qms  # containment's, once
    for lot in passed:
        assert _state(plant, "qms", lot)["holds"] == []


def _stock_types(plant: Plant, lot: str) -> tuple[set[str], set[str]]:
    """The ERP stock types and WMS statuses the lot's stock is in."""
    erp, wms = _state(plant, "erp", lot), _state(plant, "wms", lot)
    return ({row["InventoryStockType"] for row in erp["stock"] if float(row["MatlWrhsStkQtyInMatlBaseUnit"])},
            {hu["status"] for hu in wms["handling_units"]})  # fmt: skip
