"""Lists of plain objects completed in one loop, not field by field through graphql-core's general path.

A genealogy answers 12,000 lots and 17,000 links: graphql-core completes every field of every item through its
general machinery (resolve info, strawberry's resolver wrapper, awaitable checks, completion dispatched by type),
some 110,000 times, and that was most of the gateway's CPU for the query. Most of those fields are plain: an
attribute read by strawberry's default resolver, a scalar serialized, an object of such fields.

`PlainLists` (part of the schema's executor) plans once per list field and selection which selected fields of
the item type are plain (leaves; objects, and lists of objects, whose selected fields are all plain), and completes
them for every item in a tight loop. Every other field (a resolver of its own, arguments, a list of leaves, an
abstract type, middleware) runs through graphql-core's `execute_field` as before, for each item. An item the plan
does not fit (null, an error, awaitable; a null where the schema promises a value; a value its scalar would not
serialize) is completed whole by graphql-core, so its errors and their paths are graphql-core's own. @defer,
@stream and `is_type_of` checks leave the list to graphql-core altogether.

Presets: a resolver that a list answers in advance for its items (a page of lots loads what its lots' fields read
before they resolve) names, in its field's metadata (`PRESET`), a function reading the answer from the item. The
plan takes that answer as plain when there is one; while the function says `UNSET` the resolver runs (and an
object nested in an item, whose preset is `UNSET`, sends the item the general way). The resolver must give the
preset's answer too, so both paths say the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from math import isfinite
from operator import attrgetter
from typing import Any, Final

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    is_leaf_type,
    is_object_type,
    is_specified_scalar_type,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path, Undefined, gather_with_cancel
from graphql.type.introspection import TypeNameMetaFieldDef
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

PRESET: Final = "lotgraph.preset"  # field metadata: `(item) -> answer | UNSET`, an answer a list filled in advance


class Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()  # no preset answer: the field's resolver answers


class _Deviates(Exception):
    """An item's plain field is not what the plan expects: the item goes the general way."""


_DEVIATES = _Deviates()


@dataclass(frozen=True, slots=True)
class _Field:
    """One selected field of a plan: its response name, and how a plain value of it is read and completed."""

    name: str
    details: FieldDetailsList
    read: Callable[[Any], Any] | None  # reads a plain value from the item; None: a general field (or `__typename`)
    preset: bool  # `read` reads a preset: UNSET means the field is general for that item
    constant: str | None  # `__typename`
    nullable: bool
    leaf: GraphQLLeafType | None
    as_is: type | None  # values of exactly this type are their own serialization (str of String and ID, ...)
    finite: bool  # ... if finite (float of Float)
    nested: _Plan | None  # a plain object's own plan (of each element, for a list of objects)
    elements: bool = False  # a list of `nested` objects
    elements_nullable: bool = False

    @property
    def general(self) -> bool:
        return self.read is None and self.constant is None


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to complete one object type's selection: its fields in response order."""

    parent: GraphQLObjectType
    fields: tuple[_Field, ...]
    closed: bool  # no general field: with its presets there, an item completes without `execute_field`


# Scalars whose values of exactly these types graphql-core serializes as themselves (a Float if finite).
_AS_IS: Final[dict[str, type]] = {"String": str, "ID": str, "Boolean": bool, "Float": float}
_PENDING: Final = object()  # a general field's place in a row, before it is executed


