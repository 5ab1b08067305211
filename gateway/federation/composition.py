"""Remote subgraphs joined to lotgraph's schema at start-up.

Each subgraph's SDL is read for what it adds to lotgraph's entities (`type Lot @key(fields: "id") { ... }`
with fields lotgraph does not have) and the types those fields need. Anything that would make two owners of one
thing is refused before the gateway serves: a type of lotgraph's defined again (not as an entity extension),
a field defined by both sides, a type two subgraphs both define, an entity keyed by anything but `id`.

The result extends the executable schema (graphql-core's `extend_schema`); resolvers for the new fields are
wired by `resolvers/remote.py`. lotgraph's own `_service { sdl }` stays its own: a router composing lotgraph
gets lotgraph's fields, not the ones lotgraph borrows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from graphql import (
    REMOVE,
    DocumentNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLSyntaxError,
    Visitor,
    extend_schema,
    parse,
    print_schema,
    specified_scalar_types,
    visit,
)
from graphql.language import ast

from gateway.federation.client import FederationError

log = logging.getLogger("lotgraph.federation")

ROOTS = frozenset({"Query", "Mutation", "Subscription"})
# What a subgraph's SDL carries for Federation itself; never part of the API schema.
FEDERATION_TYPES = frozenset({"_Any", "_Entity", "_Service", "_FieldSet", "FieldSet", "link__Import", "link__Purpose"})


@dataclass(frozen=True)
class Subgraph:
    name: str
    sdl: str


@dataclass
class Composition:
    """What the subgraphs add: fields on lotgraph's entities (`owners[(type, field)]` is the subgraph resolving
    it) and types of their own (`types[name]` likewise), as one SDL extension document."""

    owners: dict[tuple[str, str], str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    definitions: list[ast.DefinitionNode] = field(default_factory=list)

    @property
    def document(self) -> DocumentNode:
        return DocumentNode(definitions=tuple(self.definitions))


class _DropFederationDirectives(Visitor):
    """Federation's directives (`@key`, `@shareable`, `@external`, ...) mean nothing to the API schema."""

    def enter_directive(self, node: ast.DirectiveNode, *_: object) -> object:
        return None if node.name.value == "deprecated" else REMOVE


def _is_federation(name: str) -> bool:
    return name in FEDERATION_TYPES or name.startswith(("federation__", "link__", "join__"))


def _keys(node: ast.ObjectTypeDefinitionNode | ast.ObjectTypeExtensionNode) -> list[str]:
    return [
        argument.value.value
        for directive in node.directives or ()
        if directive.name.value == "key"
        for argument in directive.arguments or ()
        if argument.name.value == "fields" and isinstance(argument.value, ast.StringValueNode)
    ]


def _named(type_node: ast.TypeNode) -> str:
    while not isinstance(type_node, ast.NamedTypeNode):
        type_node = type_node.type  # type: ignore[attr-defined]
    return type_node.name.value


def _is_external(node: ast.FieldDefinitionNode) -> bool:
    return any(d.name.value == "external" for d in node.directives or ())


def compose(schema: GraphQLSchema, entities: Iterable[str], subgraphs: Iterable[Subgraph]) -> Composition:
    """Check each subgraph against lotgraph's schema (and the ones before it) and gather what it adds.
    `entities` are lotgraph's types keyed by `id`: the only ones a subgraph may add fields to."""
    entity_names = frozenset(entities)
    result = Composition()
    extensions: dict[str, list[ast.FieldDefinitionNode]] = {}
    for subgraph in subgraphs:
        try:
            document = parse(subgraph.sdl)
        except GraphQLSyntaxError as exc:
            raise FederationError(f"subgraph {subgraph.name}: its SDL does not parse: {exc.message}") from exc
        for definition in document.definitions:
            if not isinstance(definition, ast.TypeDefinitionNode | ast.TypeExtensionNode):
                continue  # schema definition, @link, directive definitions: Federation's business
            name = definition.name.value
            if name in ROOTS or _is_federation(name):
                continue
            existing = schema.type_map.get(name)
            if (
                isinstance(definition, ast.ObjectTypeDefinitionNode | ast.ObjectTypeExtensionNode)
                and name in entity_names
            ):
                extensions.setdefault(name, []).extend(_entity_fields(subgraph, definition, existing, result))
            elif existing is not None:
                if isinstance(existing, GraphQLScalarType) and isinstance(definition, ast.ScalarTypeDefinitionNode):
                    continue  # a scalar both sides name (DateTime) is the same scalar
                raise FederationError(
                    f"subgraph {subgraph.name} defines type {name}, which lotgraph defines: only the entities "
                    f'{", ".join(sorted(entity_names))} can be extended (with @key(fields: "id"))'
                )
            elif name in result.types:
                raise FederationError(
                    f"type {name} is defined by subgraphs {result.types[name]} and {subgraph.name}: give one of them "
                    "another name"
                )
            else:
                result.types[name] = subgraph.name
                result.definitions.append(visit(definition, _DropFederationDirectives()))
    for name, fields in extensions.items():
        if fields:
            result.definitions.append(ast.ObjectTypeExtensionNode(
                name=ast.NameNode(value=name), interfaces=(), directives=(), fields=tuple(fields)))  # fmt: skip
    _leave_out_references_to_lotgraph(schema, result)
    return result


