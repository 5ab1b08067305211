"""Fields of lotgraph's entities that remote subgraphs resolve: planned as one batched `_entities` request per
subgraph and entity type per level of the query, with exactly the sub-selection the client asked for.

Every remote field of one entity type that resolves in the same tick (all 100 lots of a page, whatever remote
fields each asks for) goes into one request: each distinct sub-selection under an alias of its own, each lot
once in `representations`. Answers are merged back in order. A subgraph that fails fails its own fields only
(`UPSTREAM_*` or `SUBGRAPH_ERROR`, with `extensions.source`), like a REST source.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    SelectionSetNode,
    Visitor,
    ast_from_value,
    print_ast,
    type_from_ast,
    visit,
)
from graphql.language import ast
from strawberry.dataloader import DataLoader

from gateway.errors import UpstreamError
from gateway.federation.client import SubgraphClient
from gateway.federation.composition import Composition


class SubgraphError(UpstreamError):
    """The subgraph answered, with an error for this field; `subgraphCode` is its own code, if it gave one."""

    code = "SUBGRAPH_ERROR"


@dataclass(frozen=True)
class Selection:
    """One remote field as the client asked for it, self-contained: unaliased, variables replaced by their values,
    with the fragments it spreads."""

    field: str
    fragments: tuple[str, ...]


class _Inline(Visitor):
    """Variables become literals (so one request can carry selections of several operations), and every
    selection asks `__typename` (so the subgraph's abstract types resolve here as they did there)."""

    def __init__(self, info: GraphQLResolveInfo) -> None:
        super().__init__()
        self.info = info
        self.fragments: list[str] = []
        self.types = {d.variable.name.value: d.type for d in info.operation.variable_definitions or ()}

    def enter_fragment_spread(self, node: ast.FragmentSpreadNode, *_: object) -> None:
        self.fragments.append(node.name.value)

    def enter_variable(self, node: ast.VariableNode, *_: object) -> ast.ValueNode:
        name = node.name.value
        input_type = type_from_ast(self.info.schema, self.types[name])
        literal = ast_from_value(self.info.variable_values.get(name), input_type)  # type: ignore[arg-type]
        return literal or ast.NullValueNode()

    def leave_selection_set(self, node: SelectionSetNode, *_: object) -> SelectionSetNode:
        typename = FieldNode(name=ast.NameNode(value="__typename"), arguments=(), directives=(), selection_set=None)
        return SelectionSetNode(selections=(*node.selections, typename))


def selection(info: GraphQLResolveInfo) -> Selection:
    """What to send for this field: its field nodes merged and unaliased, with the fragments they spread."""
    first = info.field_nodes[0]
    selections = tuple(s for node in info.field_nodes if node.selection_set for s in node.selection_set.selections)
    merged = FieldNode(
        name=first.name,
        arguments=first.arguments,
        directives=first.directives,
        selection_set=SelectionSetNode(selections=selections) if selections else None,
    )
    inline = _Inline(info)
    field = print_ast(visit(merged, inline))
    fragments: dict[str, str] = {}
    while inline.fragments:
        name = inline.fragments.pop()
        if name not in fragments:
            fragments[name] = print_ast(visit(info.fragments[name], inline))
    return Selection(field, tuple(sorted(fragments.values())))


MAX_SELECTIONS = 1_000  # printed selections one context keeps


class RemoteEntities:
    """Per request: one loader per subgraph and entity type; a batch is one `_entities` request."""

    def __init__(self, clients: Mapping[str, SubgraphClient], authorization: str | None) -> None:
        self.clients = clients
        self.authorization = authorization
        self._loaders: dict[tuple[str, str], DataLoader[tuple[str, Selection], Any]] = {}
        self._selections: dict[tuple[int, ...], tuple[tuple[object, ...], Selection]] = {}

    def selection(self, info: GraphQLResolveInfo) -> Selection:
        """`selection(info)`, printed once per place in the query: the 100 lots of a page resolve the same
        field nodes of the same document with the same variables, so they share the printed selection."""
        kept = (*info.field_nodes, info.variable_values)
        key = tuple(map(id, kept))
        cached = self._selections.get(key)
        if cached is None or any(a is not b for a, b in zip(cached[0], kept, strict=True)):
            if len(self._selections) >= MAX_SELECTIONS:  # a WebSocket's context outlives many operations
                self._selections.clear()
            cached = self._selections[key] = (kept, selection(info))  # `kept` holds the ids' objects alive
        return cached[1]

    def loader(self, subgraph: str, typename: str) -> DataLoader[tuple[str, Selection], Any]:
        key = (subgraph, typename)
        if key not in self._loaders:
            # No cache: a WebSocket's context lives for many operations, and an entity's fields may change.
            self._loaders[key] = DataLoader(lambda keys: self._fetch(subgraph, typename, keys), cache=False)
        return self._loaders[key]

    async def _fetch(self, subgraph: str, typename: str, keys: list[tuple[str, Selection]]) -> list[Any]:
        ids = list(dict.fromkeys(entity_id for entity_id, _ in keys))
        wanted = list(dict.fromkeys(sel for _, sel in keys))
        alias = {sel: f"_{n}" for n, sel in enumerate(wanted)}
        fields = " ".join(f"{alias[sel]}: {sel.field}" for sel in wanted)
        fragments = "\n".join(dict.fromkeys(f for sel in wanted for f in sel.fragments))
        query = (
            "query($representations: [_Any!]!) { _entities(representations: $representations) { "
            f"... on {typename} {{ {fields} }} }} }}\n{fragments}"
        )
        representations = [{"__typename": typename, "id": entity_id} for entity_id in ids]
        try:
            answer = await self.clients[subgraph].execute(
                query, {"representations": representations}, self.authorization
            )
        except UpstreamError as exc:
            return [exc] * len(keys)
        found = (answer.get("data") or {}).get("_entities") or [None] * len(ids)
        if len(found) != len(ids):
            problem = f"subgraph {subgraph} answered {len(found)} entities for {len(ids)} representations"
            broken = SubgraphError(problem, source=subgraph)
            return [broken] * len(keys)
        errors = _errors_by_place(subgraph, answer.get("errors") or [], alias.values())
        position = {entity_id: n for n, entity_id in enumerate(ids)}
        results: list[Any] = []
        for entity_id, sel in keys:
            n, name = position[entity_id], alias[sel]
            entity = found[n]
            error = errors.get((n, name))
            if error is None and entity is None:  # the entity failed as a whole (a non-null field of it), or all
                error = errors.get((n, None)) or errors.get((None, None))
            results.append(error if error is not None else (entity or {}).get(name))
        return results


def _errors_by_place(
    subgraph: str, errors: list[dict[str, Any]], aliases: Iterable[str]
) -> dict[tuple[int | None, str | None], Exception]:
    """The subgraph's errors by (entity index, alias): `_entities.3._0.test` is entity 3's field `_0`; each also
    under (entity index, None), for sibling fields that came back null because the entity did."""
    known = set(aliases)
    placed: dict[tuple[int | None, str | None], Exception] = {}
    for error in errors:
        path = error.get("path") or []
        index = path[1] if len(path) > 1 and isinstance(path[1], int) else None
        name = path[2] if len(path) > 2 and path[2] in known else None
        extensions = error.get("extensions") or {}
        failure = SubgraphError(f"subgraph {subgraph}: {error.get('message', 'error')}", source=subgraph,
                                subgraphCode=extensions.get("code"))  # fmt: skip
        placed.setdefault((index, name), failure)
        placed.setdefault((index, None), failure)  # what nulls a field can null its whole entity
    return placed


Authorize = Callable[[Any, GraphQLResolveInfo], Awaitable[None]]


def remote_field(subgraph: str, typename: str, authorize: Authorize) -> Callable[..., Awaitable[Any]]:
    """The resolver of a field `subgraph` adds to lotgraph's `typename`: the entity's own read decision first,
    then its part of the batch."""

    async def resolve(source: Any, info: GraphQLResolveInfo, **_: Any) -> Any:
        await authorize(source, info)
        remote: RemoteEntities = info.context.remote
        return await remote.loader(subgraph, typename).load((str(source.id), remote.selection(info)))

    return resolve


def by_response_key(source: Any, info: GraphQLResolveInfo, **_: Any) -> Any:
    """Fields of a subgraph's own types: the value the subgraph sent under the key the client asked for."""
    node = info.field_nodes[0]
    return source.get((node.alias or node.name).value) if isinstance(source, dict) else None


def wire(schema: GraphQLSchema, composition: Composition, authorize: Mapping[str, Authorize]) -> None:
    """Give the subgraphs' fields their resolvers in the extended schema."""
    for (typename, field_name), subgraph in composition.owners.items():
        schema.type_map[typename].fields[field_name].resolve = remote_field(  # type: ignore[attr-defined]
            subgraph, typename, authorize[typename]
        )
    for typename in composition.types:
        kind = schema.type_map[typename]
        if isinstance(kind, GraphQLObjectType):
            for field_def in kind.fields.values():
                field_def.resolve = by_response_key
