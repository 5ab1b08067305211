"""Reconciliation end to end, on plants of their own: a lot is made to diverge behind lotgraph's back (a person
changes one system through its own API), the sweep finds it with the right kind and each system's statement,
`divergentLots` lists it to readers of its plant only, `repairLot` brings WMS and ERP in line with QMS (checked
in each system's own state), and the lot leaves the list with the time it was divergent recorded. Also: the sweep
resumes from its stored cursor, two gateways on PostgreSQL sweep one at a time, the sweep keeps to its request
budget (counted at the simulators), and `lotgraph reconcile` prints what it found."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway.events.settings import ContainmentSettings, EventSettings
from gateway.reconcile.settings import ReconciliationSettings, SweepBudget
from gateway.settings import Mode
from gateway.workflows.settings import WorkflowSettings
from simulators.shift import Shift
from tests.conftest import Gateway, Plant, eventually, plant_of_its_own, production_auth, start_gateway
from tests.events import SECRET, QmsEvents, sign

PLANT = "P100"
OTHER = "P200"
DIVERGENT = """query($filter: DivergentLotFilter, $first: Int = 500) { divergentLots(filter: $filter, first: $first) {
  totalCount edges { node { lotId plant kinds qualityStatus disagreements firstSeen divergentSeconds
    systems { system qualityStatus stockStatus } lot { id qualityStatus } } } } }"""
REPAIR = """mutation($lot: ID!, $key: String!) { repairLot(input: {lotId: $lot, reason: "sweep found it diverged",
  idempotencyKey: $key}) { id kind state error steps { system action state lastError } } }"""
DIVERGENT_LOTS = """query($filter: LotFilter) { lots(filter: $filter, first: 1000) {
  totalCount edges { node { id } } } }"""


@pytest.fixture(scope="module")
def own_plant() -> Iterator[tuple[Plant, Shift]]:
    with plant_of_its_own(seed=14) as own:
        yield own


def _state(plant: Plant, system: str, lot: str) -> dict[str, Any]:
    return plant.admin(system, "GET", f"lots/{lot}").json()


def _wms(plant: Plant, lot: str) -> set[str]:
    return {hu["status"] for hu in _state(plant, "wms", lot)["handling_units"]}


def _erp(plant: Plant, lot: str) -> set[str]:
    """The ERP's stock types holding some of the lot (01 unrestricted, 02 quality inspection, 07 blocked)."""
    rows = _state(plant, "erp", lot)["stock"]
    return {row["InventoryStockType"] for row in rows if float(row["MatlWrhsStkQtyInMatlBaseUnit"])}


USED: set[str] = set()


def _released_lot(plant: Plant, *, regulated: bool = False, in_plant: str = PLANT) -> str:
    """A released lot with stock, agreeing everywhere as seeded, not used by another test of this module."""
    data = plant.dataset
    lot = next(
        lot.id for lot in sorted(data.lots.values(), key=lambda lot: lot.id)
        if lot.plant == in_plant and lot.quality_status == "RELEASED" and lot.remaining > 0
        and lot.id not in data.divergent and lot.id not in USED and data.materials[lot.material].regulated is regulated
    )  # fmt: skip
    USED.add(lot)
    return lot


def _hold_in_qms(plant: Plant, lot: str) -> None:
    """A quality engineer holds the lot in the QMS itself; no webhook tells lotgraph."""
    placed = httpx2.post(f"{plant.url('qms')}/api/v1/holds", json={
        "lot_id": lot, "reason_code": "QH02", "reason": "customer complaint", "placed_by": "qe-mia"})  # fmt: skip
    assert placed.status_code == 201, placed.text


def _move_in_wms(plant: Plant, lot: str, status: str) -> None:
    """A warehouse clerk moves the lot's handling units in the WMS itself."""
    move = {"lotId": lot, "targetStatus": status, "reference": f"clerk-{uuid.uuid4().hex[:6]}"}
    moved = httpx2.post(f"{plant.url('wms')}/v2/stock-moves", json=move)
    assert moved.status_code == 200, moved.text


