"""Holds and releases across QMS, WMS and ERP, checked in the simulators' own state."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from datetime import timedelta

import pytest

from simulators import Dataset
from tests.conftest import Gateway, Plant, start_gateway

HOLD = """mutation($lot: ID!, $key: String!, $reason: String = "suspected contamination") {
  placeQualityHold(input: {lotId: $lot, reasonCode: "QH01", reason: $reason, idempotencyKey: $key}) {
    id state kind steps { system lotId state contract lastError detail } } }"""
RELEASE = """mutation($hold: ID!, $key: String!, $why: String = "retest passed") {
  releaseQualityHold(input: {holdId: $hold, justification: $why, idempotencyKey: $key}) {
    id state signature { signerName signerId meaning signedAt } steps { system state } } }"""
HOLDS = "query($lot: ID!) { lot(id: $lot) { holds { id status placedBy } consistency { consistent disagreements } } }"


def _key() -> str:
    return uuid.uuid4().hex


def _state(plant: Plant, system: str, lot_id: str) -> dict:
    return plant.admin(system, "GET", f"lots/{lot_id}").json()


def _blocked_everywhere(plant: Plant, lot_id: str) -> bool:
    qms = _state(plant, "qms", lot_id)
    wms = _state(plant, "wms", lot_id)
    erp = _state(plant, "erp", lot_id)
    stock_types = {row["InventoryStockType"] for row in erp["stock"]}
    return (
        qms["status"] == "BLOCKED"
        and all(hu["status"] == "BLOCKED" for hu in wms["handling_units"])
        and stock_types <= {"07"}
        and erp["batch"]["MatlBatchIsInRstrcdUseStock"] is True
    )


def _releasable(dataset: Dataset, used: set[str], *, regulated: bool, start: int = 0) -> str:
    """A released lot with stock everywhere, a passed latest inspection and no open nonconformance; the first
    from the `start`-th lot of the plant on (modules that change lots keep to ranges of their own)."""
    open_nc = {nc.lot for nc in dataset.nonconformances.values() if nc.state != "CLOSED"}
    latest: dict[str, object] = {}
    for inspection in sorted(dataset.inspection_lots.values(), key=lambda i: i.created_at):
        latest[inspection.lot] = inspection
    for lot in list(dataset.lots.values())[start:]:
        inspection = latest.get(lot.id)
        if (
            lot.id not in used and lot.id not in dataset.divergent and lot.quality_status == "RELEASED"
            and lot.remaining > 0 and lot.id not in open_nc and inspection is not None
            and inspection.usage_decision is not None and inspection.usage_decision.code == "A"
            and dataset.materials[lot.material].regulated == regulated
        ):  # fmt: skip
            used.add(lot.id)
            return lot.id
    raise AssertionError("no suitable lot in the dataset")


USED: set[str] = set()


def test_hold_blocks_the_lot_in_qms_wms_and_erp(ops_gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    lot = _releasable(dataset, USED, regulated=False)
    assert not _blocked_everywhere(plant, lot)
    op = ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=ops_gateway.token("quality_engineer"))[
        "placeQualityHold"
    ]
    assert op["state"] == "COMPLETED"
    assert [s["system"] for s in op["steps"]] == ["QMS", "WMS", "ERP"]
    assert {s["contract"] for s in op["steps"]} >= {"qms.hold.place@1", "wms.stock.move@2", "erp.goods_movement.post@1"}
    assert _blocked_everywhere(plant, lot)
    view = ops_gateway.data(HOLDS, {"lot": lot})["lot"]
    assert any(h["status"] == "ACTIVE" for h in view["holds"])
    assert view["consistency"] == {"consistent": True, "disagreements": []}


def test_release_rules_each_deny_with_their_own_policy_and_a_valid_release_unblocks(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot = _releasable(dataset, USED, regulated=True)
    placer = ops_gateway.token("qa_manager", sub="qp-anna", mfa=True)
    ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=placer)
    hold_id = next(h["id"] for h in ops_gateway.data(HOLDS, {"lot": lot})["lot"]["holds"] if h["status"] == "ACTIVE")

    def denied_by(token: str, why: str = "retest passed") -> list[str]:
        result = ops_gateway.execute(RELEASE, {"hold": hold_id, "key": _key(), "why": why}, token=token)
        assert result["data"] is None, result
        error = result["errors"][0]
        assert error["extensions"]["code"] == "FORBIDDEN"
        return error["extensions"]["policyIds"]

    assert denied_by(ops_gateway.token("quality_engineer", mfa=True)) == []
    assert denied_by(placer) == ["four-eyes-on-regulated-material"]
    assert denied_by(ops_gateway.token("qa_manager", sub="qp-ben")) == ["release-needs-electronic-signature"]
    stale = ops_gateway.token("qa_manager", sub="qp-ben", mfa=True, auth_age=timedelta(minutes=6))
    assert denied_by(stale) == ["release-needs-electronic-signature"]
    assert denied_by(ops_gateway.token("qa_manager", sub="qp-ben", mfa=True), why="  ") == [
        "release-needs-justification"
    ]
    assert _blocked_everywhere(plant, lot), "denied releases changed nothing"

    released = ops_gateway.data(
        RELEASE, {"hold": hold_id, "key": _key()}, token=ops_gateway.token("qa_manager", sub="qp-ben", mfa=True)
    )["releaseQualityHold"]
    assert released["state"] == "COMPLETED"
    assert released["signature"]["signerId"] == "qp-ben" and released["signature"]["meaning"] == "RELEASE"
    qms, wms, erp = (_state(plant, s, lot) for s in ("qms", "wms", "erp"))
    assert qms["status"] == "RELEASED"
    assert all(hu["status"] == "AVAILABLE" for hu in wms["handling_units"])
    assert {row["InventoryStockType"] for row in erp["stock"]} == {"01"}
    assert erp["batch"]["MatlBatchIsInRstrcdUseStock"] is False


@pytest.mark.parametrize("rule", ["release-needs-passed-inspection", "release-needs-no-open-nonconformance"])
def test_release_evidence_rules(ops_gateway: Gateway, dataset: Dataset, rule: str) -> None:
    if rule == "release-needs-no-open-nonconformance":
        lot = next(nc.lot for nc in dataset.nonconformances.values() if nc.state == "OPEN" and nc.lot not in USED)
    else:
        lot = next(i.lot for i in dataset.inspection_lots.values()
                   if i.usage_decision is not None and i.usage_decision.code == "R" and i.lot not in USED)  # fmt: skip
    USED.add(lot)
    ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=ops_gateway.token("quality_engineer"))
    hold_id = next(h["id"] for h in ops_gateway.data(HOLDS, {"lot": lot})["lot"]["holds"] if h["status"] == "ACTIVE")
    result = ops_gateway.execute(
        RELEASE, {"hold": hold_id, "key": _key()}, token=ops_gateway.token("qa_manager", sub="qp-carl", mfa=True)
    )
    assert rule in result["errors"][0]["extensions"]["policyIds"]


def test_same_key_same_input_replays_and_different_input_conflicts(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot = _releasable(dataset, USED, regulated=False)
    token, key = ops_gateway.token("quality_engineer"), _key()
    first = ops_gateway.data(HOLD, {"lot": lot, "key": key}, token=token)["placeQualityHold"]
    plant.reset_stats()
    again = ops_gateway.data(HOLD, {"lot": lot, "key": key}, token=token)["placeQualityHold"]
    assert again["id"] == first["id"] and again["state"] == "COMPLETED"
    writes = {s: plant.admin(s, "GET", "stats").json()["by_endpoint"] for s in ("qms", "wms", "erp")}
    assert not any(route.startswith(("POST", "PATCH")) for routes in writes.values() for route in routes), writes
    conflict = ops_gateway.execute(HOLD, {"lot": lot, "key": key, "reason": "something else"}, token=token)
    assert conflict["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_CONFLICT"


def test_ten_concurrent_duplicates_make_one_set_of_effects(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot = _releasable(dataset, USED, regulated=False)
    token, key = ops_gateway.token("quality_engineer"), _key()
    plant.reset_stats()
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: ops_gateway.execute(HOLD, {"lot": lot, "key": key}, token=token), range(10)))
    assert len({r["data"]["placeQualityHold"]["id"] for r in results}) == 1
    assert plant.admin("qms", "GET", "stats").json()["by_endpoint"].get("POST /api/v1/holds") == 1
    assert plant.admin("wms", "GET", "stats").json()["by_endpoint"].get("POST /v2/stock-moves") == 1
    erp_routes = plant.admin("erp", "GET", "stats").json()["by_endpoint"]
    assert sum(n for route, n in erp_routes.items() if route.startswith("POST")) == 1
    assert len([h for h in _state(plant, "qms", lot)["holds"] if h["status"] == "ACTIVE"]) == 1


def test_wms_down_leaves_the_hold_pending_until_it_returns(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot = _releasable(dataset, USED, regulated=False)
    plant.fault("wms", down=True, paths=["/v2/stock-moves"])
    op = ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=ops_gateway.token("quality_engineer"))[
        "placeQualityHold"
    ]
    assert op["state"] == "PENDING"
    states = {s["system"]: s for s in op["steps"]}
    assert states["QMS"]["state"] == "DONE" and states["ERP"]["state"] == "DONE", "a hold blocks what it can"
    assert states["WMS"]["state"] == "PENDING" and "UPSTREAM_UNAVAILABLE" in states["WMS"]["lastError"]
    pending = ops_gateway.data("{ pendingOperations { id } }", token=ops_gateway.token("qa_manager"))
    assert op["id"] in {p["id"] for p in pending["pendingOperations"]}
    plant.clear_faults()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not _blocked_everywhere(plant, lot):
        time.sleep(0.2)
    assert _blocked_everywhere(plant, lot)
    done = ops_gateway.data(
        "query($id: ID!) { operation(id: $id) { state } }", {"id": op["id"]}, token=ops_gateway.token("qa_manager")
    )
    assert done["operation"]["state"] == "COMPLETED"


def test_every_attempt_is_audited_and_the_chain_verifies(ops_gateway: Gateway, dataset: Dataset) -> None:
    lot = _releasable(dataset, USED, regulated=False)
    ops_gateway.execute(HOLD, {"lot": lot, "key": _key()}, token=ops_gateway.token("plant_operator", plants=("*",)))
    auditor = ops_gateway.token("auditor")
    page = ops_gateway.data(
        "query($r: String!) { auditLog(filter: {resource: $r}) { entries { actor action decision policyIds hash } } }",
        {"r": f"Lot::{lot}"},
        token=auditor,
    )["auditLog"]["entries"]
    assert [(e["action"], e["decision"], e["policyIds"]) for e in page] == [("placeQualityHold", "DENY", [])]
    refused = ops_gateway.execute("{ auditLog { entries { seq } } }", token=ops_gateway.token("qa_manager"))
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


DISPOSITION = """mutation($lot: ID!, $decision: DispositionDecision!, $key: String!) {
  dispositionLot(input: {lotId: $lot, decision: $decision, reason: "failed retest", idempotencyKey: $key}) {
    state signature { meaning signerId } steps { system state contract detail } } }"""


def test_scrap_posts_scrap_movements_and_closes_wms_stock(ops_gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    lot = _releasable(dataset, USED, regulated=False)
    ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=ops_gateway.token("quality_engineer"))
    manager = ops_gateway.token("qa_manager", sub="qp-dora", mfa=True)
    op = ops_gateway.data(DISPOSITION, {"lot": lot, "decision": "SCRAP", "key": _key()}, token=manager)[
        "dispositionLot"
    ]
    assert op["state"] == "COMPLETED"
    assert op["signature"] == {"meaning": "SCRAP", "signerId": "qp-dora"}
    assert _state(plant, "qms", lot)["status"] == "REJECTED"
    assert _state(plant, "wms", lot)["handling_units"] == []
    assert _state(plant, "erp", lot)["stock"] == []
    erp_step = next(s for s in op["steps"] if s["system"] == "ERP")
    assert erp_step["detail"]["movements"] == ["555"], "the held lot's blocked stock is scrapped from blocked"
    unsigned = ops_gateway.execute(
        DISPOSITION, {"lot": lot, "decision": "SCRAP", "key": _key()}, token=ops_gateway.token("qa_manager")
    )
    assert unsigned["errors"][0]["extensions"]["policyIds"] == ["release-needs-electronic-signature"]


def test_duplicates_across_two_replicas_on_postgresql_make_one_set_of_effects(
    plant: Plant, dataset: Dataset, postgres_url: str
) -> None:
    lot = _releasable(dataset, USED, regulated=False)
    key = _key()
    with (
        start_gateway(plant, store_url=postgres_url) as first,
        start_gateway(plant, store_url=postgres_url, data_dir=first.settings.data_dir) as second,
    ):
        token = first.token("quality_engineer")
        plant.reset_stats()
        replicas = [first, second] * 5
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lambda gw: gw.execute(HOLD, {"lot": lot, "key": key}, token=token), replicas))
    ids = {r["data"]["placeQualityHold"]["id"] for r in results}
    assert len(ids) == 1, results
    assert {r["data"]["placeQualityHold"]["state"] for r in results} == {"COMPLETED"}
    assert plant.admin("qms", "GET", "stats").json()["by_endpoint"].get("POST /api/v1/holds") == 1
    assert plant.admin("wms", "GET", "stats").json()["by_endpoint"].get("POST /v2/stock-moves") == 1
    erp_routes = plant.admin("erp", "GET", "stats").json()["by_endpoint"]
    assert sum(n for route, n in erp_routes.items() if route.startswith("POST")) == 1
