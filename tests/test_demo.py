"""`make run` from a fresh clone: `lotgraph demo` starts the plant and the gateway, every example query in
the README returns data, the production shift's events reach a subscriber, and Ctrl-C stops everything cleanly."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from httpx_sse import connect_sse

from gateway.servers import free_block

ROOT = Path(__file__).resolve().parent.parent


def readme_queries() -> list[str]:
    return re.findall(r"```graphql\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)


def _wait_healthy(url: str, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{url} not healthy after {timeout} s")


def _first_event(url: str) -> dict:
    """The first plant event the demo's production shift produces, as a subscriber over SSE sees it."""
    query = "subscription { qualityEvents { cursor type source lotId } }"
    with (
        httpx.Client(timeout=30) as client,
        connect_sse(client, "POST", url, json={"query": query}) as events,
    ):
        for sse in events.iter_sse():
            if sse.event == "next":
                return json.loads(sse.data)["data"]["qualityEvents"]
    raise AssertionError("the stream ended without an event")


def test_demo_serves_the_readme_examples_and_stops_on_ctrl_c() -> None:
    queries = readme_queries()
    assert len(queries) >= 3, "the README documents example queries"
    port = free_block(6)
    lotgraph = Path(sys.executable).parent / "lotgraph"
    process = subprocess.Popen(
        [str(lotgraph), "demo", "--port", str(port), "--shift-seconds", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
        for system_port in range(port + 1, port + 6):  # ERP, QMS, WMS, MES, LIMS
            assert httpx.get(f"http://127.0.0.1:{system_port}/_admin/stats").status_code == 200
        graphiql = httpx.get(f"http://127.0.0.1:{port}/graphql", headers={"accept": "text/html"})
        assert "graphiql" in graphiql.text.lower()
        assert "Bearer ey" in graphiql.text, "the demo pre-fills GraphiQL's Headers tab with a token"
        for query in queries:
            result = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=60).json()
            assert "errors" not in result, (query, result)
            assert all(value is not None for value in result["data"].values()), query
        event = _first_event(f"http://127.0.0.1:{port}/graphql")
        assert event["source"] in {"qms", "mes", "erp", "lotgraph"} and event["lotId"], event
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}/graphql" in output, "the banner prints the gateway URL"
