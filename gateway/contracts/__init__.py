"""Versioned service contracts, one module per source; importing this package registers them all."""

from gateway.contracts import erp, mes, qms, wms
from gateway.contracts.base import REGISTRY, Contract, ContractStatus, contract_for

__all__ = ["REGISTRY", "Contract", "ContractStatus", "contract_for", "erp", "mes", "qms", "wms"]
