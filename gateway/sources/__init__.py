"""Connectors to the plant's systems of record, one pooled client each."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.quota import RedisQuota
from gateway.settings import Sources, SourceSettings
from gateway.sources.connector import SourceConnector
from gateway.sources.erp import ErpConnector


@dataclass(frozen=True)
class Connectors:
    erp: ErpConnector
    qms: SourceConnector
    wms: SourceConnector
    mes: SourceConnector

    @classmethod
    def open(cls, sources: Sources, redis: Redis | None = None) -> Connectors:
        """One connector per source; with Redis, a source's rate limit is a quota shared by every replica."""

        def quota(settings: SourceSettings) -> RedisQuota | None:
            rate = settings.resilience.rate_limit_rps
            return RedisQuota(redis, "source", rate, settings.resilience.rate_limit_burst) if redis and rate else None

        return cls(
            erp=ErpConnector("erp", sources.erp, quota=quota(sources.erp)),
            qms=SourceConnector("qms", sources.qms, quota=quota(sources.qms)),
            wms=SourceConnector("wms", sources.wms, quota=quota(sources.wms)),
            mes=SourceConnector("mes", sources.mes, quota=quota(sources.mes)),
        )

    async def aclose(self) -> None:
        for connector in (self.erp, self.qms, self.wms, self.mes):
            await connector.aclose()
