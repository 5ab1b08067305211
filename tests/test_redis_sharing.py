"""With Redis configured, replicas share the read cache and the per-client quota (a real Redis on loopback)."""

from __future__ import annotations

import time

import httpx

from gateway.limits import LimitSettings
from simulators import Dataset
from tests.conftest import Plant, start_gateway

LOT = "query($id: ID!) { lot(id: $id) { material { id description } } }"


def test_replicas_share_the_read_cache(plant: Plant, dataset: Dataset, redis_server: str) -> None:
    lot = list(dataset.lots)[1234]
    with start_gateway(plant, redis_url=redis_server) as first, start_gateway(plant, redis_url=redis_server) as second:
        expected = first.data(LOT, {"id": lot})
        plant.reset_stats()
        assert second.data(LOT, {"id": lot}) == expected
    assert plant.requests_served("erp") == 0, "the second replica found batch and material in the shared cache"


def test_replicas_share_the_client_quota(plant: Plant, redis_server: str) -> None:
    limits = LimitSettings(client_rps=0.1, client_burst=2)  # a 20 s window holding two requests
    with (
        start_gateway(plant, redis_url=redis_server, limits=limits) as first,
        start_gateway(plant, redis_url=redis_server, limits=limits, data_dir=first.settings.data_dir) as second,
    ):
        token = first.token("portal_reader", sub="shared-quota-client")
        if time.time() % 20 > 18:  # keep the four requests inside one quota window
            time.sleep(20 - time.time() % 20 + 0.1)
        answers = [
            httpx.post(f"{gateway.url}/graphql", json={"query": "{ contracts { name } }"},
                       headers={"Authorization": f"Bearer {token}"})
            for gateway in (first, second, first, second)
        ]  # fmt: skip
    # Each replica alone would let its two through; sharing the quota, the second pair is refused.
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert answers[2].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
