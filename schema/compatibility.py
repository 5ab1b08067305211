"""Is the live schema compatible with an older published one?

graphql-core finds the breaking and dangerous changes; on top of that the deprecate-first rule: removing a
field, argument or enum value that the old schema already marked `@deprecated` is a planned removal, not a
break, because clients were told to move away. Everything else that graphql-core calls breaking blocks.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from graphql import (
    DEFAULT_DEPRECATION_REASON,
    DocumentNode,
    EnumValueDefinitionNode,
    FieldDefinitionNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InputValueDefinitionNode,
    NamedTypeNode,
    NameNode,
    ScalarTypeDefinitionNode,
    StringValueNode,
    TypeDefinitionNode,
    TypeExtensionNode,
    build_ast_schema,
    parse,
    specified_scalar_types,
)
from graphql.language import (
    EnumTypeDefinitionNode,
    EnumTypeExtensionNode,
    InputObjectTypeDefinitionNode,
    InputObjectTypeExtensionNode,
    InterfaceTypeDefinitionNode,
    InterfaceTypeExtensionNode,
    ObjectTypeDefinitionNode,
    ObjectTypeExtensionNode,
    ScalarTypeExtensionNode,
    UnionTypeDefinitionNode,
    UnionTypeExtensionNode,
    Visitor,
    visit,
)
from graphql.utilities import find_breaking_changes, find_dangerous_changes

# Where the published SDL lives inside the repository: what `git show REF:...` reads.
PUBLISHED_PATH = "schema/schema.graphql"

# A federation 1 subgraph extends types it never defines (`extend type Lot @key(...)`).
_DEFINITION_OF = {
    ObjectTypeExtensionNode: ObjectTypeDefinitionNode,
    InterfaceTypeExtensionNode: InterfaceTypeDefinitionNode,
    InputObjectTypeExtensionNode: InputObjectTypeDefinitionNode,
    EnumTypeExtensionNode: EnumTypeDefinitionNode,
    UnionTypeExtensionNode: UnionTypeDefinitionNode,
    ScalarTypeExtensionNode: ScalarTypeDefinitionNode,
}

_WITH_FIELDS = (GraphQLObjectType, GraphQLInterfaceType, GraphQLInputObjectType)


class SchemaSourceError(Exception):
    """The schema to compare against cannot be had: no such file, no such git ref, or not SDL."""


@dataclass(frozen=True)
class Change:
    verdict: str  # BREAKING, DANGEROUS or PLANNED_REMOVAL
    kind: str  # graphql-core's change type, e.g. FIELD_REMOVED
    description: str

    def line(self) -> str:
        return f"{self.verdict} {self.kind}: {self.description}"


@dataclass(frozen=True)
class Report:
    breaking: tuple[Change, ...]
    dangerous: tuple[Change, ...]
    planned: tuple[Change, ...]

    @property
    def ok(self) -> bool:
        return not self.breaking

    def lines(self) -> list[str]:
        return [change.line() for change in (*self.breaking, *self.dangerous, *self.planned)]

    def summary(self) -> str:
        return (
            f"{len(self.breaking)} breaking, {len(self.dangerous)} dangerous, "
            f"{len(self.planned)} planned removal(s) of deprecated elements"
        )


def read_against(against: str, repo: Path = Path()) -> tuple[str, str]:
    """The old SDL and a label for it. A path to an existing file wins; otherwise `against` is a git ref of
    the repository at `repo`, and the SDL is `PUBLISHED_PATH` as committed there."""
    path = Path(against)
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{against}^{{commit}}").returncode != 0:
        raise SchemaSourceError(
            f"--against {against!r} is neither an SDL file nor a git ref (tag, branch, commit) in {repo.resolve()}"
        )
    shown = _git(repo, "show", f"{against}:{PUBLISHED_PATH}")
    if shown.returncode != 0:
        raise SchemaSourceError(f"git ref {against!r} has no {PUBLISHED_PATH}: {shown.stderr.strip()}")
    return shown.stdout, f"{against}:{PUBLISHED_PATH}"


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise SchemaSourceError("not a file, and git is not installed to read it as a ref") from error


def compare(old_sdl: str, new_sdl: str) -> Report:
    """The changes from `old_sdl` to `new_sdl`, deprecated removals set apart from the breaking ones."""
    old_document, new_document = _document(old_sdl), _document(new_sdl)
    # A type either side only references (federation's `_FieldSet`, `link__Import`) is the same on both.
    undefined = _undefined_types(old_document) | _undefined_types(new_document)
    new = _build(new_document, undefined)
    old_document, planned = _retire_deprecated(old_document, new)
    old = _build(old_document, undefined)
    return Report(
        breaking=tuple(Change("BREAKING", c.type.name, c.description) for c in find_breaking_changes(old, new)),
        dangerous=tuple(Change("DANGEROUS", c.type.name, c.description) for c in find_dangerous_changes(old, new)),
        planned=tuple(planned),
    )


def _document(sdl: str) -> DocumentNode:
    """The parsed SDL, where an extension of a type defined nowhere (`extend type Lot @key(...)` in a
    federation 1 subgraph) has become that type's definition. Later, directives the SDL uses but does not
    define (`@link`, `@key`, `@authenticated`, ...) are ignored and types it only references become scalars."""
    try:
        document = parse(sdl)
    except GraphQLSyntaxError as error:
        where = ", ".join(f"line {at.line}, column {at.column}" for at in error.locations or ())
        raise SchemaSourceError(f"not valid SDL: {error.message} ({where})") from error
    defined = _defined_types(document)
    definitions = list(document.definitions)
    for index, node in enumerate(definitions):
        if isinstance(node, TypeExtensionNode) and node.name.value not in defined:
            definition = _DEFINITION_OF[type(node)]
            definitions[index] = definition(**{key: getattr(node, key, None) for key in definition.keys})
            defined.add(node.name.value)
    return replace(document, definitions=tuple(definitions))


def _defined_types(document: DocumentNode) -> set[str]:
    return {node.name.value for node in document.definitions if isinstance(node, TypeDefinitionNode)}


def _undefined_types(document: DocumentNode) -> set[str]:
    referenced = _ReferencedTypes()
    visit(document, referenced)
    return referenced.names - _defined_types(document) - set(specified_scalar_types)


def _build(document: DocumentNode, undefined: set[str]) -> GraphQLSchema:
    placeholders = sorted(undefined - _defined_types(document))
    definitions = (
        *document.definitions,
        *(ScalarTypeDefinitionNode(name=NameNode(value=name), directives=()) for name in placeholders),
    )
    try:
        return build_ast_schema(replace(document, definitions=definitions), assume_valid=True, assume_valid_sdl=True)
    except (GraphQLError, TypeError) as error:  # graphql-core raises TypeError for SDL it cannot build
        raise SchemaSourceError(f"the SDL does not make a schema: {error}") from error


class _ReferencedTypes(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_named_type(self, node: NamedTypeNode, *_: object) -> None:
        self.names.add(node.name.value)


def _retire_deprecated(document: DocumentNode, new: GraphQLSchema) -> tuple[DocumentNode, list[Change]]:
    """The old document without the deprecated fields, arguments and enum values that `new` dropped (so
    graphql-core does not count them), and those removals as planned ones. Only where the type itself lives
    on: a removed type stays breaking, deprecated members or not."""
    planned: list[Change] = []
    definitions = []
    for node in document.definitions:
        if isinstance(node, TypeDefinitionNode | TypeExtensionNode):
            new_type = new.type_map.get(node.name.value)
            if getattr(node, "fields", None) and isinstance(new_type, _WITH_FIELDS):
                node = replace(node, fields=_kept_fields(node.name.value, node.fields, new_type.fields, planned))
            elif getattr(node, "values", None) and isinstance(new_type, GraphQLEnumType):
                node = replace(node, values=_kept_values(node.name.value, node.values, new_type, planned))
        definitions.append(node)
    return replace(document, definitions=tuple(definitions)), planned


def _kept_fields(
    type_name: str,
    fields: tuple[FieldDefinitionNode | InputValueDefinitionNode, ...],
    new_fields: dict[str, GraphQLField] | dict[str, GraphQLInputField],
    planned: list[Change],
) -> tuple[FieldDefinitionNode | InputValueDefinitionNode, ...]:
    kept = []
    for field in fields:
        name = field.name.value
        new_field = new_fields.get(name)
        if new_field is None and (reason := _deprecation(field)) is not None:
            planned.append(_planned("FIELD_REMOVED", f"Field {type_name}.{name} was removed", reason))
            continue
        if isinstance(field, FieldDefinitionNode) and isinstance(new_field, GraphQLField) and field.arguments:
            arguments = []
            for argument in field.arguments:
                coordinate = f"{type_name}.{name}({argument.name.value}:)"
                if argument.name.value not in new_field.args and (reason := _deprecation(argument)) is not None:
                    planned.append(_planned("ARG_REMOVED", f"Argument {coordinate} was removed", reason))
                else:
                    arguments.append(argument)
            field = replace(field, arguments=tuple(arguments))
        kept.append(field)
    return tuple(kept)


def _kept_values(
    type_name: str, values: tuple[EnumValueDefinitionNode, ...], new_type: GraphQLEnumType, planned: list[Change]
) -> tuple[EnumValueDefinitionNode, ...]:
    kept = []
    for value in values:
        name = value.name.value
        if name not in new_type.values and (reason := _deprecation(value)) is not None:
            planned.append(_planned("VALUE_REMOVED_FROM_ENUM", f"Enum value {type_name}.{name} was removed", reason))
        else:
            kept.append(value)
    return tuple(kept)


def _planned(kind: str, what: str, reason: str) -> Change:
    return Change("PLANNED_REMOVAL", kind, f"{what} (deprecated: {reason}).")


def _deprecation(node: FieldDefinitionNode | InputValueDefinitionNode | EnumValueDefinitionNode) -> str | None:
    """The deprecation reason, or None when the element is not deprecated."""
    for directive in node.directives or ():
        if directive.name.value == "deprecated":
            for argument in directive.arguments or ():
                if argument.name.value == "reason" and isinstance(argument.value, StringValueNode):
                    return argument.value.value
            return DEFAULT_DEPRECATION_REASON
    return None
