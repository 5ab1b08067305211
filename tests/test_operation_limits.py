"""Each governance limit refuses with its own code; ordinary queries stay well inside them."""

from __future__ import annotations

import httpx2

from gateway.limits import LimitSettings
from simulators import Dataset
from tests.conftest import Gateway, Plant, start_gateway


def _code(result: dict) -> str:
    return result["errors"][0]["extensions"]["code"]


def test_depth_aliases_and_cost_are_bounded(plant: Plant, dataset: Dataset) -> None:
    limits = LimitSettings(max_depth=5, max_aliases=3, max_cost=500, default_list_size=10)
    lot = next(iter(dataset.lots))
    with start_gateway(plant, limits=limits) as gateway:
        nested = "productionOrder { producedLot { productionOrder { producedLot { id } } } }"
        deep = gateway.execute(f"query($id: ID!) {{ lot(id: $id) {{ {nested} }} }}", {"id": lot})
        aliased = gateway.execute(" ".join(["{", *(f"a{i}: contracts {{ name }}" for i in range(4)), "}"]))
        costly = gateway.execute(
            "query($n: Int!) { lots(first: $n) { edges { node { id holds { id } } } } }", {"n": 300}
        )
        fine = gateway.execute("query($n: Int!) { lots(first: $n) { edges { node { id } } } }", {"n": 5})
    assert _code(deep) == "QUERY_TOO_DEEP" and deep["errors"][0]["extensions"]["limit"] == 5
    assert _code(aliased) == "TOO_MANY_ALIASES"
    assert _code(costly) == "QUERY_TOO_COSTLY", "the cost follows the `first` variable"
    assert costly["errors"][0]["extensions"]["measured"] > 500
    assert "errors" not in fine and len(fine["data"]["lots"]["edges"]) == 5


def test_page_size_is_bounded(gateway: Gateway) -> None:
    assert _code(gateway.execute("{ lots(first: 5000) { totalCount } }")) == "BAD_USER_INPUT"


def test_oversized_bodies_are_refused_unread(plant: Plant) -> None:
    with start_gateway(plant, limits=LimitSettings(max_body_bytes=2048)) as gateway:
        padded = {"query": "{ contracts { name } }", "variables": {"pad": "x" * 5000}}
        response = httpx2.post(f"{gateway.url}/graphql", json=padded)
        chunked = httpx2.post(
            f"{gateway.url}/graphql",
            content=iter([b'{"query": "{ contracts { name } }", "pad": "', b"y" * 5000, b'"}']),
            headers={"content-type": "application/json"},
        )
        small = gateway.execute("{ contracts { name } }")
    assert response.status_code == 413 and _code(response.json()) == "REQUEST_TOO_LARGE"
    assert chunked.status_code == 413 and _code(chunked.json()) == "REQUEST_TOO_LARGE"
    assert small["data"]["contracts"]


def test_operations_have_a_time_budget(plant: Plant, dataset: Dataset) -> None:
    with start_gateway(plant, limits=LimitSettings(operation_timeout=0.5)) as gateway:
        plant.fault("qms", latency_ms=3000)
        response = httpx2.post(
            f"{gateway.url}/graphql", json={"query": f'{{ lot(id: "{next(iter(dataset.lots))}") {{ qualityStatus }} }}'}
        )
    assert response.status_code == 504
    assert _code(response.json()) == "OPERATION_TIMEOUT"