def _entity_fields(
    subgraph: Subgraph,
    definition: ast.ObjectTypeDefinitionNode | ast.ObjectTypeExtensionNode,
    existing: GraphQLNamedType | None,
    result: Composition,
) -> list[ast.FieldDefinitionNode]:
    """The fields a subgraph adds to one of lotgraph's entities; a conflict is a `FederationError`."""
    name = definition.name.value
    keys = _keys(definition)
    if keys != ["id"]:
        found = ", ".join(f'"{key}"' for key in keys) or "none"
        raise FederationError(
            f'subgraph {subgraph.name} extends {name} with keys {found}: lotgraph resolves its entities by "id" only'
        )
    assert isinstance(existing, GraphQLObjectType)
    added = []
    for field_node in definition.fields or ():
        field_name = field_node.name.value
        if field_name == "id" or _is_external(field_node):
            continue
        if field_name in existing.fields:
            raise FederationError(
                f"non-shareable field {name}.{field_name} is defined by lotgraph and by subgraph {subgraph.name}"
            )
        if (owner := result.owners.get((name, field_name))) is not None:
            raise FederationError(f"field {name}.{field_name} is defined by subgraphs {owner} and {subgraph.name}")
        result.owners[(name, field_name)] = subgraph.name
        added.append(_nullable(visit(field_node, _DropFederationDirectives())))
    return added


def _nullable(field_node: ast.FieldDefinitionNode) -> ast.FieldDefinitionNode:
    """A borrowed field is nullable in lotgraph, like every field a source system answers: when the subgraph
    fails, that field is null with its error, and the lot around it still resolves."""
    if not isinstance(field_node.type, ast.NonNullTypeNode):
        return field_node
    return ast.FieldDefinitionNode(**{**_fields_of(field_node), "type": field_node.type.type})


def _leave_out_references_to_lotgraph(schema: GraphQLSchema, result: Composition) -> None:
    """A subgraph field returning one of lotgraph's own types (`LabSample.lot: Lot`) would need planning back
    into lotgraph; such fields are left out, and said so, rather than answered wrongly."""
    allowed = set(result.types) | set(specified_scalar_types)
    allowed |= {name for name, kind in schema.type_map.items() if isinstance(kind, GraphQLScalarType)}
    kept: list[ast.DefinitionNode] = []
    for definition in result.definitions:
        fields = getattr(definition, "fields", None)
        if fields is None or isinstance(definition, ast.InputObjectTypeDefinitionNode | ast.EnumTypeDefinitionNode):
            kept.append(definition)
            continue
        keep = tuple(f for f in fields if _named(f.type) in allowed)
        for dropped in (f for f in fields if f not in keep):
            owner = result.types.get(definition.name.value) or result.owners.pop(
                (definition.name.value, dropped.name.value), "?"
            )
            log.warning("subgraph %s: %s.%s returns lotgraph's %s and is left out (not planned back into lotgraph)",
                        owner, definition.name.value, dropped.name.value, _named(dropped.type))  # fmt: skip
        kept.append(definition.__class__(**{**_fields_of(definition), "fields": keep}))
    result.definitions = kept


def _fields_of(node: ast.Node) -> dict[str, object]:
    return {key: getattr(node, key) for key in node.keys if key != "loc"}


def extend(schema: GraphQLSchema, composition: Composition) -> GraphQLSchema:
    """lotgraph's executable schema with the subgraphs' additions (resolvers not yet wired)."""
    if not composition.definitions:
        return schema
    try:
        return extend_schema(schema, composition.document)
    except (TypeError, GraphQLError) as exc:  # graphql-core reports invalid SDL as either
        raise FederationError(f"the subgraphs' additions do not fit lotgraph's schema: {exc}") from exc


def supergraph_sdl(schema: GraphQLSchema) -> str:
    """The composed API schema, as clients of this gateway see it."""
    return print_schema(schema)
