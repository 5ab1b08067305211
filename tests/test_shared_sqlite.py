"""Two `lotgraph run` processes on one SQLite file behave like replicas on PostgreSQL: same-key duplicates make
one operation, the audit chain stays one chain, and no database error reaches a client."""

from __future__ import annotations

import concurrent.futures
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import httpx2

from gateway.auth import AuthSettings, DevSigner
from simulators import Dataset
from tests.conftest import Plant, gateway_process, start_gateway

HOLD = """mutation($lot: ID!, $key: String!) {
  placeQualityHold(input: {lotId: $lot, reasonCode: "QH01", reason: "suspected contamination", idempotencyKey: $key}) {
    id state } }"""


def _token(data_dir: Path) -> str:
    auth = AuthSettings()
    signer = DevSigner.load_or_create(auth.dev_key_path(data_dir))
    return signer.mint("test-quality-engineer", roles=("quality_engineer",), plants=("*",),
                       issuer=auth.issuer, audience=auth.audience)  # fmt: skip


def _released_lot(dataset: Dataset) -> str:
    return next(
        lot.id for lot in reversed(dataset.lots.values())
        if lot.quality_status == "RELEASED" and lot.remaining > 0 and lot.id not in dataset.divergent
    )  # fmt: skip


def test_duplicates_over_two_processes_on_one_sqlite_file_make_one_operation_and_one_chain(
    plant: Plant, dataset: Dataset, tmp_path: Path
) -> None:
    """96 concurrent requests with one idempotency key, spread over two processes sharing the data directory:
    every answer names the same operation, none is an error, and `lotgraph audit verify` passes."""
    lot, key = _released_lot(dataset), uuid.uuid4().hex
    with gateway_process(plant, tmp_path) as first:
        first.wait_ready()  # the first creates the store and the development key; the second finds them
        with gateway_process(plant, tmp_path) as second:
            second.wait_ready()
            token = _token(tmp_path)
            with httpx2.Client(timeout=120) as client:

                def hold(url: str) -> dict:
                    body = {"query": HOLD, "variables": {"lot": lot, "key": key}}
                    return client.post(f"{url}/graphql", json=body, headers={"Authorization": f"Bearer {token}"}).json()

                with concurrent.futures.ThreadPoolExecutor(32) as pool:
                    results = list(pool.map(hold, [first.url, second.url] * 48))
    errors = [error for result in results for error in result.get("errors", ())]
    assert not errors, errors[:3]
    assert len({result["data"]["placeQualityHold"]["id"] for result in results}) == 1
    verify = subprocess.run(
        [str(Path(sys.executable).parent / "lotgraph"), "audit", "verify"],
        env=dict(os.environ, LOTGRAPH_DATA_DIR=str(tmp_path)), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0 and "hash chain verified" in verify.stdout, verify.stdout + verify.stderr


def test_a_database_error_reaches_the_client_without_its_sql(plant: Plant, dataset: Dataset) -> None:
    """With the audit table gone from under it, a development gateway's mutation fails with a coded error
    that names neither the statement, the table nor the parameters."""
    lot = _released_lot(dataset)
    with start_gateway(plant) as gateway:
        with sqlite3.connect(gateway.settings.data_dir / "lotgraph.db") as db:
            db.execute("DROP TABLE audit_log")
        variables = {"lot": lot, "key": uuid.uuid4().hex}
        result = gateway.execute(HOLD, variables, token=gateway.token("quality_engineer"))
    (error,) = result["errors"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert not any(word in error["message"] for word in ("SQL", "audit_log", "INSERT", "SELECT", lot)), error
