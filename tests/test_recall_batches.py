"""A recall sends each system its lots in bulk (QMS holds and WMS moves in bulk requests, the ERP's batch flags in
one OData `$batch`), 500 lots per request, each batch's outcomes recorded together and announced on
`operationUpdated` as it completes; a lot a system refuses fails alone, saying why, and the others are done.
A batch changed in the ERP between the ETag read and the `$batch` is flagged on its own.
On a plant of the module's own: a recall holds hundreds of lots other modules rely on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from simulators import Dataset
from tests.conftest import Gateway, Plant, plant_of_its_own, start_gateway
from tests.events import WsClient, until_subscriptions
from tests.test_operation_recovery import _check_all_blocked, _recall_root

RECALL = """mutation($lot: ID!, $key: String!) {
  placeRecallHold(input: {
    lotId: $lot, direction: DOWNSTREAM, maxDepth: 2, reason: "supplier notice", idempotencyKey: $key
  }) { id state error lotIds steps { system lotId state lastError } } }"""
UPDATES = "subscription($id: ID!) { operationUpdated(id: $id) { state steps { system state } } }"
RETRY = "mutation($id: ID!) { retryOperation(id: $id) { state } }"
STEP_EXCEPTIONS = """query($lot: String!) { exceptions(filter: {kind: STEP, lotId: $lot}) {
  edges { node { state subject reasonCode reason } } } }"""
BULK = 500  # lots per bulk request (gateway.contracts.base.BULK_ITEMS)
ERP_BATCH = "POST /sap/opu/odata/sap/API_BATCH_SRV/$batch"
ERP_CSRF = "GET /sap/opu/odata/sap/{service}/"
ERP_PATCH = "PATCH /sap/opu/odata/sap/API_BATCH_SRV/Batch('{key}')"
ERP_ETAG = "GET /sap/opu/odata/sap/API_BATCH_SRV/Batch('{key}')"


@pytest.fixture(scope="module")
def own() -> Iterator[tuple[Plant, Dataset]]:
    with plant_of_its_own(seed=15) as (plant, _shift):
        yield plant, plant.dataset


@pytest.fixture(scope="module")
def gateway(own: tuple[Plant, Dataset]) -> Iterator[Gateway]:
    with start_gateway(own[0], operation_retry_seconds=0.3) as gateway:
        yield gateway


def _by_endpoint(plant: Plant, system: str) -> dict[str, int]:
    return plant.admin(system, "GET", "stats").json()["by_endpoint"]


def _wms_chunks(op: dict) -> list[list[str]]:
    """The recall's WMS lots as the executor batches them (its steps in order, `BULK` at a time)."""
    lots = [step["lotId"] for step in op["steps"] if step["system"] == "WMS"]
    return [lots[start : start + BULK] for start in range(0, len(lots), BULK)]


def _wms_states(update: dict) -> list[str]:
    return [step["state"] for step in update["steps"] if step["system"] == "WMS"]


