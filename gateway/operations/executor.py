"""Runs an operation's remaining steps in order, records each outcome, and leaves the operation
visibly PENDING when a system cannot be reached: holds move forward only, so a failing step is
retried (now with backoff, later by the resumer), never compensated by un-blocking anything.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from itertools import groupby
from typing import Any, TypeVar

from gateway.contracts.base import BULK_ITEMS
from gateway.errors import (
    ContractViolation,
    GatewayError,
    StoreError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    WorkflowRefused,
)
from gateway.operations.scope import LotScope, lots_of
from gateway.operations.steps import BATCH_RUNNERS, RUNNERS, BatchRunner, Outcome
from gateway.reads import Loaders
from gateway.store.audit import AuditLog
from gateway.store.exceptions import ExceptionKind, ExceptionQueue, ExceptionState
from gateway.store.operations import Operation, OperationState, OperationStore, Step, StepRecord, StepState
from gateway.telemetry import tracer
from gateway.upstream import Upstream

log = logging.getLogger("lotgraph.operations")
TRANSIENT = (UpstreamUnavailable, UpstreamTimeout)
# The system refused the request itself, or answered outside its contract: the same request fails the same way
# until someone fixes the cause, so the step FAILS (and with it the operation) rather than being retried forever.
PERMANENT = (UpstreamRejected, ContractViolation, WorkflowRefused)
T = TypeVar("T")
LEASE_SECONDS = 5.0  # short: a crashed runner blocks a takeover at most this long
# Blocking more is always safe: a hold goes on to the next system even when one is down.
# A release stops at the first failure, so the systems after it stay held.
PRESS_ON = {"placeQualityHold", "placeRecallHold"}


class Executor:
    def __init__(
        self,
        upstream: Upstream,
        operations: OperationStore,
        audit: AuditLog,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
        concurrency: int = 16,
        lot_wait_seconds: float = 30.0,
        announce: Callable[[Operation], Awaitable[None]] | None = None,
        exceptions: ExceptionQueue | None = None,
        completed: Callable[[Operation], Awaitable[None]] | None = None,
    ) -> None:
        self.upstream = upstream
        self.completed = completed  # told of every operation that completed, whichever run (request, resumer) did it
        self.exceptions = exceptions  # where a FAILED operation is parked (a STEP entry), and resolved
        self.announce = announce  # told the operation's state after every run (the event bus)
        self.operations = operations
        self.audit = audit
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.lot_wait_seconds = lot_wait_seconds
        self._limit = asyncio.Semaphore(concurrency)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.owner = uuid.uuid4().hex  # this process, as the holder of operation leases

    async def run(self, op_id: str, *, wait_for_lots: float | None = None) -> Operation:
        """Drive the operation as far as it goes now. Duplicates in this process wait on a lock; another
        replica running it holds the lease in the store, and this one waits for that run to finish.
        While another operation is changing one of its lots, it waits `wait_for_lots` seconds (the
        executor's default) for its turn, then stays PENDING for the resumer."""
        async with self._locks[op_id]:
            if await self.operations.state(op_id) is not OperationState.PENDING:
                return await self._load(op_id)
            if not await self.operations.acquire(op_id, self.owner, LEASE_SECONDS):
                op = await self._load(op_id)
                return op if op.state is not OperationState.PENDING else await self._await_other_runner(op_id)
            heartbeat = asyncio.create_task(self._keep_leases(op_id))
            took_lots = False
            try:
                op = await self._load(op_id)  # as the last runner left it (read once the lease is ours)
                if op.state is not OperationState.PENDING:
                    return op
                wait = self.lot_wait_seconds if wait_for_lots is None else wait_for_lots
                if not (took_lots := await self._take_lots(op, wait)):
                    return op
                return await self._steps(op)
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
                await self.operations.release(op_id, self.owner, lots=took_lots)

    async def _await_other_runner(self, op_id: str) -> Operation:
        deadline = asyncio.get_running_loop().time() + LEASE_SECONDS
        state = await self.operations.state(op_id)
        while state is OperationState.PENDING and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            state = await self.operations.state(op_id)
            if await self.operations.acquire(op_id, self.owner, LEASE_SECONDS):
                await self.operations.release(op_id, self.owner)  # the other runner finished or died
                break
        return await self._load(op_id)

    async def _take_lots(self, op: Operation, wait: float) -> bool:
        """Every lot the operation still has to change, leased to it for the run: steps of two operations
        on one lot never interleave, so an unblocking step's check of QMS for other active holds stays true
        until it has written (a hold placed meanwhile waits, then blocks again)."""
        lots = sorted({step.lot_id for step in op.steps if step.state is StepState.PENDING})
        deadline = asyncio.get_running_loop().time() + wait
        pause, waiting = 0.05, False
        while not await self.operations.acquire_lots(op.id, lots, LEASE_SECONDS):
            if not waiting and (holder := await self.operations.lot_holder(op.id, lots)) is not None:
                waiting = True  # said once, where operators look (`pendingOperations`, `operation`)
                await self.operations.note(op.id, f"waiting for its turn: operation {holder[0]} is changing lot "
                                                  f"{holder[1]}")  # fmt: skip
            if asyncio.get_running_loop().time() + pause > deadline:
                log.info("operation %s waits: another operation is changing one of its lots", op.id)
                return False
            await asyncio.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 1.0)
        if waiting or op.error:
            await self.operations.note(op.id, None)  # its turn: the last run's reason no longer holds
        return True

    async def _keep_leases(self, op_id: str) -> None:
        """Renew the leases while running, so a short lease still covers a long recall but a crashed
        runner's leases run out soon and another replica (or the restarted one) takes over."""
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                await self.operations.acquire(op_id, self.owner, LEASE_SECONDS)
                await self.operations.renew_lots(op_id, LEASE_SECONDS)
            except StoreError as exc:  # a busy store: try again next beat rather than stop renewing for good
                log.warning("operation %s: leases not renewed this time: %s", op_id, exc)

    async def _steps(self, op: Operation) -> Operation:
        pending = [step for step in op.steps if step.state is StepState.PENDING]
        succeeded = True
        # Steps of one system and action (e.g. every QMS hold of a recall) run together, systems in order; where the
        # system takes many lots per request, in batches of `BULK_ITEMS` at once, each recorded in one transaction.
        for (system, action), group in groupby(pending, key=lambda s: (s.system, s.action)):
            steps = list(group)
            batch = BATCH_RUNNERS.get(f"{system}.{action}") if len(steps) > 1 else None
            if batch is not None:
                chunks = [steps[start : start + BULK_ITEMS] for start in range(0, len(steps), BULK_ITEMS)]
                succeeded &= all(await asyncio.gather(*(self._steps_at_once(op, chunk, batch) for chunk in chunks)))
            else:
                succeeded &= all(await asyncio.gather(*(self._step(op, step) for step in steps)))
            if not succeeded and op.kind not in PRESS_ON:
                break
        failed = await self.operations.steps_in_state(op.id, StepState.FAILED)
        if failed:
            await self._fail(op, failed)
        done = await self._complete(op) if succeeded and not failed else await self._load(op.id)
        if self.announce is not None:
            await self.announce(done)
        return done

    async def _load(self, op_id: str) -> Operation:
        op = await self.operations.get(op_id)
        if op is None:
            raise LookupError(f"no operation {op_id}")
        return op

    async def _attempt(self, op: Operation, run: Callable[[], Awaitable[T]]) -> T | GatewayError:
        """`run`, retried with jittered backoff while the system is unavailable; the error if it never works."""
        error: GatewayError | None = None
        for attempt in range(self.attempts):
            try:
                async with self._limit:
                    return await run()
            except TRANSIENT as exc:
                error = exc
                if not _retryable(exc):
                    break
                await asyncio.sleep(self.backoff_seconds * 2**attempt * (0.5 + random.random()))
            except GatewayError as exc:
                return exc
            except Exception as exc:  # a bug must leave the step visibly pending, not kill the operation
                log.exception("operation %s failed unexpectedly", op.id)
                return GatewayError(f"{exc.__class__.__name__}: {exc}")
        assert error is not None
        return error

    async def _step(self, op: Operation, step: Step) -> bool:
        runner = RUNNERS[f"{step.system}.{step.action}"]
        with tracer.start_as_current_span(
            f"step {step.system}.{step.action}", attributes={"lotgraph.lot": step.lot_id}
        ):
            result = await self._attempt(op, lambda: runner(self.upstream, op, step))
        await self._record(op, [(step, result)])
        return not isinstance(result, GatewayError)

    async def _steps_at_once(self, op: Operation, steps: list[Step], batch: BatchRunner) -> bool:
        """One batch: its outcomes recorded together, then announced (`operationUpdated` shows a recall's progress)."""
        outcomes: dict[int, Outcome | GatewayError] = {}
        todo = steps
        with tracer.start_as_current_span(f"step {steps[0].system}.{steps[0].action} x{len(steps)}"):
            for attempt in range(self.attempts):  # the lots a system could not take just now go again, alone
                result = await self._attempt(op, lambda todo=todo: batch(self.upstream, op, todo))
                if isinstance(result, GatewayError):  # already retried as a whole
                    outcomes |= dict.fromkeys((step.seq for step in todo), result)
                    break
                outcomes |= {step.seq: outcome for step, outcome in zip(todo, result, strict=True)}
                todo = [step for step in todo if _retryable(outcomes[step.seq])]
                if not todo or attempt == self.attempts - 1:
                    break
                await asyncio.sleep(self.backoff_seconds * 2**attempt * (0.5 + random.random()))
        await self._record(op, [(step, outcomes[step.seq]) for step in steps])
        if self.announce is not None:
            await self.announce(op)  # still PENDING: subscribers re-read its steps
        return not any(isinstance(outcome, GatewayError) for outcome in outcomes.values())

    async def _record(self, op: Operation, results: list[tuple[Step, Outcome | GatewayError]]) -> None:
        records, changed = [], []
        for step, result in results:
            if isinstance(result, GatewayError):
                message = f"{result.code}: {result}"
                state = StepState.FAILED if isinstance(result, PERMANENT) else StepState.PENDING
                log.warning("operation %s step %s %s %s %s: %s", op.id, step.seq, step.system, step.lot_id,
                            state.value.lower(), message)  # fmt: skip
                records.append(StepRecord(step.seq, state, error=message))
            else:
                state = StepState.SKIPPED if result.skipped else StepState.DONE
                records.append(StepRecord(step.seq, state, contract=result.contract, detail=result.detail))
                changed.append(step.lot_id)
        await self.operations.record_steps(op.id, records)
        await self.upstream.cache.invalidate_lots(changed)  # the next read shows what these steps changed

    async def _complete(self, op: Operation) -> Operation:
        """COMPLETED, with the outcome of every step as its result; the operation as it now is (not read back: a
        recall's result and steps are tens of thousands of rows)."""
        done = await self._load(op.id)
        result = {
            "lots": sorted({s.lot_id for s in done.steps}),
            "systems": {
                f"{s.system}:{s.lot_id}": {"state": s.state.value, "contract": s.contract, **(s.detail or {})}
                for s in done.steps
            },
        }
        finished_at = await self.operations.finish(op.id, OperationState.COMPLETED, result=result)
        done = replace(done, state=OperationState.COMPLETED, result=result, error=None, updated_at=finished_at)
        contracts = sorted({s.contract for s in done.steps if s.contract})
        await self._audit_end(op, await self._scope(op), "completed", "ALLOW", "every step completed",
                              {"steps": result["systems"], "contracts": contracts})  # fmt: skip
        # Only a step that ran again (after its operation FAILED and was retried) can leave an open STEP entry.
        if self.exceptions is not None and any(s.attempts > 1 for s in done.steps):
            await self.exceptions.settle(ExceptionKind.STEP, op.id, ExceptionState.RESOLVED, by=op.actor,
                                         why="the operation completed")  # fmt: skip
        if self.completed is not None:
            await self.completed(done)
        return done

    async def _fail(self, op: Operation, failed: list[Step]) -> None:
        """FAILED, saying which system refused what: visible in `pendingOperations` and parked as a STEP exception,
        never retried on its own; `retryOperation` (or `retryException`) runs it again once the cause is fixed,
        `abandonOperation` (or `discardException`) gives it up."""
        why = "; ".join(f"{s.system.upper()} refused lot {s.lot_id}: {s.last_error}" for s in failed[:5])
        why += f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        await self.operations.finish(op.id, OperationState.FAILED, error=why)
        scope = await self._scope(op)
        failures = [f"{s.system}:{s.lot_id}" for s in failed]
        await self._audit_end(op, scope, "failed", "FAILED", why, {"failed": failures})
        if self.exceptions is not None:
            code = (failed[0].last_error or "").partition(":")[0] or GatewayError.code
            await self.exceptions.park(
                ExceptionKind.STEP, op.id, reason_code=code, reason=why, plants=scope.plants if scope else (),
                lot_id=failed[0].lot_id, payload={"kind": op.kind, "actor": op.actor, "failed": failures},
                correlation_id=op.correlation_id,
            )  # fmt: skip

    async def _audit_end(
        self, op: Operation, scope: LotScope | None, outcome: str, decision: str, reason: str, details: dict[str, Any]
    ) -> None:
        """The audit entry of how the operation ended (`<kind>.<outcome>`), about its lots' plants and suppliers."""
        await self.audit.append(
            plants=scope.plants if scope else None,
            suppliers=scope.suppliers if scope else None,
            actor=op.actor,
            action=f"{op.kind}.{outcome}",
            resource=f"Operation::{op.id}",
            decision=decision,
            reason=reason,
            details=details,
            correlation_id=op.correlation_id,
        )

    async def _scope(self, op: Operation) -> LotScope | None:
        """Whose lots the finished operation changed, for its audit entry; if the ERP cannot say, the entry is
        recorded about no lot (all-plants auditors read it) rather than not at all."""
        try:  # through the read cache: the announcement of the same operation then finds the batches there
            return LotScope.of(await Loaders(self.upstream).batch.load_many(lots_of(op)))
        except GatewayError as exc:
            log.warning("operation %s: plants of its lots unknown for the audit entry: %s", op.id, exc.code)
            return None


def _retryable(outcome: Outcome | GatewayError) -> bool:
    """Unavailable or slow just now, and its source's circuit not open (then the resumer comes back later)."""
    return isinstance(outcome, TRANSIENT) and "breaker" not in outcome.details


class Resumer:
    """Re-runs PENDING operations: once at start-up (a gateway killed mid-operation picks up where it
    stopped) and then every `interval` seconds (a system that was down comes back)."""

    def __init__(self, executor: Executor, interval: float) -> None:
        self.executor = executor
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="lotgraph-resumer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def resume_all(self) -> None:
        for op_id in await self.executor.operations.ids_in_state(OperationState.PENDING):
            await self.executor.run(op_id, wait_for_lots=0)  # one whose lots are busy waits for the next round

    async def _loop(self) -> None:
        while True:
            try:
                await self.resume_all()
            except Exception:
                log.exception("resuming pending operations failed; trying again in %s s", self.interval)
            await asyncio.sleep(self.interval)
