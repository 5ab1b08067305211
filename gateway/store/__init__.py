"""The gateway's durable state (SQLAlchemy Core, async): SQLite under the data directory by default,
PostgreSQL when `LOTGRAPH_STORE_URL` names one, so replicas share it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import inspect, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import ConfigurationError
from gateway.store.audit import AuditEntry, AuditLog, Verification
from gateway.store.cursors import IngestCursors
from gateway.store.divergence import DivergentLots
from gateway.store.engine import migrate, open_engine
from gateway.store.exceptions import ExceptionQueue
from gateway.store.inbox import Inbox
from gateway.store.leases import Leases
from gateway.store.outbox import Outbox
from gateway.store.sweeps import Sweeps

__all__ = ["AuditEntry", "AuditLog", "Store", "Verification", "describe"]

STORE_SETTING = "LOTGRAPH_STORE_URL"


def describe(url: str) -> str:
    """The store's URL as it may be printed and logged: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "an unparsable URL"


def _engine(url: str) -> AsyncEngine:
    try:
        return open_engine(url)
    except (ArgumentError, ValueError) as exc:  # not a URL SQLAlchemy understands, or no such driver
        raise ConfigurationError(STORE_SETTING, f"not a usable store URL: {exc}") from None


def _unusable(url: str, exc: BaseException) -> ConfigurationError:
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return ConfigurationError(STORE_SETTING, f"cannot open the store at {describe(url)}: {reason}")


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.audit = AuditLog(engine)
        self.cursors = IngestCursors(engine)
        self.inbox = Inbox(engine)
        self.exceptions = ExceptionQueue(engine)
        self.outbox = Outbox(engine)
        self.divergent = DivergentLots(engine)
        self.sweeps = Sweeps(engine)
        self.leases = Leases(engine)

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and migrate to the latest schema; a store that cannot be opened is a ConfigurationError."""
        engine = _engine(url)
        try:
            await migrate(engine)
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            raise _unusable(url, exc) from None
        return cls(engine)

    @classmethod
    async def open_existing(cls, url: str) -> Store:
        """Connect to a store that already holds lotgraph's tables (for inspection: `lotgraph audit verify`),
        never creating or migrating one."""
        if url.startswith("sqlite") and not await asyncio.to_thread(Path(url.split(":///", 1)[-1]).is_file):
            raise ConfigurationError(STORE_SETTING, f"no store at {describe(url)}")
        engine = _engine(url)
        try:
            async with engine.connect() as conn:
                tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            raise _unusable(url, exc) from None
        if "audit_log" not in tables:
            await engine.dispose()
            raise ConfigurationError(STORE_SETTING, f"{describe(url)} is not a lotgraph store (no audit log)")
        return cls(engine)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def aclose(self) -> None:
        await self.engine.dispose()
