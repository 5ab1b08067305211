"""What every resolver gets through `info.context`: the shared runtime, the authenticated caller,
and this request's own loaders and authorization guard (fresh per request, so nothing leaks between callers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from graphql import GraphQLError

from gateway.auth import Principal
from gateway.authz import Guard
from gateway.errors import GatewayError
from gateway.reads import Loaders
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.upstream import Upstream
from resolvers.remote import RemoteEntities


@dataclass
class GatewayContext:
    request: Any
    runtime: Runtime
    principal: Principal
    correlation_id: str
    connection_params: dict[str, Any] | None = None  # a WebSocket's `connection_init` payload
    notices: list[GraphQLError] = field(default_factory=list)  # errors to report beside the data (schema.Notices)

    @cached_property
    def loaders(self) -> Loaders:
        """Made on first use: a subscription that never loads anything (most) never pays for them."""
        return Loaders(self.runtime.upstream)

    @cached_property
    def guard(self) -> Guard:
        return Guard(self.runtime.policies, self.principal, self.loaders)

    @cached_property
    def remote(self) -> RemoteEntities:
        """Batched `_entities` requests to the remote subgraphs this gateway federates."""
        return RemoteEntities(self.runtime.subgraphs, self.authorization)

    @property
    def authorization(self) -> str | None:
        """The caller's own `Authorization` credential as it arrived (HTTP header or `connection_init`)."""
        params = self.connection_params or {}
        return params.get("Authorization") or params.get("authorization") or self.request.headers.get("authorization")

    def notify(self, error: GatewayError, info: Any) -> None:
        """Report `error` at the field `info` resolves, while its data is still returned."""
        path = info.path.as_list()
        self.notices.append(GraphQLError(str(error), path=path, original_error=error, extensions=error.extensions))

    def act_as(self, principal: Principal) -> None:
        """Decide for `principal` from now on (a WebSocket learns its caller only from `connection_init`)."""
        self.principal = principal
        self.__dict__.pop("loaders", None)
        self.__dict__.pop("guard", None)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def upstream(self) -> Upstream:
        return self.runtime.upstream
