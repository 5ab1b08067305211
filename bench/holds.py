"""Benchmarks of governed operations: hold and release latency per lot with every simulator at 20 ms,
and recall holds over at least 1,000 and 10,000 lots at 20 ms (seconds, gateway CPU, upstream requests)."""

from __future__ import annotations

import statistics
import time
import uuid
from collections import defaultdict
from typing import Any

import httpx2

from bench.stack import Stack
from simulators import Dataset

HOLD = """mutation($lot: ID!, $key: String!) { placeQualityHold(input: {lotId: $lot, reasonCode: "QH01",
  reason: "benchmark", idempotencyKey: $key}) { state } }"""
HOLDS = "query($lot: ID!) { lot(id: $lot) { holds { id status } } }"
RELEASE = """mutation($hold: ID!, $key: String!) { releaseQualityHold(input: {holdId: $hold,
  justification: "benchmark", idempotencyKey: $key}) { state } }"""
RECALL = """mutation($lot: ID!, $depth: Int!, $key: String!) { placeRecallHold(input: {lotId: $lot,
  direction: DOWNSTREAM, maxDepth: $depth, reason: "benchmark recall", idempotencyKey: $key}) { state lotIds } }"""


def _call(client: httpx2.Client, stack: Stack, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    result = client.post(f"{stack.gateway}/graphql", json={"query": query, "variables": variables},
                         headers={"Authorization": f"Bearer {token}"}).json()  # fmt: skip
    if "errors" in result:
        raise RuntimeError(result["errors"][:2])
    return result["data"]


def _releasable(dataset: Dataset, count: int) -> list[str]:
    open_nc = {nc.lot for nc in dataset.nonconformances.values() if nc.state != "CLOSED"}
    latest: dict[str, Any] = {}
    for inspection in sorted(dataset.inspection_lots.values(), key=lambda i: i.created_at):
        latest[inspection.lot] = inspection
    picked = []
    for lot in dataset.lots.values():
        decision = getattr(latest.get(lot.id), "usage_decision", None)
        if (lot.quality_status == "RELEASED" and lot.remaining > 0 and lot.id not in open_nc
                and lot.id not in dataset.divergent and decision is not None and decision.code == "A"):  # fmt: skip
            picked.append(lot.id)
        if len(picked) == count:
            break
    return picked


def _recall_root(dataset: Dataset, target: int = 1000) -> tuple[str, int]:
    """A raw lot and a depth whose downstream closure is the smallest of at least `target` lots."""
    children: dict[str, list[str]] = defaultdict(list)
    for link in dataset.links:
        children[link.consumed_lot].append(link.produced_lot)
    best = ("", 0, 10**9)
    for lot in (lot for lot in dataset.lots.values() if lot.tier == 0):
        seen, frontier = {lot.id}, [lot.id]
        for depth in range(1, 7):
            frontier = [c for p in frontier for c in children[p] if c not in seen]
            seen.update(frontier)
            if target <= len(seen) < best[2]:
                best = (lot.id, depth, len(seen))
            if not frontier or len(seen) > 2 * target:
                break
    return best[0], best[1]


def hold_and_release(stack: Stack, dataset: Dataset, lots: int = 20) -> list[str]:
    engineer, manager = stack.token("quality_engineer"), stack.token("qa_manager", mfa=True)
    holds, releases = [], []
    stack.fault_all(latency_ms=20)
    try:
        with httpx2.Client(timeout=120) as client:
            for lot in _releasable(dataset, lots):
                started = time.perf_counter()
                assert _call(client, stack, HOLD, {"lot": lot, "key": uuid.uuid4().hex}, engineer)[
                    "placeQualityHold"]["state"] == "COMPLETED"  # fmt: skip
                holds.append((time.perf_counter() - started) * 1000)
                hold_id = next(h["id"] for h in _call(client, stack, HOLDS, {"lot": lot}, manager)["lot"]["holds"]
                               if h["status"] == "ACTIVE")  # fmt: skip
                started = time.perf_counter()
                _call(client, stack, RELEASE, {"hold": hold_id, "key": uuid.uuid4().hex}, manager)
                releases.append((time.perf_counter() - started) * 1000)
    finally:
        stack.clear_faults()
    return [
        f"hold and release of one lot across QMS, WMS, ERP, every simulator at 20 ms ({len(holds)} lots)",
        f"  placeQualityHold   p50 {statistics.median(holds):.0f} ms  max {max(holds):.0f} ms",
        f"  releaseQualityHold p50 {statistics.median(releases):.0f} ms  max {max(releases):.0f} ms",
    ]


def recall(stack: Stack, dataset: Dataset) -> list[str]:
    """Recall holds of at least 1,000 and 10,000 lots with every simulator at +20 ms: seconds until the mutation
    answers, upstream requests by system, and the gateway's CPU time."""
    lines = []
    stack.fault_all(latency_ms=20)
    try:
        with httpx2.Client(timeout=600) as client:
            for target in (1_000, 10_000):
                root, depth = _recall_root(dataset, target)
                stack.reset_stats()
                started, cpu = time.perf_counter(), stack.gateway_cpu_seconds()
                op = _call(client, stack, RECALL, {"lot": root, "depth": depth, "key": uuid.uuid4().hex},
                           stack.token("qa_manager"))["placeRecallHold"]  # fmt: skip
                seconds, cpu = time.perf_counter() - started, stack.gateway_cpu_seconds() - cpu
                served = stack.served()
                lines += [
                    f"recall hold of raw lot {root} downstream to depth {depth}, every simulator at 20 ms",
                    f"  lots {len(op['lotIds'])}  state {op['state']}  seconds {seconds:.1f}  gateway CPU {cpu:.1f} s"
                    f"  upstream requests {sum(served.values())} ({'  '.join(f'{s}={n}' for s, n in served.items())})",
                ]
    finally:
        stack.clear_faults()
    return lines
