"""The `/graphql` endpoint: authentication, a context per request, HTTP statuses.

Every error's `extensions.code` and, in production, its masking are the schema's (`schema.Schema.process_errors`),
which every transport passes: HTTP, SSE and graphql-transport-ws answer alike.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from gateway import correlation
from gateway.auth import Unauthenticated
from gateway.cache import stale_reads
from gateway.errors import DocumentRefused
from gateway.graphiql import render_page
from gateway.limits import ClientRateLimits
from gateway.quota import RedisQuota
from gateway.runtime import Runtime
from gateway.sse import event_stream, wants_event_stream
from gateway.telemetry import current_traceparent
from gateway.trusted import TrustedDocuments
from resolvers.context import GatewayContext
from schema.renderings import Rendered, next_frames


def _close_reason(text: str) -> str:
    """WebSocket close reasons are at most 123 bytes."""
    return text.encode()[:123].decode(errors="ignore")


async def _close_at_expiry(websocket: WebSocket, expires_at: datetime) -> None:
    await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()))
    await websocket.close(4401, "token expired; reconnect with a fresh token and resume with `after`")


class WebSocketAdapter(ASGIWebSocketAdapter):
    """Closing twice is a no-op, so the gateway's own close code and reason (4401, 4403) reach the client
    rather than the generic one strawberry sends after it."""

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state is not WebSocketState.DISCONNECTED:
            await super().close(code, reason)


def _dumps(data: object) -> str:
    return orjson.dumps(data).decode()


def _next_message(operation_id: object, rendered: Rendered) -> str:
    """A `next` message carrying a shared rendering, its data's JSON encoded once for all its subscribers."""
    return f'{{"id":{_dumps(operation_id)},"type":"next","payload":{{"data":{rendered.encoded(_dumps)}}}}}'


class TransportWSHandler(BaseGraphQLTransportWSHandler[GatewayContext, None]):
    """strawberry's graphql-transport-ws handler, sending each operation's kept renderings itself
    (`schema/renderings.py`: `next_frames`)."""

    async def run_operation(self, operation: Operation[GatewayContext, None]) -> None:
        async def send_next(rendered: Rendered) -> None:
            if operation.completed:
                return
            try:
                await self.websocket.ws.send_text(_next_message(operation.id, rendered))
            except WebSocketDisconnect:
                raise asyncio.CancelledError from None  # the client left: end as strawberry ends its operations

        next_frames.set(send_next)  # this operation's task only
        await super().run_operation(operation)


