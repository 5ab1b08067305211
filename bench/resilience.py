"""Benchmarks of the resilience work: the 100-lot query cold vs warm (cache), with one source at 2 s
latency (the gateway's budget bounds it), and single-lot queries per second
and the gateway's CPU per query at 20 concurrent clients with a token; memory over 10 minutes of that load."""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import httpx2

from bench.graph import LIST_QUERY
from bench.stack import Stack
from simulators import Dataset

MEMORY_MINUTES = float(os.environ.get("LOTGRAPH_BENCH_MEMORY_MINUTES", "10"))
SINGLE = "query($id: ID!) { lot(id: $id) { id material { description } qualityStatus } }"


def _timed(client: httpx2.Client, stack: Stack, first: int) -> float:
    started = time.perf_counter()
    client.post(f"{stack.gateway}/graphql", json={"query": LIST_QUERY, "variables": {"first": first}}).json()
    return (time.perf_counter() - started) * 1000


def cold_and_warm(stack: Stack, runs: int = 20) -> list[str]:
    with httpx2.Client(timeout=60) as client:
        stack.reset_stats()
        cold = _timed(client, stack, 100)
        cold_requests = sum(stack.served().values())
        stack.reset_stats()
        warm = [_timed(client, stack, 100) for _ in range(runs)]
        warm_requests = sum(stack.served().values()) / runs
        slow = []
        try:
            httpx2.post(f"{stack.sim('wms')}/_admin/faults", json={"latency_ms": 2000})
            slow = [_timed(client, stack, 100) for _ in range(5)]
        finally:
            stack.clear_faults()
    return [
        "lots(first: 100) cold vs warm (master data and batches cached; statuses always asked)",
        f"  cold {cold:.0f} ms ({cold_requests} upstream requests)  warm p50 {statistics.median(warm):.0f} ms "
        f"({warm_requests:.0f} upstream requests per query)",
        f"  WMS at 2 s latency: p50 {statistics.median(slow):.0f} ms  max {max(slow):.0f} ms "
        "(stock fields wait for WMS; the rest of the query does not wait longer than WMS's budget)",
    ]


async def _clients(
    stack: Stack, lot_ids: list[str], clients: int, seconds: float, token: str
) -> tuple[int, list[float]]:
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def client(index: int) -> None:
        async with httpx2.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
            n = index
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                body = {"query": SINGLE, "variables": {"id": lot_ids[n % len(lot_ids)]}}
                answer = await http.post(f"{stack.gateway}/graphql", json=body)
                assert answer.status_code == 200 and "errors" not in answer.json(), answer.text[:300]
                latencies.append((time.perf_counter() - started) * 1000)
                n += clients

    await asyncio.gather(*(client(i) for i in range(clients)))
    return len(latencies), latencies


def throughput(stack: Stack, dataset: Dataset, clients: int = 20, seconds: float = 10.0) -> list[str]:
    """Single-lot queries with a bearer token (JWT verification and Cedar on), and the gateway's CPU per query."""
    lot_ids = list(dataset.lots)[:2000]
    token = stack.token("quality_engineer")
    asyncio.run(_clients(stack, lot_ids, clients, 2.0, token))  # warm: connections and caches
    cpu = stack.gateway_cpu_seconds()
    count, latencies = asyncio.run(_clients(stack, lot_ids, clients, seconds, token))
    cpu = stack.gateway_cpu_seconds() - cpu
    return [
        f"single-lot query as a quality engineer (JWT, Cedar), {clients} concurrent clients, one gateway process, "
        f"{seconds:.0f} s",
        f"  {count / seconds:.0f} queries/s  p50 {statistics.median(latencies):.0f} ms  "
        f"p95 {statistics.quantiles(latencies, n=100)[94]:.0f} ms  gateway CPU {1000 * cpu / count:.2f} ms per query",
    ]


def memory(stack: Stack, dataset: Dataset, minutes: float = MEMORY_MINUTES, clients: int = 20) -> list[str]:
    """The single-lot load for `minutes` (LOTGRAPH_BENCH_MEMORY_MINUTES), the gateway's resident memory each
    minute: flat means no cache, loader or span grows with requests."""
    lot_ids = list(dataset.lots)
    token = stack.token("quality_engineer")
    asyncio.run(_clients(stack, lot_ids, clients, 60.0, token))  # warm: the read cache fills to its working size
    samples = [stack.gateway_rss_mib()]
    served = 0
    for _ in range(max(1, round(minutes))):
        count, _ = asyncio.run(_clients(stack, lot_ids, clients, 60.0 * minutes / max(1, round(minutes)), token))
        served += count
        samples.append(stack.gateway_rss_mib())
    change = 100 * (samples[-1] - samples[0]) / samples[0]
    return [
        f"gateway memory over {minutes:g} min of single-lot load ({served} queries, {clients} clients, every lot of "
        "the plant in turn)",
        f"  RSS {' -> '.join(f'{mib:.0f}' for mib in samples)} MiB: {change:+.1f} % after a minute's warm-up, "
        f"max {max(samples):.0f} MiB",
    ]
