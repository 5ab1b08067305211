"""The delivery worker: sends what the outbox holds, retrying with backoff, parking what keeps failing.

One background task per process, woken when a delivery is stored and polling as a fallback (deliveries another
replica stored, a retry coming due, one an operator retried). It claims due deliveries under a lease longer than
a try can take, so replicas never send one delivery at once, and a crashed process's claims run out. Each try:
- 2xx: DELIVERED (and an exception entry a retry came from is RESOLVED);
- anything else: due again after an exponential backoff with jitter (`backoff_seconds` doubling up to
  `max_backoff_seconds`, times 0.5 to 1.5), the try counted and its error kept, until `attempts` are spent;
- then PARKED, with a NOTIFICATION entry in the exception queue saying why (the last status and body excerpt, or
  the connection error), about the event's plants, lot and correlation id. `retryException` makes it due again.
Workflows never wait for any of this: the reaction only stores deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid

from gateway.notifications.sender import Outcome, Sender
from gateway.notifications.settings import NotificationSettings
from gateway.store.exceptions import ExceptionKind, ExceptionQueue, ExceptionState
from gateway.store.outbox import Delivery, Outbox
from gateway.telemetry import Metrics

log = logging.getLogger("lotgraph.notifications")
REASON_CODES = {"refused": "TARGET_REFUSED", "timeout": "TARGET_TIMEOUT", "unreachable": "TARGET_UNREACHABLE"}


class DeliveryWorker:
    def __init__(
        self, settings: NotificationSettings, outbox: Outbox, exceptions: ExceptionQueue, metrics: Metrics,
        concurrency: int = 16,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.outbox = outbox
        self.exceptions = exceptions
        self.metrics = metrics
        self.concurrency = concurrency
        self.sender = Sender(settings.timeout_seconds)
        self.lease_seconds = 2 * settings.timeout_seconds + 5  # a try ends well within it
        self.owner = uuid.uuid4().hex  # this process, as the holder of delivery leases
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="lotgraph-notifications")

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                if free := self.concurrency - len(self._running):
                    targets = list(self.settings.targets)
                    for delivery in await self.outbox.claim(self.owner, self.lease_seconds, free, targets):
                        task = asyncio.create_task(self._try(delivery))
                        self._running.add(task)
                        task.add_done_callback(self._finished)
            except Exception:  # the store is away: the next round tries again
                log.exception("claiming deliveries failed; trying again in %s s", self.settings.poll_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _try(self, delivery: Delivery) -> None:
        outcome = await self.sender.send(self.settings.targets[delivery.target], delivery)
        self.metrics.notification_attempts.labels(delivery.target, outcome.kind).inc()
        try:
            await self._record(delivery, outcome)
        except Exception:  # the store failed us: the lease runs out and the delivery is tried again
            log.exception("delivery %s: its outcome could not be recorded", delivery.id)

    async def _record(self, delivery: Delivery, outcome: Outcome) -> None:
        tries = delivery.attempts + 1
        if outcome.delivered:
            # Only a delivery that failed before can have an exception entry waiting (as the dispatcher's events).
            if await self.outbox.delivered(delivery.id, self.owner) and delivery.last_error is not None:
                await self.exceptions.settle(ExceptionKind.NOTIFICATION, delivery.id, ExceptionState.RESOLVED,
                                             by="lotgraph", why="delivered")  # fmt: skip
        elif tries < self.settings.attempts:
            delay = self.backoff(delivery.attempts)
            log.info("delivery %s to %s: %s; again in %.1f s", delivery.id, delivery.target, outcome.detail, delay)
            await self.outbox.later(delivery.id, self.owner, outcome.detail, delay)
        else:
            reason = f"target {delivery.target}: {outcome.detail} (gave up after {tries} attempts)"
            log.warning("delivery %s of event %s parked: %s", delivery.id, delivery.event_id, reason)
            # The entry first: a delivery PARKED without one would be silent; an entry whose delivery is then
            # retried by another replica is RESOLVED when that delivers.
            await self.exceptions.park(
                ExceptionKind.NOTIFICATION, delivery.id, reason_code=REASON_CODES[outcome.kind], reason=reason,
                plants=delivery.plants, lot_id=delivery.lot_id, attempts=tries, correlation_id=delivery.correlation_id,
                payload={"target": delivery.target, "eventId": delivery.event_id, "notification": delivery.body},
            )  # fmt: skip
            await self.outbox.park(delivery.id, self.owner, reason)

    def backoff(self, failed: int) -> float:
        """Seconds before the next try after `failed` earlier failures: doubling, capped, jittered."""
        base = min(self.settings.backoff_seconds * 2**failed, self.settings.max_backoff_seconds)
        return base * (0.5 + random.random())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._running:
            await asyncio.wait(self._running, timeout=self.lease_seconds)
        await self.sender.aclose()