async def test_a_recall_runs_each_system_in_bulk_batches_announced_as_each_completes(
    own: tuple[Plant, Dataset], gateway: Gateway
) -> None:
    plant, dataset = own
    root, lots = _recall_root(dataset, low=BULK + 1, high=2 * BULK)  # two batches per system
    token = gateway.token("qa_manager")
    plant.reset_stats()
    plant.fault("wms", down=True, paths=["/v2/stock-moves*"])
    async with httpx2.AsyncClient(timeout=120) as client:
        response = await client.post(
            f"{gateway.url}/graphql", json={"query": RECALL, "variables": {"lot": root, "key": uuid.uuid4().hex}},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        op = response.json()["data"]["placeRecallHold"]
        assert op["state"] == "PENDING" and set(op["lotIds"]) == lots
        first, second = _wms_chunks(op)
        async with WsClient.connect(gateway.url, token) as ws:
            await ws.acknowledged()
            await ws.subscribe("op", UPDATES, {"id": op["id"]})
            updates = [await ws.event("op")]
            # The WMS is back but cannot take the second batch's lots yet: the first batch is done and announced.
            plant.fault("wms", error_rate=1.0, status=503, lots=second, paths=["/v2/stock-moves/bulk"])
            while _wms_states(updates[-1]).count("PENDING") > len(second):
                updates.append(await ws.event("op", within=30))
            midway = updates[-1]
            plant.clear_faults()
            while updates[-1]["state"] == "PENDING":
                updates.append(await ws.event("op", within=30))
        await until_subscriptions(client, gateway.url, 0)
    assert midway["state"] == "PENDING"
    assert _wms_states(midway)[len(first) :] == ["PENDING"] * len(second), "progress shows batch by batch"
    assert set(_wms_states(midway)[: len(first)]) <= {"DONE", "SKIPPED"}  # SKIPPED: the WMS has no stock of it
    assert updates[-1]["state"] == "COMPLETED"
    qms, wms, erp = (_by_endpoint(plant, system) for system in ("qms", "wms", "erp"))
    assert qms.get("POST /api/v1/holds/bulk") == 2 and "POST /api/v1/holds" not in qms
    assert "POST /v2/stock-moves" not in wms, "never one lot at a time"
    assert erp.get(ERP_BATCH) == 2 and ERP_PATCH not in erp, "every batch flag in one $batch per 500 lots"
    assert erp.get(ERP_CSRF) == 1, "the writes that start together share one CSRF token"
    with httpx2.Client() as client:
        _check_all_blocked(client, plant, lots)


def test_a_lot_a_system_refuses_in_a_bulk_write_fails_alone_saying_why(
    own: tuple[Plant, Dataset], gateway: Gateway
) -> None:
    plant, dataset = own
    root, lots = _recall_root(dataset, low=100, high=BULK)
    refused = sorted(lots - {root})[0]
    manager = gateway.token("qa_manager")
    plant.fault("qms", error_rate=1.0, status=422, lots=[refused], paths=["/api/v1/holds/bulk"])
    op = gateway.data(RECALL, {"lot": root, "key": uuid.uuid4().hex}, token=manager)["placeRecallHold"]
    assert op["state"] == "FAILED"
    (failed,) = [s for s in op["steps"] if s["state"] not in ("DONE", "SKIPPED")]  # SKIPPED: no WMS stock
    assert (failed["system"], failed["lotId"], failed["state"]) == ("QMS", refused, "FAILED")
    assert failed["lastError"].startswith("UPSTREAM_REJECTED: QMS answered 422"), failed["lastError"]
    assert op["error"].startswith(f"QMS refused lot {refused}: UPSTREAM_REJECTED"), "a hold blocks what it can"
    listed = gateway.data(STEP_EXCEPTIONS, {"lot": refused}, token=manager)["exceptions"]["edges"]
    (entry,) = [edge["node"] for edge in listed]
    assert (entry["state"], entry["subject"], entry["reasonCode"]) == ("OPEN", op["id"], "UPSTREAM_REJECTED")
    plant.clear_faults()
    assert gateway.data(RETRY, {"id": op["id"]}, token=manager)["retryOperation"]["state"] == "COMPLETED"
    with httpx2.Client() as client:
        _check_all_blocked(client, plant, lots)


def _restrict_in_the_erp(plant: Plant, lot: str) -> None:
    """A clerk flags the lot's batch restricted in the ERP itself (its ETag changes)."""
    service = f"{plant.url('erp')}/sap/opu/odata/sap/API_BATCH_SRV"
    with httpx2.Client(timeout=10) as client:
        token = client.get(f"{service}/", headers={"x-csrf-token": "fetch"}).headers["x-csrf-token"]
        etag = client.get(f"{service}/Batch('{lot}')").headers["etag"]
        changed = client.patch(f"{service}/Batch('{lot}')", json={"MatlBatchIsInRstrcdUseStock": True},
                               headers={"x-csrf-token": token, "if-match": etag})  # fmt: skip
    assert changed.status_code == 204, changed.text


def test_a_batch_changed_in_the_erp_after_its_etag_was_read_is_restricted_on_its_own(
    own: tuple[Plant, Dataset], gateway: Gateway
) -> None:
    """The recall reads every batch's ETag, then sends one `$batch`; a clerk changes one batch in between (the
    `$batch` is slow to arrive). The ERP refuses that batch's change (412); the gateway reads its ETag again and
    flags it alone, and the recall completes with every lot blocked."""
    plant, dataset = own
    root, lots = _recall_root(dataset, low=50, high=BULK)
    changed = sorted(lots - {root})[0]
    plant.reset_stats()
    plant.fault("erp", latency_ms=1500, paths=["*/$batch"])
    try:
        with ThreadPoolExecutor(1) as pool:
            recall = pool.submit(gateway.data, RECALL, {"lot": root, "key": uuid.uuid4().hex},
                                 token=gateway.token("qa_manager"))  # fmt: skip
            deadline = time.monotonic() + 30
            while ERP_BATCH not in _by_endpoint(plant, "erp"):  # counted as it arrives, before its latency
                assert time.monotonic() < deadline and not recall.done(), "the recall sent its $batch"
                time.sleep(0.05)
            _restrict_in_the_erp(plant, changed)
            op = recall.result(timeout=60)["placeRecallHold"]
    finally:
        plant.clear_faults()
    assert op["state"] == "COMPLETED", op["error"]
    erp = _by_endpoint(plant, "erp")
    assert erp.get(ERP_BATCH) == 1, "every other batch's flag in the one $batch"
    # The clerk's read and change, and the gateway's: the changed batch's ETag read again and its flag set alone.
    assert (erp.get(ERP_ETAG), erp.get(ERP_PATCH)) == (2, 2)
    with httpx2.Client() as client:
        _check_all_blocked(client, plant, lots)


def test_a_wms_speaking_api_v1_takes_a_recall_one_lot_at_a_time(own: tuple[Plant, Dataset]) -> None:
    """The bulk move came with WMS API v2: a gateway configured for v1 moves each lot on its own."""
    plant, dataset = own
    root, _lots = _recall_root(dataset, low=50, high=BULK)
    sources = {"wms": {"version": 1}}
    with start_gateway(plant, operation_retry_seconds=0.3, sources=sources) as v1:
        plant.reset_stats()
        op = v1.data(RECALL, {"lot": root, "key": uuid.uuid4().hex}, token=v1.token("qa_manager"))["placeRecallHold"]
    assert op["state"] == "COMPLETED"
    wms = _by_endpoint(plant, "wms")
    assert wms.get("POST /v1/moves", 0) > 0 and "POST /v2/stock-moves/bulk" not in wms
    assert {s["state"] for s in op["steps"] if s["system"] == "WMS"} <= {"DONE", "SKIPPED"}
