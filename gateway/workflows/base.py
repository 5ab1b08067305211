"""What every workflow shares: its service principal, and reacting only to the plant's own events."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import ClassVar

from gateway.auth import Principal
from gateway.events.envelope import Event, EventType
from gateway.runtime import Runtime
from gateway.store.operations import Operation

log = logging.getLogger("lotgraph.workflows")


def service_principal(sub: str, name: str, role: str, plants: Iterable[str]) -> Principal:
    """Automation as Cedar sees it: a user with one role, in the plants it is configured for, never signing."""
    return Principal(sub=sub, name=name, roles=frozenset({role}), plants=frozenset(plants), supplier_id=None,
                     amr=frozenset(), auth_time=None, expires_at=None)  # fmt: skip


class Workflow(ABC):
    """One plant workflow: the handler of the event types it reacts to. Only inbound plant events reach it (the
    gateway's own announcements are published past the inbox), so no workflow answers another's echo."""

    reacts_to: ClassVar[frozenset[EventType]]

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings.workflows
        self.principal = service_principal(settings.principal, "Plant workflows", "workflow_service", settings.plants)

    async def __call__(self, event: Event) -> None:
        if event.type in self.reacts_to and event.lot is not None:
            op = await self.handle(event)
            if op is not None:
                log.info("%s %s for lot %s after %s: %s", op.kind, op.id, event.lot.id, event.id, op.state.value)

    @abstractmethod
    async def handle(self, event: Event) -> Operation | None:
        """Start (or find, for a redelivered event) the operation the event calls for; None if it calls for none."""
