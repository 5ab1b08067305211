"""Subscription events rendered once per selection, not once per subscriber.

An event reaches every subscription whose filter and `readLot` decision let it through (`resolvers/
subscriptions.py`); what each then sends is the event's GraphQL result for its own selection. A thousand
subscribers of one document would otherwise execute that selection, and encode its JSON, a thousand times.
`RenderOnce` (the schema's executor) keeps, on the event's root object (a `Shared`, one per bus event), the
result of each selection it has executed (the operation as text, with its fragments and variables), and hands
every later subscriber of the same selection the same `Rendered` data; the endpoint encodes that JSON once too
(`Rendered.encoded`).

Sharing is sound because a `Shared` root's fields are the event's own data: nothing under it may depend on who
reads it (authorization happens before, per subscriber). A result with errors is not kept: each subscriber's
errors are its own to process and mask.

Past the first subscriber, even the kept result costs each subscriber strawberry's whole per-event path (the
executor, the result's extension hooks, the transport's message) for a frame that is already encoded. So a
transport that can send a kept rendering as the running operation's `next` message itself sets `next_frames`
(the graphql-transport-ws handler does, per operation task), and a subscription resolver hands each event to its
`unexecuted` filter: an event whose selection is kept goes out at once, and only the others are yielded to be
executed.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

import strawberry
from graphql import ExecutionResult, FragmentDefinitionNode, OperationDefinitionNode, print_ast
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class Rendered(dict[str, Any]):
    """A subscription event's `data` for one selection, shared by its subscribers; its JSON encoded once."""

    __slots__ = ("_encoded",)

    def encoded(self, encode: Callable[[object], str | bytes]) -> str | bytes:
        try:
            return self._encoded
        except AttributeError:
            self._encoded: str | bytes = encode(self)
            return self._encoded


class Shared:
    """A root value every subscriber of one event receives as the same object, its renderings memoized on it.
    Subclasses promise that everything under them is the same for every reader."""

    renderings: dict[str, tuple[object, ExecutionResult]]  # by selection: the schema that executed it, the result


E = TypeVar("E")
R = TypeVar("R", bound=Shared)


def selection_of(
    operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode], variables: Mapping[str, Any]
) -> str:
    """What a subscription's events are rendered by: its operation as text, its fragments, its variables' values."""
    printed = sorted(print_ast(fragment) for fragment in fragments.values())
    return "\n".join([print_ast(operation), *printed, repr(sorted(variables.items()))])


next_frames: ContextVar[Callable[[Rendered], Awaitable[None]] | None] = ContextVar("next_frames", default=None)
"""Sends a kept rendering as the running subscription operation's `next` message (None: no transport here can)."""


class Direct:
    """One subscription's way past per-event execution: its events whose selection is kept go to the transport."""

    def __init__(self, send: Callable[[Rendered], Awaitable[None]], selection: str, schema: object) -> None:
        self._send = send
        self._selection = selection
        self._schema = schema

    @classmethod
    def of(cls, info: strawberry.Info[Any, Any]) -> Direct | None:
        """The subscription's `Direct`, or None when its transport sends only what strawberry executed."""
        send = next_frames.get()
        if send is None:
            return None
        raw = info._raw_info
        return cls(send, selection_of(raw.operation, raw.fragments, info.variable_values), raw.schema)

    async def sent(self, root: Shared) -> bool:
        """Send `root`'s kept rendering of this selection; False (nothing sent) when it has none to send."""
        kept = root.renderings.get(self._selection)
        if kept is None or kept[0] is not self._schema or kept[1].extensions:
            return False
        assert isinstance(kept[1].data, Rendered)
        await self._send(kept[1].data)
        return True


async def unexecuted(
    info: strawberry.Info[Any, Any], events: AsyncIterable[E], root: Callable[[E], R]
) -> AsyncIterator[R]:
    """The shared roots (`root(event)`) of the events a subscription resolver still has to yield: the transport has
    sent the others, already rendered for this selection, itself."""
    direct = Direct.of(info)
    async for event in events:
        shared = root(event)
        if direct is None or not await direct.sent(shared):
            yield shared


class _Kept:
    """A subscription event's executor when its selection was already executed: the kept result."""

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> ExecutionResult:
        return self.result


class RenderOnce(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, except that a subscription event whose root is `Shared` is executed once per
    selection (operation and variables) and its result reused."""

    selection: str | None = None

    def build_per_event_executor(self, payload: Any) -> Any:
        if self.selection is None:  # once per subscription; every event's executor is a copy of this one
            self.selection = selection_of(self.operation, self.fragment_definitions, self.variable_values.coerced)
        if isinstance(payload, Shared):
            kept = payload.renderings.get(self.selection)
            if kept is not None and kept[0] is self.schema:
                return _Kept(kept[1])
        return super().build_per_event_executor(payload)

    def execute_operation(self, serially: bool | None = None) -> Any:
        root = self.root_value
        if self.selection is None or not isinstance(root, Shared):
            return super().execute_operation(serially)
        result = super().execute_operation(serially)
        if self.is_awaitable(result):

            async def keep() -> ExecutionResult:
                return self._keep(root, await result)

            return keep()
        return self._keep(root, result)

    def _keep(self, root: Shared, result: ExecutionResult) -> ExecutionResult:
        if result.errors or result.data is None or self.selection is None:
            return result
        shared = ExecutionResult(Rendered(result.data), None, result.extensions)
        root.renderings[self.selection] = (self.schema, shared)
        return shared
