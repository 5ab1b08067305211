"""The dispatcher: runs the reactions to inbound events from the inbox, so none is lost to a crash after the
event was acknowledged.

One background task per process. An event this process ingests is stored leased to it and handed over in
memory (`take`): no store round trip to find it. Anything else due (an event another replica took in, a retry
coming due, a parked event an operator retried, what a dead process left) is claimed from the store: at
start-up, when told to look (`wake`), after a claim that filled every free slot, and every `poll_seconds`.
Leases are renewed while an entry runs, so replicas sharing the store never run one event's reactions at once,
and a dead process's entries are taken over once their lease runs out.

An entry not yet on the bus (the process died between storing and publishing) is published first; the bus drops
an id it already has. Then every reaction runs, in the order they were registered: reactions key what they do by
the event id, so running them all again after a crash, or after a transient failure, is safe. The outcome:
- all succeeded: DONE (and an exception entry a retry came from is RESOLVED);
- a transient failure (`UpstreamUnavailable`, `UpstreamTimeout`, `StoreError`): due again after a backoff, the
  attempt counted and the error kept, until `reaction_attempts` are spent;
- anything retrying cannot fix (`NotFound`, `Forbidden`, `UpstreamRejected`, `ContractViolation`, `BadUserInput`,
  an unexpected exception), or the attempts spent: PARKED, with an EVENT entry in the exception
  queue saying which reaction failed and why. `retryException` makes it due again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

from gateway.errors import GatewayError, StoreError, UpstreamTimeout, UpstreamUnavailable
from gateway.events.envelope import Event
from gateway.store.exceptions import ExceptionKind, ExceptionQueue, ExceptionState
from gateway.store.inbox import Inbox, InboxEntry

log = logging.getLogger("lotgraph.events.dispatcher")
Reaction = Callable[[Event], Awaitable[None]]
TRANSIENT = (UpstreamUnavailable, UpstreamTimeout, StoreError)
LEASE_SECONDS = 5.0  # short: a crashed process's claims are taken over this soon
MAX_BACKOFF_SECONDS = 300.0
PRUNE_EVERY_SECONDS = 3600.0


class Failure:
    """Why a run of an event's reactions did not succeed: the first failing reaction's error."""

    def __init__(self, reaction: str, exc: BaseException) -> None:
        self.transient = isinstance(exc, TRANSIENT)
        self.code = exc.code if isinstance(exc, GatewayError) else GatewayError.code
        self.reason = f"reaction {reaction}: {self.code}: {exc}"


class Dispatcher:
    def __init__(
        self, inbox: Inbox, exceptions: ExceptionQueue, reactions: Mapping[str, Reaction],
        publish: Callable[[Event], Awaitable[object]], *, poll_seconds: float, attempts: int, retention: timedelta,
        concurrency: int = 16, backoff_seconds: float = 1.0,
    ) -> None:  # fmt: skip
        self.inbox = inbox
        self.exceptions = exceptions
        self.reactions = reactions
        self.publish = publish  # puts a stored event on the bus (which drops an id it already has)
        self.poll_seconds = poll_seconds
        self.attempts = attempts
        self.retention = retention
        self.concurrency = concurrency
        self.backoff_seconds = backoff_seconds
        self.owner = uuid.uuid4().hex  # this process, as the holder of inbox leases
        self._wake = asyncio.Event()
        self._look = True  # claim from the store on the next round (at start: whatever is not done)
        self._taken: deque[tuple[float, InboxEntry, Event]] = deque()  # handed over, leased at that loop time
        self._running: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="lotgraph-dispatcher")

    def wake(self) -> None:
        """Look in the store now (an operator made a parked event due again)."""
        self._look = True
        self._wake.set()

    def take(self, entry: InboxEntry, event: Event) -> None:
        """Run the reactions to `event`, which this process just stored in the inbox leased to itself."""
        self._taken.append((asyncio.get_running_loop().time(), entry, event))
        self._wake.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while True:
            self._wake.clear()
            try:
                if loop.time() >= next_prune:
                    next_prune = loop.time() + PRUNE_EVERY_SECONDS
                    await self.inbox.prune(self.retention)
                self._start_taken(loop.time())
                if self._look and (free := self.concurrency - len(self._running)) > 0:
                    self._look = False
                    claimed = await self.inbox.claim(self.owner, LEASE_SECONDS, free)
                    self._look = len(claimed) == free  # every slot filled: more may be waiting
                    for entry in claimed:
                        self._run(entry, None)
            except Exception:  # the store is away: the next round tries again
                self._look = True
                log.exception("claiming events from the inbox failed; trying again in %s s", self.poll_seconds)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except TimeoutError:
                self._look = True

    def _start_taken(self, now: float) -> None:
        """Run handed-over entries while slots are free; one that waited so long its lease may have run out is
        left to be claimed from the store, where it is."""
        while self._taken and len(self._running) < self.concurrency:
            leased_at, entry, event = self._taken.popleft()
            if now - leased_at < LEASE_SECONDS / 2:
                self._run(entry, event)
            else:
                self._look = True

    def _run(self, entry: InboxEntry, event: Event | None) -> None:
        task = asyncio.create_task(self._process(entry, event))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free: start what waits

    async def _process(self, entry: InboxEntry, event: Event | None) -> None:
        heartbeat = asyncio.create_task(self._keep_lease(entry.id))
        try:
            event = event or Event.model_validate(entry.event)
            if not entry.published:
                await self.publish(event)
            failure = await self._react(event)
            if failure is None:
                await self.inbox.done(entry.id, self.owner)
                if entry.last_error is not None:  # it failed before: an exception entry may wait for this
                    await self.exceptions.settle(ExceptionKind.EVENT, entry.id, ExceptionState.RESOLVED,
                                                 by="lotgraph", why="its reactions completed")  # fmt: skip
            elif failure.transient and entry.attempts + 1 < self.attempts:
                delay = min(self.backoff_seconds * 2**entry.attempts, MAX_BACKOFF_SECONDS) * (0.5 + random.random())
                log.warning("event %s: %s; again in %.1f s", entry.id, failure.reason, delay)
                await self.inbox.later(entry.id, self.owner, failure.reason, delay)
            else:
                await self._park(event, entry, failure)
        except Exception:  # the store failed us: the lease runs out and the event is claimed again
            log.exception("event %s: its outcome could not be recorded", entry.id)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def _react(self, event: Event) -> Failure | None:
        """Every reaction, in order; the first failure for good, else the first transient one, else None."""
        failures = []
        for name, reaction in list(self.reactions.items()):
            try:
                await reaction(event)
            except Exception as exc:
                if not isinstance(exc, GatewayError):
                    log.exception("reaction %s to event %s failed unexpectedly", name, event.id)
                failures.append(Failure(name, exc))
        return min(failures, key=lambda f: f.transient, default=None)

    async def _park(self, event: Event, entry: InboxEntry, failure: Failure) -> None:
        spent = f" (transient; gave up after {entry.attempts + 1} attempts)" if failure.transient else ""
        log.warning("event %s parked: %s%s", entry.id, failure.reason, spent)
        await self.exceptions.park(
            ExceptionKind.EVENT, entry.id, reason_code=failure.code, reason=failure.reason + spent,
            plants={event.plant} if event.plant else set(), lot_id=event.lot.id if event.lot else None,
            payload=entry.event, attempts=entry.attempts + 1, correlation_id=event.correlation_id,
        )  # fmt: skip
        await self.inbox.park(entry.id, self.owner, failure.reason + spent)

    async def _keep_lease(self, event_id: str) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                await self.inbox.renew(event_id, self.owner, LEASE_SECONDS)
            except StoreError as exc:  # a busy store: try again next beat
                log.warning("event %s: lease not renewed this time: %s", event_id, exc)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._running:
            await asyncio.wait(self._running, timeout=10)
