"""Log lines are JSON objects carrying the request's correlation and trace ids."""

from __future__ import annotations

import json
import logging

from gateway import correlation
from gateway.logs import JsonFormatter
from gateway.telemetry import TelemetrySettings, setup_tracing, tracer


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
