"""How the gateway authenticates to an upstream: an OAuth2 client-credentials token or an API key.

Both are `httpx2.Auth`, so a connector only hands `upstream_auth(...)` to its client. The OAuth2 token is
fetched once (with authlib's httpx2 client), shared by every request, renewed shortly before it expires,
and renewed once more if the upstream answers 401 anyway (it restarted, or revoked the token).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, Generator

import httpx2

from gateway.errors import UpstreamRejected, UpstreamUnavailable
from gateway.settings import UpstreamAuth

RENEW_EARLY_SECONDS = 30.0
TOKEN_TIMEOUT = httpx2.Timeout(10.0, connect=2.0)


class ClientCredentials(httpx2.Auth):
    """Bearer tokens from the source's token endpoint; one fetch at a time, however many requests wait.

    A 401 with a token we hold gets one retry with a new token, unless that token is itself fresh: an
    upstream that refuses every token must not turn each request into a token fetch.
    """

    refetch_interval = 10.0  # seconds a token must have lived before a 401 makes us fetch another

    def __init__(self, source: str, auth: UpstreamAuth) -> None:
        assert auth.token_url and auth.client_id and auth.client_secret  # UpstreamAuth insists for oauth2
        self.source = source
        self.token_url = str(auth.token_url)
        self.client_id = auth.client_id
        self.client_secret = auth.client_secret
        self.scope = auth.scope
        self.lock = asyncio.Lock()
        self.token: str | None = None
        self.fetched_at = self.renew_at = -math.inf

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        raise RuntimeError("upstream OAuth2 credentials work with async clients only")

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        token = await self.current()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            renewed = await self.current(rejected=token)
            if renewed != token:
                request.headers["Authorization"] = f"Bearer {renewed}"
                yield request

    async def current(self, rejected: str | None = None) -> str:
        """The token to send: the one we hold while it is valid, else (or if it was `rejected`) a new one."""
        async with self.lock:
            now = time.monotonic()
            refused = self.token == rejected and now - self.fetched_at >= self.refetch_interval
            if self.token is None or now >= self.renew_at or refused:
                self.token, lifetime = await self.fetch()
                self.fetched_at = time.monotonic()
                # Renew up to 30 s early, but never so early that a short-lived token is renewed on every request.
                self.renew_at = self.fetched_at + lifetime - min(RENEW_EARLY_SECONDS, lifetime / 4)
            return self.token

    async def fetch(self) -> tuple[str, float]:
        """A fresh access token and its lifetime in seconds (infinite if the endpoint does not say)."""
        # Imported here: only oauth2 sources need authlib.
        from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

        name = self.source.upper()
        async with AsyncOAuth2Client(
            self.client_id, self.client_secret.get_secret_value(), scope=self.scope, timeout=TOKEN_TIMEOUT
        ) as oauth:
            try:
                token = await oauth.fetch_token(self.token_url, grant_type="client_credentials")
            except OAuthError as exc:
                raise UpstreamRejected(
                    f"{name} refused the gateway's client credentials: {exc.error}", source=self.source
                ) from exc
            except (httpx2.HTTPStatusError, ValueError) as exc:  # transport errors are the connector's to map
                raise UpstreamUnavailable(
                    f"{name}'s token endpoint gave no usable answer: {exc}", source=self.source
                ) from exc
        access_token = token.get("access_token")
        if not isinstance(access_token, str):
            raise UpstreamUnavailable(f"{name}'s token endpoint answered without an access token", source=self.source)
        try:
            return access_token, float(token["expires_in"])
        except (KeyError, TypeError, ValueError):
            return access_token, math.inf


class ApiKey(httpx2.Auth):
    """A static key in a header of the upstream's choosing."""

    def __init__(self, auth: UpstreamAuth) -> None:
        assert auth.api_key  # UpstreamAuth insists for api_key
        self.header = auth.api_key_header
        self.key = auth.api_key

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers[self.header] = self.key.get_secret_value()
        yield request


def upstream_auth(source: str, auth: UpstreamAuth) -> httpx2.Auth | None:
    """What to hand a source's `httpx2.AsyncClient(auth=...)`; None when the upstream wants no credentials."""
    if auth.kind == "oauth2":
        return ClientCredentials(source, auth)
    if auth.kind == "api_key":
        return ApiKey(auth)
    return None
