"""The admin API and fault injection every simulator shares.

`build_app` wraps a simulator's routes into a Starlette app with the `/_admin` routes and one pure ASGI
middleware that counts requests by route template, records correlation ids, enforces rate limits and
injects the configured fault. Keeping all of it here means the four simulators misbehave identically.
A simulator that emits events also gets `/_admin/events`, where its event target is set and its outbox shown.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from fnmatch import fnmatchcase
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simulators.credentials import Credentials, CredentialsMiddleware, TokenAuthority
from simulators.events import Emitter
from simulators.web import json_object, query_int, rest_error

ErrorBody = Callable[[int, str], dict[str, Any]]
LotState = Callable[[str], dict[str, Any] | None]

ADMIN_PREFIX = "/_admin"
HOLD_SECONDS = 60.0
RECORDED_REQUESTS = 10_000


class Fault(BaseModel):
    """What `POST /_admin/faults` configures; the defaults mean "behave normally"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: int = Field(0, ge=0)
    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    status: int = Field(500, ge=400, le=599)
    timeout: bool = False
    down: bool = False
    malformed: bool = False
    throttle_rps: float | None = Field(None, gt=0)
    paths: list[str] | None = None
    lots: list[str] | None = Field(None, min_length=1)  # `error_rate` refuses only these lots' items of bulk writes

    def applies(self, path: str) -> bool:
        return self.paths is None or any(fnmatchcase(path, glob) for glob in self.paths)


NO_FAULT = Fault()


class RateWindow:
    """Admits at most `rps` requests per second over a sliding window (at least one second long, so
    rates below 1/s still admit one request per 1/rps seconds)."""

    def __init__(self, rps: float) -> None:
        self.window = max(1.0, 1.0 / rps)
        self.capacity = max(1, math.floor(rps * self.window))
        self.admitted: deque[float] = deque()

    def retry_after(self, now: float) -> int | None:
        """None if the request is admitted, else the whole seconds until a slot frees up."""
        while self.admitted and now - self.admitted[0] >= self.window:
            self.admitted.popleft()
        if len(self.admitted) < self.capacity:
            self.admitted.append(now)
            return None
        return max(1, math.ceil(self.window - (now - self.admitted[0])))


