"""Trusted documents: automatic persisted queries (APQ) for everyone, and an allowlist mode in which a
client (by role, e.g. supplier apps) may run only operations registered in a manifest.

A manifest is a JSON object mapping each document's SHA-256 (hex) to its text, the format Apollo's
persisted-query tooling writes. Clients send `extensions.persistedQuery.sha256Hash`, with or without
the text; the gateway answers `PERSISTED_QUERY_NOT_FOUND` when it needs the text once.

Hashes are resolved by the HTTP transports (POST, GET, SSE), which carry `extensions`; the allowlist is enforced by
a schema extension, which strawberry runs for every transport alike (WebSocket too), before validation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from graphql import GraphQLError, OperationDefinitionNode, parse
from pydantic import BaseModel, Field
from strawberry.extensions import SchemaExtension
from strawberry.http import GraphQLRequestData

from gateway.auth import Principal
from gateway.errors import OperationNotAllowed, PersistedQueryHashMismatch, PersistedQueryNotFound


class TrustedDocumentSettings(BaseModel):
    """`LOTGRAPH_TRUSTED_DOCUMENTS__MANIFEST=/etc/lotgraph/operations.json`, ..."""

    manifest: Path | None = Field(default=None, description="JSON {sha256: document} of registered operations.")
    enforce_for_roles: tuple[str, ...] = Field(
        default=(), description="Callers with any of these roles may run registered operations only."
    )
    apq_cache_size: int = Field(default=10_000, ge=0, description="Documents remembered by hash (0: no APQ).")


def digest(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


class TrustedDocuments:
    def __init__(self, settings: TrustedDocumentSettings) -> None:
        self.settings = settings
        self.registered: dict[str, str] = {}
        names: set[str] = set()  # of the registered operations: the only ones metrics label requests with
        if settings.manifest is not None:
            manifest = json.loads(settings.manifest.read_text())
            for key, document in manifest.items():
                if digest(document) != key:
                    raise ValueError(f"manifest {settings.manifest}: {key} is not the SHA-256 of its document")
                try:
                    definitions = parse(document).definitions
                except GraphQLError as exc:
                    raise ValueError(f"manifest {settings.manifest}: {key} is not GraphQL: {exc.message}") from None
                names.update(d.name.value for d in definitions if isinstance(d, OperationDefinitionNode) and d.name)
            self.registered = manifest
        self.operation_names = frozenset(names)
        self.remembered: OrderedDict[str, str] = OrderedDict()

    def resolve(self, data: GraphQLRequestData) -> GraphQLRequestData:
        """The request with its document filled in from a hash, or refused with a code saying why."""
        persisted = (data.extensions or {}).get("persistedQuery")
        query = data.query
        if isinstance(persisted, dict) and isinstance(persisted.get("sha256Hash"), str):
            wanted = persisted["sha256Hash"]
            if query is None:
                query = self.registered.get(wanted) or self.remembered.get(wanted)
                if query is None:
                    raise PersistedQueryNotFound("PersistedQueryNotFound: send the document once")
            elif digest(query) != wanted:
                raise PersistedQueryHashMismatch("the document does not match its sha256Hash")
            self._remember(wanted, query)
        return dataclasses.replace(data, query=query)

    def check(self, document: str | None, principal: Principal) -> None:
        """Refuse a document `principal` may not run: in allowlist mode, one that is not registered."""
        if document is not None and self._enforced(principal) and digest(document) not in self.registered:
            raise OperationNotAllowed("this client may run registered operations only; this one is not registered")

    def extension(self) -> type[SchemaExtension]:
        """The schema extension enforcing this allowlist (strawberry builds one per operation)."""
        return type("ConfiguredAllowlist", (Allowlist,), {"trusted": self})

    def _enforced(self, principal: Principal) -> bool:
        return bool(principal.roles & set(self.settings.enforce_for_roles))

    def _remember(self, key: str, document: str) -> None:
        if self.settings.apq_cache_size == 0 or key in self.registered:
            return
        self.remembered[key] = document
        self.remembered.move_to_end(key)
        while len(self.remembered) > self.settings.apq_cache_size:
            self.remembered.popitem(last=False)


class Allowlist(SchemaExtension):
    """The one place the allowlist is enforced: every transport (POST, GET, SSE, graphql-transport-ws) runs its
    operations through the schema. The refusal takes the place of the validation errors, so it must come after
    `ValidationCache` among the schema's extensions (strawberry's streaming path lets raised errors escape)."""

    trusted: TrustedDocuments

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        principal = getattr(context.context, "principal", None)
        if isinstance(principal, Principal):
            try:
                self.trusted.check(context.query, principal)
            except OperationNotAllowed as refused:
                context.pre_execution_errors = [GraphQLError(str(refused), original_error=refused)]
        yield
