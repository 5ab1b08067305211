"""The gateway's one door to the plant: call an operation on a source through the contract version
configured for it, over that source's connector.

Resolvers and loaders name *what* they want (`"qms", "hold.by_lot"`); this module decides which
contract version and which pooled client serve it, and fails at start-up, not at request time,
when a configured version has no contract.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis

from gateway.cache import CacheSettings, ReadCache
from gateway.contracts import REGISTRY, Contract, contract_for
from gateway.settings import Sources
from gateway.sources import Connectors
from gateway.telemetry import Metrics


class Upstream:
    def __init__(
        self, sources: Sources, connectors: Connectors, metrics: Metrics | None = None,
        cache: CacheSettings | None = None, redis: Redis | None = None,
    ) -> None:  # fmt: skip
        self.connectors = connectors
        self.metrics = metrics or Metrics()
        self.cache = ReadCache(cache or CacheSettings(), self.metrics.count_cache, redis=redis)
        self.contracts: dict[tuple[str, str], Contract[Any, Any, Any]] = {}
        for contract in REGISTRY.values():
            version = getattr(sources, contract.source).version
            key = (contract.source, contract.operation)
            if min(c.version for c in REGISTRY.values() if (c.source, c.operation) == key) > version:
                continue  # an operation newer than the source's API (a v2 bulk write at a v1 WMS): not offered
            self.contracts[key] = contract_for(contract.source, contract.operation, version)

    @classmethod
    def open(
        cls, sources: Sources, metrics: Metrics | None = None, cache: CacheSettings | None = None,
        redis: Redis | None = None,
    ) -> Upstream:  # fmt: skip
        """With `redis`, the replicas share it: rate-limit quotas and the read cache."""
        return cls(sources, Connectors.open(sources, redis), metrics, cache, redis)

    async def aclose(self) -> None:
        await self.connectors.aclose()

    def contract(self, source: str, operation: str) -> Contract[Any, Any, Any]:
        return self.contracts[(source, operation)]

    def offers(self, source: str, operation: str) -> bool:
        """Whether the source's configured API version has the operation (bulk writes came with later versions)."""
        return (source, operation) in self.contracts

    async def call(self, source: str, operation: str, request: BaseModel) -> list[Any]:
        contract = self.contract(source, operation)
        with self.metrics.upstream_call(source, contract.name):
            return await contract.call(getattr(self.connectors, source), request)

    def in_use(self) -> set[str]:
        """Names of the contracts this gateway actually speaks."""
        return {contract.name for contract in self.contracts.values()}
