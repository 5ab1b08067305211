"""Trusted documents: automatic persisted queries (APQ) for everyone, and an allowlist mode in which a
client (by role, e.g. supplier apps) may run only operations registered in a manifest.

A manifest is a JSON object mapping each document's SHA-256 (hex) to its text, the format Apollo's
persisted-query tooling writes. Clients send `extensions.persistedQuery.sha256Hash`, with or without
the text; the gateway answers `PERSISTED_QUERY_NOT_FOUND` when it needs the text once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from pathlib import Path

from pydantic import BaseModel, Field
from strawberry.http import GraphQLRequestData

from gateway.auth import Principal


class TrustedDocumentSettings(BaseModel):
    """`LOTGRAPH_TRUSTED_DOCUMENTS__MANIFEST=/etc/lotgraph/operations.json`, ..."""

    manifest: Path | None = Field(default=None, description="JSON {sha256: document} of registered operations.")
    enforce_for_roles: tuple[str, ...] = Field(
        default=(), description="Callers with any of these roles may run registered operations only."
    )
    apq_cache_size: int = Field(default=10_000, ge=0, description="Documents remembered by hash (0: no APQ).")


class DocumentRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def digest(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


class TrustedDocuments:
    def __init__(self, settings: TrustedDocumentSettings) -> None:
        self.settings = settings
        self.registered: dict[str, str] = {}
        if settings.manifest is not None:
            manifest = json.loads(settings.manifest.read_text())
            for key, document in manifest.items():
                if digest(document) != key:
                    raise ValueError(f"manifest {settings.manifest}: {key} is not the SHA-256 of its document")
            self.registered = manifest
        self.remembered: OrderedDict[str, str] = OrderedDict()

    def resolve(self, data: GraphQLRequestData, principal: Principal) -> GraphQLRequestData:
        """The request with its document filled in from a hash, or refused with a code saying why."""
        persisted = (data.extensions or {}).get("persistedQuery")
        query = data.query
        if isinstance(persisted, dict) and isinstance(persisted.get("sha256Hash"), str):
            wanted = persisted["sha256Hash"]
            if query is None:
                query = self.registered.get(wanted) or self.remembered.get(wanted)
                if query is None:
                    raise DocumentRefused("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound: send the document once")
            elif digest(query) != wanted:
                raise DocumentRefused("PERSISTED_QUERY_HASH_MISMATCH", "the document does not match its sha256Hash")
            self._remember(wanted, query)
        if query is not None and self._enforced(principal) and digest(query) not in self.registered:
            raise DocumentRefused(
                "OPERATION_NOT_ALLOWED", "this client may run registered operations only; this one is not registered"
            )
        return dataclasses.replace(data, query=query)

    def _enforced(self, principal: Principal) -> bool:
        return bool(principal.roles & set(self.settings.enforce_for_roles))

    def _remember(self, key: str, document: str) -> None:
        if self.settings.apq_cache_size == 0 or key in self.registered:
            return
        self.remembered[key] = document
        self.remembered.move_to_end(key)
        while len(self.remembered) > self.settings.apq_cache_size:
            self.remembered.popitem(last=False)
