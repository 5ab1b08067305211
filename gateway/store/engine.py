"""Open the store (SQLite file by default, PostgreSQL by URL) and bring its schema to the latest migration.

Several processes may share one store (replicas on PostgreSQL, or two `lotgraph run` on one SQLite file), so
a read-then-write that must not interleave runs in `serialized`: an advisory lock on PostgreSQL, the database's
write lock from the first statement on SQLite (`BEGIN IMMEDIATE`, waited for up to `busy_timeout`). A database
error never reaches a client with its SQL: the engine turns it into a `StoreError` (`gateway/errors.py`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, exc, text
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.errors import StoreConflict, StoreError, StoreUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x6C6F746D  # "lotm"
_IMMEDIATE = "lotgraph_immediate"  # execution option: this SQLite transaction takes the write lock at BEGIN
log = logging.getLogger("lotgraph.store")


def open_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, json_serializer=_json)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # The driver's own BEGIN comes only before the first write, so a read-then-write could interleave with
            # another process's; SQLAlchemy's recipe: no BEGIN from the driver, ours in `_sqlite_begin`.
            dbapi_connection.isolation_level = None
            # WAL lets readers (auditors, verify) work beside the writer; with WAL, synchronous=NORMAL keeps every
            # commit through a process crash (only an OS crash can lose the last ones); foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(connection: Connection) -> None:
            immediate = connection.get_execution_options().get(_IMMEDIATE, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    else:
        engine = create_async_engine(url, pool_pre_ping=True, json_serializer=_json)
    event.listen(engine.sync_engine, "handle_error", _typed_error)
    return engine


def _json(value: object) -> str:
    """JSON columns as JSON, whatever a value holds (a date in a step's detail is stored as its text)."""
    return json.dumps(value, default=str)


def _typed_error(context: ExceptionContext) -> StoreError | None:
    """The store's failure as a client may see it (no SQL, no parameters); the full error goes to the log."""
    error = context.sqlalchemy_exception
    if context.is_pre_ping or error is None:
        return None  # the pool handles a dead connection itself
    if isinstance(error, exc.IntegrityError):
        return StoreConflict("the store refused a duplicate or inconsistent row")  # callers expecting it catch it
    log.warning("store error: %s", error)
    transient = isinstance(error, exc.OperationalError) and any(
        word in str(context.original_exception).lower() for word in ("locked", "busy", "timeout", "timed out")
    )  # SQLite reports a missing table as an OperationalError too: only waiting too long is "unavailable"
    if context.is_disconnect or transient:
        return StoreUnavailable("the gateway's store did not answer in time (busy or unreachable); retry")
    return StoreError("the gateway's store failed; the log has the details")


@asynccontextmanager
async def serialized(engine: AsyncEngine, lock_id: int) -> AsyncIterator[AsyncConnection]:
    """A transaction that every process using the store enters in turn (writers of `lock_id` on PostgreSQL,
    every writer on SQLite), so what it reads is still true when it writes."""
    async with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            await connection.execution_options(**{_IMMEDIATE: True})
        async with connection.begin():
            if connection.dialect.name == "postgresql":
                await connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
            yield connection


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Apply every pending Alembic migration. Idempotent; replicas starting at once take turns, so none sees
    a half-made schema."""
    async with serialized(engine, _MIGRATION_LOCK) as connection:
        await connection.run_sync(_upgrade)
