"""The event streams behind the subscriptions: replay from a cursor, then live, each event authorized.

The listener is registered before the replay is read, and live events at or before the last replayed cursor
are skipped, so a resuming client gets every event after its cursor exactly once. Every event passes the
same Cedar `readLot` decision a query of that lot would (decided once per distinct plant, material and
supplier per subscription). A subscription ends with a clear error when its token expires, when it falls
too far behind (its queue is bounded), or when the process already carries its maximum of subscriptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from gateway.errors import GatewayError
from gateway.events.bus import START, Position, position
from gateway.events.envelope import Event, EventType
from gateway.events.fanout import Listener
from resolvers.context import GatewayContext


class TokenExpired(GatewayError):
    code = "TOKEN_EXPIRED"


class TooManySubscriptions(GatewayError):
    code = "TOO_MANY_SUBSCRIPTIONS"


def _deadline(ctx: GatewayContext) -> float | None:
    """The loop time at which the caller's token expires (None: it does not)."""
    expires = ctx.principal.expires_at
    if expires is None:
        return None
    loop = asyncio.get_running_loop()
    return loop.time() + (expires - datetime.now(UTC)).total_seconds()


async def _next(listener: Listener, deadline: float | None) -> Event:
    if deadline is None:  # a token that does not expire: no timer to arm per event
        return await listener.get()
    try:
        async with asyncio.timeout_at(deadline):
            return await listener.get()
    except TimeoutError:
        raise TokenExpired("the access token expired; reconnect with a fresh token (resume with `after`)") from None


class Subscription:
    """One subscriber's place on the bus, from the moment it is entered: nothing published after that is missed."""

    def __init__(self, ctx: GatewayContext, accept: Callable[[Event], bool], *, authorize: bool = True) -> None:
        self.ctx = ctx
        self.accept = accept
        self.authorize = authorize
        self._listener: Listener | None = None

    def __enter__(self) -> Subscription:
        hub, settings = self.ctx.runtime.events, self.ctx.settings.events
        if len(hub.fanout.listeners) >= settings.max_subscriptions:
            raise TooManySubscriptions(f"this gateway already serves {settings.max_subscriptions} subscriptions")
        self._listener = hub.fanout.listen(settings.subscriber_queue, self.accept)
        self.ctx.runtime.metrics.subscriptions.inc()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._listener is not None:
            self._listener.close()
            self.ctx.runtime.metrics.subscriptions.dec()

    def _visible(self, event: Event) -> bool:
        return not self.authorize or self.ctx.runtime.event_reads.allowed(self.ctx.guard, event)

    async def stream(self, after: str | None = None) -> AsyncIterator[Event]:
        """Events after `after` (within retention), then live ones, each once, in bus order."""
        assert self._listener is not None, "enter the subscription first"
        metrics = self.ctx.runtime.metrics
        last: Position | None = None if after is None else position(after)
        deadline = _deadline(self.ctx)
        try:
            if after is not None:
                async for event in self.ctx.runtime.events.bus.replay(after):
                    last = position(event.cursor or after)
                    if self.accept(event) and self._visible(event):
                        yield event
            while True:
                event = await _next(self._listener, deadline)
                if last is not None and position(event.cursor or START) <= last:
                    continue  # already sent from the replay
                if self._visible(event):
                    metrics.event_delivery_seconds.observe((datetime.now(UTC) - event.ingested).total_seconds())
                    yield event
        except GatewayError as exc:
            metrics.subscribers_cut_off.labels(exc.code).inc()
            raise


async def events(
    ctx: GatewayContext, accept: Callable[[Event], bool], after: str | None = None
) -> AsyncIterator[Event]:
    """Events `accept` takes (after `after`, then live) that this caller may read."""
    with Subscription(ctx, accept) as subscription:
        async for event in subscription.stream(after):
            yield event


def lot_status_filter(lot_id: str | None, plant: str | None, material: str | None) -> Callable[[Event], bool]:
    def accept(event: Event) -> bool:
        lot = event.lot
        return (
            event.type is EventType.LOT_STATUS_CHANGED
            and lot is not None
            and (lot_id is None or lot.id == lot_id)
            and (plant is None or event.plant == plant)
            and (material is None or lot.material == material)
        )

    return accept


def quality_filter(supplier: str | None, plant: str | None, types: frozenset[EventType]) -> Callable[[Event], bool]:
    def accept(event: Event) -> bool:
        return (
            event.type in types
            and (plant is None or event.plant == plant)
            and (supplier is None or (event.lot is not None and event.lot.supplier == supplier))
        )

    return accept


def operation_filter(operation_id: str) -> Callable[[Event], bool]:
    def accept(event: Event) -> bool:
        return event.type is EventType.OPERATION_UPDATED and event.payload.get("operationId") == operation_id

    return accept
