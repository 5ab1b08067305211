"""Benchmark of federation (issue: federation): what a field borrowed from the LIMS subgraph costs a 100-lot
page, in requests to the LIMS and in latency against the same page without it."""

from __future__ import annotations

import statistics
import time

import httpx2

from bench.stack import Stack

OWN = "lots(first: 100) { edges { node { id qualityStatus material { id } } } }"
BORROWED = (
    "lots(first: 100) { edges { node { id qualityStatus material { id } labSamples { test result withinSpec } } } }"
)
RUNS = 30


def _p50_ms(client: httpx2.Client, stack: Stack, query: str) -> float:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        answer = client.post(f"{stack.gateway}/graphql", json={"query": f"{{ {query} }}"}).json()
        samples.append((time.perf_counter() - started) * 1000)
        if "errors" in answer:
            raise RuntimeError(answer["errors"][:3])
    return statistics.median(samples)


def borrowed_fields(stack: Stack) -> list[str]:
    with httpx2.Client(timeout=60) as client:
        own = _p50_ms(client, stack, OWN)
        before = client.get(f"{stack.lims}/_admin/stats").json()["total"]
        borrowed = _p50_ms(client, stack, BORROWED)
        requests = (client.get(f"{stack.lims}/_admin/stats").json()["total"] - before) / RUNS
    return [
        "federation: lots(first: 100) with Lot.labSamples from the LIMS subgraph",
        f"  LIMS requests per query {requests:.1f}; p50 {borrowed:.0f} ms against {own:.0f} ms without the "
        f"borrowed field (+{borrowed - own:.0f} ms)",
    ]
