"""A step a system refuses for good (a 4xx other than 404/408/429, an answer outside the contract) fails the
operation with the reason, instead of being retried every few seconds forever; once the cause is fixed, an operator
retries it, or gives it up. Checked in each simulator's own state."""

from __future__ import annotations

import time

from simulators import Dataset
from tests.conftest import Gateway, Plant
from tests.test_quality_holds import HOLD, HOLDS, RELEASE, USED, _blocked_everywhere, _key, _releasable, _state

FIRST = 12_000  # lots of this module's own (see tests/test_divergence.py)
OPERATION = "query($id: ID!) { operation(id: $id) { state error steps { system state lastError } } }"
PENDING = "{ pendingOperations { id state error } }"
RETRY = "mutation($id: ID!) { retryOperation(id: $id) { state error steps { system state } } }"
ABANDON = 'mutation($id: ID!) { abandonOperation(id: $id, reason: "giving up") { state } }'
REFUSES = {"error_rate": 1.0, "status": 422, "paths": ["/v2/stock-moves"]}  # the WMS refuses every move


def _moves(plant: Plant) -> int:
    return plant.admin("wms", "GET", "stats").json()["by_endpoint"].get("POST /v2/stock-moves", 0)


def test_a_hold_a_system_refuses_fails_with_the_reason_and_is_retried_only_by_a_person(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot = _releasable(dataset, USED, regulated=False, start=FIRST)
    manager = ops_gateway.token("qa_manager")
    plant.fault("wms", **REFUSES)
    plant.reset_stats()
    op = ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=ops_gateway.token("quality_engineer"))
    op = op["placeQualityHold"]
    assert op["state"] == "FAILED"
    states = {s["system"]: s for s in op["steps"]}
    assert states["QMS"]["state"] == states["ERP"]["state"] == "DONE", "a hold still blocks what it can"
    assert states["WMS"]["state"] == "FAILED" and "UPSTREAM_REJECTED" in states["WMS"]["lastError"]
    failed = ops_gateway.data(OPERATION, {"id": op["id"]}, token=manager)["operation"]
    assert failed["error"].startswith(f"WMS refused lot {lot}: UPSTREAM_REJECTED")
    time.sleep(1.5)  # five rounds of the resumer (every 0.3 s)
    assert _moves(plant) == 1, "a refusal for good is not retried on its own"
    listed = ops_gateway.data(PENDING, token=manager)["pendingOperations"]
    assert {"id": op["id"], "state": "FAILED", "error": failed["error"]} in listed
    refused = ops_gateway.execute(ABANDON, {"id": op["id"]}, token=manager)
    assert refused["errors"][0]["extensions"]["code"] == "LOT_DIVERGENT", "abandoning would leave WMS unblocked"
    audit = ops_gateway.data(
        'query($r: String!) { auditLog(filter: {resource: $r}) { entries { action decision reason } } }',
        {"r": f"Operation::{op['id']}"}, token=ops_gateway.token("auditor"),
    )["auditLog"]["entries"]  # fmt: skip
    assert {"action": "placeQualityHold.failed", "decision": "FAILED", "reason": failed["error"]} in audit
    plant.clear_faults()
    retried = ops_gateway.data(RETRY, {"id": op["id"]}, token=manager)["retryOperation"]
    assert retried == {"state": "COMPLETED", "error": None,
                       "steps": [{"system": s, "state": "DONE"} for s in ("QMS", "WMS", "ERP")]}  # fmt: skip
    assert _blocked_everywhere(plant, lot)


def test_a_release_a_system_refuses_stops_there_fails_and_completes_when_retried(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot = _releasable(dataset, USED, regulated=False, start=FIRST)
    ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=ops_gateway.token("quality_engineer"))
    hold_id = next(h["id"] for h in ops_gateway.data(HOLDS, {"lot": lot})["lot"]["holds"] if h["status"] == "ACTIVE")
    plant.fault("wms", **REFUSES)
    manager = ops_gateway.token("qa_manager", mfa=True)
    op = ops_gateway.data(RELEASE, {"hold": hold_id, "key": _key()}, token=manager)["releaseQualityHold"]
    assert op["state"] == "FAILED"
    assert [s["state"] for s in op["steps"]] == ["DONE", "FAILED", "PENDING"], "a release stops at the refusal"
    assert _state(plant, "erp", lot)["batch"]["MatlBatchIsInRstrcdUseStock"] is True, "the ERP stays held"
    plant.clear_faults()
    retried = ops_gateway.data(RETRY, {"id": op["id"]}, token=manager)["retryOperation"]
    assert retried["state"] == "COMPLETED"
    assert all(hu["status"] == "AVAILABLE" for hu in _state(plant, "wms", lot)["handling_units"])
    assert {row["InventoryStockType"] for row in _state(plant, "erp", lot)["stock"]} == {"01"}
