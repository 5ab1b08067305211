"""The system under benchmark: simulators in one process, the gateway in another, the load from this one.

Separate processes keep the client's and the simulators' Python work off the gateway's interpreter,
so the figures are the gateway's own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth import AuthSettings, DevSigner
from gateway.demo import SIMULATORS, subgraph_url
from gateway.servers import free_block

LOTGRAPH = str(Path(sys.executable).parent / "lotgraph")
EVENT_SOURCES = ("qms", "mes", "wms")  # the systems that announce changes (the WMS its receiving dock's)


# Signs the simulators' webhooks to the gateway (bench only; never a real secret).
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"lotgraph-bench-webhook-secret-32").decode()


@dataclass
class Stack:
    gateway: str
    first_sim_port: int
    data_dir: Path
    gateway_pid: int

    def sim(self, system: str) -> str:
        return f"http://127.0.0.1:{self.first_sim_port + SIMULATORS.index(system)}"

    @property
    def lims(self) -> str:
        """The LIMS subgraph the gateway federates (`lotgraph sim` serves it after the four)."""
        return subgraph_url("127.0.0.1", self.first_sim_port, "lims").removesuffix("/graphql")

    def reset_stats(self) -> None:
        for system in SIMULATORS:
            httpx2.delete(f"{self.sim(system)}/_admin/stats")

    def served(self) -> dict[str, int]:
        return {s: httpx2.get(f"{self.sim(s)}/_admin/stats").json()["total"] for s in SIMULATORS}

    def fault_all(self, **fault: Any) -> None:
        for system in SIMULATORS:
            httpx2.post(f"{self.sim(system)}/_admin/faults", json=fault)

    def clear_faults(self) -> None:
        for system in SIMULATORS:
            httpx2.delete(f"{self.sim(system)}/_admin/faults")

    def gateway_cpu_seconds(self) -> float:
        """User and system CPU time the gateway process has used (/proc/PID/stat fields 14 and 15): unlike wall
        time, it does not grow with what else the machine runs."""
        fields = Path(f"/proc/{self.gateway_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def gateway_rss_mib(self) -> float:
        """The gateway process's resident memory."""
        for line in Path(f"/proc/{self.gateway_pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    async def settled(self, client: httpx2.AsyncClient, within: float = 300.0) -> float:
        """Wait (up to `within` seconds) until every simulator has delivered the events it emitted; the seconds
        waited. Each sends one event at a time, in order: a change behind a backlog (the QMS's events after a recall
        of thousands of lots) would time the backlog, not what a bench measures."""
        started = time.monotonic()
        for system in EVENT_SOURCES:
            while time.monotonic() - started < within:
                if not (await client.get(f"{self.sim(system)}/_admin/events")).json()["pending"]:
                    break
                await asyncio.sleep(0.2)
        return time.monotonic() - started

    async def idle(self, client: httpx2.AsyncClient, within: float = 120.0) -> float:
        """Wait (up to `within` seconds) until the gateway has no inbound event left to react to and no subscription
        left from an earlier run; the seconds waited. A run that starts behind the last one's reactions, or while
        its subscribers are still being let go, times that too."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            scrape = (await client.get(f"{self.gateway}/metrics")).text
            families = text_string_to_metric_families(scrape)
            samples = {family.name: sum(sample.value for sample in family.samples) for family in families}
            if not samples.get("lotgraph_inbox_pending") and not samples.get("lotgraph_subscriptions"):
                break
            await asyncio.sleep(0.2)
        return time.monotonic() - started

    def token(self, role: str, *, mfa: bool = False) -> str:
        """A development token for `role` in every plant, signed with the gateway's development key."""
        auth = AuthSettings()
        signer = DevSigner.load_or_create(auth.dev_key_path(self.data_dir))
        amr = ("pwd", "mfa") if mfa else ("pwd",)
        return signer.mint(
            f"bench-{role}", roles=(role,), plants=("*",), amr=amr, issuer=auth.issuer, audience=auth.audience
        )


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            httpx2.get(url, timeout=1)
            return
        except httpx2.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def running(seed: int = 42, lots: int = 20_000) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="lotgraph-bench-") as data_dir:
        yield from _running(seed, lots, data_dir)


def _running(seed: int, lots: int, data_dir: str) -> Iterator[Stack]:
    port = free_block(6)  # the gateway on P, `lotgraph sim --port P` on P+1 … P+5
    env = dict(
        os.environ,
        LOTGRAPH_MODE="development",
        LOTGRAPH_DATA_DIR=data_dir,
        LOTGRAPH_AUTH__ALLOW_ANONYMOUS="true",
        LOTGRAPH_AUTH__ANONYMOUS_ROLES='["portal_reader"]',
        LOTGRAPH_EVENTS__WEBHOOK_SECRETS=json.dumps(dict.fromkeys(EVENT_SOURCES, WEBHOOK_SECRET)),
        LOTGRAPH_SUBGRAPHS__LIMS__URL=subgraph_url("127.0.0.1", port + 1, "lims"),
        # The figures count the requests each query costs: the sweep is measured on its own (bench/reconciliation.py).
        LOTGRAPH_RECONCILIATION__ENABLED="false",
    )
    for offset, system in enumerate(SIMULATORS):
        env[f"LOTGRAPH_SOURCES__{system.upper()}__URL"] = f"http://127.0.0.1:{port + 1 + offset}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sims = subprocess.Popen(
        [LOTGRAPH, "--log-level", "warning", "sim", "--port", str(port), "--seed", str(seed), "--lots", str(lots)],
        **quiet,
    )
    processes = [sims]
    try:
        stack = Stack(f"http://127.0.0.1:{port}", port + 1, Path(data_dir), 0)
        _wait(f"{stack.lims}/_admin/stats", sims)  # up before the gateway, which reads the LIMS's SDL as it starts
        gateway = subprocess.Popen([LOTGRAPH, "--log-level", "warning", "run", "--port", str(port)], env=env, **quiet)
        processes.insert(0, gateway)
        stack.gateway_pid = gateway.pid
        _wait(f"{stack.gateway}/healthz", gateway)
        for system in EVENT_SOURCES:  # the plant pushes its events to the gateway, as in the demo
            target = {"webhook": {"url": f"{stack.gateway}/webhooks/{system}", "secret": WEBHOOK_SECRET}}
            httpx2.put(f"{stack.sim(system)}/_admin/events", json=target).raise_for_status()
        yield stack
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait(timeout=30)
