"""No silent divergence: operations racing on one lot, a misleading 404 and a failing evidence read each
leave every system agreeing with QMS (or the operation visibly pending, or refused), checked in each
simulator's own state."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from simulators import Dataset
from tests.conftest import Gateway, Plant, gateway_process
from tests.test_operation_recovery import _post, _token
from tests.test_quality_holds import HOLD, HOLDS, RELEASE, USED, _blocked_everywhere, _key, _releasable, _state

# The ERP books goods movements slowly: the window in which a release has checked QMS for other holds
# and read the lot's stock, but not yet posted the unblocking movement.
SLOW_POSTING = {"latency_ms": 1500, "paths": ["*/A_MaterialDocumentHeader"]}
# Lots from the middle of the plant: the graph tests read the first ones as seeded.
FIRST = 10_000
OPERATION = "query($id: ID!) { operation(id: $id) { state steps { system state lastError } } }"


def _active_holds(plant: Plant, lot: str) -> set[str]:
    return {h["id"] for h in _state(plant, "qms", lot)["holds"] if h["status"] == "ACTIVE"}


def _until(condition, within: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _race_release_with_new_hold(plant: Plant, lot: str, release, hold) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    """Release the lot's only hold and, once WMS shows the lot available (the release has checked QMS for other
    holds and is reading the slow ERP), place a new hold on the same lot. Returns both operations as their
    callers got them."""
    (first_hold,) = _active_holds(plant, lot)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        released = pool.submit(release, first_hold)
        _until(lambda: all(hu["status"] == "AVAILABLE" for hu in _state(plant, "wms", lot)["handling_units"]))
        time.sleep(0.2)
        held = pool.submit(hold)
        return released.result(), held.result()


def _race_on_slow_erp(
    plant: Plant, lots: list[str], release: Callable[[str], dict], hold: Callable[[str], dict]
) -> list[tuple[dict, dict]]:
    """The race on every lot at once, the ERP posting slowly; afterwards each lot is held once (the new hold) and
    blocked in every system, and both operations completed. Returns (release, hold) answers per lot."""
    plant.fault("erp", **SLOW_POSTING)
    try:
        with concurrent.futures.ThreadPoolExecutor(len(lots)) as pool:
            outcomes = list(
                pool.map(lambda lot: _race_release_with_new_hold(plant, lot, release, lambda: hold(lot)), lots)
            )
    finally:
        plant.clear_faults()
    for lot, (released, held) in zip(lots, outcomes, strict=True):
        assert released["releaseQualityHold"]["state"] == "COMPLETED"
        assert held["placeQualityHold"]["state"] == "COMPLETED"
        assert len(_active_holds(plant, lot)) == 1
        assert _blocked_everywhere(plant, lot), f"{lot}: ERP {_state(plant, 'erp', lot)}"
    return outcomes


def test_a_hold_placed_while_a_release_runs_leaves_every_system_blocked(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lots = [_releasable(dataset, USED, regulated=False, start=FIRST) for _ in range(3)]
    engineer, manager = ops_gateway.token("quality_engineer"), ops_gateway.token("qa_manager", mfa=True)
    for lot in lots:
        ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=engineer)
    _race_on_slow_erp(
        plant, lots,
        lambda hold_id: ops_gateway.data(RELEASE, {"hold": hold_id, "key": _key()}, token=manager),
        lambda lot: ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=engineer),
    )  # fmt: skip
    for lot in lots:
        view = ops_gateway.data(HOLDS, {"lot": lot})["lot"]
        assert view["consistency"] == {"consistent": True, "disagreements": []}


def test_operations_on_one_lot_take_turns_across_two_gateway_processes(
    plant: Plant, dataset: Dataset, tmp_path: Path, postgres_url: str
) -> None:
    lots = [_releasable(dataset, USED, regulated=False, start=FIRST) for _ in range(2)]
    env = {"STORE_URL": postgres_url, "OPERATION_RETRY_SECONDS": "0.3"}
    with gateway_process(plant, tmp_path, **env) as first, gateway_process(plant, tmp_path, **env) as second:
        first.wait_ready()
        second.wait_ready()
        engineer = _token(tmp_path, "quality_engineer")
        manager = _token(tmp_path, "qa_manager", mfa=True)
        for lot in lots:
            _post(first.url, HOLD, {"lot": lot, "key": _key()}, engineer)
        _race_on_slow_erp(
            plant, lots,
            lambda hold_id: _post(first.url, RELEASE, {"hold": hold_id, "key": _key()}, manager)["data"],
            lambda lot: _post(second.url, HOLD, {"lot": lot, "key": _key()}, engineer)["data"],
        )  # fmt: skip


@pytest.mark.parametrize("mutation", ["hold", "release"])
def test_a_404_from_the_wms_move_is_an_upstream_error_not_no_stock(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset, mutation: str
) -> None:
    lot = _releasable(dataset, USED, regulated=False, start=FIRST)
    engineer = ops_gateway.token("quality_engineer")
    if mutation == "release":
        ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=engineer)
    wanted = "AVAILABLE" if mutation == "release" else "BLOCKED"
    plant.fault("wms", error_rate=1.0, status=404, paths=["/v2/stock-moves"])
    if mutation == "hold":
        op = ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=engineer)["placeQualityHold"]
    else:
        (hold_id,) = _active_holds(plant, lot)
        manager = ops_gateway.token("qa_manager", mfa=True)
        op = ops_gateway.data(RELEASE, {"hold": hold_id, "key": _key()}, token=manager)["releaseQualityHold"]
    assert op["state"] == "PENDING"
    wms_step = next(s for s in op["steps"] if s["system"] == "WMS")
    assert wms_step["state"] == "PENDING", "a 404 on the write is not the WMS saying the lot has no stock"
    assert all(hu["status"] != wanted for hu in _state(plant, "wms", lot)["handling_units"])
    plant.clear_faults()
    _until(lambda: all(hu["status"] == wanted for hu in _state(plant, "wms", lot)["handling_units"]))
    manager = ops_gateway.token("qa_manager")
    _until(lambda: ops_gateway.data(OPERATION, {"id": op["id"]}, token=manager)["operation"]["state"] == "COMPLETED")


def test_a_wms_that_reports_no_stock_lets_the_step_be_skipped(ops_gateway: Gateway, plant: Plant) -> None:
    lot = _lot_without_wms_stock(plant)
    op = ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=ops_gateway.token("quality_engineer"))
    wms_step = next(s for s in op["placeQualityHold"]["steps"] if s["system"] == "WMS")
    assert wms_step["state"] == "SKIPPED" and "no stock" in wms_step["detail"]["reason"]
    assert op["placeQualityHold"]["state"] == "COMPLETED"


def _lot_without_wms_stock(plant: Plant) -> str:
    """A lot the ERP and QMS know but the WMS holds nothing of (consumed or shipped)."""
    for lot in reversed(plant.dataset.lots.values()):
        if lot.id in USED or lot.id in plant.dataset.divergent or lot.remaining > 0:
            continue
        if httpx2.get(f"{plant.url('wms')}/_admin/lots/{lot.id}", timeout=10).status_code == 404:
            USED.add(lot.id)
            return lot.id
    raise AssertionError("no lot without WMS stock")


def test_a_release_never_rests_on_stale_evidence(ops_gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    lot = _releasable(dataset, USED, regulated=False, start=FIRST)
    ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=ops_gateway.token("quality_engineer"))
    manager = ops_gateway.token("qa_manager", mfa=True)
    evidence = "query($lot: ID!) { lot(id: $lot) { inspections { id passed } nonconformances { id state } } }"
    assert ops_gateway.data(evidence, {"lot": lot}, token=manager)["lot"]["nonconformances"] == []  # cached now
    httpx2.post(
        f"{plant.url('qms')}/api/v1/nonconformances",
        json={"lot_id": lot, "category": "CONTAMINATION", "severity": "critical", "description": "metal found"},
        timeout=10,
    ).raise_for_status()
    plant.fault("qms", error_rate=1.0, status=503, paths=["/api/v1/nonconformances*"])
    (hold_id,) = _active_holds(plant, lot)
    result = ops_gateway.execute(RELEASE, {"hold": hold_id, "key": _key()}, token=manager)
    assert result["data"] is None
    error = result["errors"][0]
    assert error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE" and error["extensions"]["source"] == "qms"
    assert "stale" not in result.get("extensions", {})
    plant.clear_faults()
    assert _blocked_everywhere(plant, lot), "the refused release changed nothing"
    assert hold_id in _active_holds(plant, lot)


def test_an_operation_waiting_for_its_turn_says_for_which(ops_gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    """While a release posts in a slow ERP, a new hold on the same lot waits; pendingOperations says which
    operation it waits for, and the note goes once it has had its turn."""
    lot = _releasable(dataset, USED, regulated=False, start=FIRST)
    engineer, manager = ops_gateway.token("quality_engineer"), ops_gateway.token("qa_manager", mfa=True)
    ops_gateway.data(HOLD, {"lot": lot, "key": _key()}, token=engineer)
    seen: list[dict] = []

    def waiting() -> bool:
        listed = ops_gateway.data("{ pendingOperations { id error } }", token=manager)["pendingOperations"]
        seen.extend(op for op in listed if op["error"] and f"is changing lot {lot}" in op["error"])
        return bool(seen)

    def hold_watched(lot: str) -> dict:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            placing = pool.submit(ops_gateway.data, HOLD, {"lot": lot, "key": _key()}, token=engineer)
            _until(waiting)
            return placing.result()

    ((released, held),) = _race_on_slow_erp(
        plant, [lot],
        lambda hold_id: ops_gateway.data(RELEASE, {"hold": hold_id, "key": _key()}, token=manager), hold_watched,
    )  # fmt: skip
    release_id, hold_id = released["releaseQualityHold"]["id"], held["placeQualityHold"]["id"]
    assert seen[0] == {"id": hold_id, "error": f"waiting for its turn: operation {release_id} is changing lot {lot}"}
    done = ops_gateway.data("query($id: ID!) { operation(id: $id) { state error } }", {"id": hold_id}, token=manager)
    assert done["operation"] == {"state": "COMPLETED", "error": None}
