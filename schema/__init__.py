"""The lotgraph GraphQL schema: strawberry types of the lot / order / inspection graph."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, ParserCache, SchemaExtension, ValidationCache
from strawberry.federation.schema import FederationAny
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from gateway import correlation
from gateway.errors import BadUserInput, GatewayError, SubscriptionNeedsStream
from gateway.limits import LimitSettings, limits_extension
from gateway.telemetry import request_metrics
from gateway.trusted import TrustedDocuments
from schema.exceptions import ExceptionsMutation, ExceptionsQuery
from schema.governance import GovernanceQuery
from schema.mutation import Mutation
from schema.plain import PlainLists
from schema.query import Query
from schema.reconciliation import ReconciliationMutation, ReconciliationQuery
from schema.renderings import RenderOnce
from schema.subscription import Subscription

log = logging.getLogger("lotgraph.graphql")
FEDERATION_VERSION = "2.7"  # @authenticated and @requiresScopes, which routers enforce, need 2.5 or newer
SUGGESTION = re.compile(r" ?Did you mean .*?\?")  # graphql-core's `did_you_mean`, and scalar leafs' hint


def error_code(error: GraphQLError) -> str:
    """The code of an error graphql-core raised on its own (a `GatewayError` brings its own)."""
    if isinstance(error, GraphQLSyntaxError):
        return "GRAPHQL_PARSE_FAILED"
    if error.original_error is None:
        return "GRAPHQL_VALIDATION_FAILED" if error.path is None else "BAD_USER_INPUT"
    if error.path is None and isinstance(error.original_error, GraphQLError):
        return "BAD_USER_INPUT"  # a variable's value does not fit its type (graphql-core wraps the reason)
    return "INTERNAL_SERVER_ERROR"


class Notices(SchemaExtension):
    """Errors a resolver reported beside its data (`GatewayContext.notify`), added to the result's errors on every
    transport: the data stands, and the client is told what it lacks."""

    def on_execute(self):  # type: ignore[no-untyped-def]
        yield
        result = self.execution_context.result
        notices = getattr(self.execution_context.context, "notices", None)
        if result is not None and notices:
            result.errors = [*(result.errors or []), *notices]


class Executor(RenderOnce, PlainLists):
    """graphql-core's executor as lotgraph runs it: a subscription event rendered once per selection
    (`schema/renderings.py`), lists of plain objects completed in one loop (`schema/plain.py`)."""


class Schema(strawberry.federation.Schema):
    hide_suggestions = False  # with introspection off, "Did you mean 'lots'?" would reveal the schema instead
    mask_errors = False  # production: see `_masked`

    async def execute(self, *args: Any, allowed_operation_types: Iterable[OperationType] | None = None,
                      **kwargs: Any) -> ExecutionResult:  # fmt: skip
        """One answer, so never a subscription (the streaming transports call `stream`): strawberry would run it as
        a query and fail on its null. Refused after parsing, before validation or any resolver runs."""
        allowed = set(allowed_operation_types or DEFAULT_ALLOWED_OPERATION_TYPES) - {OperationType.SUBSCRIPTION}
        try:
            return await super().execute(*args, allowed_operation_types=allowed, **kwargs)
        except InvalidOperationTypeError as exc:
            if exc.operation_type is OperationType.SUBSCRIPTION:
                raise SubscriptionNeedsStream() from None
            raise

    def entities_resolver(self, info: strawberry.Info, representations: list[FederationAny]) -> list[FederationAny]:
        """A router's `_entities`: each representation must name an entity type of lotgraph and its `id` (the one
        key); anything else is that entry's BAD_USER_INPUT, and only the key reaches `resolve_reference`."""
        results: list[Any] = []
        for index, representation in enumerate(representations):
            fields = representation if isinstance(representation, dict) else {}
            resolve, key = self._reference_resolver(fields.get("__typename")), fields.get("id")
            if resolve is None or not isinstance(key, str | int) or isinstance(key, bool):
                message = f"representation {index} must name an entity type and its 'id'"
                results.append(BadUserInput(message, argument="representations"))
            else:
                results.append(resolve(info=info, id=str(key)))
        return results

    def _reference_resolver(self, type_name: object) -> Callable[..., Any] | None:
        """`resolve_reference` of the entity type called `type_name`, if there is one."""
        concrete = self.schema_converter.type_map.get(type_name) if isinstance(type_name, str) else None
        return getattr(getattr(concrete and concrete.definition, "origin", None), "resolve_reference", None)

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Give every error its `extensions.code`, log it (expected errors, upstream down or bad input, are one
        line; only bugs get a traceback), then mask it when `mask_errors`. Every transport (HTTP, SSE,
        graphql-transport-ws) formats errors after this, so this is the one place answers are masked."""
        context = getattr(execution_context, "context", None)
        cid = getattr(context, "correlation_id", None) or correlation.current.get()
        for error in errors:
            if self.hide_suggestions:
                error.message = SUGGESTION.sub("", error.message)
            extensions = {**(error.extensions or {})}
            extensions.setdefault("code", error_code(error))
            original, code = error.original_error, extensions["code"]
            unexpected = code == "INTERNAL_SERVER_ERROR" and not isinstance(original, GatewayError)
            if unexpected:
                log.error("unexpected error at %s [correlation_id=%s]", error.path, cid, exc_info=original)
                extensions["correlationId"] = cid
            else:
                log.info("%s at %s: %s [correlation_id=%s]", code, error.path, error.message, cid)
            if self.mask_errors:
                error.message = _masked(error.message, extensions, cid, unexpected)
            error.extensions = extensions


def _masked(message: str, extensions: dict[str, Any], cid: str | None, unexpected: bool) -> str:
    """Production answers say what failed, never how: no stack traces, upstream paths, statuses or payloads."""
    if unexpected:
        return f"Internal error; quote correlation id {cid} to find it in the logs."
    if isinstance(source := extensions.get("source"), str):
        extensions.pop("status", None)
        return f"{source.upper()} could not give a usable answer ({extensions['code']}); correlation id {cid}."
    return message


def build_schema(
    *,
    introspection: bool,
    limits: LimitSettings | None = None,
    trusted: TrustedDocuments | None = None,
    mask_errors: bool = False,
) -> Schema:
    # Clients send the same few documents over and over: parse and validate each once.
    extensions: list[Any] = [
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        limits_extension(limits or LimitSettings()),
        request_metrics(trusted.operation_names if trusted is not None else frozenset()),
        Notices,
    ]
    if trusted is not None:
        extensions.append(trusted.extension())  # after ValidationCache: its refusal replaces validation's errors
    if not introspection:
        extensions.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    schema = Schema(
        federation_version=FEDERATION_VERSION,
        query=merge_types("Query", (Query, GovernanceQuery, ExceptionsQuery, ReconciliationQuery)),
        mutation=merge_types("Mutation", (Mutation, ExceptionsMutation, ReconciliationMutation)),
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=Executor,
    )
    schema.hide_suggestions = not introspection
    schema.mask_errors = mask_errors
    return schema
