"""Scope is the lot's, whatever is asked: lists count only lots the caller may read, operations and audit
entries are decided with the plants (and suppliers) of the lots they concern."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import httpx2
import pytest

from gateway.auth import Principal
from gateway.authz import ReadScope, read_scope
from gateway.errors import BadUserInput, Forbidden
from policies.engine import PolicyEngine
from resolvers.lots import LotFilter, encode_cursor, within
from simulators import Dataset
from tests.conftest import Gateway, Plant, start_gateway

LOTS = """query($f: LotFilter, $first: Int = 5, $after: String) {
  lots(filter: $f, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { id plant { id } supplier { id } } } } }"""


def _codes(result: dict) -> set[str]:
    return {error["extensions"]["code"] for error in result.get("errors", [])}


def _two_suppliers(dataset: Dataset) -> tuple[str, str]:
    counts = Counter(lot.supplier for lot in dataset.lots.values() if lot.supplier)
    (few, _), (many, _) = counts.most_common()[-1], counts.most_common(1)[0]
    return few, many


def _total(gateway: Gateway, token: str, **where: str) -> int:
    return gateway.data(LOTS, {"f": where}, token=token)["lots"]["totalCount"]


def test_a_supplier_counts_only_its_own_lots(gateway: Gateway, dataset: Dataset) -> None:
    own, other = _two_suppliers(dataset)
    supplier = gateway.token("supplier", plants=(), supplier=own)
    everyone = gateway.token("auditor")
    assert _total(gateway, supplier) == _total(gateway, everyone, supplier=own)
    assert _total(gateway, supplier) == sum(1 for lot in dataset.lots.values() if lot.supplier == own)
    for status in ("RELEASED", "REJECTED", "IN_INSPECTION", "ON_HOLD"):
        assert _total(gateway, supplier, qualityStatus=status) == _total(
            gateway, everyone, supplier=own, qualityStatus=status
        ), status
    for where in ({"supplier": other}, {"supplier": other, "qualityStatus": "RELEASED"}):
        refused = gateway.execute(LOTS, {"f": where}, token=supplier)
        assert refused["data"] is None and _codes(refused) == {"FORBIDDEN"}, where
        assert refused["errors"][0]["extensions"]["action"] == "readLot"


def test_a_plant_operator_counts_only_its_plants(gateway: Gateway) -> None:
    operator = gateway.token("plant_operator", plants=("P100",))
    everyone = gateway.token("auditor")
    for where in ({"plant": "P200"}, {"plant": "P200", "qualityStatus": "REJECTED"}):
        refused = gateway.execute(LOTS, {"f": where}, token=operator)
        assert refused["data"] is None and _codes(refused) == {"FORBIDDEN"}, where
    assert _total(gateway, operator, qualityStatus="REJECTED") == _total(
        gateway, everyone, plant="P100", qualityStatus="REJECTED"
    )
    assert _total(gateway, operator) == _total(gateway, everyone, plant="P100")


@pytest.mark.parametrize("status", [None, "REJECTED"])
def test_a_caller_of_several_plants_counts_and_pages_over_those_plants(gateway: Gateway, status: str | None) -> None:
    two = gateway.token("quality_engineer", plants=("P100", "P300"))
    everyone = gateway.token("auditor")
    quality = {"qualityStatus": status} if status else {}
    expected = sum(_total(gateway, everyone, plant=p, **quality) for p in ("P100", "P300"))
    assert _total(gateway, two, **quality) == expected
    # The last page: every edge shown, none after it.
    last = gateway.data(LOTS, {"f": quality, "first": 3, "after": _cursor(expected - 4)}, token=two)["lots"]
    assert len(last["edges"]) == 3 and not last["pageInfo"]["hasNextPage"]
    assert {edge["node"]["plant"]["id"] for edge in last["edges"]} <= {"P100", "P300"}


def _principal(roles: tuple[str, ...], plants: tuple[str, ...] = (), supplier: str | None = None) -> Principal:
    return Principal("someone", "Someone", frozenset(roles), frozenset(plants), supplier, frozenset(), None, None)


@pytest.mark.parametrize(
    ("roles", "plants", "supplier", "scope"),
    [
        (("auditor",), ("*",), None, ReadScope(True, frozenset(), None)),
        (("plant_operator",), ("P100", "P200"), None, ReadScope(False, frozenset({"P100", "P200"}), None)),
        (("supplier",), ("*",), "100001", ReadScope(False, frozenset(), "100001")),
        (("supplier", "plant_operator"), ("P100",), "100001", ReadScope(False, frozenset({"P100"}), "100001")),
        ((), ("*",), "100001", ReadScope(False, frozenset(), None)),
    ],
)
def test_the_read_scope_is_what_the_read_policies_permit(
    roles: tuple[str, ...], plants: tuple[str, ...], supplier: str | None, scope: ReadScope
) -> None:
    assert read_scope(PolicyEngine(), _principal(roles, plants, supplier)) == scope


def test_a_filter_is_narrowed_to_the_scope_or_refused() -> None:
    mixed = ReadScope(False, frozenset({"P100"}), "100001")
    assert within(LotFilter(plants=frozenset({"P200"})), mixed) == LotFilter(frozenset({"P200"}), supplier="100001")
    assert within(LotFilter(supplier="100002"), mixed) == LotFilter(frozenset({"P100"}), supplier="100002")
    with pytest.raises(BadUserInput):
        within(LotFilter(), mixed)  # "P100 or supplier 100001" is no single source query
    with pytest.raises(Forbidden):
        within(LotFilter(), ReadScope(False, frozenset(), None))


def _cursor(offset: int) -> str:
    return encode_cursor(offset)


HOLD = """mutation($lot: ID!, $key: String!) {
  placeQualityHold(input: {lotId: $lot, reasonCode: "QH01", reason: "scope test", idempotencyKey: $key}) {
    id state steps { system state } } }"""
OPERATION = "query($id: ID!) { operation(id: $id) { id state } }"
RETRY = "mutation($id: ID!) { retryOperation(id: $id) { id state } }"
ABANDON = 'mutation($id: ID!) { abandonOperation(id: $id, reason: "giving up") { id state error } }'
AUDIT = """query($r: String) { auditLog(filter: {resource: $r}, first: 500) {
  entries { seq action resource decision plants suppliers } } }"""


@pytest.fixture(scope="module")
def quiet_gateway(plant: Plant) -> Iterator[Gateway]:
    """No resumer run during a test: a pending operation stays exactly as the test left it."""
    with start_gateway(plant, operation_retry_seconds=3600) as started:
        yield started


def _held_lot(dataset: Dataset, plant_id: str) -> str:
    """A released P-lot with stock, agreeing everywhere, that no other test of this module holds."""
    return next(
        lot.id for lot in reversed(dataset.lots.values())
        if lot.plant == plant_id and lot.quality_status == "RELEASED" and lot.remaining > 0
        and lot.id not in dataset.divergent and lot.id not in _USED and not _USED.add(lot.id)
    )  # fmt: skip


_USED: set[str] = set()


def _pending_hold(gateway: Gateway, plant: Plant, lot: str) -> dict:
    """A hold on `lot` done in QMS and ERP, its WMS step left pending: the lot is held in QMS, available in WMS."""
    plant.fault("wms", down=True, paths=["/v2/stock-moves"])
    op = gateway.data(HOLD, {"lot": lot, "key": uuid.uuid4().hex}, token=gateway.token("quality_engineer"))
    op = op["placeQualityHold"]
    assert op["state"] == "PENDING" and {s["system"]: s["state"] for s in op["steps"]}["WMS"] == "PENDING"
    return op


def test_operations_are_scoped_by_the_plants_of_their_lots(
    quiet_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    gw = quiet_gateway
    lot = _held_lot(dataset, "P200")
    op = _pending_hold(gw, plant, lot)
    elsewhere, here = gw.token("qa_manager", plants=("P100",)), gw.token("qa_manager", plants=("P200",))
    assert _codes(gw.execute("query($id: ID!) { lot(id: $id) { id } }", {"id": lot}, token=elsewhere)) == {"FORBIDDEN"}
    listed = gw.data("{ pendingOperations { id } }", token=elsewhere)["pendingOperations"]
    assert op["id"] not in {o["id"] for o in listed}, "a P100 QA manager does not list a P200 lot's operation"
    for document in (OPERATION, RETRY, ABANDON):
        refused = gw.execute(document, {"id": op["id"]}, token=elsewhere)
        assert _codes(refused) == {"FORBIDDEN"}, document
    assert plant.admin("qms", "GET", f"lots/{lot}").json()["status"] == "BLOCKED"
    assert gw.data(OPERATION, {"id": op["id"]}, token=gw.token("quality_engineer"))["operation"]["state"] == "PENDING"
    assert op["id"] in {o["id"] for o in gw.data("{ pendingOperations { id } }", token=here)["pendingOperations"]}
    assert gw.data(OPERATION, {"id": op["id"]}, token=here)["operation"]["id"] == op["id"]
    # The refused attempts are audited, as the P200 operation's entries.
    entries = gw.data(AUDIT, {"r": f"Operation::{op['id']}"}, token=gw.token("auditor"))["auditLog"]["entries"]
    assert [(e["action"], e["decision"]) for e in entries] == [("retryOperation", "DENY"), ("abandonOperation", "DENY")]
    assert {tuple(e["plants"]) for e in entries} == {("P200",)}


def test_abandoning_a_half_applied_hold_is_refused_until_the_systems_agree(
    quiet_gateway: Gateway, plant: Plant, dataset: Dataset
) -> None:
    gw = quiet_gateway
    lot = _held_lot(dataset, "P100")
    op = _pending_hold(gw, plant, lot)
    manager = gw.token("qa_manager", plants=("P100",))
    refused = gw.execute(ABANDON, {"id": op["id"]}, token=manager)
    assert _codes(refused) == {"LOT_DIVERGENT"}
    (divergent,) = refused["errors"][0]["extensions"]["lots"]
    assert divergent["lotId"] == lot and divergent["consistent"] is False and divergent["disagreements"]
    assert gw.data(OPERATION, {"id": op["id"]}, token=manager)["operation"]["state"] == "PENDING"
    # Someone blocks the stock in the WMS by hand: the systems agree, and the operation may be abandoned.
    plant.clear_faults()
    moved = httpx2.post(f"{plant.url('wms')}/v2/stock-moves", json={"lotId": lot, "targetStatus": "BLOCKED",
                                                                   "reference": "by hand"}, timeout=10)  # fmt: skip
    moved.raise_for_status()
    abandoned = gw.data(ABANDON, {"id": op["id"]}, token=manager)["abandonOperation"]
    assert abandoned["state"] == "ABANDONED" and "giving up" in abandoned["error"]
    consistency = gw.data("query($id: ID!) { lot(id: $id) { consistency { consistent } } }", {"id": lot})
    assert consistency["lot"]["consistency"]["consistent"] is True


def test_an_auditor_of_some_plants_reads_the_entries_about_their_lots_only(
    quiet_gateway: Gateway, dataset: Dataset
) -> None:
    gw = quiet_gateway
    p100, p200 = _held_lot(dataset, "P100"), _held_lot(dataset, "P200")
    for lot in (p100, p200):  # a plant operator may not hold: two DENY entries, one per plant
        gw.execute(HOLD, {"lot": lot, "key": uuid.uuid4().hex}, token=gw.token("plant_operator"))
    scoped = gw.data(AUDIT, {"r": None}, token=gw.token("auditor", plants=("P100",)))["auditLog"]["entries"]
    assert scoped and all(e["plants"] == ["P100"] for e in scoped)
    assert f"Lot::{p100}" in {e["resource"] for e in scoped} and f"Lot::{p200}" not in {e["resource"] for e in scoped}
    assert gw.data(AUDIT, {"r": f"Lot::{p200}"}, token=gw.token("auditor", plants=("P100",)))["auditLog"] == {
        "entries": []
    }
    everything = gw.data(AUDIT, {"r": None}, token=gw.token("auditor"))["auditLog"]["entries"]
    assert {f"Lot::{p100}", f"Lot::{p200}"} <= {e["resource"] for e in everything}
    assert len(everything) > len(scoped)
