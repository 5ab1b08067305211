"""The lotgraph GraphQL schema: strawberry types of the lot / order / inspection graph."""

from __future__ import annotations

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules

from schema.query import Query


def build_schema(*, introspection: bool) -> strawberry.Schema:
    extensions = [] if introspection else [AddValidationRules([NoSchemaIntrospectionCustomRule])]
    return strawberry.Schema(query=Query, extensions=extensions)
