"""`create_app(settings)`: the gateway as one Starlette application.

Routes: `/graphql` (queries and mutations over HTTP; subscriptions over WebSocket or SSE; GraphiQL in
development, its assets under `/graphql/assets/`), `/webhooks/{source}` (plant events), `/healthz` (process
alive), `/readyz` (ready to serve).
Upstream connection pools open with the application's lifespan and close with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.starlette import StarletteInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import __version__, correlation
from gateway.endpoint import GraphQLEndpoint
from gateway.events.webhooks import WebhookEndpoint
from gateway.federation.supergraph import federate
from gateway.graphiql import ASSETS_PATH, assets_app
from gateway.limits import BodySizeLimit
from gateway.resilience import BreakerState
from gateway.runtime import Runtime
from gateway.settings import Mode, Settings
from gateway.telemetry import ConnectionSpans
from gateway.trusted import TrustedDocuments
from gateway.workflows.registry import install as install_workflows
from schema import build_schema


class CorrelationMiddleware:
    """Adopt the caller's `X-Correlation-ID` (or mint one), expose it to the request, echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        cid = correlation.accept_or_new(headers.get(correlation.HEADER.lower().encode(), b"").decode("latin-1"))
        token = correlation.current.set(cid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (correlation.HEADER.lower().encode(), cid.encode())]
            await send(message)

        try:  # a WebSocket's messages go straight through: none of them is an HTTP response start
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
        finally:
            correlation.current.reset(token)


BREAKER_LEVEL = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    runtime = Runtime.create(settings)
    install_workflows(runtime)
    trusted = TrustedDocuments(settings.trusted_documents)
    production = settings.mode is Mode.PRODUCTION
    schema = build_schema(
        introspection=settings.introspection_enabled, limits=settings.limits, trusted=trusted, mask_errors=production
    )
    federate(schema, settings.subgraphs, router_directives=settings.router_directives)
    graphql = GraphQLEndpoint(schema, runtime, trusted)

    webhooks = WebhookEndpoint(runtime.events, settings.events.webhook_secrets)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await runtime.start()
            yield
        finally:
            await runtime.aclose()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> JSONResponse:
        """Ready when the store answers; each source's breaker and the event bus are shown (a failing one
        degrades, not blocks: queries still work, and webhook senders retry)."""
        connectors = runtime.upstream.connectors
        sources = [
            {"name": c.name, "breaker": c.guarded.breaker.state.value}
            for c in (connectors.erp, connectors.qms, connectors.wms, connectors.mes)
        ]
        try:
            await runtime.opened_store.ping()
            store = "ok"
        except Exception as exc:  # any failure to reach the store means: do not route traffic here
            store = f"unavailable: {exc.__class__.__name__}"
        try:
            await runtime.events.bus.ping()
            bus = "ok"
        except Exception as exc:  # shown, not fatal: see the docstring
            bus = f"unavailable: {exc.__class__.__name__}"
        body = {
            "status": "ready" if store == "ok" else "not ready",
            "store": store,
            "bus": bus,
            "feeds": runtime.feed_status(),
            "sources": sources,
            "subgraphs": [
                {"name": name, "breaker": client.connector.guarded.breaker.state.value}
                for name, client in runtime.subgraphs.items()
            ],
            "contracts": sorted(runtime.upstream.in_use()),
        }
        return JSONResponse(body, status_code=200 if store == "ok" else 503)

    async def metrics(request: Request) -> Response:
        """Prometheus exposition; gauges read from live state are refreshed at scrape time."""
        connectors = runtime.upstream.connectors
        for connector in (connectors.erp, connectors.qms, connectors.wms, connectors.mes):
            state = connector.guarded.breaker.state
            runtime.metrics.breaker.labels(connector.name).set(BREAKER_LEVEL[state])
        await runtime.operations.kpis.refresh()
        store = runtime.opened_store
        runtime.metrics.inbox_pending.set(await store.inbox.count_pending())
        for kind, count in (await store.exceptions.open_by_kind()).items():
            runtime.metrics.exceptions_open.labels(kind.value).set(count)
        undelivered = await store.outbox.undelivered_by_target()
        for target in {*settings.notifications.targets, *undelivered}:  # configured names only: bounded
            runtime.metrics.notifications_undelivered.labels(target).set(undelivered.get(target, 0))
        await runtime.reconciliation.refresh_metrics()
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # GraphiQL's own files, only where GraphiQL is served: an air-gapped plant has no CDN to load them from.
    ide = [Mount(ASSETS_PATH, assets_app(), name="graphiql-assets")] if settings.graphiql_enabled else []
    app = Starlette(
        routes=[
            *ide,
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/webhooks/{source}", webhooks.receive, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        middleware=[
            Middleware(CorrelationMiddleware),
            Middleware(BodySizeLimit, max_bytes=settings.limits.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    StarletteInstrumentor.instrument_app(app)
    for middleware in app.user_middleware:
        if middleware.cls is OpenTelemetryMiddleware:
            # One span per request or connection, not one more per ASGI message: a WebSocket carrying events
            # would otherwise start a span for every message, the largest cost of delivering an event.
            middleware.cls = ConnectionSpans
            middleware.kwargs["exclude_spans"] = ["receive", "send"]
    return app