class Admin:
    """One simulator's admin state: request statistics and log, the current fault, rate limits."""

    def __init__(self, lot_state: LotState, error_body: ErrorBody, rate_limit_rps: float | None) -> None:
        self.lot_state = lot_state
        self.error_body = error_body
        self.rate_limit = RateWindow(rate_limit_rps) if rate_limit_rps else None
        self.fault = NO_FAULT
        self.throttle: RateWindow | None = None
        self.changed: anyio.Event | None = None  # set when the fault changes, releasing held requests
        self.stats: Counter[str] = Counter()
        self.requests: deque[dict[str, str | None]] = deque(maxlen=RECORDED_REQUESTS)
        self.random = random.Random()

    def observe(self, scope: Scope, template: str) -> None:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        self.stats[f"{scope['method']} {template}"] += 1
        self.requests.append(
            {
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode("latin-1"),
                "correlation_id": headers.get("x-correlation-id"),
                "traceparent": headers.get("traceparent"),
            }
        )

    def fault_changed(self) -> anyio.Event:
        """An event set the next time the fault is replaced or cleared (created lazily, inside a loop)."""
        if self.changed is None:
            self.changed = anyio.Event()
        return self.changed

    def replace_fault(self, fault: Fault) -> None:
        self.fault = fault
        self.throttle = RateWindow(fault.throttle_rps) if fault.throttle_rps else None
        if self.changed is not None:
            self.changed.set()
            self.changed = None

    def refuses(self, path: str, lot: Any) -> int | None:
        """The status the current fault answers a bulk write's item about `lot` with, if it refuses it."""
        fault = self.fault
        if fault.lots and lot in fault.lots and fault.applies(path) and self.random.random() < fault.error_rate:
            return fault.status
        return None

    def routes(self) -> list[Route]:
        return [
            Route(f"{ADMIN_PREFIX}/stats", self.get_stats, methods=["GET"]),
            Route(f"{ADMIN_PREFIX}/stats", self.reset_stats, methods=["DELETE"]),
            Route(f"{ADMIN_PREFIX}/faults", self.get_fault, methods=["GET"]),
            Route(f"{ADMIN_PREFIX}/faults", self.set_fault, methods=["POST"]),
            Route(f"{ADMIN_PREFIX}/faults", self.clear_fault, methods=["DELETE"]),
            Route(f"{ADMIN_PREFIX}/requests", self.get_requests, methods=["GET"]),
            Route(f"{ADMIN_PREFIX}/lots/{{lot_id}}", self.get_lot, methods=["GET"]),
        ]

    async def get_stats(self, request: Request) -> Response:
        return JSONResponse({"total": self.stats.total(), "by_endpoint": dict(sorted(self.stats.items()))})

    async def reset_stats(self, request: Request) -> Response:
        self.stats.clear()
        return Response(status_code=204)

    async def get_fault(self, request: Request) -> Response:
        return JSONResponse(self.fault.model_dump())

    async def set_fault(self, request: Request) -> Response:
        try:
            fault = Fault.model_validate(await json_object(request))
        except ValidationError as exc:
            raise HTTPException(400, f"invalid fault: {exc.errors(include_url=False)}") from exc
        self.replace_fault(fault)
        return JSONResponse(fault.model_dump())

    async def clear_fault(self, request: Request) -> Response:
        self.replace_fault(NO_FAULT)
        return Response(status_code=204)

    async def get_requests(self, request: Request) -> Response:
        last = query_int(request, "last", 100)
        recorded = list(self.requests)
        return JSONResponse({"requests": recorded[-last:] if last else []})

    async def get_lot(self, request: Request) -> Response:
        state = self.lot_state(request.path_params["lot_id"])
        if state is None:
            raise HTTPException(404, f"lot {request.path_params['lot_id']} is unknown here")
        return JSONResponse(state)


