"""Simulators that demand credentials: the token endpoint, bearer tokens, API keys, and what stays open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx2
import pytest
from starlette.applications import Starlette

from simulators import Credentials, Dataset, erp, mes, qms, wms

CREDENTIALS = Credentials(client_id="lotgraph", client_secret="s3cret", api_key="k3y", token_ttl_seconds=1)
READS = {
    "erp": "/sap/opu/odata/sap/API_PLANT_SRV/A_Plant",
    "qms": "/api/v1/lots?limit=1",
    "wms": "/v1/stock?lots=B0",
    "mes": "/api/lots?ids=B0",
}
FACTORIES: dict[str, Callable[..., Starlette]] = {
    "erp": erp.create_app,
    "qms": qms.create_app,
    "wms": wms.create_app,
    "mes": mes.create_app,
}


@pytest.fixture(params=sorted(READS))
async def guarded(
    request: pytest.FixtureRequest, small: Dataset, connect: Callable[[Starlette], httpx2.AsyncClient]
) -> AsyncIterator[tuple[httpx2.AsyncClient, str]]:
    async with connect(FACTORIES[request.param](small, credentials=CREDENTIALS)) as client:
        yield client, READS[request.param]


async def token(client: httpx2.AsyncClient, **form: str) -> httpx2.Response:
    return await client.post("/oauth/token", data={"grant_type": "client_credentials", **form})


async def test_anonymous_requests_are_refused_with_a_reason(guarded: tuple[httpx2.AsyncClient, str]) -> None:
    client, read = guarded
    response = await client.get(read)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "credentials required" in response.text


async def test_a_token_from_the_endpoint_opens_every_route(guarded: tuple[httpx2.AsyncClient, str]) -> None:
    client, read = guarded
    issued = await token(client, client_id="lotgraph", client_secret="s3cret")
    assert issued.status_code == 200
    body = issued.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 1
    response = await client.get(read, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert response.status_code == 200, response.text
    stats = (await client.get("/_admin/stats")).json()["by_endpoint"]
    assert stats["POST /oauth/token"] == 1


async def test_basic_client_authentication_wrong_secrets_and_grants(
    small: Dataset, connect: Callable[[Starlette], httpx2.AsyncClient]
) -> None:
    async with connect(qms.create_app(small, credentials=CREDENTIALS)) as client:
        grant = {"grant_type": "client_credentials"}
        assert (await client.post("/oauth/token", data=grant, auth=("lotgraph", "s3cret"))).status_code == 200
        wrong = await token(client, client_id="lotgraph", client_secret="guess")
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        other = await client.post("/oauth/token", data={"grant_type": "password"}, auth=("lotgraph", "s3cret"))
        assert other.status_code == 400 and other.json()["error"] == "unsupported_grant_type"


async def test_tokens_expire_and_can_be_revoked(
    small: Dataset, connect: Callable[[Starlette], httpx2.AsyncClient]
) -> None:
    async with connect(wms.create_app(small, credentials=CREDENTIALS)) as client:
        access = (await token(client, client_id="lotgraph", client_secret="s3cret")).json()["access_token"]
        headers = {"Authorization": f"Bearer {access}"}
        assert (await client.get(READS["wms"], headers=headers)).status_code == 200
        await asyncio.sleep(1.1)
        expired = await client.get(READS["wms"], headers=headers)
        assert expired.status_code == 401 and "expired" in expired.text

        fresh = (await token(client, client_id="lotgraph", client_secret="s3cret")).json()["access_token"]
        assert (await client.delete("/_admin/tokens")).status_code == 204
        revoked = await client.get(READS["wms"], headers={"Authorization": f"Bearer {fresh}"})
        assert revoked.status_code == 401 and "revoked" in revoked.text


async def test_api_key(guarded: tuple[httpx2.AsyncClient, str]) -> None:
    client, read = guarded
    assert (await client.get(read, headers={"X-API-Key": "k3y"})).status_code == 200
    assert (await client.get(read, headers={"X-API-Key": "nope"})).status_code == 401


async def test_admin_routes_stay_open_and_nothing_is_required_by_default(
    guarded: tuple[httpx2.AsyncClient, str], mes_client: httpx2.AsyncClient
) -> None:
    client, _ = guarded
    assert (await client.get("/_admin/stats")).status_code == 200
    assert (await mes_client.get(READS["mes"])).status_code == 200
    assert (await mes_client.post("/oauth/token", data={"grant_type": "client_credentials"})).status_code != 200
