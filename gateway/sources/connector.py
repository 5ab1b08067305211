"""One pooled HTTP client per upstream system, and the translation of transport failures into gateway errors.

Connectors know how to reach a system and how it batches keys; they know nothing of its payloads:
validating and normalizing those is the contracts' job.

Requests go out on aiohttp's client (its connection pool, its HTTP parser, yarl's URLs) and come back as
`httpx.Response`s, the type the contracts read. httpx's own client cost more than aiohttp below it: building the URL
of a 100-key batch (its pure-Python URL parsing, three times over) took 220-420 us, a whole single-key GET 370 us of
CPU against aiohttp's 150 us. Upstream credentials stay `httpx.Auth` flows (`credentials.py`), driven here. Each
request carries the caller's correlation id and the W3C trace context of the contract call it belongs to
(`traceparent`), so a request can be followed into the plant's systems.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiohttp
import httpx
from opentelemetry.propagate import inject
from yarl import URL

from gateway import correlation
from gateway.errors import (
    BadUserInput,
    GatewayError,
    NotFound,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.quota import RedisQuota
from gateway.resilience import Guarded
from gateway.settings import SourceSettings
from gateway.sources.credentials import upstream_auth

MAX_URL_LENGTH = 65_536  # what httpx accepted: only a client's mistake (an id of 100,000 characters) is longer
KEEPALIVE_SECONDS = 5.0  # an idle pooled connection is closed after this (httpx's default, kept)


def chunked(keys: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


class SourceConnector:
    """HTTP access to one source system with its own connection pool and timeouts."""

    def __init__(self, name: str, settings: SourceSettings, quota: RedisQuota | None = None):
        self.name = name
        self.settings = settings
        self.root = str(settings.url).rstrip("/")  # a path is appended to the URL's own path, as httpx's base_url
        self.timeout = aiohttp.ClientTimeout(
            connect=settings.read_timeout, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        )
        self.auth = upstream_auth(name, settings.auth)
        self.guarded = Guarded(name, settings.resilience, quota)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The pool, opened on first use: an aiohttp session belongs to the event loop it was made in."""
        if self._session is None:
            pool = aiohttp.TCPConnector(
                limit=self.settings.max_connections, keepalive_timeout=KEEPALIVE_SECONDS, ssl=httpx.create_ssl_context()
            )
            # Cookies kept from any host, IPs too (an ERP's CSRF token may be bound to its session cookie); bodies
            # passed on as sent: `httpx.Response` decodes them by their Content-Encoding.
            self._session = aiohttp.ClientSession(
                connector=pool, timeout=self.timeout, cookie_jar=aiohttp.CookieJar(unsafe=True), auto_decompress=False
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self, method: str, path: str, *, check: bool = True, idempotent: bool | None = None,
        params: Mapping[str, Any] | None = None, json: Any = None, content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:  # fmt: skip
        """Send one request through the source's protections (budget, breaker, bulkhead, rate limit),
        retried only if `idempotent` (default: GET); map every failure onto a typed error (HTTP error
        statuses too, unless `check` is False: then the caller reads the status itself)."""
        retryable = method in ("GET", "HEAD") if idempotent is None else idempotent
        url = URL(path if "://" in path else self.root + path)
        if params:
            url = url.update_query(params)
        if len(str(url)) > MAX_URL_LENGTH:
            # Only what a client sent makes a URL too long: its mistake, not the source's, so it is refused before
            # the source's protections (breaker, retries) count it.
            raise BadUserInput(f"the request is too long to send to {self.name.upper()}")
        sent = dict(headers or {})
        if json is not None:
            content = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            sent.setdefault("Content-Type", "application/json")
        if correlation_id := correlation.current.get():
            sent[correlation.HEADER] = correlation_id
        inject(sent)  # the current span's trace context: the contract call this request is part of
        return await self.guarded.call(lambda: self._send(method, url, sent, content, check), idempotent=retryable)

    async def _send(
        self, method: str, url: URL, headers: dict[str, str], content: bytes | None, check: bool
    ) -> httpx.Response:
        try:
            response = await (self._authorized if self.auth else self._exchange)(method, url, headers, content)
        except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors too
            raise UpstreamTimeout(
                f"{self.name.upper()} did not answer {method} {url.path} in time", source=self.name
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"{self.name.upper()} is unreachable: {exc.__class__.__name__}", source=self.name
            ) from exc
        if check:
            self.raise_for_status(method, url.path, response)
        return response

    async def _exchange(
        self, method: str, url: URL, headers: Mapping[str, str], content: bytes | None
    ) -> httpx.Response:
        async with self._client().request(method, url, headers=headers, data=content, allow_redirects=False) as answer:
            body = await answer.read()
        return httpx.Response(answer.status, headers=answer.raw_headers, content=body)

    async def _authorized(
        self, method: str, url: URL, headers: dict[str, str], content: bytes | None
    ) -> httpx.Response:
        """The exchange as the source's `httpx.Auth` flow conducts it: credentials added, sent again if it says so
        (a renewed token after a 401)."""
        assert self.auth is not None
        flow = self.auth.async_auth_flow(httpx.Request(method, str(url), headers=headers, content=content))
        request = await flow.__anext__()
        while True:
            sent = {name: value for name, value in request.headers.items() if name not in ("host", "content-length")}
            response = await self._exchange(method, url, sent, content)
            try:
                request = await flow.asend(response)
            except StopAsyncIteration:
                return response

    def raise_for_status(self, method: str, path: str, response: httpx.Response) -> None:
        status = response.status_code
        if status >= 400:
            what = f"{self.name.upper()} answered {status} to {method} {path}"
            raise status_error(self.name, status, what, _retry_after(response))

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.request("GET", path, params=_drop_none(params))

    async def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, json=body, **kwargs)

    async def get_keyed(self, path: str, key_param: str, keys: Sequence[str], **params: Any) -> list[httpx.Response]:
        """GET a batch of keys as one comma-separated parameter, in as few requests as URL length allows."""
        chunks = chunked(keys, self.settings.max_batch_keys)
        return list(await asyncio.gather(*(self.get(path, **{key_param: ",".join(c)}, **params) for c in chunks)))


def status_error(source: str, status: int, what: str, retry_after: float | None = None) -> GatewayError:
    """The typed error of an HTTP error status from `source`, whether it answered a request with it or an item of a
    bulk request: 404 not found, 408/504 a timeout, 429/5xx unavailable (retried), any other refused."""
    if status == 404:
        return NotFound(what, source=source)
    if status in (408, 504):
        return UpstreamTimeout(what, source=source, status=status)
    if status == 429 or status >= 500:
        return UpstreamUnavailable(what, source=source, status=status, retryAfter=retry_after)
    return UpstreamRejected(what, source=source, status=status)


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (the HTTP-date form is rare from APIs and treated as absent)."""
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _drop_none(params: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}
