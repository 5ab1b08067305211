"""Client credentials a simulator can demand, as plant systems behind an API gateway do.

With `Credentials` configured, a simulator runs its own OAuth2 token endpoint (`POST /oauth/token`, client
credentials grant) and admits a request only with one of its unexpired tokens or the configured API key.
Tokens are opaque random strings the simulator remembers; `DELETE /_admin/tokens` forgets them all, as a
restarted upstream would.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_PATH = "/oauth/token"


class Credentials(BaseModel):
    """What a simulator requires of its clients; `token_ttl_seconds` is short in tests that watch a renewal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str
    client_secret: str
    api_key: str | None = None
    api_key_header: str = "X-API-Key"
    token_ttl_seconds: int = Field(3600, ge=1)


class TokenAuthority:
    """Issues tokens to the configured client and judges what each request presents."""

    def __init__(self, credentials: Credentials, clock: Callable[[], float] = time.monotonic) -> None:
        self.credentials = credentials
        self.clock = clock
        self.issued: dict[str, float] = {}  # token -> when it expires

    async def token_endpoint(self, request: Request) -> Response:
        """RFC 6749 section 4.4: client credentials from HTTP Basic or the form body, errors as OAuth JSON."""
        form = dict(parse_qsl((await request.body()).decode("latin-1")))
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "only the client_credentials grant is offered")
        client_id, client_secret = _basic(request.headers.get("authorization")) or (
            form.get("client_id"),
            form.get("client_secret"),
        )
        if not (_same(client_id, self.credentials.client_id) and _same(client_secret, self.credentials.client_secret)):
            return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
        now = self.clock()
        self.issued = {token: expiry for token, expiry in self.issued.items() if expiry > now}
        token = secrets.token_urlsafe(32)
        ttl = self.credentials.token_ttl_seconds
        self.issued[token] = now + ttl
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": ttl}, headers={"Cache-Control": "no-store"}
        )

    def refusal(self, headers: dict[str, str]) -> str | None:
        """Why a request with these (lower-case) headers may not pass; None if it may."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            expiry = self.issued.get(token.strip())
            if expiry is None:
                return "the bearer token was not issued here (or was revoked)"
            return None if expiry > self.clock() else "the bearer token has expired"
        api_key = self.credentials.api_key
        header = self.credentials.api_key_header.lower()
        if api_key is not None and header in headers:
            return None if _same(headers[header], api_key) else f"the {self.credentials.api_key_header} is wrong"
        alternative = f" or an {self.credentials.api_key_header} header" if api_key is not None else ""
        return f"credentials required: a bearer token from POST {TOKEN_PATH}{alternative}"

    async def revoke_all(self, request: Request) -> Response:
        self.issued.clear()
        return Response(status_code=204)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _basic(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(encoded.strip(), validate=True).decode("latin-1").partition(":")
    except (binascii.Error, ValueError):
        return None
    return client_id, secret


def _oauth_error(status: int, error: str, description: str) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="simulator"'} if status == 401 else None
    return JSONResponse({"error": error, "error_description": description}, status, headers=headers)


class CredentialsMiddleware:
    """Answers the token endpoint and turns away requests without valid credentials (401).

    It sits inside the admin layer, so token requests are counted and faults apply to them too; the
    simulator's own middleware (the ERP's CSRF check) never sees a token request.
    """

    def __init__(
        self,
        app: ASGIApp,
        authority: TokenAuthority,
        error_body: Callable[[int, str], dict[str, Any]],
        open_prefix: str,
    ) -> None:
        self.app = app
        self.authority = authority
        self.error_body = error_body
        self.open_prefix = open_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.open_prefix):
            await self.app(scope, receive, send)
            return
        if scope["path"] == TOKEN_PATH and scope["method"] == "POST":
            response = await self.authority.token_endpoint(Request(scope, receive))
            await response(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        reason = self.authority.refusal(headers)
        if reason is None:
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            self.error_body(401, reason), status_code=401, headers={"WWW-Authenticate": 'Bearer realm="simulator"'}
        )
        await response(scope, receive, send)
