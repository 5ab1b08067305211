"""Four independent plant-system simulators (ERP, QMS, WMS, MES) seeded from one deterministic dataset."""

from __future__ import annotations

from starlette.applications import Starlette

from simulators import erp, mes, qms, wms
from simulators.dataset import Dataset, generate

__all__ = ["Dataset", "create_apps", "generate"]


def create_apps(dataset: Dataset, erp_rate_limit_rps: float | None = None) -> dict[str, Starlette]:
    """One app per system, each with its own state derived from `dataset` (nothing mutable is shared)."""
    return {
        "erp": erp.create_app(dataset, rate_limit_rps=erp_rate_limit_rps),
        "qms": qms.create_app(dataset),
        "wms": wms.create_app(dataset),
        "mes": mes.create_app(dataset),
    }
