"""The schema lotgraph serves when it federates remote subgraphs: its own, extended by what they add to its
entities, with resolvers that plan `_entities` requests. Built once at start-up; a subgraph that cannot be read
or that conflicts stops the start with a `FederationError` saying which and why."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import strawberry
from graphql import (
    GraphQLAbstractType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLTypeResolver,
    GraphQLUnionType,
)
from strawberry.federation.schema_directives import Key
from strawberry.schema.schema_converter import CustomGraphQLEnumType

from gateway.federation.client import fetch_sdls
from gateway.federation.composition import Subgraph, compose, extend
from gateway.settings import SubgraphSettings
from resolvers.remote import Authorize, wire
from schema.access import without_router_directives


def entities(schema: strawberry.Schema) -> dict[str, type]:
    """lotgraph's entity types (those with `@key`) by GraphQL name, with their Python classes."""
    found = {}
    for concrete in schema.schema_converter.type_map.values():
        definition = concrete.definition
        if any(isinstance(d, Key) for d in getattr(definition, "directives", None) or ()):
            found[definition.name] = definition.origin
    return found


def _authorizer(origin: type) -> Authorize:
    """An entity's own read check (`Lot.require_read`) guards the fields subgraphs add to it; entities without
    one were authorized when they were resolved (an order with its lot, a material for any caller)."""
    check: Callable[[Any, GraphQLResolveInfo], Awaitable[None]] | None = getattr(origin, "require_read", None)

    async def authorize(source: Any, info: GraphQLResolveInfo) -> None:
        if check is not None:
            await check(source, info)

    return authorize


def federate(
    schema: strawberry.Schema, subgraphs: Mapping[str, SubgraphSettings], *, router_directives: bool = True
) -> None:
    """Extend `schema` in place with every configured subgraph's additions. `_service { sdl }` answers lotgraph's
    own SDL, printed once (with or without the router directives), never the borrowed fields."""
    own_sdl = str(schema) if router_directives else without_router_directives(str(schema))
    if subgraphs:
        _extend(schema, subgraphs)
    service = schema._schema.type_map["_Service"]
    assert isinstance(service, GraphQLObjectType)
    service.fields["sdl"].resolve = lambda *_: own_sdl


def _extend(schema: strawberry.Schema, subgraphs: Mapping[str, SubgraphSettings]) -> None:
    found = entities(schema)
    composition = compose(schema._schema, found, [Subgraph(n, sdl) for n, sdl in fetch_sdls(subgraphs).items()])
    extended = extend(schema._schema, composition)
    _keep_strawberry_types(schema._schema, extended)
    wire(extended, composition, {name: _authorizer(origin) for name, origin in found.items()})
    extended._strawberry_schema = schema  # type: ignore[attr-defined]
    schema._schema = extended


def _keep_strawberry_types(original: GraphQLSchema, extended: GraphQLSchema) -> None:
    """graphql-core rebuilds every type when it extends a schema, as its own classes: strawberry's enums (which
    turn an argument into the Python enum a resolver compares against) would come back as plain GraphQL enums
    handing resolvers bare strings. Each rebuilt enum gets strawberry's class and its Python enum back, and each
    rebuilt union or interface resolves its members as before (see `_by_name`)."""
    for name, before in original.type_map.items():
        after = extended.type_map[name]
        if isinstance(before, CustomGraphQLEnumType) and not isinstance(after, CustomGraphQLEnumType):
            after.__class__ = CustomGraphQLEnumType
            after.wrapped_cls = before.wrapped_cls  # type: ignore[attr-defined]
        elif isinstance(before, GraphQLUnionType | GraphQLInterfaceType) and before.resolve_type is not None:
            assert isinstance(after, GraphQLUnionType | GraphQLInterfaceType)
            after.resolve_type = _by_name(before.resolve_type, before)


def _by_name(resolve_type: GraphQLTypeResolver, before: GraphQLAbstractType) -> GraphQLTypeResolver:
    """strawberry's resolver checks the member it finds against the abstract type's members, which it finds as
    the original schema's objects (`_Entity`'s Lot would be "not in the union" of rebuilt ones): it is asked about
    the original abstract type, and the name it answers is looked up in the extended schema."""

    def resolve(value: Any, info: GraphQLResolveInfo, _after: GraphQLAbstractType) -> Any:
        return resolve_type(value, info, before)

    return resolve
