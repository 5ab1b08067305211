"""Traces leave the process: a gateway configured for OTLP sends its spans to the collector it names."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.servers import ServerGroup
from simulators import Dataset
from tests.conftest import Plant, gateway_process


def test_spans_are_exported_by_otlp(plant: Plant, dataset: Dataset, tmp_path: Path) -> None:
    received: list[bytes] = []

    async def collect(request: Request) -> Response:
        received.append(await request.body())
        return Response(status_code=200)

    collector = ServerGroup()
    listener = collector.add("collector", Starlette(routes=[Route("/v1/traces", collect, methods=["POST"])]))
    with (
        collector.running_in_thread(),
        gateway_process(
            plant,
            tmp_path,
            stop=signal.SIGINT,  # a clean stop flushes the span batch
            TELEMETRY__TRACES="otlp",
            TELEMETRY__OTLP_ENDPOINT=f"{listener.url}/v1/traces",
            AUTH__ALLOW_ANONYMOUS="true",
            AUTH__ANONYMOUS_ROLES='["portal_reader"]',
        ) as running,
    ):
        running.wait_ready("/healthz")
        query = {
            "query": "query($id: ID!) { lot(id: $id) { qualityStatus } }",
            "variables": {"id": next(iter(dataset.lots))},
        }
        assert httpx2.post(f"{running.url}/graphql", json=query).json()["data"]["lot"]
    exported = b"".join(received)
    assert b"contract qms.lot_quality.read@1" in exported
    assert b"batch qms.lot_quality.read" in exported