class GraphQLEndpoint(GraphQL[GatewayContext, None]):
    websocket_adapter_class = WebSocketAdapter
    graphql_transport_ws_handler_class = TransportWSHandler

    def __init__(self, schema: Any, runtime: Runtime, trusted: TrustedDocuments) -> None:
        super().__init__(schema, graphql_ide="graphiql" if runtime.settings.graphiql_enabled else None)
        self.runtime = runtime
        self.settings = runtime.settings
        self.trusted = trusted
        limits = runtime.settings.limits
        shared = (
            RedisQuota(runtime.redis, "client", limits.client_rps, limits.client_burst)
            if runtime.redis is not None and limits.client_rps
            else None
        )
        self.client_limits = ClientRateLimits(limits.client_rps, limits.client_burst, shared)

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        """The request as strawberry parses it, with persisted documents resolved (the allowlist is the schema's)."""
        data = await super().parse_http_body(request)
        return data if isinstance(data, list) else self.trusted.resolve(data)

    def decode_json(self, data: str | bytes) -> object:
        """JSON from a body, a GET parameter or a WebSocket message, by orjson (strict RFC 8259: whatever cannot be
        read, nests past 1,024 levels, or is not Unicode, a lone surrogate "\\ud800" included, is its
        `JSONDecodeError`, a `json.JSONDecodeError`), which each transport answers as bad input (400, close 4400)."""
        return orjson.loads(data)

    def encode_json(self, data: object) -> str:
        """Every answer's JSON, by orjson (a tenth of the standard library's time for a 100-lot page). A subscription
        event's `next` message splices in its data's JSON, encoded once for every subscriber of the selection
        (`schema/renderings.py`)."""
        if isinstance(data, dict) and data.get("type") == "next":
            payload = data["payload"]
            if isinstance(rendered := payload.get("data"), Rendered) and len(payload) == 1:
                return _next_message(data["id"], rendered)
        return _dumps(data)

    def parse_json(self, data: str | bytes) -> Any:
        """A request body (or its GET `variables`, `extensions`) must be a JSON object, or a list of them."""
        value = super().parse_json(data)
        if not isinstance(value, dict | list):
            raise HTTPException(400, "a GraphQL request, its variables and extensions are JSON objects")
        return value

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> GatewayContext:
        stale_reads.set([])
        return GatewayContext(
            request=request,
            runtime=self.runtime,
            # A WebSocket names its caller in `connection_init`; until then it may do nothing (see on_ws_connect).
            principal=request.scope.get("lotgraph.principal") or self.settings.auth.anonymous_principal(),
            correlation_id=correlation.current.get() or correlation.accept_or_new(None),
        )

    async def on_ws_connect(self, context: GatewayContext) -> UnsetType | dict[str, object] | None:
        """Authenticate a graphql-transport-ws connection: the token from `connection_init` (`Authorization`
        or `token`), else the upgrade request's header. A refusal closes 4403 with the reason; an accepted
        connection is closed 4401 when its token expires."""
        websocket: WebSocket = context.request
        params = context.connection_params or {}
        token = params.get("Authorization") or params.get("authorization")
        if token is None and isinstance(params.get("token"), str):
            token = f"Bearer {params['token']}"
        try:
            principal = await self.runtime.authenticator.authenticate(token or websocket.headers.get("authorization"))
        except Unauthenticated as exc:
            await websocket.close(4403, _close_reason(f"unauthenticated: {exc.reason}"))
            raise ConnectionRejectionError() from exc
        caller = principal or self.settings.auth.anonymous_principal()
        context.act_as(caller)
        if caller.expires_at is not None:
            websocket.scope["lotgraph.expiry"] = asyncio.create_task(_close_at_expiry(websocket, caller.expires_at))
        return UNSET

    async def authenticate(self, request: Request) -> Response | None:
        """Put the caller on the request, or answer 401 saying why (before any GraphQL work is done)."""
        try:
            principal = await self.runtime.authenticator.authenticate(request.headers.get("authorization"))
        except Unauthenticated as exc:
            return JSONResponse(
                {"errors": [{"message": exc.reason, "extensions": exc.extensions}]},
                status_code=401,
                headers={"WWW-Authenticate": exc.www_authenticate},
            )
        caller = principal or self.runtime.settings.auth.anonymous_principal()
        if wait := await self.client_limits.wait_for(caller.sub):
            self.runtime.metrics.rate_limited.inc()
            body = {"errors": [{"message": f"too many requests from {caller.sub}; retry in {wait:.1f} s",
                                "extensions": {"code": "RATE_LIMITED", "retryAfter": round(wait, 3)}}]}  # fmt: skip
            return JSONResponse(body, status_code=429, headers={"Retry-After": str(max(1, round(wait)))})
        request.scope["lotgraph.principal"] = caller
        return None

    async def _run_within_budget(self, request: Request) -> Response:
        budget = self.settings.limits.operation_timeout
        try:
            async with asyncio.timeout(budget):
                response = await self.run(request)
            response.status_code = request.scope.get("lotgraph.status", response.status_code)
            return response
        except TimeoutError:
            # Any operation cut short stays recorded and is finished by the resumer, so nothing is lost.
            message = f"the operation did not finish within {budget} s"
            body = {"errors": [{"message": message, "extensions": {"code": "OPERATION_TIMEOUT", "limit": budget}}]}
            return JSONResponse(body, status_code=504)

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL with every asset served by the gateway (see gateway/graphiql)."""
        return render_page(self.settings)

    def _wants_ide(self, request: Request) -> bool:
        accept = request.headers.get("accept", "")
        return self.graphql_ide is not None and request.method == "GET" and "text/html" in accept

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        refusals = [e.original_error for e in result.errors or () if isinstance(e.original_error, DocumentRefused)]
        if result.data is None and refusals and len(refusals) == len(result.errors or ()):
            request.scope["lotgraph.status"] = refusals[0].status  # over HTTP, a refused document is a 403
        response: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            response["errors"] = [error.formatted for error in result.errors]  # coded and masked by the schema
        extensions = dict(result.extensions or {})
        if stale := stale_reads.get():
            extensions["stale"] = stale  # served from cache because the source failed: may be old
        if extensions:
            response["extensions"] = extensions
        return response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            try:
                return await super().__call__(scope, receive, send)
            finally:
                if (expiry := scope.get("lotgraph.expiry")) is not None:
                    expiry.cancel()
        request = Request(scope, receive)
        try:
            if self._wants_ide(request):  # the IDE page itself is static; its queries authenticate like any other
                request.scope["lotgraph.principal"] = self.settings.auth.anonymous_principal()
                denied = None
            else:
                denied = await self.authenticate(request)
            if denied is not None:
                response = denied
            elif wants_event_stream(request):
                response = await event_stream(self, request)
            else:
                response = await self._run_within_budget(request)
        except DocumentRefused as exc:
            response = JSONResponse({"errors": [{"message": str(exc), "extensions": exc.extensions}]}, exc.status)
        except HTTPException as exc:
            # A request that is not GraphQL at all still gets a GraphQL-shaped answer saying why.
            response = JSONResponse(
                {"errors": [{"message": exc.reason, "extensions": {"code": "BAD_REQUEST"}}]},
                status_code=exc.status_code,
            )
        if traceparent := current_traceparent():
            response.headers["traceparent"] = traceparent  # the trace to look up for this request
        await response(scope, receive, send)
