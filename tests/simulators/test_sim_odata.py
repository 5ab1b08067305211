"""OData v2 machinery on its own: the $filter parser and an entity set's query options."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.exceptions import HTTPException

from simulators.odata import Compare, EntitySet, Junction, parse_filter, to_date, to_decimal

BASE = "http://erp/sap/opu/odata/sap/"


def stock() -> EntitySet:
    es = EntitySet(
        "SRV",
        "Stock",
        ("Batch",),
        {"Batch": "string", "Plant": "string", "Qty": "decimal", "Blocked": "bool", "Posted": "date"},
        indexed=("Plant",),
    )
    for n, (plant, qty) in enumerate([("P100", "9.000"), ("P200", "10.000"), ("P100", "125.000"), ("P300", "0.500")]):
        es.put({"Batch": f"B{n}", "Plant": plant, "Qty": qty, "Blocked": n == 2, "Posted": f"/Date({n * 1000})/"})
    return es


def results(es: EntitySet, **params: str) -> list[dict]:
    return es.query(params, BASE)["d"]["results"]


def test_or_binds_looser_than_and() -> None:
    expr = parse_filter("A eq 'x' or B eq 'y' and C ne 'z'")
    assert expr == Junction(
        "or", (Compare("A", "eq", "x"), Junction("and", (Compare("B", "eq", "y"), Compare("C", "ne", "z"))))
    )


def test_parentheses_quotes_and_booleans() -> None:
    expr = parse_filter(" ( A eq 'O''Brien' or A eq '' ) and Flag eq true ")
    assert expr == Junction(
        "and", (Junction("or", (Compare("A", "eq", "O'Brien"), Compare("A", "eq", ""))), Compare("Flag", "eq", True))
    )


def test_a_long_key_list_parses_flat() -> None:
    expr = parse_filter(" or ".join(f"Batch eq 'B{n}'" for n in range(5000)))
    assert isinstance(expr, Junction) and len(expr.terms) == 5000


@pytest.mark.parametrize(
    "text",
    [
        "Batch eq",
        "Batch like '1'",
        "gt gt '1'",
        "Batch eq 'x' or",
        "(Batch eq 'x'",
        "Batch eq 'x')",
        "'x' eq Batch",
        "Batch eq 'open",
        "Batch eq x",
        "and eq 'x'",
        "Batch eq 'x' Plant eq 'y'",
        "Batch eq 'x' & Plant",
    ],
)
def test_unparseable_filters_are_bad_requests(text: str) -> None:
    with pytest.raises(HTTPException) as raised:
        parse_filter(text)
    assert raised.value.status_code == 400


def test_filter_by_key_list_and_other_fields() -> None:
    es = stock()
    assert [r["Batch"] for r in results(es, **{"$filter": "Batch eq 'B2' or Batch eq 'B0' or Batch eq 'B9'"})] == [
        "B0",
        "B2",
    ]
    assert [r["Batch"] for r in results(es, **{"$filter": "Plant eq 'P100' and Blocked eq false"})] == ["B0"]
    assert [r["Batch"] for r in results(es, **{"$filter": "Plant ne 'P100'"})] == ["B1", "B3"]
    assert [r["Batch"] for r in results(es, **{"$filter": "Qty eq '125.0'"})] == ["B2"]


def test_filter_on_an_unknown_field_or_with_the_wrong_type_is_a_bad_request() -> None:
    es = stock()
    for bad in ("Nope eq 'x'", "Blocked eq 'yes'", "Plant eq true", "Qty eq 'lots'"):
        with pytest.raises(HTTPException) as raised:
            es.query({"$filter": bad}, BASE)
        assert raised.value.status_code == 400, bad


def test_ordering_comparisons_use_the_field_type() -> None:
    es = stock()
    assert [r["Batch"] for r in results(es, **{"$filter": "Qty gt '9.5'"})] == ["B1", "B2"]
    assert [r["Batch"] for r in results(es, **{"$filter": "Qty le '9' and Plant ge 'P100'"})] == ["B0", "B3"]
    assert [r["Batch"] for r in results(es, **{"$filter": "Posted lt '/Date(2000)/'"})] == ["B0", "B1"]
    with pytest.raises(HTTPException) as raised:
        es.query({"$filter": "Blocked gt false"}, BASE)
    assert raised.value.status_code == 400


def test_a_number_key_compares_and_sorts_as_an_integer() -> None:
    es = EntitySet("SRV", "Changes", ("Seq",), {"Seq": "number", "Kind": "string"})
    for n in (1, 2, 9, 10, 11, 100):
        es.put({"Seq": str(n), "Kind": "x"})
    assert [r["Seq"] for r in results(es)] == ["1", "2", "9", "10", "11", "100"]
    assert [r["Seq"] for r in results(es, **{"$filter": "Seq gt '9'"})] == ["10", "11", "100"]
    assert [r["Seq"] for r in results(es, **{"$filter": "Seq gt '2'", "$orderby": "Seq desc", "$top": "2"})] == [
        "100",
        "11",
    ]
    with pytest.raises(HTTPException) as raised:
        es.query({"$filter": "Seq gt 'ten'"}, BASE)
    assert raised.value.status_code == 400


def test_orderby_uses_the_field_type() -> None:
    es = stock()
    assert [r["Qty"] for r in results(es, **{"$orderby": "Qty desc"})] == ["125.000", "10.000", "9.000", "0.500"]
    assert [r["Batch"] for r in results(es, **{"$orderby": "Posted"})] == ["B0", "B1", "B2", "B3"]


def test_paging_count_and_select() -> None:
    body = stock().query({"$top": "2", "$skip": "1", "$inlinecount": "allpages", "$select": "Plant"}, BASE)["d"]
    assert body["__count"] == "4"
    assert [set(r) for r in body["results"]] == [{"__metadata", "Plant"}] * 2
    assert [r["__metadata"]["uri"] for r in body["results"]] == [f"{BASE}SRV/Stock('B1')", f"{BASE}SRV/Stock('B2')"]


@pytest.mark.parametrize(
    "params",
    [
        {"$top": "-1"},
        {"$skip": "x"},
        {"$select": "Batch,Nope"},
        {"$orderby": "Nope"},
        {"$orderby": "Qty down"},
        {"$inlinecount": "sometimes"},
        {"$expand": "to_Items"},
        {"$format": "xml"},
    ],
)
def test_invalid_query_options_are_bad_requests(params: dict[str, str]) -> None:
    with pytest.raises(HTTPException) as raised:
        stock().query(params, BASE)
    assert raised.value.status_code == 400


def test_etag_changes_with_every_write() -> None:
    es = stock()
    before = es.etag(("B1",))
    es.put({**es.rows[("B1",)]})
    assert es.etag(("B1",)) != before
    assert results(es, **{"$filter": "Batch eq 'B1'"})[0]["__metadata"]["etag"] == es.etag(("B1",))


def test_wire_formats() -> None:
    assert to_date(datetime(2026, 1, 5, tzinfo=UTC)) == "/Date(1767571200000)/"
    assert to_decimal(125) == "125.000" and to_decimal(3.14159, 2) == "3.14"
