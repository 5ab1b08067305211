"""One remote subgraph over HTTP: its SDL at start-up, GraphQL requests (`_entities`) while serving.

Requests go through a `SourceConnector`, so a subgraph gets what every source gets: timeouts, credentials,
retries of reads, breaker and bulkhead, correlation id, and failures mapped to `UPSTREAM_*` codes naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2

from gateway.errors import UpstreamError, UpstreamRejected
from gateway.settings import SubgraphSettings
from gateway.sources.connector import SourceConnector
from gateway.sources.credentials import upstream_auth

SERVICE_SDL = "{ _service { sdl } }"


class FederationError(RuntimeError):
    """A subgraph cannot join lotgraph's schema: unreachable at start-up, or its SDL conflicts with lotgraph's."""


async def _read_sdl(name: str, settings: SubgraphSettings) -> str:
    headers = settings.header_values()
    timeout = httpx2.Timeout(settings.read_timeout, connect=settings.connect_timeout)
    try:
        async with httpx2.AsyncClient(auth=upstream_auth(name, settings.auth), timeout=timeout) as client:
            response = await client.post(str(settings.url), json={"query": SERVICE_SDL}, headers=headers)
            response.raise_for_status()
            return response.json()["data"]["_service"]["sdl"]
    except (httpx2.HTTPError, UpstreamError, ValueError, KeyError, TypeError) as exc:
        raise FederationError(
            f"subgraph {name} at {settings.url}: cannot read its SDL ({exc.__class__.__name__}: {exc})"
        ) from exc


def fetch_sdls(subgraphs: Mapping[str, SubgraphSettings]) -> dict[str, str]:
    """Every subgraph's `_service { sdl }`, read once at start-up, concurrently. Start-up may already run inside
    an event loop (the demo), so the reads get a loop of their own in a worker thread."""

    async def read_all() -> dict[str, str]:
        sdls = await asyncio.gather(*(_read_sdl(name, settings) for name, settings in subgraphs.items()))
        return dict(zip(subgraphs, sdls, strict=True))

    with ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(asyncio.run, read_all()).result()


class SubgraphClient:
    def __init__(self, name: str, settings: SubgraphSettings) -> None:
        self.name = name
        self.settings = settings
        self.connector = SourceConnector(name, settings)

    async def execute(self, query: str, variables: dict[str, Any], authorization: str | None) -> dict[str, Any]:
        """One GraphQL request; the answer's `data` and `errors` as sent (a read, so retried like one)."""
        headers = self.settings.header_values()
        if authorization and self.settings.forward_authorization:
            headers["Authorization"] = authorization
        response = await self.connector.request(
            "POST",
            str(self.settings.url),
            json={"query": query, "variables": variables},
            headers=headers,
            idempotent=True,
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not ("data" in answer or "errors" in answer):
            raise UpstreamRejected(f"subgraph {self.name} did not answer with a GraphQL response", source=self.name)
        return answer

    async def aclose(self) -> None:
        await self.connector.aclose()
