"""Each simulator's own state follows the lot's true quality status, except where the dataset says it diverged."""

from __future__ import annotations

from collections.abc import Callable

import httpx2
from starlette.applications import Starlette

from simulators import Dataset, create_apps

# true status -> (ERP stock type, WMS status, QMS status at P200, MES status)
VIEWS = {
    "RELEASED": ("01", "AVAILABLE", "Released", "RELEASED"),
    "IN_INSPECTION": ("02", "QUARANTINE", "Under inspection", "QC_PENDING"),
    "ON_HOLD": ("07", "BLOCKED", "Blocked", "HOLD"),
    "REJECTED": ("07", "BLOCKED", "Rejected", "REJECTED"),
}
SYSTEMS = ("erp", "wms", "qms", "mes")
QMS_P100 = {"20": "Released", "10": "Under inspection", "40": "Blocked", "30": "Rejected"}


def chunks(keys: list[str], size: int = 400) -> list[list[str]]:
    return [keys[n : n + size] for n in range(0, len(keys), size)]


async def observed(clients: dict[str, httpx2.AsyncClient], lots: list[str]) -> dict[str, dict[str, str]]:
    """What each system reports per lot, in each system's own vocabulary (QMS P100 codes mapped to labels)."""
    seen: dict[str, dict[str, str]] = {system: {} for system in SYSTEMS}
    for keys in chunks(lots):
        batch = ",".join(keys)
        odata = " or ".join(f"Batch eq '{key}'" for key in keys)
        stock = await clients["erp"].get(
            "/sap/opu/odata/sap/API_MATERIAL_STOCK_SRV/A_MatlStkInAcctMod", params={"$filter": odata}
        )
        seen["erp"].update({r["Batch"]: r["InventoryStockType"] for r in stock.json()["d"]["results"]})
        wms = await clients["wms"].get("/v1/stock", params={"lots": batch})
        seen["wms"].update({p["lot"]: p["status"] for p in wms.json()["stock"]})
        qms = await clients["qms"].get("/api/v1/lots", params={"ids": batch})
        seen["qms"].update({i["lot_id"]: QMS_P100.get(i["status"], i["status"]) for i in qms.json()["items"]})
        mes = await clients["mes"].get("/api/lots", params={"ids": batch})
        seen["mes"].update({lot["lot_id"]: lot["status"] for lot in mes.json()["lots"]})
    return seen


async def test_every_system_follows_the_true_status_except_diverged_lots(
    small: Dataset, connect: Callable[[Starlette], httpx2.AsyncClient]
) -> None:
    clients = {name: connect(app) for name, app in create_apps(small).items()}
    seen = await observed(clients, list(small.lots))
    for client in clients.values():
        await client.aclose()
    for lot in small.lots.values():
        expected = dict(zip(SYSTEMS, VIEWS[lot.quality_status], strict=True))
        diverged = {system for system, lot_id in small.stale if lot_id == lot.id}
        for system in SYSTEMS:
            if (system in ("erp", "wms") and lot.remaining == 0) or (system == "mes" and lot.tier == 0):
                assert lot.id not in seen[system], (system, lot.id)
            elif system in diverged:
                assert seen[system][lot.id] != expected[system], (system, lot.id, small.divergent[lot.id])
            else:
                assert seen[system][lot.id] == expected[system], (system, lot.id)
