"""The correlation id of the request being served, so every upstream call and log line can carry it."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

HEADER = "X-Correlation-ID"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

current: ContextVar[str | None] = ContextVar("lotgraph_correlation_id", default=None)


def accept_or_new(candidate: str | None) -> str:
    """Keep a caller's id when it is a sane token (ids end up in logs and headers), else mint one."""
    if candidate and _VALID.match(candidate):
        return candidate
    return uuid.uuid4().hex
