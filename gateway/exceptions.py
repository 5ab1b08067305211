"""The exception queue as a governed service: the entries a caller may manage, and retrying or discarding one.

Cedar's `manageExceptions` decides on the queue as a whole (Governance: may the caller work it at all) and on each
entry (an ExceptionEntry, through the plants it is about); each retry and discard is decided and audited like an
operator's action on an operation (`Command.authorized`), FORBIDDEN when refused. What a retry does depends on
the kind: an EVENT's reactions run again from the inbox (the dispatcher is woken); a STEP's operation is retried
as `retryOperation` does (so `manageOperations` on it is decided too); a NOTIFICATION's delivery is due again with
fresh tries (the delivery worker is woken). Each stays RETRIED until it succeeds (RESOLVED) or fails for good again
(OPEN). Discarding a STEP abandons its operation as `abandonOperation` does (refused while that would leave a lot
half applied); a NOTIFICATION's delivery is given up (DISCARDED); an EVENT is just closed, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth import Principal
from gateway.authz import Guard
from gateway.errors import BadUserInput, NotFound
from gateway.events.hub import Events
from gateway.notifications import Notifications
from gateway.operations.service import Operations, required
from gateway.paging import page_start, row_number
from gateway.store.exceptions import ExceptionEntry, ExceptionKind, ExceptionQueue, ExceptionState
from gateway.store.inbox import Inbox
from policies import entities
from policies.engine import Entity


def entity(entry: ExceptionEntry) -> Entity:
    return entities.exception_entry(str(entry.id), kind=entry.kind.value, plants=entry.plants)


@dataclass(frozen=True)
class ExceptionPage:
    entries: list[ExceptionEntry]
    has_next_page: bool
    total: int


@dataclass
class Exceptions:
    queue: ExceptionQueue
    inbox: Inbox
    events: Events
    operations: Operations
    notifications: Notifications

    async def page(
        self, guard: Guard, *, first: int, after: str | None, kind: ExceptionKind | None = None,
        state: ExceptionState | None = None, plant: str | None = None, lot_id: str | None = None,
    ) -> ExceptionPage:  # fmt: skip
        """Entries the caller may manage, oldest first: filtered in SQL to the plants Cedar grants them (so pages
        are full and the count leaks nothing), then each decided by Cedar."""
        guard.require("manageExceptions", entities.GOVERNANCE)
        start = page_start(first, after)
        rows, total = await self.queue.page(
            after=start, limit=first + 1, within_plants=self._plants(guard), kind=kind,
            state=state, plant=plant, lot_id=lot_id,
        )  # fmt: skip
        shown = rows[:first]
        decisions = guard.decide_all("manageExceptions", [entity(entry) for entry in shown])
        allowed = [entry for entry, decision in zip(shown, decisions, strict=True) if decision.allowed]
        return ExceptionPage(allowed, has_next_page=len(rows) > first, total=total)

    @staticmethod
    def _plants(guard: Guard) -> frozenset[str] | None:
        """The plants whose entries Cedar lets the caller manage (None: every entry), asked with probe entries: one of
        no known plant (only an all-plants grant covers it), then one of each of the token's plants."""
        plants = sorted(guard.user.attrs["plants"])
        probes = [entities.exception_entry(f"probe-{n}", kind="EVENT", plants=[plant])
                  for n, plant in enumerate((entities.UNKNOWN_PLANT, *plants))]  # fmt: skip
        allowed = [decision.allowed for decision in guard.decide_all("manageExceptions", probes)]
        if allowed[0]:
            return None
        return frozenset(plant for plant, ok in zip(plants, allowed[1:], strict=True) if ok)

    async def retry(self, principal: Principal, entry_id: str, correlation_id: str) -> ExceptionEntry:
        entry = await self._decided(principal, entry_id, correlation_id, "retryException", {})
        await self.queue.mark(entry.id, ExceptionState.RETRIED, by=principal.sub, why="retried",
                              only_from=[ExceptionState.OPEN])  # fmt: skip
        try:  # succeeded: the entry is RESOLVED by what ran it; failed again: parked again, OPEN
            if entry.kind is ExceptionKind.EVENT:
                await self.inbox.requeue(entry.subject)
                self.events.wake()
            elif entry.kind is ExceptionKind.STEP:
                await self.operations.retry(principal, entry.subject, correlation_id)
            else:
                await self.notifications.retry(entry.subject)
        except Exception:
            await self.queue.mark(entry.id, ExceptionState.OPEN, by=principal.sub, why="retry refused",
                                  only_from=[ExceptionState.RETRIED])  # fmt: skip
            raise
        return await self._existing(entry_id)

    async def discard(self, principal: Principal, entry_id: str, reason: str, correlation_id: str) -> ExceptionEntry:
        required(reason=reason)
        entry = await self._decided(principal, entry_id, correlation_id, "discardException", {"reason": reason})
        if entry.kind is ExceptionKind.STEP:  # the operation is abandoned, which discards its entry
            await self.operations.abandon(principal, entry.subject, reason, correlation_id)
        else:
            if entry.kind is ExceptionKind.NOTIFICATION:
                await self.notifications.discard(entry.subject)
            await self.queue.mark(entry.id, ExceptionState.DISCARDED, by=principal.sub, why=reason,
                                  only_from=[ExceptionState.OPEN])  # fmt: skip
        return await self._existing(entry_id)

    async def _decided(
        self, principal: Principal, entry_id: str, correlation_id: str, action: str, details: dict[str, str]
    ) -> ExceptionEntry:
        entry = await self._existing(entry_id)
        command = self.operations.command(principal, correlation_id)
        details = {**details, "kind": entry.kind.value, "subject": entry.subject}
        await command.authorized("manageExceptions", action, entity(entry), details)
        if entry.state is not ExceptionState.OPEN:  # only an open entry is retried or discarded
            raise BadUserInput(f"exception {entry_id} is {entry.state.value}, not OPEN", argument="id")
        return entry

    async def _existing(self, entry_id: str) -> ExceptionEntry:
        number = row_number(entry_id)
        entry = await self.queue.get(number) if number is not None else None
        if entry is None:
            raise NotFound(f"no exception '{entry_id[:64]}'", argument="id")
        return entry
