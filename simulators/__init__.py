"""Four independent plant-system simulators (ERP, QMS, WMS, MES) seeded from one deterministic dataset, and a LIMS
that is a GraphQL subgraph of its own (started only when asked for)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from simulators import erp, lims, mes, qms, wms
from simulators.credentials import Credentials
from simulators.dataset import Dataset, generate

__all__ = ["Credentials", "Dataset", "create_apps", "generate"]

EMITTING = ("qms", "mes", "wms")  # the simulators that push events; ERP publishes a change feed


def create_apps(
    dataset: Dataset,
    erp_rate_limit_rps: float | None = None,
    credentials: Credentials | None = None,
    events: dict[str, dict[str, Any]] | None = None,
    with_lims: bool = False,
) -> dict[str, Starlette]:
    """One app per system, each with its own state derived from `dataset` (nothing mutable is shared, and no system
    calls another: a change reaches another system only when a client posts it there). With `credentials`, each
    demands them (and issues its own tokens). `events` sets where QMS, MES and WMS send their events, e.g.
    `{"qms": {"webhook": {"url": ..., "secret": ...}}, "mes": {"mqtt": {"url": ...}}}`. `with_lims` adds the LIMS
    subgraph as `apps["lims"]` (it reads the dataset only; it demands the same `credentials`)."""
    apps = {
        "erp": erp.create_app(dataset, rate_limit_rps=erp_rate_limit_rps, credentials=credentials),
        "qms": qms.create_app(dataset, credentials=credentials),
        "wms": wms.create_app(dataset, credentials=credentials),
        "mes": mes.create_app(dataset, credentials=credentials),
    }
    if with_lims:
        apps["lims"] = lims.create_app(dataset, credentials=credentials)
    for system, target in (events or {}).items():
        if system not in EMITTING:
            raise ValueError(f"{system} emits no events (only {', '.join(EMITTING)} do)")
        apps[system].state.events.configure(target)
    return apps
