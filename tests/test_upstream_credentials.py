"""The gateway authenticating to upstreams that demand it: OAuth2 client credentials and API keys, over loopback.

The upstreams are QMS simulators requiring credentials; their `/_admin/stats` show how often the gateway
asked for a token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from pydantic import ValidationError

from gateway.errors import UpstreamRejected
from gateway.servers import ServerGroup
from gateway.settings import Settings, SourceSettings, UpstreamAuth
from gateway.sources.connector import SourceConnector
from gateway.sources.credentials import ClientCredentials
from simulators import Credentials, generate, qms

LOTS = "/api/v1/lots"
TOKEN_REQUESTS = "POST /oauth/token"


@dataclass
class Upstream:
    url: str

    def admin(self, method: str, path: str) -> httpx2.Response:
        response = httpx2.request(method, f"{self.url}/_admin/{path}", timeout=10)
        response.raise_for_status()
        return response

    def served(self, endpoint: str) -> int:
        return self.admin("GET", "stats").json()["by_endpoint"].get(endpoint, 0)

    def oauth2(self, secret: str = "s3cret") -> SourceSettings:
        auth = UpstreamAuth(
            kind="oauth2", token_url=f"{self.url}/oauth/token", client_id="lotgraph", client_secret=secret
        )
        return SourceSettings(url=self.url, auth=auth)


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    """`steady` issues hour-long tokens and takes an API key too; `brief` issues two-second tokens."""
    dataset = generate(seed=7, lots=300)
    group = ServerGroup()
    steady = group.add("steady", qms.create_app(dataset, credentials=Credentials(
        client_id="lotgraph", client_secret="s3cret", api_key="k3y", api_key_header="X-Plant-Key"
    )))  # fmt: skip
    brief = group.add("brief", qms.create_app(dataset, credentials=Credentials(
        client_id="lotgraph", client_secret="s3cret", token_ttl_seconds=2
    )))  # fmt: skip
    with group.running_in_thread():
        yield {"steady": Upstream(steady.url), "brief": Upstream(brief.url)}


@pytest.fixture
def steady(upstreams: dict[str, Upstream]) -> Iterator[Upstream]:
    upstream = upstreams["steady"]
    upstream.admin("DELETE", "stats")
    yield upstream
    upstream.admin("DELETE", "tokens")


async def fetch_lots(connector: SourceConnector) -> dict[str, Any]:
    return (await connector.get(LOTS, limit=2)).json()


async def test_anonymous_requests_are_refused(steady: Upstream) -> None:
    connector = SourceConnector("qms", SourceSettings(url=steady.url))
    try:
        with pytest.raises(UpstreamRejected) as refused:
            await fetch_lots(connector)
    finally:
        await connector.aclose()
    assert refused.value.extensions == {"code": "UPSTREAM_REJECTED", "source": "qms", "status": 401}


async def test_client_credentials_fetch_one_token_for_many_requests(steady: Upstream) -> None:
    connector = SourceConnector("qms", steady.oauth2())
    try:
        answers = await asyncio.gather(*(fetch_lots(connector) for _ in range(5)))
        answers.append(await fetch_lots(connector))
    finally:
        await connector.aclose()
    assert all(len(answer["items"]) == 2 for answer in answers)
    assert steady.served(TOKEN_REQUESTS) == 1, "concurrent requests share one token fetch"
    assert steady.served(f"GET {LOTS}") == 6


async def test_an_expiring_token_is_renewed(upstreams: dict[str, Upstream]) -> None:
    brief = upstreams["brief"]
    brief.admin("DELETE", "stats")
    connector = SourceConnector("qms", brief.oauth2())
    try:
        await fetch_lots(connector)
        await fetch_lots(connector)
        assert brief.served(TOKEN_REQUESTS) == 1
        await asyncio.sleep(2.1)
        await fetch_lots(connector)
    finally:
        await connector.aclose()
    assert brief.served(TOKEN_REQUESTS) == 2
    assert brief.served(f"GET {LOTS}") == 3, "renewed before use, so no request was refused"


async def test_a_revoked_token_is_replaced_once_but_never_in_a_loop(steady: Upstream) -> None:
    connector = SourceConnector("qms", steady.oauth2())
    try:
        await fetch_lots(connector)
        steady.admin("DELETE", "tokens")  # the upstream restarted and forgot its tokens
        with pytest.raises(UpstreamRejected):
            await fetch_lots(connector)  # the token is too young to blame: no new fetch
        assert steady.served(TOKEN_REQUESTS) == 1

        auth = connector.client.auth
        assert isinstance(auth, ClientCredentials)
        auth.refetch_interval = 0.0  # as if the token had lived long enough
        assert len((await fetch_lots(connector))["items"]) == 2
    finally:
        await connector.aclose()
    assert steady.served(TOKEN_REQUESTS) == 2
    assert steady.served(f"GET {LOTS}") == 4, "one refused try, then the retry with the new token"


async def test_a_wrong_secret_is_an_upstream_rejection(steady: Upstream) -> None:
    connector = SourceConnector("qms", steady.oauth2(secret="guess"))
    try:
        with pytest.raises(UpstreamRejected) as refused:
            await fetch_lots(connector)
    finally:
        await connector.aclose()
    assert refused.value.code == "UPSTREAM_REJECTED"
    assert refused.value.source == "qms"
    assert "invalid_client" in str(refused.value)
    assert steady.served(f"GET {LOTS}") == 0, "nothing is sent without a token"


async def test_api_key(steady: Upstream) -> None:
    auth = UpstreamAuth(kind="api_key", api_key="k3y", api_key_header="X-Plant-Key")
    connector = SourceConnector("qms", SourceSettings(url=steady.url, auth=auth))
    try:
        assert len((await fetch_lots(connector))["items"]) == 2
    finally:
        await connector.aclose()
    assert steady.served(TOKEN_REQUESTS) == 0


def test_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOTGRAPH_SOURCES__ERP__AUTH__KIND", "oauth2")
    monkeypatch.setenv("LOTGRAPH_SOURCES__ERP__AUTH__TOKEN_URL", "https://idp.plant.example/oauth/token")
    monkeypatch.setenv("LOTGRAPH_SOURCES__ERP__AUTH__CLIENT_ID", "lotgraph")
    monkeypatch.setenv("LOTGRAPH_SOURCES__ERP__AUTH__CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("LOTGRAPH_SOURCES__WMS__AUTH__KIND", "api_key")
    monkeypatch.setenv("LOTGRAPH_SOURCES__WMS__AUTH__API_KEY", "k3y")
    sources = Settings().sources
    assert sources.erp.auth.kind == "oauth2" and sources.erp.auth.client_secret is not None
    assert sources.erp.auth.client_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(sources.erp)
    assert sources.wms.auth.kind == "api_key" and sources.wms.version == 2, "defaults survive"
    assert sources.qms.auth.kind == "none"


def test_incomplete_credentials_are_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="token_url, client_secret"):
        UpstreamAuth(kind="oauth2", client_id="lotgraph")
    with pytest.raises(ValidationError, match="api_key"):
        UpstreamAuth(kind="api_key")