class EventsAdmin:
    """`/_admin/events`: where a simulator's events go (PUT) and what became of them (GET)."""

    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter

    def routes(self) -> list[Route]:
        return [
            Route(f"{ADMIN_PREFIX}/events", self.get_events, methods=["GET"]),
            Route(f"{ADMIN_PREFIX}/events", self.set_target, methods=["PUT"]),
        ]

    async def get_events(self, request: Request) -> Response:
        return JSONResponse(self.emitter.stats())

    async def set_target(self, request: Request) -> Response:
        try:
            target = self.emitter.configure(await json_object(request))
        except ValidationError as exc:  # reported without the input, which may hold the secret
            errors = exc.errors(include_url=False, include_input=False)
            raise HTTPException(400, f"invalid event target: {errors}") from exc
        return JSONResponse({"target": target})

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Delivery stops with the app (it starts with the first event that has somewhere to go)."""
        yield
        await self.emitter.aclose()


def malform(value: Any) -> None:
    """In every list, replace the first non-`__` key of each object with `{"malformed": true}`, in place."""
    if isinstance(value, dict):
        for item in value.values():
            malform(item)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                key = next((k for k in item if not k.startswith("__")), None)
                if key is not None:
                    item[key] = {"malformed": True}
            malform(item)


class AdminMiddleware:
    """Counts, records and misbehaves for every non-admin request before the simulator sees it."""

    def __init__(self, app: ASGIApp, admin: Admin, routes: list[BaseRoute]) -> None:
        self.app = app
        self.admin = admin
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        admin = self.admin
        admin.observe(scope, self.template(scope))
        fault = admin.fault if admin.fault.applies(scope["path"]) else NO_FAULT
        if fault.down:
            await self.fail(scope, receive, send, 503, "service unavailable (injected)")
            return
        if fault.latency_ms:
            await anyio.sleep(fault.latency_ms / 1000)
        if fault.timeout:
            if await self.hold(receive):
                await self.fail(scope, receive, send, 504, "request timed out (injected)")
            return
        for window in (admin.throttle if fault.throttle_rps else None, admin.rate_limit):
            wait = window.retry_after(time.monotonic()) if window else None
            if wait is not None:
                await self.fail(scope, receive, send, 429, "too many requests", {"Retry-After": str(wait)})
                return
        if fault.error_rate and not fault.lots and admin.random.random() < fault.error_rate:
            await self.fail(scope, receive, send, fault.status, "injected error")
            return
        await self.app(scope, receive, self.malforming(send) if fault.malformed else send)

    def template(self, scope: Scope) -> str:
        """The route template (`/api/lots/{id}`) the request matches, for per-endpoint statistics."""
        partial = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return getattr(route, "path", scope["path"])
            if match is Match.PARTIAL and partial is None:
                partial = getattr(route, "path", None)
        return partial or scope["path"]

    async def fail(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        response = JSONResponse(self.admin.error_body(status, message), status_code=status, headers=headers)
        await response(scope, receive, send)

    async def hold(self, receive: Receive) -> bool:
        """Keep the request open for HOLD_SECONDS, or until the fault is changed or cleared; False if the
        client went away first. Clearing the fault (and cancellation) ends every hold at once, so a test
        cleaning up or a server shutting down never waits out the full minute."""
        released = self.admin.fault_changed()
        disconnected = False
        with anyio.move_on_after(HOLD_SECONDS):
            async with anyio.create_task_group() as group:

                async def watch_client() -> None:
                    nonlocal disconnected
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    disconnected = True
                    group.cancel_scope.cancel()

                group.start_soon(watch_client)
                await released.wait()
                group.cancel_scope.cancel()
        return not disconnected

    @staticmethod
    def malforming(send: Send) -> Send:
        """A `send` that buffers the response and rewrites a JSON body with `malform`."""
        start: Message = {}
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            if body and content_type.startswith(b"application/json"):
                document = json.loads(body)
                malform(document)
                body = json.dumps(document, separators=(",", ":")).encode()
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return rewrite


def build_app(
    routes: list[BaseRoute],
    lot_state: LotState,
    *,
    error_body: ErrorBody = rest_error,
    rate_limit_rps: float | None = None,
    middleware: Sequence[Middleware] = (),
    require_credentials: Credentials | None = None,
    emitter: Emitter | None = None,
) -> Starlette:
    """A simulator app: its own routes plus the shared admin API, faults and (optional) rate limit.
    `middleware` runs inside the admin layer, so faults and statistics apply to what it answers too.
    `require_credentials` adds `POST /oauth/token` and a 401 for every other request without credentials.
    `emitter` (the simulator's outbox) adds `/_admin/events` and stops delivering when the app shuts down."""
    admin = Admin(lot_state, error_body, rate_limit_rps)
    admin_routes = admin.routes()
    events = EventsAdmin(emitter) if emitter is not None else None
    if events is not None:
        admin_routes += events.routes()
    guard: list[Middleware] = []
    if require_credentials is not None:
        authority = TokenAuthority(require_credentials)
        admin_routes.append(Route(f"{ADMIN_PREFIX}/tokens", authority.revoke_all, methods=["DELETE"]))
        guard.append(
            Middleware(CredentialsMiddleware, authority=authority, error_body=error_body, open_prefix=ADMIN_PREFIX)
        )

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return JSONResponse(error_body(exc.status_code, exc.detail), exc.status_code, headers=exc.headers)

    app = Starlette(
        routes=[*admin_routes, *routes],
        middleware=[Middleware(AdminMiddleware, admin=admin, routes=routes), *guard, *middleware],
        exception_handlers={HTTPException: http_error},
        lifespan=events.lifespan if events is not None else None,
    )
    app.state.admin = admin
    if emitter is not None:
        app.state.events = emitter
    return app
