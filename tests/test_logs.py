"""Log lines are JSON objects carrying the request's correlation and trace ids, and the gateway's own lines are not
drowned by a line per upstream request."""

from __future__ import annotations

import json
import logging

from gateway import correlation
from gateway.logs import JsonFormatter, configure
from gateway.settings import SourceSettings
from gateway.sources.connector import SourceConnector
from gateway.telemetry import TelemetrySettings, setup_tracing, tracer
from simulators import Dataset
from tests.conftest import Plant


def test_json_lines_carry_correlation_and_trace_ids() -> None:
    setup_tracing(TelemetrySettings())
    token = correlation.current.set("cid-77")
    try:
        with tracer.start_as_current_span("request") as span:
            record = logging.LogRecord("lotgraph.test", logging.WARNING, __file__, 1, "stuck %s", ("op-1",), None)
            line = json.loads(JsonFormatter().format(record))
            trace_id = f"{span.get_span_context().trace_id:032x}"
    finally:
        correlation.current.reset(token)
    assert line["message"] == "stuck op-1" and line["level"] == "WARNING" and line["logger"] == "lotgraph.test"
    assert line["correlation_id"] == "cid-77"
    assert line["trace_id"] == trace_id


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_info_logs_have_no_line_per_upstream_request(plant: Plant, dataset: Dataset) -> None:
    """`--log-level info` keeps the HTTP client's own line for every upstream request out (it names its logger
    after its package: `httpx2` now, `httpx` before), while the gateway's info lines stay in."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quieted = {name: logging.getLogger(name).level for name in ("httpx2", "alembic")}
    kept = _Kept()
    try:
        configure("info", json_lines=False)
        root.addHandler(kept)
        connector = SourceConnector("qms", SourceSettings(url=plant.url("qms")))
        try:
            await connector.get("/api/v1/lots", ids=next(iter(dataset.lots)))
        finally:
            await connector.aclose()
        logging.getLogger("lotgraph.test").info("the gateway's own line")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in quieted.items():
            logging.getLogger(name).setLevel(was)
    assert [r.getMessage() for r in kept.records if r.name == "lotgraph.test"] == ["the gateway's own line"]
    assert not [r.getMessage() for r in kept.records if r.name.startswith(("httpx", "httpcore"))]
