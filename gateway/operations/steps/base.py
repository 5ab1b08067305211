"""What every step runner gives back: what it did in its system, through which contract."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.store.operations import Operation, Step
from gateway.upstream import Upstream


@dataclass(frozen=True)
class Outcome:
    """What a step did: the contract it used, what it found before and left after, or why it was skipped."""

    contract: str
    detail: Mapping[str, Any]
    skipped: bool = False


StepRunner = Callable[[Upstream, Operation, Step], Awaitable[Outcome]]
BatchRunner = Callable[[Upstream, Operation, Sequence[Step]], Awaitable[list[Outcome]]]
