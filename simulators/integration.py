"""The plant's integration layer: how a production completion in MES reaches ERP, QMS and WMS.

Each simulator keeps its own state; this is the one place where a change in one system reaches the others, the
way a plant's middleware does it (in SAP terms: the confirmation's goods movements, the QM inspection lot, the
warehouse's goods receipt). `create_apps` wires it in process as a hook MES calls for every completion; ERP goes
first, so a completion it refuses (no unrestricted stock to issue) is recorded nowhere.
"""

from __future__ import annotations

from simulators.erp import Erp
from simulators.mes import Completion, Mes
from simulators.qms import Qms
from simulators.wms import Wms


class Integration:
    """Passes every production completion MES confirms on to ERP, QMS and WMS."""

    def __init__(self, erp: Erp, qms: Qms, wms: Wms, mes: Mes) -> None:
        self.erp, self.qms, self.wms = erp, qms, wms
        mes.completion_hooks.append(self.production_completed)

    def production_completed(self, c: Completion) -> None:
        """ERP posts the goods receipt (101, into quality inspection stock) and the component issues (261) and
        gets the batch and the completed order; QMS gets the lot in inspection with a production inspection lot;
        WMS gets a handling unit in quarantine."""
        issues = [(used.lot, used.quantity) for used in c.consumed]
        self.erp.record_production(c.order_id, c.lot, c.material, c.plant, c.quantity, c.completed_at, issues)
        self.qms.receive_production(c.lot, c.material.id, c.plant, c.completed_at)
        self.wms.receive(c.lot, c.material, c.plant, c.quantity, c.completed_at)
