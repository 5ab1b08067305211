"""`Events`: one process's side of the event path, from ingest to the fan-out.

`ingest` is the single door for inbound plant events (webhook, MQTT, ERP poll): it stores the event in the inbox
(`gateway/store/inbox.py`) first, so when it returns the event may be acknowledged; a redelivered id is a
duplicate there. Then it invalidates cached reads of the event's lot (so a query right after the event never shows
the old state; with Redis the cache is shared as the bus is) and publishes, at once: subscribers never wait for
reactions. The reactions (`react`) run from the inbox, in the dispatcher (`dispatcher.py`), on one replica at a
time. The gateway's own events (operations announcing themselves) are `publish`ed: no inbox, no reactions.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

from gateway.cache import ReadCache
from gateway.events.bus import Bus, MemoryBus
from gateway.events.dispatcher import LEASE_SECONDS, Dispatcher, Reaction
from gateway.events.envelope import Event
from gateway.events.fanout import Fanout
from gateway.events.redis_bus import RedisBus
from gateway.events.settings import EventSettings
from gateway.store.exceptions import ExceptionQueue
from gateway.store.inbox import Inbox
from gateway.telemetry import Metrics

log = logging.getLogger("lotgraph.events")


class Events:
    def __init__(self, settings: EventSettings, bus: Bus, cache: ReadCache, metrics: Metrics) -> None:
        self.settings = settings
        self.bus = bus
        self.cache = cache
        self.metrics = metrics
        self.reactions: dict[str, Reaction] = {}
        self._dispatcher: Dispatcher | None = None

    @classmethod
    def open(cls, settings: EventSettings, redis_url: str | None, cache: ReadCache, metrics: Metrics) -> Events:
        fanout = Fanout()
        bus: Bus = (
            RedisBus(fanout, redis_url, settings.retention, settings.dedupe_seconds)
            if redis_url
            else MemoryBus(fanout, settings.retention, settings.dedupe_seconds)
        )
        return cls(settings, bus, cache, metrics)

    @property
    def fanout(self) -> Fanout:
        return self.bus.fanout

    def react(self, name: str, handler: Reaction) -> None:
        """Run `handler(event)` for every inbound plant event, from the inbox (after a crash, again). It must be
        idempotent: key what it does by `event.id`. Raise `UpstreamUnavailable`, `UpstreamTimeout` or a
        `StoreError` to be retried with backoff; anything else (`NotFound`, `Forbidden`, ...)
        parks the event in the exception queue with the error as its reason. Register before the app starts."""
        if name in self.reactions:
            raise ValueError(f"a reaction named {name!r} is already registered")
        self.reactions[name] = handler

    async def ingest(self, event: Event) -> Event | None:
        """Take in an inbound plant event: `None` for a duplicate id; otherwise the event, stored in the inbox
        (safe to acknowledge), published (with its cursor), its reactions due."""
        dispatcher = self._started()
        entry = await dispatcher.inbox.accept(
            event.id,
            event.type.value,
            event.source,
            event.model_dump(mode="json"),
            owner=dispatcher.owner,
            seconds=LEASE_SECONDS,
        )  # leased to this process's dispatcher, which is handed the entry below: no claim
        outcome = "duplicate" if entry is None else "accepted"
        self.metrics.events_ingested.labels(event.source, event.type.value, outcome).inc()
        if entry is None:
            return None
        try:
            published = await self.publish(event) or event  # None: the bus had it (a replica's redelivery)
            entry = dataclasses.replace(entry, published=True)
        except Exception as exc:  # stored: the dispatcher publishes it once the bus is back
            log.warning("event %s is in the inbox but not yet on the bus: %s", event.id, exc)
            published = event
        dispatcher.take(entry, event)
        return published

    async def publish(self, event: Event) -> Event | None:
        """Put an event of the gateway's own on the bus (once: `None` for a duplicate), its lot's reads invalidated."""
        if event.lot is not None:
            await self.cache.invalidate_lot(event.lot.id)
        return await self.bus.publish(event)

    def _started(self) -> Dispatcher:
        if self._dispatcher is None:
            raise RuntimeError("events are taken in once the application has started")
        return self._dispatcher

    async def start(self, inbox: Inbox, exceptions: ExceptionQueue) -> None:
        await self.bus.start()
        self._dispatcher = Dispatcher(
            inbox, exceptions, self.reactions, self.publish, poll_seconds=self.settings.dispatch_seconds,
            attempts=self.settings.reaction_attempts, retention=timedelta(seconds=self.settings.dedupe_seconds),
        )  # fmt: skip
        self._dispatcher.start()

    def wake(self) -> None:
        """Look at the inbox now (an operator made a parked event due again)."""
        self._started().wake()

    async def aclose(self) -> None:
        if self._dispatcher is not None:
            await self._dispatcher.aclose()
        await self.bus.aclose()
