"""Reconciliation as a service of the gateway: the background sweeper, the re-checks, and the divergent lots a
caller may read.

- The sweeper is one background task per process; the replica holding the `reconciliation` lease (in the store,
  renewed while it sweeps) sweeps every configured plant whose last sweep ended `interval_seconds` ago, or whose
  sweep is under way (a restart, or a takeover from a replica that died), one plant after another. So the plant's
  systems see one sweep at a time, at the sweep's own budget, whatever the number of replicas.
- Re-checks: the lot of every plant event (a reaction, after the workflows), and the lots of every completed
  operation that are listed divergent, are judged again at once through the interactive connectors. A re-check
  never fails the event: the next sweep judges the lot anyway. The lots of events handled while a re-check runs
  are re-checked together next (`gateway/store/groups.py`): a burst of events costs a few batched reads, not
  four requests per event.
- Reads: `page` lists open divergent lots narrowed in SQL to the caller's read scope, each shown lot decided by
  Cedar's `readLot` from the plant, material and supplier stored with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.authz import Guard
from gateway.consistency import DivergenceKind
from gateway.errors import BadUserInput, Forbidden, GatewayError, StoreError
from gateway.events.envelope import Event
from gateway.model import Lot
from gateway.paging import page_start
from gateway.reads import Loaders
from gateway.reconcile.settings import ReconciliationSettings
from gateway.reconcile.sweep import Progress, Sweep, budgeted, judge, observe_resolved
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.divergence import AGES, DivergenceFilter, DivergentLot, Readable
from gateway.store.groups import GroupCommit
from gateway.store.operations import Operation
from gateway.store.sweeps import SweepState
from gateway.telemetry import Metrics
from gateway.upstream import Upstream
from policies import entities

log = logging.getLogger("lotgraph.reconcile")
LEASE = "reconciliation"
LEASE_SECONDS = 10.0


@dataclass(frozen=True)
class DivergentPage:
    entries: list[DivergentLot]
    has_next_page: bool
    total: int


class Reconciliation:
    def __init__(
        self, settings: ReconciliationSettings, store: Store, upstream: Upstream, sweep: Sweep, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.store = store
        self.upstream = upstream  # interactive connectors: re-checks of single lots
        self.sweep = sweep
        self.metrics = metrics
        self.owner = uuid.uuid4().hex
        self._holding = False
        self._plant_list: tuple[float, list[str]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._rechecks = GroupCommit(self._recheck_group, most=settings.page_size)

    @classmethod
    def open(cls, settings: Settings, store: Store, upstream: Upstream, metrics: Metrics) -> Reconciliation:
        """With the sweep's own connectors (`budgeted`): its budget is its own, never interactive reads'."""
        own = Upstream.open(budgeted(settings.sources, settings.reconciliation), metrics)
        sweep = Sweep(own, store.divergent, store.sweeps, settings.reconciliation, metrics)
        return cls(settings.reconciliation, store, upstream, sweep, metrics)

    def start(self) -> None:
        if self.settings.enabled:
            self._task = asyncio.create_task(self._loop(), name="lotgraph-reconciliation")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.store.leases.release(LEASE, self.owner)
        await self.sweep.upstream.aclose()

    async def _loop(self) -> None:
        poll = min(self.settings.interval_seconds, 5.0)
        while True:
            try:
                await self.sweep_due()
            except Exception:  # a source or the store is away: the stored cursor waits for the next round
                log.exception("reconciliation sweep stopped; trying again in %s s", poll)
            await asyncio.sleep(poll)

    async def sweep_due(self) -> None:
        """Sweep every plant that is due, under the lease (taken only when one is, given back after)."""
        due = [plant for plant in await self._plants() if self._due(await self.store.sweeps.get(plant))]
        if not due or not await self.store.leases.acquire(LEASE, self.owner, LEASE_SECONDS):
            return
        async with self._holding_lease():
            for plant in due:
                if not self._holding or not self._due(await self.store.sweeps.get(plant)):  # swept meanwhile
                    continue
                done = await self.sweep.run(plant, keep_going=lambda: self._holding)
                log.info("reconciliation of %s: %d lots checked, %d newly divergent, %d resolved, %d resolved "
                         "past retention deleted", plant, done.checked, done.divergent_found, done.resolved,
                         done.forgotten)  # fmt: skip

    @contextlib.asynccontextmanager
    async def _holding_lease(self) -> AsyncIterator[None]:
        """The lease, just acquired, renewed until the block ends, then given back. The renewal is stopped between
        two writes, never cancelled inside one (a cancelled SQLite transaction can keep the store's write lock)."""
        self._holding = True
        stop = asyncio.Event()
        heartbeat = asyncio.create_task(self._keep_lease(stop))
        try:
            yield
        finally:
            stop.set()
            await heartbeat
            self._holding = False
            await self.store.leases.release(LEASE, self.owner)

    async def _plants(self) -> list[str]:
        """The plants to sweep; with `*` the ERP's list, asked again once per interval."""
        now = asyncio.get_running_loop().time()
        if self._plant_list is None or now - self._plant_list[0] >= self.settings.interval_seconds:
            self._plant_list = (now, await self.sweep.plants())
        return self._plant_list[1]

    def _due(self, state: SweepState) -> bool:
        if state.under_way or state.completed_at is None:
            return True
        return datetime.now(UTC) - state.completed_at >= timedelta(seconds=self.settings.interval_seconds)

    async def _keep_lease(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LEASE_SECONDS / 3)
                return
            try:
                self._holding = await self.store.leases.acquire(LEASE, self.owner, LEASE_SECONDS)
            except StoreError as exc:  # a busy store: try again next beat
                log.warning("reconciliation lease not renewed this time: %s", exc)

    async def run_once(
        self, plant: str, on_page: Callable[[Progress], None] | None = None, wait_seconds: float = 120.0
    ) -> Progress:
        """One sweep of `plant` now (`lotgraph reconcile`), under the lease so no replica sweeps meanwhile: while a
        gateway holds it (sweeping), waited for up to `wait_seconds`."""
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while not await self.store.leases.acquire(LEASE, self.owner, LEASE_SECONDS):
            if asyncio.get_running_loop().time() > deadline:
                raise GatewayError(f"a gateway has been sweeping for over {wait_seconds:.0f} s; try again later")
            await asyncio.sleep(0.5)
        async with self._holding_lease():
            return await self.sweep.run(plant, on_page=on_page, keep_going=lambda: self._holding)

    async def recheck(self, lot_ids: list[str]) -> None:
        """Judge these lots again now, through the interactive connectors, and record what is found."""
        loaders = Loaders(self.upstream, cached=False)
        batches = await loaders.batch.load_many(lot_ids)
        lots = [lot for lot in batches if isinstance(lot, Lot)]
        if not lots:
            return
        found, consistent = await judge(loaders, lots)
        recorded = await self.store.divergent.record(found, consistent)
        observe_resolved(self.metrics, recorded.resolved)

    async def react(self, event: Event) -> None:
        """The reaction to every plant event: its lot judged again (after the workflows' reactions ran). Events
        handled together are re-checked together: one batched read per source and one record for the group."""
        if event.lot is None:
            return
        try:
            await self._rechecks.submit(event.lot.id)
        except Exception as exc:  # never the event's failure: the sweep judges the lot anyway
            log.warning("re-check of lot %s after event %s failed: %s", event.lot.id, event.id, exc)

    async def _recheck_group(self, lot_ids: list[str]) -> list[None]:
        await self.recheck(list(dict.fromkeys(lot_ids)))
        return [None] * len(lot_ids)

    async def operation_completed(self, op: Operation) -> None:
        """A completed operation's lots that are listed divergent, judged again (a repair leaves the list now)."""
        listed = await self.store.divergent.open_among({step.lot_id for step in op.steps})
        if listed:
            try:
                await self.recheck(sorted(listed))
            except Exception as exc:  # the sweep judges them anyway
                log.warning("re-check after operation %s failed: %s", op.id, exc)

    async def page(
        self, guard: Guard, *, first: int, after: str | None, plant: str | None = None, kind: str | None = None,
        older_than: int | None = None,
    ) -> DivergentPage:  # fmt: skip
        """Open divergent lots the caller may read, oldest first."""
        start = page_start(first, after)
        if older_than is not None and older_than < 0:
            raise BadUserInput("olderThan must not be negative", argument="filter")
        scope = guard.read_scope
        if plant is not None and not scope.all_plants and plant not in scope.plants and scope.supplier is None:
            raise Forbidden(f"readLot denied: this token does not read lots of plant {plant}", policy_ids=(),
                            action="readLot", resource="Lot")  # fmt: skip
        where = DivergenceFilter(
            readable=Readable(scope.all_plants, scope.plants, scope.supplier),
            plants=frozenset([plant] if plant else []), kind=kind,
            older_than=timedelta(seconds=older_than) if older_than is not None else None,
        )  # fmt: skip
        rows, total = await self.store.divergent.page(where, limit=first + 1, after=start)
        shown = rows[:first]
        resources = [entities.lot(r.lot_id, plant=r.plant, material=r.material, supplier=r.supplier) for r in shown]
        decisions = guard.decide_all("readLot", resources)
        allowed = [row for row, decision in zip(shown, decisions, strict=True) if decision.allowed]
        return DivergentPage(allowed, has_next_page=len(rows) > first, total=total)

    async def refresh_metrics(self) -> None:
        """`lotgraph_divergent_lots` from the store, every (plant, kind, age) of a swept plant present (zero when
        none), so an alert on it returns to inactive rather than losing its series."""
        counted = await self.store.divergent.open_by_plant_kind_and_age()
        plants = set(await self.store.sweeps.plants()) | {plant for plant, _, _ in counted}
        gauge = self.metrics.divergent_lots
        for plant in sorted(plants):
            for kind in DivergenceKind:
                for age, _ in AGES:
                    gauge.labels(plant, kind.value, age).set(counted.get((plant, kind.value, age), 0))
