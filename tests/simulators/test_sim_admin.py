"""The admin API every simulator shares: statistics, request log, lot state, and each kind of fault."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx2
import pytest
from starlette.applications import Starlette

from simulators import Dataset
from simulators.admin import RateWindow, malform


@dataclass
class Sim:
    client: httpx2.AsyncClient
    read: str  # a batch read answering a JSON list
    template: str  # its stats key
    other: str  # another route, for path-limited faults
    lot: str  # a lot this simulator stores

    async def get(self, path: str | None = None) -> httpx2.Response:
        return await self.client.get(path or self.read)

    async def fault(self, **fault: object) -> None:
        response = await self.client.post("/_admin/faults", json=fault)
        assert response.status_code == 200, response.text


def sample(system: str, small: Dataset) -> tuple[str, str, str, str]:
    made = next(lot.id for lot in small.lots.values() if lot.tier > 0 and lot.remaining > 0)
    return {
        "erp": (
            f"/sap/opu/odata/sap/API_BATCH_SRV/Batch?$filter=Batch eq '{made}'",
            "GET /sap/opu/odata/sap/API_BATCH_SRV/Batch",
            "/sap/opu/odata/sap/API_PLANT_SRV/A_Plant",
            made,
        ),
        "qms": (f"/api/v1/lots?ids={made}", "GET /api/v1/lots", f"/api/v1/holds?lot_ids={made}", made),
        "wms": (f"/v1/stock?lots={made}", "GET /v1/stock", f"/v2/stock-positions?lotIds={made}", made),
        "mes": (f"/api/lots?ids={made}", "GET /api/lots", f"/api/genealogy?produced={made}", made),
    }[system]


@pytest.fixture(params=["erp", "qms", "wms", "mes"])
async def sim(
    request: pytest.FixtureRequest,
    small: Dataset,
    build: Callable[[str], Starlette],
    connect: Callable[[Starlette], httpx2.AsyncClient],
) -> AsyncIterator[Sim]:
    async with connect(build(request.param)) as client:
        yield Sim(client, *sample(request.param, small))


async def test_stats_count_by_route_template_and_reset(sim: Sim) -> None:
    await sim.get()
    await sim.get()
    await sim.get(sim.other)
    await sim.client.get("/_admin/faults")
    stats = (await sim.client.get("/_admin/stats")).json()
    assert stats["total"] == 3
    assert stats["by_endpoint"][sim.template] == 2
    assert not any("/_admin" in key for key in stats["by_endpoint"])
    assert (await sim.client.delete("/_admin/stats")).status_code == 204
    assert (await sim.client.get("/_admin/stats")).json() == {"total": 0, "by_endpoint": {}}


async def test_stats_key_is_the_template_not_the_path(erp_client: httpx2.AsyncClient, small: Dataset) -> None:
    for lot in list(small.lots)[:3]:
        await erp_client.get(f"/sap/opu/odata/sap/API_BATCH_SRV/Batch('{lot}')")
    stats = (await erp_client.get("/_admin/stats")).json()
    assert stats["by_endpoint"] == {"GET /sap/opu/odata/sap/API_BATCH_SRV/Batch('{key}')": 3}


async def test_requests_are_recorded_with_correlation_and_trace(sim: Sim) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for n in range(3):
        await sim.client.get(sim.read, headers={"X-Correlation-ID": f"corr-{n}", "traceparent": trace})
    recorded = (await sim.client.get("/_admin/requests", params={"last": 2})).json()["requests"]
    assert [r["correlation_id"] for r in recorded] == ["corr-1", "corr-2"]
    assert all(r["traceparent"] == trace and r["method"] == "GET" for r in recorded)
    assert recorded[0]["path"] == sim.read.split("?")[0] and recorded[0]["query"]


async def test_admin_lot_state(sim: Sim) -> None:
    assert (await sim.client.get(f"/_admin/lots/{sim.lot}")).json()
    missing = await sim.client.get("/_admin/lots/B2699999")
    assert missing.status_code == 404 and "error" in missing.json()


async def test_latency_fault_delays_answers(sim: Sim) -> None:
    await sim.fault(latency_ms=150)
    started = time.perf_counter()
    assert (await sim.get()).status_code == 200
    assert time.perf_counter() - started >= 0.15


async def test_error_rate_fault_answers_the_configured_status(sim: Sim) -> None:
    await sim.fault(error_rate=1.0, status=502)
    failed = await sim.get()
    assert failed.status_code == 502 and "error" in failed.json()
    await sim.fault(error_rate=0.0, status=502)
    assert (await sim.get()).status_code == 200


async def test_down_fault_answers_503_but_admin_still_works(sim: Sim) -> None:
    await sim.fault(down=True)
    assert (await sim.get()).status_code == 503
    assert (await sim.get(sim.other)).status_code == 503
    assert (await sim.client.get("/_admin/faults")).json()["down"] is True
    assert (await sim.client.delete("/_admin/faults")).status_code == 204
    assert (await sim.get()).status_code == 200
    assert (await sim.client.get("/_admin/faults")).json()["down"] is False


def first_list(body: object) -> list | None:
    """The first list in a JSON body (depth first): the records of a simulator's answer."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for value in body.values():
            found = first_list(value)
            if found is not None:
                return found
    return None