class PlainLists(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, with lists of plain objects completed in one loop (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # By item type and the list's field details (kept alive with the plan, so its id stays theirs), as
        # graphql-core memoizes collected subfields. None: the list goes the general way.
        self._plans: dict[tuple[GraphQLObjectType, int], tuple[FieldDetailsList, _Plan | None]] = {}
        self._settled_types: set[type] = set()  # types whose values are neither awaitable nor errors

    def complete_list_value(
        self,
        return_type: Any,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        item_type = return_type.of_type
        named = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
        if (
            position_context is None  # not under @defer
            and type(result) in (list, tuple)
            and is_object_type(named)
            and self.get_stream_usage(field_details_list, path) is None
        ):
            plan = self._list_plan(named, field_details_list)
            if plan is not None:
                return self._complete_items(plan, item_type, field_details_list, info, path, result)
        return super().complete_list_value(return_type, field_details_list, info, path, result, position_context)

    def _list_plan(self, item_type: GraphQLObjectType, details: FieldDetailsList) -> _Plan | None:
        key = (item_type, id(details))
        if (kept := self._plans.get(key)) is None:
            kept = self._plans[key] = (details, self._plan(item_type, details))
        return kept[1]

    def _plan(self, object_type: GraphQLObjectType, details: FieldDetailsList) -> _Plan | None:
        """The plan of `object_type`'s selection, or None when graphql-core must complete it (is_type_of, @defer,
        or no field plain at all: nothing to gain)."""
        if object_type.is_type_of is not None:
            return None
        grouped, defer_usages, _ = self.collect_subfields(object_type, details)
        if defer_usages:
            return None
        fields = tuple(self._field(object_type, name, field_details) for name, field_details in grouped.items())
        if all(field.general for field in fields):
            return None
        return _Plan(object_type, fields, closed=not any(field.general for field in fields))

    def _field(self, parent: GraphQLObjectType, name: str, details: FieldDetailsList) -> _Field:
        node = details[0].node
        field_def = self.schema.get_field(parent, node.name.value)
        general = _Field(name, details, None, False, None, True, None, None, False, None)
        if field_def is None:
            return general
        if field_def is TypeNameMetaFieldDef:
            return _Field(name, details, None, False, parent.name, False, None, None, False, None)
        read, preset = self._reader(field_def)
        if read is None or node.arguments:
            return general
        field_type: GraphQLOutputType = field_def.type
        nullable = not isinstance(field_type, GraphQLNonNull)
        named = field_type if nullable else field_type.of_type  # type: ignore[union-attr]
        if is_leaf_type(named):
            as_is = _AS_IS.get(named.name) if is_specified_scalar_type(named) else None  # type: ignore[union-attr]
            finite = as_is is float
            return _Field(name, details, read, preset, None, nullable, named, as_is, finite, None)  # type: ignore[arg-type]
        if is_object_type(named):
            nested = self._plan(named, details)  # type: ignore[arg-type]
            if nested is not None and nested.closed:
                return _Field(name, details, read, preset, None, nullable, None, None, False, nested)
        elif isinstance(named, GraphQLList) and not _streamed(details):
            element = named.of_type
            elements_nullable = not isinstance(element, GraphQLNonNull)
            element = element if elements_nullable else element.of_type
            nested = self._plan(element, details) if is_object_type(element) else None  # type: ignore[arg-type]
            if nested is not None and nested.closed:
                return _Field(name, details, read, preset, None, nullable, None, None, False, nested, True,
                              elements_nullable)  # fmt: skip
        return general

    def _reader(self, field_def: GraphQLField) -> tuple[Callable[[Any], Any] | None, bool]:
        """How a field's value is read from its item when nothing but reading it happens, and whether that reads a
        preset; (None, False) for a field that must be resolved."""
        if field_def.args:
            return None, False
        resolve = field_def.resolve or self.field_resolver
        if self.middleware_manager and self.middleware_manager.get_field_resolver(resolve) is not resolve:
            return None, False
        definition = (field_def.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if definition is None:
            return None, False
        if getattr(resolve, "_is_default", False) and definition.default_resolver is getattr:
            return attrgetter(definition.python_name), False  # strawberry's basic field: getattr(source, python_name)
        preset = definition.metadata.get(PRESET)
        if callable(preset) and not definition.extensions:
            return preset, True
        return None, False

    def _settled(self, value: object) -> bool:
        """Neither awaitable nor an error (graphql-core awaits the one and raises the other)."""
        kind = type(value)
        if kind in self._settled_types:
            return True
        if isinstance(value, Exception) or self.is_awaitable(value):
            return False
        self._settled_types.add(kind)
        return True

    def _row(self, plan: _Plan, item: object) -> tuple[dict[str, Any], bool]:
        """The item's plain fields completed, general ones `_PENDING` in their place, and whether there are any;
        `_Deviates` if the item or a plain field of it is not what the plan expects."""
        if item is None or not self._settled(item):
            raise _DEVIATES
        row: dict[str, Any] = {}
        pending = False
        for field in plan.fields:
            if field.constant is not None:
                row[field.name] = field.constant
                continue
            if field.read is None:
                row[field.name] = _PENDING
                pending = True
                continue
            try:
                value = field.read(item)
            except Exception:
                raise _DEVIATES from None
            if type(value) is field.as_is and (not field.finite or isfinite(value)):
                row[field.name] = value
            elif value is None:
                if not field.nullable:
                    raise _DEVIATES
                row[field.name] = None
            elif value is UNSET and field.preset:
                row[field.name] = _PENDING
                pending = True
            elif not self._settled(value):
                raise _DEVIATES
            elif field.elements:
                row[field.name] = self._rows(field, value)
            elif field.nested is not None:
                row[field.name] = self._closed_row(field.nested, value)
            else:
                row[field.name] = _leaf(field.leaf, value)  # type: ignore[arg-type]
        return row, pending

    def _closed_row(self, plan: _Plan, item: object) -> dict[str, Any]:
        """An object nested in an item, whole: a preset it lacks sends the item the general way."""
        row, pending = self._row(plan, item)
        if pending:
            raise _DEVIATES
        return row

    def _rows(self, field: _Field, value: object) -> list[Any]:
        """A list of objects nested in an item, each whole."""
        if type(value) not in (list, tuple):
            raise _DEVIATES
        plan = field.nested
        assert plan is not None
        rows: list[Any] = []
        for element in value:  # type: ignore[attr-defined]
            if element is None and field.elements_nullable:
                rows.append(None)
            else:
                rows.append(self._closed_row(plan, element))
        return rows

    def _complete_items(
        self,
        plan: _Plan,
        item_type: GraphQLOutputType,
        details: FieldDetailsList,
        info: GraphQLResolveInfo,
        path: Path,
        items: Sequence[Any],
    ) -> Any:
        """`complete_iterable_value` for a planned list: the same results, errors and settling of awaitables."""
        completed: list[Any] = []
        awaitable_indices: list[int] = []
        try:
            for index, item in enumerate(items):
                try:
                    row, pending = self._row(plan, item)
                except _Deviates:
                    row, pending = None, False
                if row is not None and not pending:
                    completed.append(row)
                    continue
                item_path = path.add_key(index, None)
                if row is None:  # graphql-core's own completion of the item
                    if self.is_awaitable(item):
                        completed.append(
                            self.complete_awaitable_list_item_value(item, item_type, details, info, item_path, None)
                        )
                        awaitable_indices.append(index)
                    elif self.complete_list_item_value(item, completed, item_type, details, info, item_path, None):
                        awaitable_indices.append(index)
                    continue
                if self._resolve_pending(plan, item, row, item_type, details, item_path, completed):
                    awaitable_indices.append(index)
        except Exception:
            if awaitable_indices:
                self.settle_in_background([completed[index] for index in awaitable_indices])
            raise

        if not awaitable_indices:
            return completed

        async def get_completed_results() -> list[Any]:
            awaited = await gather_with_cancel(*(completed[index] for index in awaitable_indices))
            for index, value in zip(awaitable_indices, awaited, strict=True):
                completed[index] = value
            return completed

        return get_completed_results()

    def _resolve_pending(
        self,
        plan: _Plan,
        item: object,
        row: dict[str, Any],
        item_type: GraphQLOutputType,
        details: FieldDetailsList,
        item_path: Path,
        completed: list[Any],
    ) -> bool:
        """Execute the row's general fields as `execute_fields` would, and append the row (or its awaitable, or the
        None its error leaves) to `completed` as `complete_list_item_value` would. True if awaitable."""
        awaitable_names: list[str] = []
        try:
            for field in plan.fields:
                if row[field.name] is not _PENDING:
                    continue
                result = self.execute_field(
                    plan.parent, item, field.details, Path(item_path, field.name, plan.parent.name), None
                )
                if result is Undefined:
                    del row[field.name]
                    continue
                row[field.name] = result
                if self.is_awaitable(result):
                    awaitable_names.append(field.name)
        except Exception as raw_error:
            if awaitable_names:
                self.settle_in_background([row[name] for name in awaitable_names])
            self.handle_field_error(raw_error, item_type, details, item_path)
            completed.append(None)
            return False
        if not awaitable_names:
            completed.append(row)
            return False
        completed.append(self._awaited_row(row, awaitable_names, item_type, details, item_path))
        return True

    async def _awaited_row(
        self,
        row: dict[str, Any],
        names: list[str],
        item_type: GraphQLOutputType,
        details: FieldDetailsList,
        item_path: Path,
    ) -> dict[str, Any] | None:
        try:
            awaited: list[Any] = await gather_with_cancel(*(_awaitable(row[name]) for name in names))
            row.update(zip(names, awaited, strict=True))
        except Exception as raw_error:
            self.handle_field_error(raw_error, item_type, details, item_path)
            return None
        return row


def _streamed(details: FieldDetailsList) -> bool:
    """The list field carries @stream: graphql-core sends its items incrementally."""
    return any(directive.name.value == "stream" for detail in details for directive in detail.node.directives or ())


def _awaitable(value: Any) -> Awaitable[Any]:
    return value  # type: ignore[no-any-return]


def _leaf(leaf: GraphQLLeafType, value: object) -> Any:
    """`complete_leaf_value`, except that a value it would refuse sends the item the general way."""
    try:
        coerced = leaf.coerce_output_value(value)
    except Exception:
        raise _DEVIATES from None
    if coerced is None or coerced is Undefined:
        raise _DEVIATES
    return coerced
