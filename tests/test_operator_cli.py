"""`lotgraph ops`, run as an operator runs it: a separate process talking to the gateway with a token. It lists
what is stuck and retries or discards it, as the same GraphQL would (decided by Cedar, audited); a refused token
or a refused action is one line naming the code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.reconcile.settings import ReconciliationSettings
from simulators import Dataset
from tests.conftest import Gateway, Plant, plant_of_its_own, start_gateway
from tests.test_exception_queue import _failed_hold, _failed_release
from tests.test_reconciliation import _hold_in_qms, _released_lot, reconcile

LOTGRAPH = str(Path(sys.executable).parent / "lotgraph")


def _ops(gateway: Gateway, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [LOTGRAPH, "ops", *args, "--url", gateway.url, "--token", token]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _json(gateway: Gateway, token: str, *args: str) -> Any:
    done = _ops(gateway, token, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_an_operator_lists_a_failed_operation_and_retries_its_entry(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    lot, op_id = _failed_hold(ops_gateway, plant, dataset)
    operator = ops_gateway.token("plant_operator", "qa_manager", sub="ops-cli", plants=(dataset.lots[lot].plant,))
    failed = _json(ops_gateway, operator, "failed")
    assert [(op["id"], op["state"], op["lotIds"]) for op in failed if op["id"] == op_id] == [(op_id, "FAILED", [lot])]
    assert all(op["state"] == "FAILED" for op in failed)
    table = _ops(ops_gateway, operator, "failed")
    assert table.returncode == 0 and op_id in table.stdout and "WMS refused" in table.stdout, table.stdout
    entries = _json(ops_gateway, operator, "exceptions", "--kind", "STEP", "--lot", lot)
    assert [(e["subject"], e["state"]) for e in entries] == [(op_id, "OPEN")]
    plant.clear_faults()
    (retried,) = _json(ops_gateway, operator, "retry", entries[0]["id"])
    assert retried["state"] == "RESOLVED"
    again = _ops(ops_gateway, operator, "retry", entries[0]["id"])
    assert again.returncode == 1
    assert (
        again.stderr.strip()
        == f"lotgraph ops retry: BAD_USER_INPUT: exception {entries[0]['id']} is RESOLVED, not OPEN"
    )


def test_an_operator_abandons_an_operation_only_with_a_reason_and_never_half_applied(
    ops_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    manager = ops_gateway.token("qa_manager", sub="ops-cli-2")
    _, op_id = _failed_hold(ops_gateway, plant, dataset)
    plant.clear_faults()
    unexplained = _ops(ops_gateway, manager, "discard", op_id)
    assert unexplained.returncode == 2 and "--reason" in unexplained.stderr, "argparse asks for the reason"
    half = _ops(ops_gateway, manager, "discard", op_id, "--reason", "not needed")  # QMS and ERP blocked, WMS not
    assert half.returncode == 1 and half.stderr.startswith("lotgraph ops discard: LOT_DIVERGENT"), half.stderr
    (done,) = _json(ops_gateway, manager, "retry", op_id)
    assert done["state"] == "COMPLETED"
    _, untouched = _failed_release(ops_gateway, plant, dataset)  # refused at its first step: nothing changed
    plant.clear_faults()
    (abandoned,) = _json(ops_gateway, manager, "discard", untouched, "--reason", "hold stays: complaint confirmed")
    assert abandoned["state"] == "ABANDONED" and "complaint confirmed" in abandoned["error"]


def test_a_refused_token_is_one_line_naming_the_code(ops_gateway: Gateway) -> None:
    forged = _ops(ops_gateway, "not-a-token", "pending")
    assert forged.returncode == 1
    assert forged.stderr.startswith("lotgraph ops pending: UNAUTHENTICATED") and forged.stderr.count("\n") == 1
    reader = _ops(ops_gateway, ops_gateway.token("portal_reader"), "exceptions")
    assert reader.returncode == 1 and reader.stderr.startswith("lotgraph ops exceptions: FORBIDDEN"), reader.stderr


async def test_an_operator_lists_divergent_lots_and_repairs_one() -> None:
    """The runbook's divergence commands: `ops divergent` lists what the sweep found, `ops repair` brings WMS and
    ERP in line with QMS, after which the lot is off the list."""
    fast = {f"REQUESTS_PER_SECOND__{source}": "100" for source in ("ERP", "QMS", "WMS")}
    with (
        plant_of_its_own(seed=17) as (plant, _),
        start_gateway(
            plant,
            reconciliation=ReconciliationSettings(plants=["P300"], interval_seconds=3600),
            operation_retry_seconds=0.5,
        ) as gateway,  # fmt: skip
    ):
        lot = _released_lot(plant)
        _hold_in_qms(plant, lot)
        assert reconcile(plant, gateway.settings.resolved_store_url, "P100", **fast).returncode == 0
        engineer = gateway.token("quality_engineer", plants=("P100",))
        listed = _json(gateway, engineer, "divergent", "--plant", "P100", "--kind", "AVAILABLE_WHILE_BLOCKED",
                       "--first", "500")  # fmt: skip
        (found,) = [row for row in listed if row["lotId"] == lot]
        assert found["kinds"] == ["AVAILABLE_WHILE_BLOCKED"] and found["qualityStatus"] == "ON_HOLD"
        table = _ops(gateway, engineer, "divergent", "--plant", "P100", "--first", "500")
        assert table.returncode == 0 and lot in table.stdout, table.stdout
        (repaired,) = _json(gateway, engineer, "repair", lot, "--reason", "held in QMS by qe-mia, ticket 4711")
        assert repaired["kind"] == "repairLot" and repaired["state"] == "COMPLETED", repaired
        after = _json(gateway, engineer, "divergent", "--plant", "P100", "--first", "500")
        assert lot not in {row["lotId"] for row in after}, "its completion re-checked the lot"
