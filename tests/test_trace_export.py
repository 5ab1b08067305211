"""Traces leave the process: a gateway configured for OTLP sends its spans to the collector it names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.demo import SIMULATORS
from gateway.servers import ServerGroup, free_block
from simulators import Dataset
from tests.conftest import Plant


def test_spans_are_exported_by_otlp(plant: Plant, dataset: Dataset, tmp_path: Path) -> None:
    received: list[bytes] = []

    async def collect(request: Request) -> Response:
        received.append(await request.body())
        return Response(status_code=200)

    collector = ServerGroup()
    listener = collector.add("collector", Starlette(routes=[Route("/v1/traces", collect, methods=["POST"])]))
    port = free_block(1)
    env = dict(
        os.environ,
        LOTGRAPH_MODE="development",
        LOTGRAPH_DATA_DIR=str(tmp_path),
        LOTGRAPH_AUTH__ALLOW_ANONYMOUS="true",
        LOTGRAPH_AUTH__ANONYMOUS_ROLES='["portal_reader"]',
        LOTGRAPH_TELEMETRY__TRACES="otlp",
        LOTGRAPH_TELEMETRY__OTLP_ENDPOINT=f"{listener.url}/v1/traces",
        **{f"LOTGRAPH_SOURCES__{s.upper()}__URL": plant.url(s) for s in SIMULATORS},
    )
    lotgraph = str(Path(sys.executable).parent / "lotgraph")
    with collector.running_in_thread():
        process = subprocess.Popen([lotgraph, "--log-level", "warning", "run", "--port", str(port)], env=env)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and process.poll() is None
                    time.sleep(0.1)
            query = {
                "query": "query($id: ID!) { lot(id: $id) { qualityStatus } }",
                "variables": {"id": next(iter(dataset.lots))},
            }
            assert httpx.post(f"http://127.0.0.1:{port}/graphql", json=query).json()["data"]["lot"]
        finally:
            process.send_signal(signal.SIGINT)  # a clean stop flushes the span batch
            process.wait(timeout=30)
    exported = b"".join(received)
    assert b"contract qms.lot_quality.read@1" in exported
    assert b"batch qms.lot_quality.read" in exported
