"""Connectors to the plant's systems of record, one pooled client each."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.settings import Sources
from gateway.sources.connector import SourceConnector
from gateway.sources.erp import ErpConnector


@dataclass(frozen=True)
class Connectors:
    erp: ErpConnector
    qms: SourceConnector
    wms: SourceConnector
    mes: SourceConnector

    @classmethod
    def open(cls, sources: Sources) -> Connectors:
        return cls(
            erp=ErpConnector("erp", sources.erp),
            qms=SourceConnector("qms", sources.qms),
            wms=SourceConnector("wms", sources.wms),
            mes=SourceConnector("mes", sources.mes),
        )

    async def aclose(self) -> None:
        for connector in (self.erp, self.qms, self.wms, self.mes):
            await connector.aclose()
