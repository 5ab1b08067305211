"""Four independent plant-system simulators (ERP, QMS, WMS, MES) seeded from one deterministic dataset."""

from __future__ import annotations

from starlette.applications import Starlette

from simulators import erp, mes, qms, wms
from simulators.credentials import Credentials
from simulators.dataset import Dataset, generate

__all__ = ["Credentials", "Dataset", "create_apps", "generate"]


def create_apps(
    dataset: Dataset, erp_rate_limit_rps: float | None = None, credentials: Credentials | None = None
) -> dict[str, Starlette]:
    """One app per system, each with its own state derived from `dataset` (nothing mutable is shared);
    with `credentials`, each demands them (and issues its own tokens)."""
    return {
        "erp": erp.create_app(dataset, rate_limit_rps=erp_rate_limit_rps, credentials=credentials),
        "qms": qms.create_app(dataset, credentials=credentials),
        "wms": wms.create_app(dataset, credentials=credentials),
        "mes": mes.create_app(dataset, credentials=credentials),
    }
