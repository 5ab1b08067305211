"""A gateway killed mid-operation resumes it on restart, on SQLite and on PostgreSQL; a recall over a
genealogy of hundreds of lots blocks every one of them in QMS, WMS and ERP."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest

from gateway.auth import AuthSettings, DevSigner
from simulators import Dataset
from tests.conftest import Plant, gateway_process

RECALL = """mutation($lot: ID!, $key: String!) {
  placeRecallHold(input: {
    lotId: $lot, direction: DOWNSTREAM, maxDepth: 2, reason: "supplier notice", idempotencyKey: $key
  }) { id state lotIds steps { system state } } }"""


def _recall_root(dataset: Dataset, low: int = 60, high: int = 400) -> tuple[str, set[str]]:
    """A raw lot whose downstream to depth 2 holds between `low` and `high` lots."""
    children: dict[str, set[str]] = defaultdict(set)
    for link in dataset.links:
        children[link.consumed_lot].add(link.produced_lot)
    for lot in dataset.lots.values():
        if lot.tier != 0 or lot.id in dataset.divergent:
            continue
        level1 = children[lot.id]
        reached = {lot.id} | level1 | {c for p in level1 for c in children[p]}
        if low <= len(reached) <= high:
            return lot.id, reached
    raise AssertionError("no raw lot with a recall of that size")


@contextmanager
def recovering_gateway(plant: Plant, data_dir: Path, store_url: str) -> Iterator[str]:
    """A gateway process on `store_url` that retries pending operations quickly; SIGKILLed afterwards (a crash)."""
    with gateway_process(plant, data_dir, STORE_URL=store_url, OPERATION_RETRY_SECONDS="0.3") as running:
        running.wait_ready("/healthz")
        yield running.url


def _token(data_dir: Path, *roles: str, mfa: bool = False) -> str:
    """A development token signed with the key of the gateway process using `data_dir`, signed in now."""
    auth = AuthSettings()
    signer = DevSigner.load_or_create(auth.dev_key_path(data_dir))
    return signer.mint(
        f"test-{roles[0]}", roles=roles, plants=("*",), amr=("pwd", "mfa") if mfa else ("pwd",),
        auth_time=datetime.now(UTC), issuer=auth.issuer, audience=auth.audience,
    )  # fmt: skip


def _post(url: str, query: str, variables: dict, token: str) -> dict:
    response = httpx2.post(
        f"{url}/graphql", json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"}, timeout=300,
    )  # fmt: skip
    return response.json()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


def test_recall_killed_midway_resumes_after_restart(
    plant: Plant, dataset: Dataset, tmp_path: Path, store_url: str
) -> None:
    root, lots = _recall_root(dataset)
    key = uuid.uuid4().hex
    plant.fault("wms", down=True, paths=["/v2/stock-moves*"])  # one lot at a time and in bulk
    with recovering_gateway(plant, tmp_path, store_url) as url:
        token = _token(tmp_path, "qa_manager")
        plant.reset_stats()
        op = _post(url, RECALL, {"lot": root, "key": key}, token)["data"]["placeRecallHold"]
        assert op["state"] == "PENDING"
        assert set(op["lotIds"]) == lots
        served = plant.served()
        # Bounded: a handful of requests per lot and system, whatever the depth (no retries storm).
        assert served["qms"] <= 2 * len(lots) + 10 and served["erp"] <= 6 * len(lots) + 10, served
        # Killed between steps: QMS and ERP done for every lot, WMS not.
    # The process is gone (SIGKILL); nothing is running the operation now.
    plant.clear_faults()
    with recovering_gateway(plant, tmp_path, store_url) as url:
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline:
            state = _post(url, "query($id: ID!) { operation(id: $id) { state } }", {"id": op["id"]},
                          _token(tmp_path, "qa_manager"))["data"]["operation"]["state"]  # fmt: skip
            if state == "COMPLETED":
                break
            time.sleep(0.3)
        assert state == "COMPLETED"
        again = _post(url, RECALL, {"lot": root, "key": key}, _token(tmp_path, "qa_manager"))
        assert again["data"]["placeRecallHold"]["id"] == op["id"], "the idempotency key survives restarts"
    with httpx2.Client() as client:
        _check_all_blocked(client, plant, lots)


def _check_all_blocked(client: httpx2.Client, plant: Plant, lots: set[str]) -> None:
    for lot_id in lots:
        qms = client.get(f"{plant.url('qms')}/_admin/lots/{lot_id}").json()
        assert qms["status"] == "BLOCKED", lot_id
        wms = client.get(f"{plant.url('wms')}/_admin/lots/{lot_id}")
        assert wms.status_code == 404 or all(hu["status"] == "BLOCKED" for hu in wms.json()["handling_units"])
        erp = client.get(f"{plant.url('erp')}/_admin/lots/{lot_id}").json()
        assert {row["InventoryStockType"] for row in erp["stock"]} <= {"07"}, lot_id
        assert erp["batch"]["MatlBatchIsInRstrcdUseStock"] is True
