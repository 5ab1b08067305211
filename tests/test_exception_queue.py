"""The exception queue's STEP entries: an operation a system refused for good is listed as a STEP exception of its
lot's plant; retried once the cause is fixed (by `retryOperation` or `retryException`) it completes and the entry
is RESOLVED; abandoned (by `abandonOperation` or `discardException`, which needs a reason) it is DISCARDED."""

from __future__ import annotations

from simulators import Dataset
from tests.conftest import Gateway, Plant
from tests.test_quality_holds import HOLD, HOLDS, RELEASE, USED, _blocked_everywhere, _key, _releasable

FIRST = 14_000  # lots of this module's own (see tests/test_divergence.py)
WMS_REFUSES = {"error_rate": 1.0, "status": 422, "paths": ["/v2/stock-moves"]}
QMS_REFUSES_RELEASES = {"error_rate": 1.0, "status": 422, "paths": ["/api/v1/holds/*/release"]}
STEPS = """query($lot: String!) { exceptions(filter: {kind: STEP, lotId: $lot}) {
  totalCount edges { node { id state subject reasonCode reason attempts plants resolvedBy resolution } } } }"""
RETRY_OPERATION = "mutation($id: ID!) { retryOperation(id: $id) { state } }"
ABANDON_OPERATION = 'mutation($id: ID!) { abandonOperation(id: $id, reason: "not needed") { state } }'
RETRY = "mutation($id: ID!) { retryException(id: $id) { id state attempts resolvedBy } }"
DISCARD = """mutation($id: ID!, $why: String!) {
  discardException(id: $id, reason: $why) { state resolvedBy resolution } }"""


def _steps(gateway: Gateway, lot: str, token: str) -> list[dict]:
    return [edge["node"] for edge in gateway.data(STEPS, {"lot": lot}, token=token)["exceptions"]["edges"]]


def _failed_hold(gateway: Gateway, plant: Plant, dataset: Dataset) -> tuple[str, str]:
    """A hold the WMS refused: (lot, operation id), the operation FAILED after blocking QMS and ERP."""
    lot = _releasable(dataset, USED, regulated=False, start=FIRST)
    plant.fault("wms", **WMS_REFUSES)
    op = gateway.data(HOLD, {"lot": lot, "key": _key()}, token=gateway.token("quality_engineer"))["placeQualityHold"]
    assert op["state"] == "FAILED"
    return lot, op["id"]


def _failed_release(gateway: Gateway, plant: Plant, dataset: Dataset) -> tuple[str, str]:
    """A release the QMS refused at its first step: (lot, operation id), FAILED having changed nothing."""
    lot = _releasable(dataset, USED, regulated=False, start=FIRST)
    gateway.data(HOLD, {"lot": lot, "key": _key()}, token=gateway.token("quality_engineer"))
    hold = next(h["id"] for h in gateway.data(HOLDS, {"lot": lot})["lot"]["holds"] if h["status"] == "ACTIVE")
    plant.fault("qms", **QMS_REFUSES_RELEASES)
    manager = gateway.token("qa_manager", mfa=True)
    op = gateway.data(RELEASE, {"hold": hold, "key": _key()}, token=manager)["releaseQualityHold"]
    assert op["state"] == "FAILED" and op["steps"][0]["state"] == "FAILED"
    return lot, op["id"]


