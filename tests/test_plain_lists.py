"""Lists of plain objects completed in one loop (`schema/plain.py`) answer exactly what graphql-core's general path
answers: the same JSON, data and errors (messages, paths, locations), whatever the selection, while building no
resolve info for the plain fields of each item."""

from __future__ import annotations

import asyncio
import json
from enum import Enum
from operator import attrgetter
from typing import Any

import pytest
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from schema.plain import PRESET, UNSET, PlainLists, Unset


@strawberry.enum
class Colour(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Tag:
    name: str
    weight: float | None = None


@strawberry.type
class Item:
    id: strawberry.ID
    name: str | None
    count: int
    colour: Colour
    tag: Tag | None
    code: str  # non-null: an item given None violates it
    parts: list[Tag]
    preset_note: strawberry.Private[str | Unset] = UNSET

    @strawberry.field
    def doubled(self) -> int:
        return self.count * 2

    @strawberry.field
    async def later(self) -> str:
        await asyncio.sleep(0)
        return f"later {self.id}"

    @strawberry.field
    def fragile(self) -> str | None:
        if self.count % 7 == 3:
            raise ValueError(f"fragile {self.id}")
        return "fine"

    @strawberry.field
    async def fragile_later(self) -> str:
        if self.count % 5 == 4:
            raise ValueError(f"fragile later {self.id}")
        return "fine"

    @strawberry.field(metadata={PRESET: attrgetter("preset_note")})
    def note(self) -> str:
        return self.preset_note if not isinstance(self.preset_note, Unset) else f"resolved {self.id}"

    @strawberry.field
    def sized(self, times: int) -> int:
        return self.count * times


def _item(n: int, **changes: Any) -> Item:
    fields: dict[str, Any] = {
        "id": strawberry.ID(f"I{n}"),
        "name": None if n % 4 == 0 else f"item {n}",
        "count": n,
        "colour": Colour.RED if n % 2 else Colour.BLUE,
        "tag": None if n % 3 == 0 else Tag(name=f"tag {n % 5}", weight=n / 3 if n % 2 else None),
        "code": f"C{n}",
        "parts": [Tag(name=f"part {n}.{k}", weight=k / 2 if k else None) for k in range(n % 3)],
        "preset_note": f"preset {n}" if n % 2 else UNSET,
    }
    return Item(**{**fields, **changes})


ITEMS = [_item(n) for n in range(40)]


async def _awaited(item: Item) -> Item:
    return item


def _odd(kind: int) -> Any:
    if kind == 0:
        return None
    if kind == 1:
        return _item(100, code=None)
    if kind == 2:
        return _item(101, count="many")
    if kind == 3:
        return _item(102, colour="green")
    if kind == 4:
        return ValueError("no item")
    if kind == 5:
        return _awaited(_item(103))
    if kind == 6:
        return _item(104, tag=Tag(name=None))  # type: ignore[arg-type]
    return _item(105, tag=Tag(name="endless", weight=float("inf")))


@strawberry.type
class Edge:
    node: Item


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return ITEMS

    @strawberry.field
    def edges(self) -> list[Edge]:
        """Items nested in a list's items: half of them with their `note` preset."""
        return [Edge(node=item) for item in ITEMS]

    @strawberry.field
    def broken_parts(self) -> list[Item | None]:
        """Items whose lists of objects hold what the plan cannot take: a null element, an element whose non-null
        field is null, a value that is no list."""
        odd = [[Tag(name="p"), None], [Tag(name=None)], "no list"]  # type: ignore[arg-type]
        return [either for n, item in enumerate(ITEMS[:6]) for either in (item, _item(300 + n, parts=odd[n % 3]))]

    @strawberry.field
    def loose(self) -> list[Item | None]:
        """Plain items, each followed by one the plan cannot take: null, a null in a non-null field, values their
        scalars would not serialize, an error, an awaitable."""
        return [either for n, item in enumerate(ITEMS[:16]) for either in (item, _odd(n % 8))]

    @strawberry.field
    def strict(self) -> list[Item] | None:
        """Non-null items, one of them with a null in a non-null field: the whole list is null."""
        return [*ITEMS[:5], _item(200, code=None), *ITEMS[5:10]]


class Counted(PlainLists):
    """The plain path, counting the resolve infos it builds (one per field graphql-core resolves)."""

    infos = 0

    def build_resolve_info(self, *args: Any) -> Any:
        Counted.infos += 1
        return super().build_resolve_info(*args)


class General(StrawberryGraphQLCoreExecutionContext):
    """strawberry's own executor: graphql-core's general path for every field."""

    infos = 0

    def build_resolve_info(self, *args: Any) -> Any:
        General.infos += 1
        return super().build_resolve_info(*args)


PLAIN = strawberry.Schema(query=Query, execution_context_class=Counted)
GENERAL = strawberry.Schema(query=Query, execution_context_class=General)


def _answer(schema: strawberry.Schema, query: str, variables: dict[str, Any] | None) -> str:
    result = asyncio.run(schema.execute(query, variable_values=variables))
    errors = [error.formatted for error in result.errors or []]
    return json.dumps({"data": result.data, "errors": errors})


def both(query: str, variables: dict[str, Any] | None = None) -> tuple[dict[str, Any], int, int]:
    """The query's answer, the same through both paths, and the resolve infos each built."""
    Counted.infos = General.infos = 0
    plain, general = _answer(PLAIN, query, variables), _answer(GENERAL, query, variables)
    assert plain == general
    return json.loads(plain), Counted.infos, General.infos


def test_plain_fields_of_a_list_are_completed_without_a_resolve_info_per_item() -> None:
    answer, plain, general = both("{ items { id name count colour code tag { name weight } } }")
    assert len(answer["data"]["items"]) == len(ITEMS) and not answer["errors"]
    first = {"id": "I1", "name": "item 1", "count": 1, "colour": "RED", "code": "C1"}
    assert answer["data"]["items"][1] == {**first, "tag": {"name": "tag 1", "weight": 1 / 3}}
    assert plain == 1  # `items` itself
    assert general == 1 + len(ITEMS) * 6 + sum(item.tag is not None for item in ITEMS) * 2


@pytest.mark.parametrize(
    "query",
    [
        "{ items { a: id b: id n: name __typename tag { __typename t: name } } }",
        "{ items { ...ItemFields tag { ... on Tag { name } } } } fragment ItemFields on Item { id colour }",
        "query($yes: Boolean!) { items { id name @include(if: $yes) code @skip(if: $yes) tag @skip(if: false) "
        "{ name } } }",
        "{ items { id note } }",
        "{ items { id doubled later note } }",
        "{ items { id fragile } }",
        "{ items { id s: sized(times: 3) tag { name } } }",
        "{ items { id } other: items { code } }",
    ],
)
def test_selections_answer_the_same_through_the_plain_and_the_general_path(query: str) -> None:
    answer, plain, general = both(query, {"yes": True})
    assert answer["data"]["items"]
    assert plain < general


def test_lists_of_objects_and_preset_objects_nested_in_items_are_plain() -> None:
    answer, plain, general = both("{ items { id parts { name weight } } }")
    assert answer["data"]["items"][5]["parts"] == [{"name": "part 5.0", "weight": None}, {"name": "part 5.1",
                                                                                         "weight": 0.5}]  # fmt: skip
    assert plain == 1
    answer, plain, general = both("{ edges { node { id note parts { name } tag { name } } } }")
    notes = [edge["node"]["note"] for edge in answer["data"]["edges"]]
    assert notes[:4] == ["resolved I0", "preset 1", "resolved I2", "preset 3"]
    # The edges whose node lacks its preset go the general way: a resolve info for each of their fields.
    assert 1 < plain < general


def test_lists_of_objects_the_plan_cannot_take_fail_as_graphql_core_says() -> None:
    answer, plain, general = both("{ brokenParts { id parts { name } } }")
    paths = [error["path"] for error in answer["errors"]]
    assert ["brokenParts", 1, "parts", 1] in paths and ["brokenParts", 3, "parts", 0, "name"] in paths
    assert any("Expected Iterable" in error["message"] for error in answer["errors"])
    assert answer["data"]["brokenParts"][0]["id"] == "I0"
    assert plain < general


def test_resolver_errors_keep_their_paths_and_order() -> None:
    answer, plain, general = both("{ loose { id fragile fragileLater } }")
    paths = [error["path"] for error in answer["errors"]]
    assert ["loose", 6, "fragile"] in paths and ["loose", 8, "fragileLater"] in paths
    assert answer["data"]["loose"][6]["fragile"] is None
    assert answer["data"]["loose"][8] is None  # a non-null field's error nulls its item
    assert plain < general


def test_items_the_plan_cannot_take_fail_or_resolve_as_graphql_core_says() -> None:
    answer, plain, general = both("{ loose { id count colour code tag { name weight } } }")
    messages = {error["message"] for error in answer["errors"]}
    assert "Cannot return null for non-nullable field Item.code." in messages
    assert "Int cannot represent non-integer value: 'many'" in messages
    assert "no item" in messages
    assert "Float cannot represent non numeric value: inf" in messages
    assert any(message.startswith("Enum 'Colour' cannot represent value") for message in messages)
    assert answer["data"]["loose"][11]["id"] == "I103"  # the awaited item
    assert answer["data"]["loose"][13] == {"id": "I104", "count": 104, "colour": "BLUE", "code": "C104", "tag": None}
    assert plain < general


def test_a_null_in_a_non_null_field_of_a_non_null_item_nulls_the_list() -> None:
    answer, plain, general = both("{ strict { id code } items { id } }")
    assert answer["data"] == {"strict": None, "items": [{"id": item.id} for item in ITEMS]}
    assert [error["path"] for error in answer["errors"]] == [["strict", 5, "code"]]
    assert plain < general
