"""Slow, failing, throttling and down sources cost their own fields a bounded wait, never the gateway."""

from __future__ import annotations

import asyncio
import time

import httpx2
import pytest

from gateway.errors import UpstreamUnavailable
from gateway.resilience import BreakerState, ResilienceSettings
from gateway.settings import SourceSettings
from gateway.sources.connector import SourceConnector
from simulators import Dataset
from tests.conftest import Gateway, Plant, start_gateway

QUALITY = "query($id: ID!) { lot(id: $id) { id qualityStatus } }"


def _connector(plant: Plant, system: str, **resilience: object) -> SourceConnector:
    settings = SourceSettings(url=plant.url(system), resilience=ResilienceSettings(**resilience))
    return SourceConnector(system, settings)


def _a_lot(dataset: Dataset) -> str:
    return next(iter(dataset.lots))


async def test_reads_are_retried_and_honour_retry_after(plant: Plant, dataset: Dataset) -> None:
    connector = _connector(plant, "qms", attempts=3)
    plant.fault("qms", throttle_rps=1, paths=["/api/v1/lots"])
    plant.reset_stats()
    try:
        first = await connector.get("/api/v1/lots", ids=_a_lot(dataset))
        started = time.monotonic()
        second = await connector.get("/api/v1/lots", ids=_a_lot(dataset))  # 429 + Retry-After, then served
        waited = time.monotonic() - started
    finally:
        await connector.aclose()
    assert first.status_code == second.status_code == 200
    assert waited >= 0.5, "the retry waited as Retry-After asked"
    assert plant.admin("qms", "GET", "stats").json()["by_endpoint"]["GET /api/v1/lots"] == 3


async def test_writes_are_never_retried_by_the_connector(plant: Plant) -> None:
    connector = _connector(plant, "wms", attempts=5)
    plant.fault("wms", error_rate=1.0, status=503, paths=["/v2/stock-moves"])
    plant.reset_stats()
    try:
        with pytest.raises(UpstreamUnavailable):
            await connector.post("/v2/stock-moves", {"lotId": "B2600001", "targetStatus": "blocked", "reference": "t"})
    finally:
        await connector.aclose()
    assert plant.admin("wms", "GET", "stats").json()["by_endpoint"]["POST /v2/stock-moves"] == 1


async def test_breaker_opens_fails_fast_and_recovers(plant: Plant, dataset: Dataset) -> None:
    connector = _connector(plant, "qms", attempts=1, breaker_window=4, breaker_min_calls=4, breaker_open_seconds=0.5)
    breaker = connector.guarded.breaker
    plant.fault("qms", down=True)
    try:
        for _ in range(4):
            with pytest.raises(UpstreamUnavailable):
                await connector.get("/api/v1/lots", ids=_a_lot(dataset))
        assert breaker.state is BreakerState.OPEN
        plant.reset_stats()
        with pytest.raises(UpstreamUnavailable, match="circuit is open"):
            await connector.get("/api/v1/lots", ids=_a_lot(dataset))
        assert plant.requests_served("qms") == 0, "an open circuit sends nothing"
        plant.clear_faults()
        await asyncio.sleep(0.6)
        response = await connector.get("/api/v1/lots", ids=_a_lot(dataset))  # the half-open probe
        assert response.status_code == 200
        assert breaker.state is BreakerState.CLOSED
    finally:
        await connector.aclose()


async def test_bulkhead_and_rate_limit_cap_what_reaches_the_source(plant: Plant, dataset: Dataset) -> None:
    plant.fault("qms", latency_ms=200, paths=["/api/v1/lots"])
    bulkhead = _connector(plant, "qms", max_concurrent=2)
    limited = _connector(plant, "qms", rate_limit_rps=10, rate_limit_burst=1)
    try:
        started = time.monotonic()
        await asyncio.gather(*(bulkhead.get("/api/v1/lots", ids=_a_lot(dataset)) for _ in range(6)))
        assert time.monotonic() - started >= 0.55, "six 200 ms calls, two at a time, take three rounds"
        plant.clear_faults()
        started = time.monotonic()
        await asyncio.gather(*(limited.get("/api/v1/lots", ids=_a_lot(dataset)) for _ in range(6)))
        assert time.monotonic() - started >= 0.45, "six calls at 10 per second after a burst of one"
    finally:
        await bulkhead.aclose()
        await limited.aclose()


def test_a_slow_source_costs_its_fields_a_bounded_wait(plant: Plant, dataset: Dataset) -> None:
    budget = {"total_timeout": 1.0, "attempts": 3}
    with start_gateway(plant, sources={"qms": {"resilience": ResilienceSettings(**budget)}}) as gateway:
        plant.fault("qms", latency_ms=2000)
        started = time.monotonic()
        result = gateway.execute(QUALITY, {"id": _a_lot(dataset)})
        elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed
    assert result["data"]["lot"]["id"]
    assert result["errors"][0]["extensions"]["code"] == "UPSTREAM_TIMEOUT"


def test_readyz_shows_the_store_and_each_sources_breaker(gateway: Gateway) -> None:
    response = httpx2.get(f"{gateway.url}/readyz")
    body = response.json()
    assert response.status_code == 200 and body["store"] == "ok"
    assert {source["name"]: source["breaker"] for source in body["sources"]} == {
        "erp": "CLOSED", "qms": "CLOSED", "wms": "CLOSED", "mes": "CLOSED"
    }  # fmt: skip
