"""Request handling: every error carries a code, ids travel upstream, bad input says why."""

from __future__ import annotations

import httpx2

from simulators import Dataset
from tests.conftest import Gateway, Plant


def test_unknown_lot_is_not_found(gateway: Gateway) -> None:
    result = gateway.execute('{ lot(id: "NO-SUCH-LOT") { id } }')
    assert result["data"] == {"lot": None}
    assert result["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_bad_arguments_are_bad_user_input(gateway: Gateway) -> None:
    for query in ("{ lots(first: 0) { totalCount } }", '{ lots(after: "garbage") { totalCount } }'):
        result = gateway.execute(query)
        assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", query


def test_graphql_errors_all_carry_codes(gateway: Gateway) -> None:
    assert gateway.execute("{ lot(id: ")["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert gateway.execute("{ nope }")["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    response = httpx2.post(f"{gateway.url}/graphql", content=b"not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_correlation_id_travels_upstream_and_back(gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    lot_id = next(iter(dataset.lots))
    response = httpx2.post(
        f"{gateway.url}/graphql",
        json={"query": "query($id: ID!) { lot(id: $id) { qualityStatus } }", "variables": {"id": lot_id}},
        headers={"X-Correlation-ID": "trace-me-123"},
    )
    assert response.headers["x-correlation-id"] == "trace-me-123"
    recorded = plant.admin("qms", "GET", "requests", params={"last": 5}).json()["requests"]
    assert any(entry.get("correlation_id") == "trace-me-123" for entry in recorded), recorded


def test_health(gateway: Gateway) -> None:
    assert httpx2.get(f"{gateway.url}/healthz").status_code == 200
