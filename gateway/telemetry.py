"""Traces and metrics: where a request or an operation spent its time, and what the gateway is doing.

Traces: an OpenTelemetry SDK tracer (W3C `traceparent` in and out: every upstream request carries its contract
call's, `gateway/sources/connector.py`), server spans from the Starlette instrumentation, and spans of our own per
contract call and operation step. Exported by OTLP/HTTP, to the console, or nowhere (`LOTGRAPH_TELEMETRY__TRACES`);
the trace id is also echoed to the client as `traceparent`.

Metrics: Prometheus series in a registry of this gateway's own, served on `/metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel
from strawberry.extensions import SchemaExtension

tracer = trace.get_tracer("lotgraph")
FLOW_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
CYCLE_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 8 * 3600, 86_400, 3 * 86_400, 7 * 86_400)


class TelemetrySettings(BaseModel):
    """`LOTGRAPH_TELEMETRY__TRACES=otlp` exports to OTEL_EXPORTER_OTLP_ENDPOINT (or `otlp_endpoint`)."""

    traces: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str | None = None


def setup_tracing(settings: TelemetrySettings) -> None:
    """Install an SDK tracer provider once per process (real trace ids even when nothing is exported)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    # Nothing exported: spans are not recorded at all (they still carry trace ids, echoed and sent upstream).
    sampler = ALWAYS_OFF if settings.traces == "none" else ParentBased(ALWAYS_ON)
    provider = TracerProvider(resource=Resource.create({"service.name": "lotgraph"}), sampler=sampler)
    if settings.traces == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif settings.traces == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    trace.set_tracer_provider(provider)


