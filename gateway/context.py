"""What every resolver gets through `info.context`: the upstream door, this request's loaders, and
the caller (a `Principal` once authentication is configured; None until then)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from gateway.settings import Settings
from gateway.upstream import Upstream
from resolvers.loaders import Loaders


@dataclass
class GatewayContext:
    request: Request | Any
    settings: Settings
    upstream: Upstream
    correlation_id: str
    principal: Any = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.upstream)
