"""`Events`: one process's side of the event path, from ingest to the fan-out.

`ingest` is the single door for every source (webhook, MQTT, ERP poll, the gateway's own operations): it
invalidates cached reads of the event's lot first (so a query right after the event never shows the old
state; with Redis the cache is shared as the bus is), then publishes, then hands what was new to the
reactions (containment), which therefore run on exactly one replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.cache import ReadCache
from gateway.events.bus import Bus, MemoryBus
from gateway.events.envelope import Event
from gateway.events.fanout import Fanout
from gateway.events.redis_bus import RedisBus
from gateway.events.settings import EventSettings
from gateway.telemetry import Metrics

log = logging.getLogger("lotgraph.events")
Reaction = Callable[[Event], Awaitable[None]]


class Events:
    def __init__(self, settings: EventSettings, bus: Bus, cache: ReadCache, metrics: Metrics) -> None:
        self.settings = settings
        self.bus = bus
        self.cache = cache
        self.metrics = metrics
        self.reactions: list[Reaction] = []
        self._running: set[asyncio.Task[None]] = set()

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

    async def ingest(self, event: Event) -> Event | None:
        """Put the event on the bus (once: `None` for a duplicate) and start the reactions to it."""
        if event.lot is not None:
            await self.cache.invalidate_lot(event.lot.id)
        stored = await self.bus.publish(event)
        self.metrics.events_ingested.labels(
            event.source, event.type.value, "duplicate" if stored is None else "accepted"
        ).inc()
        if stored is not None:
            for reaction in self.reactions:
                self._spawn(reaction, stored)
        return stored

    def _spawn(self, reaction: Reaction, event: Event) -> None:
        task = asyncio.create_task(self._react(reaction, event))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    @staticmethod
    async def _react(reaction: Reaction, event: Event) -> None:
        try:
            await reaction(event)
        except Exception:  # a reaction records its own failures; this is the last line, never silent
            log.exception("reaction to event %s failed", event.id)

    async def start(self) -> None:
        await self.bus.start()

    async def aclose(self) -> None:
        if self._running:
            await asyncio.wait(self._running, timeout=10)
        await self.bus.aclose()
