"""Operators can follow a request upstream and see the gateway's state in /metrics."""

from __future__ import annotations

import httpx2

from simulators import Dataset
from tests.conftest import Gateway, Plant


def _series(gateway: Gateway) -> str:
    response = httpx2.get(f"{gateway.url}/metrics")
    assert response.status_code == 200
    return response.text


def _value(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_trace_and_correlation_ids_reach_the_upstream(gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    response = httpx2.post(
        f"{gateway.url}/graphql",
        json={
            "query": "query($id: ID!) { lot(id: $id) { qualityStatus } }",
            "variables": {"id": next(iter(dataset.lots))},
        },
        headers={"X-Correlation-ID": "follow-me-42"},
    )
    trace_id = response.headers["traceparent"].split("-")[1]
    recorded = plant.admin("qms", "GET", "requests", params={"last": 20}).json()["requests"]
    mine = [r for r in recorded if r.get("correlation_id") == "follow-me-42"]
    assert mine, recorded
    assert all(r["traceparent"] and r["traceparent"].split("-")[1] == trace_id for r in mine)


def test_metrics_move_with_traffic(gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    before = _series(gateway)
    lot = next(iter(dataset.lots))
    gateway.execute("query Trace($id: ID!) { lot(id: $id) { qualityStatus holds { id } } }", {"id": lot})
    plant.fault("qms", down=True)
    gateway.execute("query Trace($id: ID!) { lot(id: $id) { qualityStatus } }", {"id": lot})
    after = _series(gateway)
    ok = 'lotgraph_upstream_requests_total{contract="qms.lot_quality.read@1",outcome="ok",source="qms"}'
    failed = 'lotgraph_upstream_requests_total{contract="qms.lot_quality.read@1",outcome="UPSTREAM_UNAVAILABLE"'
    assert _value(after, ok) > _value(before, ok)
    assert _value(after, failed) > _value(before, failed)
    graphql = 'lotgraph_graphql_requests_total{operation="unregistered"'
    assert _value(after, graphql) >= _value(before, graphql) + 2
    assert 'operation="Trace"' not in after, "a client's operation name is a label only when registered"
    for series in ('lotgraph_breaker_state{source="qms"}', "lotgraph_exceptions_open", "lotgraph_upstream_seconds"):
        assert series in after, series
