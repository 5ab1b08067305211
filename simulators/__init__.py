"""Four independent plant-system simulators (ERP, QMS, WMS, MES) seeded from one deterministic dataset, and a LIMS
that is a GraphQL subgraph of its own (started only when asked for)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from simulators import erp, lims, mes, qms, wms
from simulators.credentials import Credentials
from simulators.dataset import Dataset, generate
from simulators.integration import Integration

__all__ = ["Credentials", "Dataset", "create_apps", "generate"]

EMITTING = ("qms", "mes")  # the simulators that push events; ERP publishes a change feed, WMS nothing


def create_apps(
    dataset: Dataset,
    erp_rate_limit_rps: float | None = None,
    credentials: Credentials | None = None,
    events: dict[str, dict[str, Any]] | None = None,
    with_lims: bool = False,
) -> dict[str, Starlette]:
    """One app per system, each with its own state derived from `dataset` (nothing mutable is shared), joined
    only by the plant's integration layer (a production completion in MES reaches ERP, QMS and WMS). With
    `credentials`, each demands them (and issues its own tokens). `events` sets where QMS and MES send their
    events, e.g. `{"qms": {"webhook": {"url": ..., "secret": ...}}, "mes": {"mqtt": {"url": ...}}}`. `with_lims` adds
    the LIMS subgraph as `apps["lims"]` (it reads the dataset only, so it needs no integration; it demands the same
    `credentials`)."""
    apps = {
        "erp": erp.create_app(dataset, rate_limit_rps=erp_rate_limit_rps, credentials=credentials),
        "qms": qms.create_app(dataset, credentials=credentials),
        "wms": wms.create_app(dataset, credentials=credentials),
        "mes": mes.create_app(dataset, credentials=credentials),
    }
    Integration(apps["erp"].state.erp, apps["qms"].state.qms, apps["wms"].state.wms, apps["mes"].state.mes)
    if with_lims:
        apps["lims"] = lims.create_app(dataset, credentials=credentials)
    for system, target in (events or {}).items():
        if system not in EMITTING:
            raise ValueError(f"{system} emits no events (only {', '.join(EMITTING)} do)")
        apps[system].state.events.configure(target)
    return apps
