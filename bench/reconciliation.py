"""A full reconciliation sweep of the 20,000-lot plant: seconds and upstream requests per source, as
`lotgraph reconcile` runs it against the plant (every plant the ERP lists, a store of its own), at the default
budget, at the default budget with every simulator answering in 20 ms, and unthrottled for comparison; and what a
sweep at the default budget costs interactive reads: the 100-lot page's p50/p95 while it runs versus without it."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2

from bench.graph import LIST_QUERY
from bench.stack import LOTGRAPH, Stack
from gateway.demo import SIMULATORS
from gateway.reconcile.settings import SweepBudget

UNTHROTTLED = {f"LOTGRAPH_RECONCILIATION__REQUESTS_PER_SECOND__{s.upper()}": "10000" for s in ("erp", "qms", "wms")}


@contextmanager
def _sweeping(stack: Stack, extra: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`lotgraph reconcile` over every plant, running (a store of its own)."""
    with tempfile.TemporaryDirectory(prefix="lotgraph-bench-reconcile-") as data_dir:
        env = {key: value for key, value in os.environ.items() if not key.startswith("LOTGRAPH_")}
        env.update({f"LOTGRAPH_SOURCES__{s.upper()}__URL": stack.sim(s) for s in SIMULATORS}, **extra,
                   LOTGRAPH_DATA_DIR=data_dir)  # fmt: skip
        with subprocess.Popen([LOTGRAPH, "--log-level", "warning", "reconcile", "--show", "0"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as sweep:  # fmt: skip
            yield sweep


def _sweep(stack: Stack, extra: dict[str, str]) -> tuple[int, float, dict[str, int]]:
    """Lots checked, seconds and requests per source of one full sweep, as `lotgraph reconcile` counted them (its
    own connectors' requests, retries included; the simulators also serve the bench gateway's ERP polling)."""
    with _sweeping(stack, extra) as sweep:
        stdout, stderr = sweep.communicate()
    if sweep.returncode:
        raise RuntimeError(f"lotgraph reconcile failed: {stderr.strip()[-500:]}")
    swept = re.findall(r": swept (\d+) lots in ([\d.]+) s \(ERP (\d+), QMS (\d+), WMS (\d+) requests\)", stdout)
    requests = {source: sum(int(row[2 + i]) for row in swept) for i, source in enumerate(("erp", "qms", "wms"))}
    return sum(int(row[0]) for row in swept), sum(float(row[1]) for row in swept), requests


def _line(label: str, lots: int, seconds: float, requests: dict[str, int]) -> str:
    counted = ", ".join(f"{source.upper()} {n}" for source, n in requests.items())
    return f"  {label:34} {lots} lots in {seconds:6.1f} s ({lots / seconds:5.0f} lots/s); requests {counted}"


def full_sweep(stack: Stack) -> list[str]:
    budget = SweepBudget()
    lines = [f"reconciliation: full sweep, every plant (page 200; default budget ERP {budget.erp:g}, QMS "
             f"{budget.qms:g}, WMS {budget.wms:g} requests/s)"]  # fmt: skip
    lines.append(_line("default budget", *_sweep(stack, {})))
    stack.fault_all(latency_ms=20)
    try:
        lines.append(_line("default budget, 20 ms per source", *_sweep(stack, {})))
        lines.append(_line("unthrottled, 20 ms per source", *_sweep(stack, UNTHROTTLED)))
    finally:
        stack.clear_faults()
    lines.append(_interactive(stack))
    return lines


def _interactive(stack: Stack, runs: int = 60) -> str:
    """The 100-lot page, one request after another, without a sweep and then while one runs."""

    def page_ms(client: httpx2.Client) -> float:
        started = time.perf_counter()
        answer = client.post(f"{stack.gateway}/graphql", json={"query": LIST_QUERY, "variables": {"first": 100}})
        assert answer.status_code == 200 and "errors" not in answer.json(), answer.text[:300]
        return (time.perf_counter() - started) * 1000

    with httpx2.Client(timeout=60) as client:
        alone = [page_ms(client) for _ in range(runs)]
        with _sweeping(stack, {}) as sweep:
            time.sleep(2.0)  # under way: its first pages are in flight
            during = [page_ms(client) for _ in range(runs) if sweep.poll() is None]
            sweep.terminate()
    p50, p95 = (lambda ms: statistics.median(ms)), (lambda ms: statistics.quantiles(ms, n=20)[18])
    return (
        f"  100-lot page, {runs} one after another: p50 {p50(alone):.0f} ms, p95 {p95(alone):.0f} ms without a "
        f"sweep; p50 {p50(during):.0f} ms, p95 {p95(during):.0f} ms while one runs at the default budget "
        f"({len(during)} pages)"
    )
