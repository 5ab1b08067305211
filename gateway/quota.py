"""Quotas shared by every replica: a fixed-window counter per key in Redis.

A window holds `limit` requests; whoever is over waits for the next window. Coarser than a token bucket,
but one INCR per request and the same answer on every replica, which is what a cloud ERP's quota or a
per-client limit needs once the gateway runs more than one process.
"""

from __future__ import annotations

import math
import time

from redis.asyncio import Redis


class RedisQuota:
    def __init__(self, redis: Redis, name: str, rate: float, burst: int) -> None:
        self.redis = redis
        self.name = name
        # A window long enough to hold the burst at the given rate; the limit is what the window allows.
        self.window = max(1.0, burst / rate)
        self.limit = max(1, math.floor(rate * self.window))

    async def wait_for(self, key: str) -> float:
        """0.0 when `key` may go ahead now (and counts it), else the seconds until its next window."""
        now = time.time()
        window = math.floor(now / self.window)
        counter = f"lotgraph:quota:{self.name}:{key}:{window}"
        async with self.redis.pipeline(transaction=True) as pipe:
            count, _ = await pipe.incr(counter).expire(counter, math.ceil(self.window) + 1).execute()
        if count <= self.limit:
            return 0.0
        return (window + 1) * self.window - now