def test_a_failed_operation_is_a_step_exception_resolved_when_retried(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot, op_id = _failed_hold(ops_gateway, plant, dataset)
    home = dataset.lots[lot].plant
    manager = ops_gateway.token("qa_manager", plants=(home,))
    (entry,) = _steps(ops_gateway, lot, manager)
    assert entry["state"] == "OPEN" and entry["subject"] == op_id and entry["plants"] == [home]
    assert entry["reasonCode"] == "UPSTREAM_REJECTED" and entry["reason"].startswith(f"WMS refused lot {lot}")
    elsewhere = next(p for p in ("P100", "P200", "P300") if p != home)
    assert _steps(ops_gateway, lot, ops_gateway.token("qa_manager", plants=(elsewhere,))) == []
    plant.clear_faults()
    assert ops_gateway.data(RETRY_OPERATION, {"id": op_id}, token=manager)["retryOperation"]["state"] == "COMPLETED"
    (entry,) = _steps(ops_gateway, lot, manager)
    assert (entry["state"], entry["resolution"]) == ("RESOLVED", "the operation completed")
    assert _blocked_everywhere(plant, lot)


def test_retrying_a_step_exception_retries_its_operation(ops_gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    """Still refused: the same entry is OPEN again with one more attempt; once fixed, COMPLETED and RESOLVED."""
    lot, op_id = _failed_hold(ops_gateway, plant, dataset)
    operator = ops_gateway.token("plant_operator", "qa_manager", sub="ops-1", plants=(dataset.lots[lot].plant,))
    (entry,) = _steps(ops_gateway, lot, operator)
    again = ops_gateway.data(RETRY, {"id": entry["id"]}, token=operator)["retryException"]
    assert (again["id"], again["state"], again["attempts"]) == (entry["id"], "OPEN", 2)
    plant.clear_faults()
    done = ops_gateway.data(RETRY, {"id": entry["id"]}, token=operator)["retryException"]
    assert (done["state"], done["resolvedBy"]) == ("RESOLVED", "ops-1")
    state = ops_gateway.data("query($id: ID!) { operation(id: $id) { state } }", {"id": op_id}, token=operator)
    assert state["operation"]["state"] == "COMPLETED"
    assert _blocked_everywhere(plant, lot)


def test_an_abandoned_operation_discards_its_step_exception(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    manager = ops_gateway.token("qa_manager", sub="qa-9")
    lot, op_id = _failed_release(ops_gateway, plant, dataset)
    plant.clear_faults()
    assert ops_gateway.data(ABANDON_OPERATION, {"id": op_id}, token=manager)["abandonOperation"]["state"] == "ABANDONED"
    (entry,) = _steps(ops_gateway, lot, manager)
    assert (entry["state"], entry["resolvedBy"]) == ("DISCARDED", "qa-9")
    assert entry["resolution"] == "operation abandoned: not needed"


def test_discarding_a_step_exception_abandons_its_operation_and_needs_a_reason(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    manager = ops_gateway.token("qa_manager", sub="qa-9")
    lot, op_id = _failed_release(ops_gateway, plant, dataset)
    plant.clear_faults()
    (entry,) = _steps(ops_gateway, lot, manager)
    empty = ops_gateway.execute(DISCARD, {"id": entry["id"], "why": " "}, token=manager)
    assert empty["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "reason"}
    engineer = ops_gateway.token("quality_engineer")
    refused = ops_gateway.execute(DISCARD, {"id": entry["id"], "why": "not needed"}, token=engineer)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    discarded = ops_gateway.data(DISCARD, {"id": entry["id"], "why": "customer cancelled"}, token=manager)
    assert discarded["discardException"] == {"state": "DISCARDED", "resolvedBy": "qa-9",
                                             "resolution": "operation abandoned: customer cancelled"}  # fmt: skip
    state = ops_gateway.data("query($id: ID!) { operation(id: $id) { state } }", {"id": op_id}, token=manager)
    assert state["operation"]["state"] == "ABANDONED"
    audit = ops_gateway.data(
        'query($r: String!) { auditLog(filter: {resource: $r}) { entries { actor action decision details } } }',
        {"r": f"ExceptionEntry::{entry['id']}"}, token=ops_gateway.token("auditor"),
    )["auditLog"]["entries"]  # fmt: skip
    assert [(e["actor"], e["action"], e["decision"]) for e in audit] == [
        ("test-quality_engineer", "discardException", "DENY"), ("qa-9", "discardException", "ALLOW")
    ]  # fmt: skip
    assert audit[1]["details"]["reason"] == "customer cancelled" and audit[1]["details"]["kind"] == "STEP"
