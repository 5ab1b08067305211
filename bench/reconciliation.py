"""A full reconciliation sweep of the 20,000-lot plant: seconds and upstream requests per source, as
`lotgraph reconcile` runs it against the plant (every plant the ERP lists, a store of its own), at the default
budget, at the default budget with every simulator answering in 20 ms, and unthrottled for comparison."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

from bench.stack import LOTGRAPH, Stack
from gateway.demo import SIMULATORS
from gateway.reconcile.settings import SweepBudget

UNTHROTTLED = {f"LOTGRAPH_RECONCILIATION__REQUESTS_PER_SECOND__{s.upper()}": "10000" for s in ("erp", "qms", "wms")}


def _sweep(stack: Stack, extra: dict[str, str]) -> tuple[int, float, dict[str, int]]:
    """Lots checked, seconds and requests per source of one full sweep, as `lotgraph reconcile` counted them (its
    own connectors' requests, retries included; the simulators also serve the bench gateway's ERP polling)."""
    with tempfile.TemporaryDirectory(prefix="lotgraph-bench-reconcile-") as data_dir:
        env = {key: value for key, value in os.environ.items() if not key.startswith("LOTGRAPH_")}
        env.update({f"LOTGRAPH_SOURCES__{s.upper()}__URL": stack.sim(s) for s in SIMULATORS}, **extra,
                   LOTGRAPH_DATA_DIR=data_dir)  # fmt: skip
        done = subprocess.run([LOTGRAPH, "--log-level", "warning", "reconcile", "--show", "0"], env=env,
                              capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"lotgraph reconcile failed: {done.stderr.strip()[-500:]}")
    swept = re.findall(r": swept (\d+) lots in ([\d.]+) s \(ERP (\d+), QMS (\d+), WMS (\d+) requests\)", done.stdout)
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
    return lines
