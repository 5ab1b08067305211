"""Benchmarks of the lot graph (issue: the graph foundation): requests per source, latency against
the critical path, and recall-sized genealogy."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx2

from bench.stack import Stack
from simulators import Dataset

LIST_QUERY = """query($first: Int!) { lots(first: $first) { edges { node {
  id material { id description } stockPositions { handlingUnit status quantity }
  inspections { id status } holds { id status } } } } }"""
GENEALOGY_QUERY = """query($id: ID!, $depth: Int!) { lot(id: $id) { genealogy(direction: DOWNSTREAM, maxDepth: $depth) {
  depthReached nodes { id material { id } } edges { from to quantity unit } } } }"""
# lots(first) needs the batch page first (ERP), then material, stock, inspections and holds in parallel.
FIRST_LEVEL_PATH = "/API_BATCH_SRV/Batch"


def _post(client: httpx2.Client, stack: Stack, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    result = client.post(f"{stack.gateway}/graphql", json={"query": query, "variables": variables}).json()
    if "errors" in result:
        raise RuntimeError(result["errors"][:3])
    return result["data"]


def _percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def requests_per_source(stack: Stack) -> list[str]:
    lines = ["lots(first: N) with material, stock, inspections, holds: upstream requests per source"]
    with httpx2.Client(timeout=120) as client:
        for first in (10, 100, 1000):
            stack.reset_stats()
            _post(client, stack, LIST_QUERY, {"first": first})
            served = stack.served()
            lines.append(f"  first={first:<5} " + "  ".join(f"{s}={n}" for s, n in served.items()))
    return lines


def _upstream_levels(stack: Stack, client: httpx2.Client) -> list[list[str]]:
    """The upstream URLs one 100-lot query requests, grouped by dependency level (read from the simulators)."""
    stack.reset_stats()
    _post(client, stack, LIST_QUERY, {"first": 100})
    urls = []
    for system, count in stack.served().items():
        recorded = client.get(f"{stack.sim(system)}/_admin/requests", params={"last": count}).json()["requests"]
        urls += [f"{stack.sim(system)}{r['path']}?{r['query']}" for r in recorded[-count:] if count]
    first = [url for url in urls if FIRST_LEVEL_PATH in url]
    return [first, [url for url in urls if url not in first]]


async def _interleaved(stack: Stack, levels: list[list[str]], runs: int) -> tuple[list[float], list[float]]:
    """Alternate one gateway query and one replay of its upstream requests (each level's requests
    concurrently, straight at the simulators), so both see the same machine load."""
    gateway, critical = [], []
    payload = {"query": LIST_QUERY, "variables": {"first": 100}}
    async with httpx2.AsyncClient(timeout=60) as client:
        for run in range(runs + 1):
            started = time.perf_counter()
            answer = await client.post(f"{stack.gateway}/graphql", json=payload)
            answered = time.perf_counter()  # its body read, not yet parsed: as the replay's answers
            assert "errors" not in answer.json()
            replayed = time.perf_counter()
            for level in levels:
                await asyncio.gather(*(client.get(url) for url in level))
            if run:  # the first round warms connections
                gateway.append((answered - started) * 1000)
                critical.append((time.perf_counter() - replayed) * 1000)
    return gateway, critical


def latency_vs_critical_path(stack: Stack, latency_ms: int = 20, runs: int = 40) -> list[str]:
    stack.fault_all(latency_ms=latency_ms)
    try:
        with httpx2.Client(timeout=60) as client:
            levels = _upstream_levels(stack, client)
        cpu = stack.gateway_cpu_seconds()
        samples, critical = asyncio.run(_interleaved(stack, levels, runs))
        cpu = stack.gateway_cpu_seconds() - cpu
    finally:
        stack.clear_faults()
    p50, p95 = _percentile(samples, 50), _percentile(samples, 95)
    c50, c95 = _percentile(critical, 50), _percentile(critical, 95)
    return [
        f"lots(first: 100) with every simulator at {latency_ms} ms injected latency ({runs} runs)",
        f"  gateway        p50 {p50:.1f} ms  p95 {p95:.1f} ms  CPU {1000 * cpu / (runs + 1):.1f} ms per query (its "
        "share of the latency on a busy machine: the ratio moves with other load, the CPU less)",
        f"  critical path  p50 {c50:.1f} ms  p95 {c95:.1f} ms  ({len(levels)} levels of "
        f"{[len(level) for level in levels]} upstream requests, replayed straight at the simulators)",
        f"  ratio          p50 {p50 / c50:.2f}  p95 {p95 / c95:.2f}  (target: p50 <= 1.2, p95 <= 1.4)",
    ]


def _timed_genealogy(client: httpx2.Client, stack: Stack, lot: str, depth: int) -> tuple[dict[str, Any], float, float]:
    """The genealogy, the seconds it took, and the gateway CPU seconds it used."""
    started, cpu = time.perf_counter(), stack.gateway_cpu_seconds()
    graph = _post(client, stack, GENEALOGY_QUERY, {"id": lot, "depth": depth})["lot"]["genealogy"]
    return graph, time.perf_counter() - started, stack.gateway_cpu_seconds() - cpu


def recall_genealogy(stack: Stack, dataset: Dataset, warm_runs: int = 5) -> list[str]:
    """The recall lot's downstream genealogy: the first query (its lots' master data not yet in the read cache:
    cold), then the median of `warm_runs` (upstream requests counted over the last), then depth 3 warm. Gateway
    CPU seconds beside each: on a shared machine they move less than the wall time."""
    recall_lot, lots = dataset.recall_lot, len(dataset.lots)
    with httpx2.Client(timeout=120) as client:
        stack.reset_stats()
        graph, cold, cold_cpu = _timed_genealogy(client, stack, recall_lot, 6)
        cold_served = stack.served()
        warm = []
        for _ in range(warm_runs):
            stack.reset_stats()
            warm.append(_timed_genealogy(client, stack, recall_lot, 6)[1:])
        served = stack.served()
        shallow = [_timed_genealogy(client, stack, recall_lot, 3) for _ in range(warm_runs + 1)]

    def requests(counts: dict[str, int]) -> str:
        return f"{sum(counts.values())} ({'  '.join(f'{s}={n}' for s, n in counts.items() if n)})"

    def median(runs: list[tuple[float, float]]) -> str:
        return f"{statistics.median(s for s, _ in runs):.2f} s  CPU {statistics.median(c for _, c in runs):.2f} s"

    return [
        f"genealogy of raw lot {recall_lot} downstream ({lots} lots in the plant)",
        f"  depth 6: lots returned {len(graph['nodes'])}  edges {len(graph['edges'])}  depth reached "
        f"{graph['depthReached']}",
        f"    cold  {cold:.2f} s  CPU {cold_cpu:.2f} s  upstream requests {requests(cold_served)}  (target <= 1.0 s)",
        f"    warm  {median(warm)}  upstream requests {requests(served)}  (median of {warm_runs}; target <= 0.6 s)",
        f"  depth 3: lots returned {len(shallow[0][0]['nodes'])}  warm {median([r[1:] for r in shallow[1:]])}  "
        f"(median of {warm_runs}; target <= 0.3 s)",
    ]
