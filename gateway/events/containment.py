"""Automatic containment: an event that shows bad material (by default a failed inspection or an opened
nonconformance) places a quality hold on its lot, so rejected stock never stays available.

The hold is the same governed operation `placeQualityHold` runs: Cedar decides for the configured service
principal, the decision is audited, the operation is idempotent (keyed by the event id, so a redelivered
event holds once) and runs QMS -> WMS -> ERP. Nothing is silent: a hold whose systems are down stays PENDING
and is resumed; a hold that was refused, or whose checks could not run, is recorded BLOCKED with why, and
both show in `pendingOperations`.
"""

from __future__ import annotations

import logging

from gateway.auth import Principal
from gateway.errors import GatewayError
from gateway.events.envelope import Event
from gateway.events.settings import ContainmentSettings
from gateway.operations.announcements import Announcer
from gateway.operations.plans import HOLD_STEPS, plan
from gateway.runtime import Runtime

log = logging.getLogger("lotgraph.containment")
KIND = "placeQualityHold"


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
        try:
            op = await self.runtime.operations.place_quality_hold(
                self.principal, event.lot.id, self.settings.reason_code, reason, key, event.correlation_id
            )
            log.info("containment hold %s for lot %s after %s: %s", op.id, event.lot.id, event.id, op.state.value)
        except GatewayError as exc:
            await self._blocked(event, reason, key, exc)

    async def _blocked(self, event: Event, reason: str, key: str, exc: GatewayError) -> None:
        """Record the hold that could not start, so a person sees it (and why) among pending operations."""
        assert event.lot is not None
        store = self.runtime.operations.store
        payload = {"lotId": event.lot.id, "reasonCode": self.settings.reason_code, "reason": reason}
        op, created = await store.claim(kind=KIND, actor=self.principal.sub, idempotency_key=key, payload=payload,
                                        steps=plan(HOLD_STEPS, [event.lot.id]), correlation_id=event.correlation_id,
                                        extra={"event": event.id}, blocked=f"{exc.code}: {exc}")  # fmt: skip
        if created:
            await Announcer(self.runtime.events, self.runtime.upstream).progressed(op)
        log.warning("containment for lot %s after %s is BLOCKED: %s %s", event.lot.id, event.id, exc.code, exc)
