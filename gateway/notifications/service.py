"""`Notifications`: one process's outbound notifications, from the plant event to the target's inbox.

`enqueue` is an event reaction (registered by `gateway/workflows/registry.py`, so it runs from the inbox and
survives a crash): it stores one delivery per configured target that wants the event (its filters, its plants)
in the outbox and returns; the delivery worker (`worker.py`) sends them. A redelivered event, or its reactions
run again, finds the deliveries already there. A slow or dead target therefore never delays a workflow.
`retry` and `discard` are what the exception queue's `retryException` / `discardException` do to a parked one.
"""

from __future__ import annotations

import asyncio
import uuid

from gateway.errors import BadUserInput
from gateway.events.envelope import Event
from gateway.notifications import message
from gateway.notifications.settings import NotificationSettings
from gateway.notifications.worker import DeliveryWorker
from gateway.store.exceptions import ExceptionQueue
from gateway.store.outbox import Outbox
from gateway.telemetry import Metrics


class Notifications:
    def __init__(self, settings: NotificationSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._worker: DeliveryWorker | None = None

    async def enqueue(self, event: Event) -> None:
        """Store the event's deliveries (at most one per target), and have them sent."""
        worker = self._started()
        wanting = [name for name, target in self.settings.targets.items() if target.wants(event)]
        body = message.body(event) if wanting else {}
        plants, lot_id = [event.plant] if event.plant else [], event.lot.id if event.lot else None
        # Added together: one transaction for every target's delivery (gateway/store/groups.py).
        stored = await asyncio.gather(*(
            worker.outbox.add(f"msg_{uuid.uuid4().hex}", name, event.id, event.type.value, plants=plants,
                              lot_id=lot_id, correlation_id=event.correlation_id, body=body)
            for name in wanting
        ))  # fmt: skip
        if any(stored):
            worker.wake()

    async def retry(self, delivery_id: str) -> None:
        """A parked delivery due again, with fresh tries."""
        worker = self._started()
        delivery = await worker.outbox.get(delivery_id)
        if delivery is not None and delivery.target not in self.settings.targets:
            raise BadUserInput(f"target {delivery.target} is no longer configured: discard the notification")
        await worker.outbox.requeue(delivery_id)
        worker.wake()

    async def discard(self, delivery_id: str) -> None:
        await self._started().outbox.discard(delivery_id)

    def _started(self) -> DeliveryWorker:
        if self._worker is None:
            raise RuntimeError("notifications start with the application's lifespan")
        return self._worker

    async def start(self, outbox: Outbox, exceptions: ExceptionQueue) -> None:
        self._worker = DeliveryWorker(self.settings, outbox, exceptions, self.metrics)
        if self.settings.targets:
            self._worker.start()

    async def aclose(self) -> None:
        if self._worker is not None:
            await self._worker.aclose()
