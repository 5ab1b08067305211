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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import ExecutionResult, print_ast
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
            fragments = sorted(print_ast(fragment) for fragment in self.fragment_definitions.values())
            variables = repr(sorted(self.variable_values.coerced.items()))
            self.selection = "\n".join([print_ast(self.operation), *fragments, variables])
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
