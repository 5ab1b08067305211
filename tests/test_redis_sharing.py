"""With Redis configured, replicas share the read cache and the per-client quota (a real Redis on loopback)."""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import httpx2
import redis

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


class _Planted:
    """What an attacker who can write to the shared Redis would plant: unpickling it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.mkdir, (str(self.marker),))


def test_the_shared_cache_holds_data_only_and_never_unpickles(
    plant: Plant, dataset: Dataset, redis_server: str, tmp_path: Path
) -> None:
    lot = list(dataset.lots)[1235]
    shared = redis.Redis.from_url(redis_server)
    with start_gateway(plant, redis_url=redis_server) as gateway:
        expected = gateway.data(LOT, {"id": lot})
        stored = json.loads(shared.get(f"lotgraph:cache:erp.batch.read:{lot}"))
        assert stored["value"]["type"] == "Lot" and stored["value"]["data"]["id"] == lot, "JSON of the canonical Lot"
        marker = tmp_path / "code-ran"
        for key in shared.scan_iter("lotgraph:cache:*"):
            shared.set(key, pickle.dumps(_Planted(marker)), keepttl=True)
        shared.set("lotgraph:cache:erp.material.read:" + dataset.lots[lot].material, b'{"value": {"type": "os"}}')
        plant.reset_stats()
        assert gateway.data(LOT, {"id": lot}) == expected, "what is not lotgraph's is a miss: read again"
    assert not marker.exists(), "nothing planted in Redis ran in the gateway"
    assert plant.requests_served("erp") > 0


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
            httpx2.post(f"{gateway.url}/graphql", json={"query": "{ contracts { name } }"},
                       headers={"Authorization": f"Bearer {token}"})
            for gateway in (first, second, first, second)
        ]  # fmt: skip
    # Each replica alone would let its two through; sharing the quota, the second pair is refused.
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert answers[2].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
