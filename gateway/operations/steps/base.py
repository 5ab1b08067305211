"""What every step runner gives back: what it did in its system, through which contract."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from gateway.errors import ContractViolation, GatewayError
from gateway.store.operations import Operation, Step
from gateway.upstream import Upstream

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What a step did: the contract it used, what it found before and left after, or why it was skipped."""

    contract: str
    detail: Mapping[str, Any]
    skipped: bool = False


StepRunner = Callable[[Upstream, Operation, Step], Awaitable[Outcome]]
# Many lots' steps at once: each step's outcome, or the error that refused that lot alone (raising fails them all).
Outcomes = list[Outcome | GatewayError]
BatchRunner = Callable[[Upstream, Operation, Sequence[Step]], Awaitable[Outcomes]]


def one_each(contract: str, steps: Sequence[Step], answers: Sequence[Any]) -> None:
    """A bulk answer must say what became of every lot asked about: one that does not proves nothing."""
    if len(answers) != len(steps):
        raise ContractViolation(source=contract.partition(".")[0], contract=contract, field="items",
                                problem=f"answers {len(answers)} items for {len(steps)} lots")  # fmt: skip


def settled(results: Sequence[T | BaseException]) -> list[T | GatewayError]:
    """Results of `gather(..., return_exceptions=True)` per lot: a system's refusal stays that lot's; a bug raises."""
    if bug := next((r for r in results if isinstance(r, BaseException) and not isinstance(r, GatewayError)), None):
        raise bug
    return cast(list[T | GatewayError], list(results))


async def each(runner: StepRunner, upstream: Upstream, op: Operation, steps: Sequence[Step]) -> Outcomes:
    """The batch one request per lot, where the system's API version has no bulk write: each lot's outcome or error."""
    return settled(await asyncio.gather(*(runner(upstream, op, step) for step in steps), return_exceptions=True))
