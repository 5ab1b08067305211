"""GraphQL objects copied from canonical ones (`gateway/model.py`): the fields the GraphQL type shows, read off the
model.

`model_dump` serialized every field of the model, nested ones too, only to hand most of them over: after
graphql-core's own work, the largest cost of a page's stock and inspections. And a field the model gained that the
GraphQL type does not show (a goods movement's item text) would break the type's constructor.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


@cache
def _plain_fields(cls: type[Any]) -> tuple[str, ...]:
    """The fields of a strawberry type that hold data (not resolvers), by their Python names."""
    return tuple(f.python_name for f in cls.__strawberry_definition__.fields if f.base_resolver is None)


def copy_of(cls: type[T], source: object) -> T:
    """An object of the strawberry type `cls` with each of its data fields taken from `source`'s attribute."""
    return cls(**{name: getattr(source, name) for name in _plain_fields(cls)})
