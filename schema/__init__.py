"""The lotgraph GraphQL schema: strawberry types of the lot / order / inspection graph."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, ParserCache, ValidationCache
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from gateway import correlation
from gateway.errors import GatewayError
from gateway.limits import LimitSettings, limits_extension
from gateway.telemetry import RequestMetrics
from gateway.trusted import TrustedDocuments
from schema.governance import GovernanceQuery
from schema.mutation import Mutation
from schema.query import Query
from schema.subscription import Subscription

log = logging.getLogger("lotgraph.graphql")
FEDERATION_VERSION = "2.7"  # @authenticated and @requiresScopes, which routers enforce, need 2.5 or newer


def error_code(error: GraphQLError) -> str:
    """The code of an error graphql-core raised on its own (a `GatewayError` brings its own)."""
    if isinstance(error, GraphQLSyntaxError):
        return "GRAPHQL_PARSE_FAILED"
    if error.original_error is None:
        return "GRAPHQL_VALIDATION_FAILED" if error.path is None else "BAD_USER_INPUT"
    return "INTERNAL_SERVER_ERROR"


class Schema(strawberry.federation.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Give every error its `extensions.code` (whatever the transport), and log it: expected errors
        (upstream down, bad input) are one line; only bugs get a traceback."""
        cid = correlation.current.get()
        for error in errors:
            if "code" not in (error.extensions or {}):
                error.extensions = {**(error.extensions or {}), "code": error_code(error)}
            original = error.original_error
            if original is None or isinstance(original, GatewayError):
                code = (error.extensions or {}).get("code", "GRAPHQL_VALIDATION_FAILED")
                log.info("%s at %s: %s [correlation_id=%s]", code, error.path, error.message, cid)
            else:
                log.error("unexpected error at %s [correlation_id=%s]", error.path, cid, exc_info=original)


def build_schema(
    *, introspection: bool, limits: LimitSettings | None = None, trusted: TrustedDocuments | None = None
) -> Schema:
    # Clients send the same few documents over and over: parse and validate each once.
    extensions: list[Any] = [
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        limits_extension(limits or LimitSettings()),
        RequestMetrics,
    ]
    if trusted is not None:
        extensions.append(trusted.extension())  # after ValidationCache: its refusal replaces validation's errors
    if not introspection:
        extensions.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    return Schema(
        federation_version=FEDERATION_VERSION,
        query=merge_types("Query", (Query, GovernanceQuery)),
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
    )
