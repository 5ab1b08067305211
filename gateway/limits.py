"""Operation governance: bounds on what one request may ask, each refused with its own code.

Depth, aliases and an estimated cost are measured on the parsed operation with its variables, before
any resolver runs: every field costs 1 per object it is resolved for; a field with a `first` argument
(a page, e.g. a connection) multiplies what is below it by `first`, and any other list by
`default_list_size` (the `edges` of a page already counted are not multiplied again). A field marked as a `Walk`
(genealogy) makes one upstream request per level for each object it is resolved for, none batched with the
others, and may reach thousands of lots: each level costs `walk_level_cost`, lists below it count
`default_list_size` per level, and a walk below another walk's nodes (one walk per lot reached) is refused
outright (`NESTED_GENEALOGY`). So an admitted operation makes at most `max_cost / walk_level_cost` walk requests.
Request bodies are capped before they are read, and a whole operation has a time budget.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
    value_from_ast_untyped,
)
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension
from strawberry.types.field import StrawberryField

from gateway.quota import RedisQuota
from gateway.resilience import TokenBucket


class LimitSettings(BaseModel):
    """`LOTGRAPH_LIMITS__MAX_DEPTH=12`, ..."""

    max_depth: int = Field(default=12, ge=1)
    max_aliases: int = Field(default=30, ge=0)
    max_cost: int = Field(default=200_000, ge=1)  # a 1,000-lot page with its stock, inspections and holds fits
    walk_level_cost: int = Field(
        default=1_000, ge=1, description="What each level of a genealogy counts: an upstream request of its own."
    )
    default_list_size: int = Field(default=20, ge=1, description="What a list without `first` counts as.")
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    operation_timeout: float = Field(default=60.0, gt=0)
    client_rps: float | None = Field(default=None, gt=0, description="Requests per second per caller (token subject).")
    client_burst: int = Field(default=20, ge=1)


WALK = "lotgraph.walk"  # the key of a `Walk` in a strawberry field's metadata


@dataclass(frozen=True)
class Walk:
    """Marks a field (`strawberry.field(metadata={WALK: Walk(...)})`) that walks a graph level by level, up to its
    `depth_argument` levels (`assumed_depth` when left out)."""

    depth_argument: str
    assumed_depth: int


@dataclass(frozen=True)
class Measure:
    depth: int
    aliases: int
    cost: int
    nested_walk: str | None = None  # "genealogy under genealogy", if the operation asks for one


def measure(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    default_list_size: int,
    walk_level_cost: int = LimitSettings().walk_level_cost,
) -> Measure:
    root = schema.get_root_type(operation.operation)
    walker = _Walker(fragments, variables or {}, default_list_size, walk_level_cost)
    depth, cost = walker.walk(operation.selection_set, root, 1, paged=False)
    return Measure(depth=depth, aliases=walker.aliases, cost=cost, nested_walk=walker.nested_walk)


def _walk_of(definition: GraphQLField) -> Walk | None:
    field = definition.extensions.get("strawberry-definition")
    return field.metadata.get(WALK) if isinstance(field, StrawberryField) else None


class _Walker:
    def __init__(
        self, fragments: Mapping[str, FragmentDefinitionNode], variables: Mapping[str, Any], size: int, level_cost: int
    ) -> None:
        self.fragments = fragments
        self.variables = variables
        self.size = size
        self.level_cost = level_cost
        self.aliases = 0
        self.nested_walk: str | None = None

    def fields(self, selection_set: SelectionSetNode, seen: frozenset[str] = frozenset()) -> Iterator[FieldNode]:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from self.fields(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    yield from self.fields(fragment.selection_set, seen | {selection.name.value})

    def walk(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None, multiplier: int, paged: bool,
        list_size: int | None = None, inside: str | None = None,
    ) -> tuple[int, int]:  # fmt: skip
        """(depth, cost) of a selection set resolved `multiplier` times; `paged`: just below a `first`; `list_size`:
        what a list counts as here (a walk's nodes: per level); `inside`: the walk this selection is under."""
        depth, cost = 0, 0
        for field in self.fields(selection_set):
            if field.name.value.startswith("__"):
                continue  # introspection is governed by the introspection setting, not by cost
            if field.alias is not None:
                self.aliases += 1
            cost += multiplier
            definition = parent.fields.get(field.name.value) if isinstance(parent, GraphQLObjectType) else None
            if field.selection_set is None or definition is None:
                depth = max(depth, 1)
                continue
            size, under, walk = list_size or self.size, inside, _walk_of(definition)
            if walk is not None:
                if inside is not None:
                    self.nested_walk = self.nested_walk or f"{field.name.value} under {inside}"
                levels = self._levels(field, walk)
                cost += multiplier * levels * self.level_cost
                size, under = self.size * max(levels, 1), field.name.value
            first = self._first(field)
            is_list = isinstance(get_nullable_type(definition.type), GraphQLList)
            if first is not None:
                inner, child_paged = multiplier * first, True
            else:
                inner, child_paged = multiplier * (size if is_list and not paged else 1), False
            child_depth, child_cost = self.walk(
                field.selection_set, get_named_type(definition.type), inner, child_paged, size if walk else None, under
            )
            depth, cost = max(depth, 1 + child_depth), cost + child_cost
        return depth, cost

    def _levels(self, field: FieldNode, walk: Walk) -> int:
        for argument in field.arguments or ():
            if argument.name.value == walk.depth_argument:
                value = value_from_ast_untyped(argument.value, self.variables)
                return value if isinstance(value, int) and value > 0 else walk.assumed_depth
        return walk.assumed_depth

    def _first(self, field: FieldNode) -> int | None:
        for argument in field.arguments or ():
            if argument.name.value == "first":
                value = value_from_ast_untyped(argument.value, self.variables)
                return value if isinstance(value, int) and value > 0 else self.size
        return None


class OperationLimits(SchemaExtension):
    """Refuses, before execution, an operation deeper, more aliased or costlier than allowed."""

    settings = LimitSettings()

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        operation = next(
            (
                d
                for d in (document.definitions if document else ())
                if isinstance(d, OperationDefinitionNode)
                and (context.operation_name is None or (d.name and d.name.value == context.operation_name))
            ),
            None,
        )
        if operation is not None:
            fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
            limits = self.settings
            found = measure(
                context.schema._schema, operation, fragments, context.variables or {}, limits.default_list_size,
                limits.walk_level_cost,
            )  # fmt: skip
            if found.nested_walk is not None:
                raise GraphQLError(
                    f"the operation asks for {found.nested_walk}'s nodes: that walks once per lot reached (thousands "
                    "of upstream requests); walk once with a larger maxDepth, or ask for those lots separately",
                    extensions={"code": "NESTED_GENEALOGY"},
                )
            for value, limit, code, what in (
                (found.depth, limits.max_depth, "QUERY_TOO_DEEP", "nests"),
                (found.aliases, limits.max_aliases, "TOO_MANY_ALIASES", "uses aliases"),
                (found.cost, limits.max_cost, "QUERY_TOO_COSTLY", "is estimated to cost"),
            ):
                if value > limit:
                    raise GraphQLError(
                        f"the operation {what} {value}, more than the {limit} allowed",
                        extensions={"code": code, "limit": limit, "measured": value},
                    )
        yield


def limits_extension(settings: LimitSettings) -> type[OperationLimits]:
    """The extension class bound to these settings (strawberry builds one per request)."""
    return type("ConfiguredOperationLimits", (OperationLimits,), {"settings": settings})


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413 before they are buffered, chunked ones included."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        received = 0

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counting, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {"errors": [{"message": f"request body over {self.max_bytes} bytes",
                            "extensions": {"code": "REQUEST_TOO_LARGE", "limit": self.max_bytes}}]}  # fmt: skip
        await JSONResponse(body, status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


class ClientRateLimits:
    """A token bucket per caller, so one abusive client cannot take the gateway from the others; with a
    shared quota (Redis) the limit holds across replicas."""

    def __init__(
        self, rps: float | None, burst: int, shared: RedisQuota | None = None, max_clients: int = 100_000
    ) -> None:
        self.rps = rps
        self.burst = burst
        self.shared = shared
        self.max_clients = max_clients
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    async def wait_for(self, client: str) -> float:
        """0.0 when `client` may go ahead now; otherwise the seconds to wait (for `Retry-After`)."""
        if self.rps is None:
            return 0.0
        if self.shared is not None:
            return await self.shared.wait_for(client)
        bucket = self.buckets.get(client)
        if bucket is None:
            bucket = self.buckets[client] = TokenBucket(self.rps, self.burst)
            if len(self.buckets) > self.max_clients:
                self.buckets.popitem(last=False)
        self.buckets.move_to_end(client)
        return bucket.try_take()