async def test_malformed_fault_replaces_the_first_plain_key_of_listed_objects(sim: Sim) -> None:
    healthy = first_list((await sim.get()).json())
    assert healthy, "the sample read answers records"
    await sim.fault(malformed=True)
    broken = await sim.get()
    assert broken.status_code == 200
    records = first_list(broken.json())
    assert records and len(records) == len(healthy)
    for good, bad in zip(healthy, records, strict=True):
        first = next(key for key in good if not key.startswith("__"))
        assert bad[first] == {"malformed": True}
        assert {k: v for k, v in bad.items() if k != first} == {k: v for k, v in good.items() if k != first}


async def test_throttle_fault_answers_429_with_retry_after(sim: Sim) -> None:
    await sim.fault(throttle_rps=2)
    statuses = [(await sim.get()).status_code for _ in range(2)]
    throttled = await sim.get()
    assert statuses == [200, 200]
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1


async def test_timeout_fault_holds_the_request_until_cleared(sim: Sim) -> None:
    await sim.fault(timeout=True)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sim.get(), timeout=0.3)
    held = asyncio.create_task(sim.get())
    await asyncio.sleep(0.1)
    assert not held.done()
    assert (await sim.client.delete("/_admin/faults")).status_code == 204
    assert (await asyncio.wait_for(held, timeout=5)).status_code == 504
    assert (await sim.get()).status_code == 200


async def test_paths_limit_the_fault(sim: Sim) -> None:
    await sim.fault(down=True, paths=[sim.other.split("?")[0] + "*", "/nothing/*"])
    assert (await sim.get(sim.other)).status_code == 503
    assert (await sim.get()).status_code == 200


async def test_invalid_fault_is_refused(sim: Sim) -> None:
    for bad in ({"explode": True}, {"error_rate": 2}, {"latency_ms": -1}):
        assert (await sim.client.post("/_admin/faults", json=bad)).status_code == 400
    assert (await sim.client.get("/_admin/faults")).json()["error_rate"] == 0


def test_rate_window_admits_rps_per_second_and_says_when_to_retry() -> None:
    window = RateWindow(2)
    assert [window.retry_after(t) for t in (0.0, 0.1)] == [None, None]
    assert window.retry_after(0.5) == 1
    assert window.retry_after(1.05) is None
    slow = RateWindow(0.25)  # one request every four seconds
    assert slow.retry_after(0.0) is None and slow.retry_after(1.0) == 3 and slow.retry_after(4.0) is None


def test_malform_rewrites_objects_in_lists_only() -> None:
    body = {"a": {"b": 1}, "items": [{"__meta": 1, "id": "x", "n": [{"k": 1}]}, 3, {"__only": 1}]}
    malform(body)
    assert body == {
        "a": {"b": 1},
        "items": [{"__meta": 1, "id": {"malformed": True}, "n": [{"k": {"malformed": True}}]}, 3, {"__only": 1}],
    }


async def test_a_fault_naming_lots_refuses_only_their_items_of_bulk_writes(
    small: Dataset, connect: Callable[[Starlette], httpx2.AsyncClient], build: Callable[[str], Starlette]
) -> None:
    first, second = list(small.lots)[:2]
    async with connect(build("qms")) as client:
        fault = {"error_rate": 1.0, "status": 422, "lots": [first]}
        assert (await client.post("/_admin/faults", json=fault)).status_code == 200
        holds = [{"lot_id": lot, "reason_code": "DEV", "reason": "r", "placed_by": "t"} for lot in (first, second)]
        answer = await client.post("/api/v1/holds/bulk", json={"holds": holds})
        assert [item["status"] for item in answer.json()["items"]] == [422, 201]
        assert (await client.post("/api/v1/holds", json=holds[0])).status_code == 201, "whole requests go through"
