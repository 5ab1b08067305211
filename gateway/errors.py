"""Typed errors the gateway raises, each carrying the GraphQL `extensions.code` clients act on.

graphql-core copies an exception's `extensions` attribute onto the GraphQL error it reports,
so raising one of these from any resolver, loader or connector is all it takes.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base for every error a client may see; `code` is the stable contract, the message is for people."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = {key: value for key, value in details.items() if value is not None}

    @property
    def extensions(self) -> dict[str, Any]:
        return {"code": self.code, **self.details}


class BadUserInput(GatewayError):
    code = "BAD_USER_INPUT"


class DocumentRefused(GatewayError):
    """The gateway will not run the document as sent (trusted documents, a subscription without a stream); over
    HTTP the answer has `status`."""

    status = 403


class SubscriptionNeedsStream(DocumentRefused):
    """A subscription sent as a request expecting one answer (POST or GET for JSON, or Apollo's multipart, not
    served yet). 400, not 405: the method is not what is wrong (the same POST streams with the right `Accept`)."""

    code = "SUBSCRIPTION_NEEDS_STREAM"
    status = 400

    def __init__(self) -> None:
        super().__init__(
            "a subscription is a stream: subscribe over WebSocket (graphql-transport-ws) or Server-Sent Events"
            " (POST with Accept: text/event-stream)"
        )


class PersistedQueryNotFound(DocumentRefused):
    code = "PERSISTED_QUERY_NOT_FOUND"
    status = 200  # APQ clients look for exactly this answer before sending the document


class PersistedQueryHashMismatch(DocumentRefused):
    code = "PERSISTED_QUERY_HASH_MISMATCH"


class OperationNotAllowed(DocumentRefused):
    code = "OPERATION_NOT_ALLOWED"


class NotFound(GatewayError):
    code = "NOT_FOUND"


class Forbidden(GatewayError):
    """A policy denied the request; `policyIds` names the policies that decided (empty: none permits it)."""

    code = "FORBIDDEN"

    def __init__(self, message: str, *, policy_ids: tuple[str, ...], action: str, resource: str) -> None:
        super().__init__(message, policyIds=list(policy_ids), action=action, resource=resource)


class LotDivergent(GatewayError):
    """The request would leave lots whose systems disagree (or cannot all be asked) with nothing to settle them;
    `lots` names each with its disagreements."""

    code = "LOT_DIVERGENT"


class StoreError(GatewayError):
    """The gateway's own database failed; its SQL and parameters go to the log, never into an answer."""


class StoreUnavailable(StoreError):
    """The database was busy past its timeout or could not be reached: the same request may succeed later."""

    code = "STORE_UNAVAILABLE"


class StoreConflict(StoreError):
    """A write broke a uniqueness rule; the store's callers that expect one (idempotency keys) catch it."""


class GenealogyRedacted(GatewayError):
    """A notice beside data, not a failure: a genealogy left out lots the caller may not read, so a recall trace
    built from it would be incomplete; `redactedCount` says how many."""

    code = "GENEALOGY_REDACTED"


class UpstreamError(GatewayError):
    """A source system could not give a usable answer; `source` names it."""

    def __init__(self, message: str, *, source: str, **details: Any) -> None:
        super().__init__(message, source=source, **details)
        self.source = source


class UpstreamUnavailable(UpstreamError):
    code = "UPSTREAM_UNAVAILABLE"


class UpstreamTimeout(UpstreamError):
    code = "UPSTREAM_TIMEOUT"


class UpstreamRejected(UpstreamError):
    """The upstream refused the request itself (4xx): a gateway or contract bug, not an outage."""

    code = "UPSTREAM_REJECTED"


class WorkflowRefused(GatewayError):
    """The systems' own data says a workflow step cannot be done (the production order is not released, the receipt
    is over the order's tolerance): retrying the same step cannot help until someone changes that data."""

    code = "WORKFLOW_REFUSED"


class ContractViolation(UpstreamError):
    """An upstream answer did not match the contract version the gateway speaks."""

    code = "CONTRACT_VIOLATION"

    def __init__(self, *, source: str, contract: str, field: str, problem: str) -> None:
        super().__init__(f"{contract}: field '{field}' {problem}", source=source, contract=contract, field=field)


class ConfigurationError(GatewayError):
    """A setting is missing or wrong: start-up stops with one line naming it as the operator wrote it
    (`LOTGRAPH_PORT`, or a key of the `LOTGRAPH_CONFIG` file) and what is wrong with it."""

    code = "CONFIGURATION_ERROR"

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}", setting=setting)
        self.setting = setting