def reconcile(plant: Plant, store_url: str, *plants: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`lotgraph reconcile` as an operator runs it, against the plant's systems and a gateway's store."""
    env = dict(
        os.environ,
        LOTGRAPH_STORE_URL=store_url,
        **{f"LOTGRAPH_SOURCES__{s.upper()}__URL": plant.url(s) for s in ("erp", "qms", "wms", "mes")},
        LOTGRAPH_SOURCES__WMS__VERSION="2",
        **{f"LOTGRAPH_RECONCILIATION__{name}": value for name, value in settings.items()},
    )
    lotgraph = str(Path(sys.executable).parent / "lotgraph")
    command = [lotgraph, "--log-level", "warning", "reconcile", *(arg for p in plants for arg in ("--plant", p))]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _listed(gateway: Gateway, token: str, lot: str, **filter: Any) -> dict[str, Any] | None:
    found = gateway.data(DIVERGENT, {"filter": filter or None}, token=token)["divergentLots"]["edges"]
    return next((edge["node"] for edge in found if edge["node"]["lotId"] == lot), None)


def _metric(gateway: Gateway, name: str, **labels: str) -> float:
    text = httpx2.get(f"{gateway.url}/metrics", timeout=10).text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"{re.escape(name)}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


@pytest.fixture(scope="module")
def gateway(own_plant: tuple[Plant, Shift]) -> Iterator[Gateway]:
    """A gateway whose store `lotgraph reconcile` sweeps into; its own sweeper only re-checks (plants it never
    sweeps in these tests), so each sweep here is the test's."""
    plant, _ = own_plant
    with start_gateway(plant, reconciliation=ReconciliationSettings(plants=["P300"], interval_seconds=3600),
                       operation_retry_seconds=0.5) as gateway:  # fmt: skip
        yield gateway


async def test_a_lot_diverged_behind_lotgraphs_back_is_found_listed_repaired_and_resolved(
    own_plant: tuple[Plant, Shift], gateway: Gateway
) -> None:
    plant, _ = own_plant
    lot = _released_lot(plant)
    _hold_in_qms(plant, lot)
    swept = reconcile(plant, gateway.settings.resolved_store_url, PLANT)
    assert swept.returncode == 0, swept.stderr
    assert re.search(rf"{PLANT}: swept \d+ lots", swept.stdout) and f"{PLANT}: " in swept.stderr
    engineer = gateway.token("quality_engineer", plants=(PLANT,))
    found = _listed(gateway, engineer, lot)
    assert found is not None, "the sweep found the lot"
    assert (found["plant"], found["kinds"], found["qualityStatus"]) == (PLANT, ["AVAILABLE_WHILE_BLOCKED"], "ON_HOLD")
    statements = {s["system"]: (s["qualityStatus"], s["stockStatus"]) for s in found["systems"]}
    assert statements == {"QMS": ("ON_HOLD", None), "WMS": (None, "AVAILABLE"), "ERP": (None, "AVAILABLE")}
    assert found["disagreements"] == ["QMS reports ON_HOLD, but ERP holds stock as AVAILABLE",
                                      "QMS reports ON_HOLD, but WMS holds stock as AVAILABLE"]  # fmt: skip
    assert found["lot"]["qualityStatus"] == "ON_HOLD"
    assert _listed(gateway, engineer, lot, kind="AVAILABLE_WHILE_BLOCKED") is not None
    assert _listed(gateway, engineer, lot, kind="BLOCKED_WHILE_AVAILABLE") is None
    assert _listed(gateway, engineer, lot, olderThan=3600) is None, "first seen just now"
    listed = gateway.data(DIVERGENT_LOTS, {"filter": {"consistent": False, "plant": PLANT}}, token=engineer)["lots"]
    assert lot in {edge["node"]["id"] for edge in listed["edges"]} and listed["totalCount"] >= 1
    assert _metric(gateway, "lotgraph_divergent_lots", plant=PLANT, kind="AVAILABLE_WHILE_BLOCKED", age="<5m") >= 1

    # Another plant's reader sees none of it.
    other = gateway.token("quality_engineer", plants=(OTHER,))
    assert _listed(gateway, other, lot) is None
    mine = gateway.data(DIVERGENT, {}, token=other)["divergentLots"]["edges"]
    assert {edge["node"]["plant"] for edge in mine} <= {OTHER}
    refused = gateway.execute(DIVERGENT, {"filter": {"plant": PLANT}}, token=other)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    refused = gateway.execute(REPAIR, {"lot": lot, "key": uuid.uuid4().hex}, token=other)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert _wms(plant, lot) == {"AVAILABLE"}, "a refused repair changes nothing"

    repaired = gateway.data(REPAIR, {"lot": lot, "key": (key := uuid.uuid4().hex)}, token=engineer)["repairLot"]
    assert (repaired["kind"], repaired["state"]) == ("repairLot", "COMPLETED"), repaired
    assert _wms(plant, lot) == {"BLOCKED"} and _erp(plant, lot) == {"07"}
    assert _state(plant, "qms", lot)["status"] == "BLOCKED", "QMS (its own word for on hold), not touched"
    again = gateway.data(REPAIR, {"lot": lot, "key": key}, token=engineer)["repairLot"]
    assert again["id"] == repaired["id"], "the same key is the same repair"
    assert _listed(gateway, engineer, lot) is None, "the repaired lot was re-checked at once and left the list"
    assert _metric(gateway, "lotgraph_divergence_seconds_count", plant=PLANT) >= 1
    nothing = gateway.execute(REPAIR, {"lot": lot, "key": uuid.uuid4().hex}, token=engineer)
    assert nothing["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", "nothing left to repair"

    auditor = gateway.token("auditor")
    audit = gateway.data('{ auditLog(filter: {action: "repairLot"}, first: 50) { entries { decision resource } } }',
                         token=auditor)["auditLog"]["entries"]  # fmt: skip
    assert {(e["decision"], e["resource"]) for e in audit} >= {("ALLOW", f"Lot::{lot}"), ("DENY", f"Lot::{lot}")}


def _entries(gateway: Gateway, lot: str) -> list[tuple[str | None]]:
    """The store's divergence entries of `lot`: (resolved_at,) each, read as the operator's SQL client would."""
    path = gateway.settings.resolved_store_url.split(":///", 1)[1]
    with sqlite3.connect(path) as db:
        return db.execute("SELECT resolved_at FROM divergent_lots WHERE lot_id = ?", (lot,)).fetchall()


async def test_resolved_divergences_are_deleted_after_their_retention_and_open_ones_stay(
    own_plant: tuple[Plant, Shift], gateway: Gateway
) -> None:
    plant, _ = own_plant
    still_open, repaired = _released_lot(plant), _released_lot(plant)
    for lot in (still_open, repaired):
        _hold_in_qms(plant, lot)
    assert reconcile(plant, gateway.settings.resolved_store_url, PLANT).returncode == 0
    engineer = gateway.token("quality_engineer", plants=(PLANT,))
    done = gateway.data(REPAIR, {"lot": repaired, "key": uuid.uuid4().hex}, token=engineer)["repairLot"]
    assert done["state"] == "COMPLETED", done
    assert [resolved is not None for (resolved,) in _entries(gateway, repaired)] == [True]

    kept = reconcile(plant, gateway.settings.resolved_store_url, PLANT)
    assert kept.returncode == 0 and "past retention" not in kept.stdout, kept.stdout
    assert len(_entries(gateway, repaired)) == 1, "within the default 90 days the record stays"

    await asyncio.sleep(1)
    swept = reconcile(plant, gateway.settings.resolved_store_url, PLANT, RESOLVED_RETENTION_DAYS="0.00001")  # 0.86 s
    assert swept.returncode == 0, swept.stderr
    assert re.search(r"\d+ resolved past retention deleted", swept.stdout), swept.stdout
    assert _entries(gateway, repaired) == []
    assert [resolved for (resolved,) in _entries(gateway, still_open)] == [None], "an open divergence is never deleted"


async def test_a_repair_never_makes_regulated_material_available(
    own_plant: tuple[Plant, Shift], gateway: Gateway
) -> None:
    plant, _ = own_plant
    lot = _released_lot(plant, regulated=True)
    _move_in_wms(plant, lot, "QUARANTINE")
    assert reconcile(plant, gateway.settings.resolved_store_url, PLANT).returncode == 0
    manager = gateway.token("qa_manager", plants=(PLANT,), mfa=True)
    found = _listed(gateway, manager, lot)
    assert found is not None and found["kinds"] == ["IN_INSPECTION_WHILE_AVAILABLE"]
    refused = gateway.execute(REPAIR, {"lot": lot, "key": uuid.uuid4().hex}, token=manager)
    error = refused["errors"][0]["extensions"]
    assert error["code"] == "FORBIDDEN" and "repair-never-makes-regulated-material-available" in error["policyIds"]
    assert _wms(plant, lot) == {"QUARANTINE"}
    assert _listed(gateway, manager, lot) is not None
    _move_in_wms(plant, lot, "AVAILABLE")  # the clerk puts it back: no event, so the next sweep sees it
    assert reconcile(plant, gateway.settings.resolved_store_url, PLANT).returncode == 0
    assert _listed(gateway, manager, lot) is None, "consistent again: off the list"


async def test_a_repair_carries_a_block_and_never_unblocks_what_qms_blocks(
    own_plant: tuple[Plant, Shift], gateway: Gateway
) -> None:
    plant, _ = own_plant
    lot = _released_lot(plant)
    _hold_in_qms(plant, lot)
    _move_in_wms(plant, lot, "QUARANTINE")  # the WMS in inspection, the ERP still unrestricted: QMS holds it
    assert reconcile(plant, gateway.settings.resolved_store_url, PLANT).returncode == 0
    engineer = gateway.token("quality_engineer", plants=(PLANT,))
    found = _listed(gateway, engineer, lot)
    assert found is not None and set(found["kinds"]) == {"AVAILABLE_WHILE_BLOCKED", "IN_INSPECTION_WHILE_BLOCKED"}
    repaired = gateway.data(REPAIR, {"lot": lot, "key": uuid.uuid4().hex}, token=engineer)["repairLot"]
    assert repaired["state"] == "COMPLETED", repaired
    assert _wms(plant, lot) == {"BLOCKED"} and _erp(plant, lot) == {"07"}, "blocked, as QMS says"


async def test_an_event_about_a_lot_re_checks_it_at_once(own_plant: tuple[Plant, Shift]) -> None:
    """A clerk blocked the lot in the WMS; the sweep listed it. Then quality holds it in the QMS: with no workflow
    to carry the hold (they are off here), the re-check after the hold's event alone finds what changed, no sweep."""
    plant, _ = own_plant
    events = EventSettings(webhook_secrets={"qms": SECRET}, containment=ContainmentSettings(enabled=False))
    settings = ReconciliationSettings(plants=["P300"], interval_seconds=3600)
    with start_gateway(plant, events=events, workflows=WorkflowSettings(enabled=False),
                       reconciliation=settings) as gateway:  # fmt: skip
        plant.admin("qms", "PUT", "events", json={"webhook": {"url": f"{gateway.url}/webhooks/qms", "secret": SECRET}})
        try:
            lot = _released_lot(plant)
            _move_in_wms(plant, lot, "BLOCKED")
            assert reconcile(plant, gateway.settings.resolved_store_url, PLANT).returncode == 0
            engineer = gateway.token("quality_engineer", plants=(PLANT,))
            found = _listed(gateway, engineer, lot)
            assert found is not None and (found["kinds"], found["qualityStatus"]) == (
                ["BLOCKED_WHILE_AVAILABLE"], "RELEASED")  # fmt: skip
            _hold_in_qms(plant, lot)

            def rechecked() -> dict[str, Any] | None:
                found = _listed(gateway, engineer, lot)
                return found if found and found["qualityStatus"] == "ON_HOLD" else None

            found = await eventually(rechecked)
            assert found["kinds"] == ["AVAILABLE_WHILE_BLOCKED"], "the ERP is now the one out of line"
            _move_in_wms(plant, lot, "AVAILABLE")  # behind lotgraph's back again: no event, so still listed
            await asyncio.sleep(1.0)
            assert _listed(gateway, engineer, lot) is not None
        finally:
            plant.admin("qms", "PUT", "events", json={})


async def test_the_lots_of_a_burst_of_events_are_re_checked_together(own_plant: tuple[Plant, Shift]) -> None:
    """Twenty lots blocked in the WMS behind lotgraph's back, then an event about each, all at once: every lot is
    listed divergent by its event's re-check, and the WMS is asked about them in a few batched reads (its answers
    held back 500 ms, so the events arrive while the first re-check runs), not once per event."""
    plant, _ = own_plant
    events = EventSettings(webhook_secrets={"qms": SECRET}, containment=ContainmentSettings(enabled=False))
    settings = ReconciliationSettings(plants=["P300"], interval_seconds=3600)
    qms = QmsEvents(plant.dataset)
    with start_gateway(plant, events=events, workflows=WorkflowSettings(enabled=False),
                       reconciliation=settings) as gateway:  # fmt: skip
        lots = [_released_lot(plant) for _ in range(20)]
        for lot in lots:
            _move_in_wms(plant, lot, "BLOCKED")
        plant.fault("wms", latency_ms=500)
        try:
            plant.reset_stats()
            async with httpx2.AsyncClient(timeout=30) as client:
                bodies = [json.dumps(qms.status_changed(lot, "RELEASED", "RELEASED")) for lot in lots]
                answers = await asyncio.gather(*(
                    client.post(f"{gateway.url}/webhooks/qms", content=body, headers=sign(SECRET, body))
                    for body in bodies
                ))  # fmt: skip
            assert [answer.status_code for answer in answers] == [202] * 20
            engineer = gateway.token("quality_engineer", plants=(PLANT,))

            def all_listed() -> bool:
                found = gateway.data(DIVERGENT, {"filter": {"plant": PLANT}}, token=engineer)["divergentLots"]
                return set(lots) <= {edge["node"]["lotId"] for edge in found["edges"]}

            assert await eventually(all_listed)
            wms_reads = plant.admin("wms", "GET", "stats").json()["total"]
            assert 1 <= wms_reads <= 10, f"the WMS was asked {wms_reads} times about 20 lots (once each: 20+)"
        finally:
            plant.clear_faults()


def _sweep_state(gateway: Gateway, plant: str) -> dict[str, Any]:
    import sqlite3

    path = gateway.settings.resolved_store_url.split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT cursor, checked, completed_at FROM reconciliation_sweeps WHERE plant = ?",
                           (plant,)).fetchone()  # fmt: skip
    return {"cursor": row[0], "checked": row[1], "completed": row[2] is not None} if row else {}


def _batch_pages(plant: Plant, name: str, top: int) -> list[str]:
    """The `$filter`s of the ERP batch pages of `top` lots of plant `name` served lately (the ERP's request log)."""
    recorded = plant.admin("erp", "GET", "requests", params={"last": 10_000}).json()["requests"]
    params = [httpx2.QueryParams(r["query"]) for r in recorded if r["path"].endswith("/API_BATCH_SRV/Batch")]
    return [q.get("$filter", "") for q in params if q.get("$top") == str(top) and f"'{name}'" in q.get("$filter", "")]


async def test_a_sweep_carries_on_from_its_stored_cursor_after_a_restart(
    own_plant: tuple[Plant, Shift], tmp_path: Path
) -> None:
    plant, _ = own_plant
    name = "P300"
    lots = sum(1 for lot in plant.dataset.lots.values() if lot.plant == name)
    store = f"sqlite+aiosqlite:///{tmp_path / 'lotgraph.db'}"
    slow = ReconciliationSettings(plants=[name], page_size=20, requests_per_second=SweepBudget(erp=6, qms=3, wms=3))
    with start_gateway(plant, store_url=store, reconciliation=slow) as gateway:
        await eventually(lambda: _sweep_state(gateway, name).get("checked", 0) >= 100)
    stopped = _sweep_state(gateway, name)
    assert stopped["cursor"] and not stopped["completed"] and stopped["checked"] < lots
    fast = ReconciliationSettings(plants=[name], page_size=150, interval_seconds=3600)  # pages told apart by size
    with start_gateway(plant, store_url=store, reconciliation=fast) as gateway:
        await eventually(lambda: _sweep_state(gateway, name).get("completed"), within=60)
    done = _sweep_state(gateway, name)
    assert done["checked"] == lots, "every lot checked once: none skipped, none checked again"
    first_run = _batch_pages(plant, name, top=20)
    assert sum("Batch gt" not in page for page in first_run) == 1, "the first run started from the top, once"
    second_run = _batch_pages(plant, name, top=150)
    assert second_run and all("Batch gt" in page for page in second_run), "the restart did not start again"
    assert f"Batch gt '{stopped['cursor']}'" in second_run[0], "the restart went on from the stored cursor"


async def test_two_gateways_on_postgresql_sweep_one_at_a_time(
    own_plant: tuple[Plant, Shift], postgres_url: str
) -> None:
    plant, _ = own_plant
    plants = ["P100", "P200", "P300"]
    lots = sum(1 for lot in plant.dataset.lots.values() if lot.plant in plants)
    settings = ReconciliationSettings(plants=plants, page_size=100, interval_seconds=3600)
    with (
        start_gateway(plant, store_url=postgres_url, reconciliation=settings) as first,
        start_gateway(plant, store_url=postgres_url, reconciliation=settings) as second,
    ):

        def checked() -> float:
            return sum(_metric(g, "lotgraph_reconciliation_lots_checked_total", plant=p)
                       for g in (first, second) for p in plants)  # fmt: skip

        await eventually(lambda: checked() >= lots, within=120)
        await asyncio.sleep(2.0)  # a second sweeper, if there were one, would be sweeping now
        assert checked() == lots, "each lot was checked by one gateway, once"
        listed = [[edge["node"]["lotId"] for edge in g.data(DIVERGENT, {}, token=g.token("qa_manager"))
                   ["divergentLots"]["edges"]] for g in (first, second)]  # fmt: skip
        assert listed[0] == listed[1] and listed[0], "one store: both list what was found"


async def test_the_cli_sweep_keeps_to_its_request_budget_per_source(
    own_plant: tuple[Plant, Shift], tmp_path: Path
) -> None:
    plant, _ = own_plant
    lots = sum(1 for lot in plant.dataset.lots.values() if lot.plant == OTHER)
    budget = {"erp": 8.0, "qms": 4.0, "wms": 4.0}
    plant.reset_stats()
    swept = reconcile(plant, f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}", OTHER, PAGE_SIZE="100",
                      **{f"REQUESTS_PER_SECOND__{s.upper()}": str(rps) for s, rps in budget.items()})  # fmt: skip
    assert swept.returncode == 0, swept.stderr
    served = plant.served()
    pages, reads = lots // 100 + 1, -(-lots // 100)  # the last page is the first one short of 100 lots
    assert (served["erp"], served["qms"], served["wms"], served["mes"]) == (pages + reads, reads, reads, 0)
    reported = re.search(rf"{OTHER}: swept (\d+) lots in ([\d.]+) s \(ERP (\d+), QMS (\d+), WMS (\d+) requests\); "
                         rf"(\d+) divergent", swept.stdout)  # fmt: skip
    assert reported is not None, swept.stdout
    assert [int(n) for n in reported.group(1, 3, 4, 5)] == [lots, pages + reads, reads, reads]
    seconds = float(reported.group(2))
    for source, rps in budget.items():  # a bucket of one token: n requests take at least (n - 1) / rps seconds
        assert served[source] <= rps * seconds + 1, f"{source}: {served[source]} requests in {seconds} s"
    # The plant was seeded with lots stale in one system; MES is shown beside the others but not judged.
    seeded = {lot for system, lot in plant.dataset.stale if system != "mes" and plant.dataset.lots[lot].plant == OTHER}
    assert int(reported.group(6)) == len(seeded) > 0, "exactly the seeded divergent lots are found"


