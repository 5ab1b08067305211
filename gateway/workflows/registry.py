"""Which workflows (and notifications) a gateway runs, registered once as reactions of its event hub."""

from __future__ import annotations

from gateway.runtime import Runtime
from gateway.workflows.base import Workflow
from gateway.workflows.containment import Containment
from gateway.workflows.inspection import InspectionOutcome
from gateway.workflows.production import ProductionReceipt
from gateway.workflows.qms_holds import QmsHoldDecisions
from gateway.workflows.scrap import ScrapReport
from gateway.workflows.supplier_receipt import SupplierReceipt

WORKFLOWS: tuple[type[Workflow], ...] = (
    ProductionReceipt, SupplierReceipt, InspectionOutcome, QmsHoldDecisions, ScrapReport,
)  # fmt: skip


def install(runtime: Runtime) -> list[Workflow]:
    """Register the notifications (when targets are configured), containment and the plant's workflows (as far as
    the settings enable them) as event reactions. Notifications first: storing deliveries is quick, so a target
    hears of a failed inspection without waiting for the containment it triggers."""
    if runtime.settings.notifications.targets:
        runtime.events.react("notifications", runtime.notifications.enqueue)
    installed: list[Workflow] = []
    if runtime.settings.events.containment.enabled:
        installed.append(Containment(runtime))
    if runtime.settings.workflows.enabled:
        installed.extend(workflow(runtime) for workflow in WORKFLOWS)
    for workflow in installed:
        runtime.events.react(type(workflow).__module__.rsplit(".", 1)[1], workflow)
    return installed
