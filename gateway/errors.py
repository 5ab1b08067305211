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
    """The gateway will not run the document as sent (trusted documents); over HTTP the answer has `status`."""

    status = 403


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


class ContractViolation(UpstreamError):
    """An upstream answer did not match the contract version the gateway speaks."""

    code = "CONTRACT_VIOLATION"

    def __init__(self, *, source: str, contract: str, field: str, problem: str) -> None:
        super().__init__(f"{contract}: field '{field}' {problem}", source=source, contract=contract, field=field)