def current_traceparent() -> str | None:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class Metrics:
    """Every series the gateway exposes, in a registry of its own (several gateways can share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lotgraph_graphql_requests", "GraphQL requests by operation and outcome", ["operation", "outcome"],
            registry=r,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "lotgraph_graphql_request_seconds", "GraphQL request latency", ["operation"], registry=r
        )
        self.upstream = Counter(
            "lotgraph_upstream_requests", "Contract calls by source, contract and outcome",
            ["source", "contract", "outcome"], registry=r,
        )  # fmt: skip
        self.upstream_seconds = Histogram(
            "lotgraph_upstream_seconds", "Contract call latency", ["source", "contract"], registry=r
        )
        self.breaker = Gauge(
            "lotgraph_breaker_state", "Circuit breaker per source: 0 closed, 1 half-open, 2 open", ["source"],
            registry=r,
        )  # fmt: skip
        self.cache = Counter(
            "lotgraph_cache_lookups", "Read cache lookups by contract and result (hit, miss, stale)",
            ["contract", "result"], registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            "lotgraph_rate_limit_rejections", "Requests refused by a per-client rate limit", registry=r
        )
        self.operations_open = Gauge(
            "lotgraph_operations_open", "Operations needing attention (PENDING, BLOCKED, FAILED) by kind and state",
            ["kind", "state"], registry=r,
        )  # fmt: skip
        self.oldest_open_operation = Gauge(
            "lotgraph_oldest_open_operation_seconds", "Age of the oldest operation in each state needing attention "
            "(0 when none)", ["state"], registry=r,
        )  # fmt: skip
        self.inbox_pending = Gauge(
            "lotgraph_inbox_pending", "Inbound events whose reactions are not done yet (parked ones excluded)",
            registry=r,
        )  # fmt: skip
        self.exceptions_open = Gauge(
            "lotgraph_exceptions_open", "OPEN entries of the exception queue by kind (EVENT, STEP, NOTIFICATION)",
            ["kind"], registry=r,
        )  # fmt: skip
        self.notifications_undelivered = Gauge(
            "lotgraph_notifications_undelivered", "Notifications not delivered yet (pending or parked) by target",
            ["target"], registry=r,
        )  # fmt: skip
        self.notification_attempts = Counter(
            "lotgraph_notification_attempts",
            "Delivery tries by target and outcome (delivered, refused, timeout, unreachable)", ["target", "outcome"],
            registry=r,
        )  # fmt: skip
        # Counts reads, not lots: a lot read ten times counts ten. How many lots diverge is lotgraph_divergent_lots.
        self.disagreement_reads = Counter(
            "lotgraph_lot_disagreement_reads", "Reads of a lot's consistency that found its systems disagreeing",
            registry=r,
        )  # fmt: skip
        self.divergent_lots = Gauge(
            "lotgraph_divergent_lots", "Open divergent lots by plant, kind and age since first seen (<5m, <1h, <1d, "
            ">=1d), as reconciliation stored them", ["plant", "kind", "age"], registry=r,
        )  # fmt: skip
        self.divergence_seconds = Histogram(
            "lotgraph_divergence_seconds", "How long resolved divergences lasted, first seen to resolved", ["plant"],
            registry=r, buckets=(60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400),
        )  # fmt: skip
        self.sweep_lots = Counter(
            "lotgraph_reconciliation_lots_checked", "Lots the reconciliation sweep judged, by plant", ["plant"],
            registry=r,
        )  # fmt: skip
        self.sweep_progress = Gauge(
            "lotgraph_reconciliation_progress_ratio", "Share of the plant's lots the sweep under way has checked "
            "(on the replica sweeping)", ["plant"], registry=r,
        )  # fmt: skip
        self.sweep_seconds = Histogram(
            "lotgraph_reconciliation_sweep_seconds", "Duration of completed sweeps, from start to the last page",
            ["plant"], registry=r, buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
        )  # fmt: skip
        self.sweep_completed = Gauge(
            "lotgraph_reconciliation_last_completed_timestamp_seconds", "When the plant's last sweep completed",
            ["plant"], registry=r,
        )  # fmt: skip
        self.sweep_requests = Counter(
            "lotgraph_reconciliation_requests", "Upstream requests of the sweep by plant and source (retries "
            "included)", ["plant", "source"], registry=r,
        )  # fmt: skip
        self.events_ingested = Counter(
            "lotgraph_events_ingested", "Plant events by source, type and outcome (accepted, duplicate)",
            ["source", "type", "outcome"], registry=r,
        )  # fmt: skip
        self.events_rejected = Counter(
            "lotgraph_events_rejected", "Events refused at ingest by source and code", ["source", "code"], registry=r
        )
        self.event_delivery_seconds = Histogram(
            "lotgraph_event_delivery_seconds", "From ingest to a subscriber's transport", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        # The plant's quality flow (gateway/operations/kpis.py), in seconds: minutes in a demo, days in a plant.
        self.workflow_effect_seconds = Histogram(
            "lotgraph_workflow_effect_seconds", "From a plant event to its workflow's last step, by workflow",
            ["workflow"], registry=r, buckets=FLOW_BUCKETS,
        )  # fmt: skip
        self.hold_propagation_seconds = Histogram(
            "lotgraph_hold_propagation_seconds", "From a QMS hold decision to the last system in line, by workflow",
            ["workflow"], registry=r, buckets=FLOW_BUCKETS,
        )  # fmt: skip
        self.release_cycle_seconds = Histogram(
            "lotgraph_release_cycle_seconds", "From a lot's production completion (or supplier receipt) to its release",
            ["plant", "workflow"], registry=r, buckets=CYCLE_BUCKETS,
        )  # fmt: skip
        self.lots_awaiting_inspection = Gauge(
            "lotgraph_lots_awaiting_inspection", "Lots received by a workflow with no inspection outcome yet",
            ["plant"], registry=r,
        )  # fmt: skip
        self.oldest_awaiting_inspection = Gauge(
            "lotgraph_oldest_lot_awaiting_inspection_seconds", "Age of the oldest lot awaiting inspection",
            ["plant"], registry=r,
        )  # fmt: skip
        self.lots_awaiting_release = Gauge(
            "lotgraph_lots_awaiting_qualified_person", "Passed lots of regulated material waiting for a signed release",
            ["plant"], registry=r,
        )  # fmt: skip
        self.subscriptions = Gauge("lotgraph_subscriptions", "Live GraphQL subscriptions", registry=r)
        self.subscribers_cut_off = Counter(
            "lotgraph_subscribers_cut_off", "Subscriptions ended by the gateway, by reason", ["reason"], registry=r
        )

    def count_cache(self, contract: str, result: str, n: int) -> None:
        if n:
            self.cache.labels(contract, result).inc(n)

    @contextmanager
    def upstream_call(self, source: str, contract: str) -> Iterator[None]:
        started = time.perf_counter()
        outcome = "ok"
        try:
            with tracer.start_as_current_span(f"contract {contract}", attributes={"lotgraph.source": source}):
                yield
        except Exception as exc:
            outcome = getattr(exc, "code", exc.__class__.__name__)
            raise
        finally:
            self.upstream.labels(source, contract, outcome).inc()
            self.upstream_seconds.labels(source, contract).observe(time.perf_counter() - started)


class RequestMetrics(SchemaExtension):
    """Counts and times every GraphQL operation by name and outcome. A client chooses its operation's name, so
    only the names of registered trusted documents become labels (a bounded set the plant controls); any other
    named operation counts as `unregistered`, an unnamed one as `anonymous`."""

    labelled: frozenset[str] = frozenset()

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        metrics: Metrics = context.context.runtime.metrics
        name = context.operation_name
        label = "anonymous" if name is None else name if name in self.labelled else "unregistered"
        outcome = "error" if context.result and context.result.errors else "ok"
        metrics.requests.labels(label, outcome).inc()
        metrics.request_seconds.labels(label).observe(time.perf_counter() - started)


def request_metrics(labelled: frozenset[str]) -> type[RequestMetrics]:
    """The request metrics extension labelling these operation names (strawberry builds one per operation)."""
    return type("LabelledRequestMetrics", (RequestMetrics,), {"labelled": labelled})


class ConnectionSpans(OpenTelemetryMiddleware):
    """OpenTelemetry's ASGI middleware as the gateway runs it: one span per request or WebSocket connection. A
    WebSocket's messages pass straight through; the middleware would set the connection span's HTTP status on
    each one, per delivered event the largest cost after the socket write."""

    def _get_otel_send(
        self, server_span: Any, server_span_name: str, scope: Any, send: Any, duration_attrs: Any
    ) -> Any:
        if scope["type"] == "websocket":
            return send
        return super()._get_otel_send(server_span, server_span_name, scope, send, duration_attrs)
