"""Scope is the lot's, whatever is asked: lists count only lots the caller may read, operations and audit
entries are decided with the plants (and suppliers) of the lots they concern."""

from __future__ import annotations

from collections import Counter

import pytest

from gateway.auth import Principal
from gateway.errors import BadUserInput, Forbidden
from policies.engine import PolicyEngine
from resolvers.guard import ReadScope, read_scope
from resolvers.lots import LotFilter, encode_cursor, within
from simulators import Dataset
from tests.conftest import Gateway

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