def test_divergent_lots_and_repair_in_production_mode(own_plant: tuple[Plant, Shift], tmp_path: Path) -> None:
    plant, _ = own_plant
    with start_gateway(plant, mode=Mode.PRODUCTION, auth=production_auth(tmp_path)) as gateway:
        assert reconcile(plant, gateway.settings.resolved_store_url, PLANT).returncode == 0
        anonymous = httpx2.post(f"{gateway.url}/graphql", json={"query": DIVERGENT}, timeout=30)
        assert anonymous.status_code == 401
        engineer = gateway.token("quality_engineer", plants=(PLANT,))
        edges = gateway.data(DIVERGENT, {}, token=engineer)["divergentLots"]["edges"]
        assert edges and {edge["node"]["plant"] for edge in edges} == {PLANT}
        operator = gateway.token("plant_operator", plants=(PLANT,))
        refused = gateway.execute(REPAIR, {"lot": edges[0]["node"]["lotId"], "key": "k1"}, token=operator)
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        bad = gateway.execute(DIVERGENT, {"filter": {"olderThan": -1}}, token=engineer)
        assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        both = gateway.execute(DIVERGENT_LOTS, {"filter": {"consistent": True}}, token=engineer)
        assert both["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_the_readme_divergence_commands_work_as_written(own_plant: tuple[Plant, Shift], tmp_path: Path) -> None:
    """The README's `lotgraph reconcile` block run by `sh` as written, from a directory laid out like the
    repository's root (`.venv/`, the demo's `.lotgraph/`), against this plant; then its divergentLots query over
    the store the command filled."""
    plant, _ = own_plant
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Divergence") : readme.index("## Plant events")]
    (command,) = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    (query,) = re.findall(r"```graphql\n(.*?)```", section, flags=re.DOTALL)
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (tmp_path / ".lotgraph").mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOTGRAPH_")}
    env.update({f"LOTGRAPH_SOURCES__{s.upper()}__URL": plant.url(s) for s in ("erp", "qms", "wms", "mes")})
    done = subprocess.run(["sh", "-ec", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert re.search(rf"{PLANT}: swept \d+ lots", done.stdout), done.stdout
    store = f"sqlite+aiosqlite:///{tmp_path / '.lotgraph' / 'demo.db'}"
    with start_gateway(plant, store_url=store) as gateway:
        found = gateway.data(query, token=gateway.token("quality_engineer", plants=(PLANT,)))["divergentLots"]
    assert found["totalCount"] > 0 and {edge["node"]["plant"] for edge in found["edges"]} == {PLANT}
