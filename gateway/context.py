"""What every resolver gets through `info.context`: the shared runtime, the authenticated caller,
and this request's own loaders and authorization guard (fresh per request, so nothing leaks between callers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.auth import Principal
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.upstream import Upstream
from resolvers.guard import Guard
from resolvers.loaders import Loaders


@dataclass
class GatewayContext:
    request: Any
    runtime: Runtime
    principal: Principal
    correlation_id: str
    loaders: Loaders = field(init=False)
    guard: Guard = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.runtime.upstream)
        self.guard = Guard(self.runtime.policies, self.principal, self.loaders)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def upstream(self) -> Upstream:
        return self.runtime.upstream
