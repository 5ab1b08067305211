"""What stands between a slow or failing upstream and the gateway: a total time budget, retries of
idempotent requests with jittered exponential backoff (honouring `Retry-After`), a client-side rate
limit, a concurrency cap (bulkhead) and a circuit breaker, per source.

A failing ERP then costs its own fields a bounded wait, never the gateway's threads or the other sources.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel, Field

from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.quota import RedisQuota

T = TypeVar("T")


class ResilienceSettings(BaseModel):
    """Per source (`LOTGRAPH_SOURCES__ERP__RESILIENCE__ATTEMPTS=4`, ...)."""

    total_timeout: float = Field(default=15.0, gt=0, description="Budget for one call, retries and waits included.")
    attempts: int = Field(default=3, ge=1, description="Tries of an idempotent request (reads) before giving up.")
    backoff_seconds: float = Field(default=0.1, ge=0)
    max_backoff_seconds: float = Field(default=2.0, ge=0)
    max_concurrent: int = Field(default=32, ge=1, description="Bulkhead: requests in flight to this source.")
    rate_limit_rps: float | None = Field(default=None, gt=0, description="Client-side quota, e.g. a cloud ERP's.")
    rate_limit_burst: int = Field(default=10, ge=1)
    breaker_window: int = Field(default=20, ge=1, description="Recent outcomes the breaker looks at.")
    breaker_min_calls: int = Field(default=10, ge=1)
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_open_seconds: float = Field(default=10.0, gt=0)


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitBreaker:
    """Opens when too many recent calls failed, fails fast while open, lets one probe through after a while."""

    def __init__(self, source: str, settings: ResilienceSettings, clock: Callable[[], float] = time.monotonic):
        self.source = source
        self.settings = settings
        self.clock = clock
        self.outcomes: deque[bool] = deque(maxlen=settings.breaker_window)
        self.state = BreakerState.CLOSED
        self.opened_at = 0.0
        self._probing = False

    def before(self) -> None:
        if self.state is BreakerState.OPEN:
            if self.clock() - self.opened_at < self.settings.breaker_open_seconds:
                raise UpstreamUnavailable(
                    f"{self.source.upper()} circuit is open after repeated failures; failing fast",
                    source=self.source,
                    breaker=self.state.value,
                )
            self.state = BreakerState.HALF_OPEN
        if self.state is BreakerState.HALF_OPEN:
            if self._probing:
                raise UpstreamUnavailable(
                    f"{self.source.upper()} circuit is half-open; a probe is under way",
                    source=self.source,
                    breaker=self.state.value,
                )
            self._probing = True

    def record(self, success: bool) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self._probing = False
            if success:
                self.state = BreakerState.CLOSED
                self.outcomes.clear()
            else:
                self._open()
            return
        self.outcomes.append(success)
        failures = self.outcomes.count(False)
        if (
            len(self.outcomes) >= self.settings.breaker_min_calls
            and failures / len(self.outcomes) >= self.settings.breaker_failure_rate
        ):
            self._open()

    def _open(self) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = self.clock()
        self.outcomes.clear()


class TokenBucket:
    """`rate` requests per second on average, `burst` at once; callers wait for a token."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.updated = clock()
        self._lock = asyncio.Lock()

    def try_take(self) -> float:
        """Take a token if there is one (0.0), else say how many seconds until there will be."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    async def take(self) -> None:
        async with self._lock:
            wait = self.try_take()
            while wait:  # the refill is time itself: sleeping until the next token is the wait
                await asyncio.sleep(wait)
                wait = self.try_take()


class Guarded:
    """Every protection for one source, applied around each upstream call. With a shared quota (Redis) the
    source's rate limit holds across replicas; otherwise it is this process's own token bucket."""

    def __init__(self, source: str, settings: ResilienceSettings, shared: RedisQuota | None = None) -> None:
        self.source = source
        self.settings = settings
        self.breaker = CircuitBreaker(source, settings)
        self.bulkhead = asyncio.Semaphore(settings.max_concurrent)
        rate = settings.rate_limit_rps
        self.bucket = TokenBucket(rate, settings.rate_limit_burst) if rate and shared is None else None
        self.shared = shared if rate else None
        self.sent = 0  # requests sent through this guard, retries included: what the source was asked to serve

    async def call(self, send: Callable[[], Awaitable[T]], *, idempotent: bool) -> T:
        """`send` within the source's budget; retried only when repeating it cannot do harm."""
        try:
            async with asyncio.timeout(self.settings.total_timeout):
                return await self._attempts(send, idempotent)
        except TimeoutError:
            raise UpstreamTimeout(
                f"{self.source.upper()} did not answer within {self.settings.total_timeout} s", source=self.source
            ) from None

    async def _attempts(self, send: Callable[[], Awaitable[T]], idempotent: bool) -> T:
        attempts = self.settings.attempts if idempotent else 1
        for attempt in range(1, attempts + 1):
            self.breaker.before()
            try:
                if self.bucket:
                    await self.bucket.take()
                if self.shared:
                    await self._shared_quota()
                async with self.bulkhead:
                    self.sent += 1
                    result = await send()
            except (UpstreamUnavailable, UpstreamTimeout) as exc:
                self.breaker.record(False)
                if attempt == attempts:
                    raise
                await asyncio.sleep(self._wait(attempt, exc))
                continue
            except UpstreamError:
                self.breaker.record(True)  # the source answered; the request was wrong, not the source
                raise
            self.breaker.record(True)
            return result
        raise AssertionError("unreachable")

    async def _shared_quota(self) -> None:
        assert self.shared is not None
        wait = await self.shared.wait_for(self.source)
        while wait:  # the quota's next window opens with time: sleeping until then is the wait
            await asyncio.sleep(wait)
            wait = await self.shared.wait_for(self.source)

    def _wait(self, attempt: int, error: UpstreamError) -> float:
        retry_after = error.details.get("retryAfter")
        if isinstance(retry_after, int | float):
            return float(retry_after)
        backoff = min(self.settings.max_backoff_seconds, self.settings.backoff_seconds * 2 ** (attempt - 1))
        return backoff * (0.5 + random.random())
