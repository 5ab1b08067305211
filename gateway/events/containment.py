"""Automatic containment: an event that shows bad material (by default a failed inspection or an opened
nonconformance) places a quality hold on its lot, so rejected stock never stays available.

The hold is the same governed operation `placeQualityHold` runs: Cedar decides for the configured service
principal, the decision is audited, the operation is idempotent (keyed by the event id, so a redelivered or
re-run event holds once) and runs QMS -> WMS -> ERP. It is a reaction (`Events.react`), run from the inbox.
Nothing is silent: a hold whose systems are down stays PENDING and is resumed; when its checks cannot run (a
system unavailable) the error goes to the dispatcher, which runs the event again later; a hold refused (by
policy, an unknown lot, a system's refusal) parks the event in the exception queue with why.
"""

from __future__ import annotations

import logging

from gateway.auth import Principal
from gateway.events.envelope import Event
from gateway.events.settings import ContainmentSettings
from gateway.runtime import Runtime

log = logging.getLogger("lotgraph.containment")


def service_principal(settings: ContainmentSettings) -> Principal:
    return Principal(sub=settings.principal, name="Automatic containment", roles=frozenset({"containment_service"}),
                     plants=frozenset(settings.plants), supplier_id=None, amr=frozenset(), auth_time=None,
                     expires_at=None)  # fmt: skip


class Containment:
    def __init__(self, runtime: Runtime, settings: ContainmentSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.principal = service_principal(settings)

    def triggered_by(self, event: Event) -> bool:
        return event.lot is not None and any(
            trigger.type is event.type and (trigger.passed is None or event.payload.get("passed") is trigger.passed)
            for trigger in self.settings.triggers
        )

    async def __call__(self, event: Event) -> None:
        if not self.triggered_by(event):
            return
        assert event.lot is not None
        reason = f"automatic containment after {event.type.value} ({event.source} event {event.id})"
        key = f"containment:{event.id}"
        op = await self.runtime.operations.place_quality_hold(
            self.principal, event.lot.id, self.settings.reason_code, reason, key, event.correlation_id
        )
        log.info("containment hold %s for lot %s after %s: %s", op.id, event.lot.id, event.id, op.state.value)
