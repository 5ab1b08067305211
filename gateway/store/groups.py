"""Group commit: concurrent writers of one kind share a transaction, each still awaiting its own commit (the
inbox's arrivals and DONE outcomes; reconciliation's re-checks, which share their batched reads too).

A webhook is answered only once its event is committed, so every request waits for a commit; with one transaction
per request, concurrent requests queue for the store's write lock (SQLite's is one per file: they sleep in its
busy handler) and each pays its own statement, commit and thread hop. `GroupCommit` keeps at most one write of its
kind in flight: whatever arrives meanwhile waits, and goes into the next write, all at once. A lone writer commits
at once (no timer, no added latency); under load the groups grow by themselves. Every caller gets its own item's
result only after the transaction holding it committed; if that transaction fails, every caller in it gets the
error (and none of its rows is stored), so nothing is answered as stored that is not. A group that failed for
another reason than the store being unavailable is written again item by item, so one bad item fails alone.

No library found does this "one in flight, the next group is what queued meanwhile" shape: the batching helpers on
PyPI batch by a timer or within one loop tick, which either adds latency or lets groups contend for the lock again.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import StoreError, StoreUnavailable

Item = TypeVar("Item")
Result = TypeVar("Result")
_INSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}  # each with its INSERT ... ON CONFLICT


class GroupCommit(Generic[Item, Result]):
    """`await submit(item)`: `write(items)` ran over a group holding `item` and returned the results in order."""

    def __init__(self, write: Callable[[list[Item]], Awaitable[Sequence[Result]]], *, most: int = 500) -> None:
        self.write = write
        self.most = most  # items per transaction: bounds a statement's size (SQLite's 32,766 parameters)
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None:  # in a context of its own: the group's writes are no one request's
            self._writer = asyncio.create_task(self._drain(), context=contextvars.Context())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[: self.most], self._waiting[self.most :]
                await self._commit(group)
        finally:
            self._writer = None

    async def _commit(self, group: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self.write([item for item, _ in group])
        except StoreError as exc:
            if len(group) > 1 and not isinstance(exc, StoreUnavailable):  # maybe one bad item: it fails alone
                for one in group:
                    await self._commit([one])
                return
            _fail(group, exc)
        except Exception as exc:
            _fail(group, exc)
        except BaseException:  # cancelled (the loop is closing): nobody waits for a result any more
            for _, future in [*group, *self._waiting]:
                future.cancel()
            self._waiting = []
            raise
        else:
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():  # a caller cancelled meanwhile (its client went away): its row stays
                    future.set_result(result)


def _fail(group: list[tuple[Item, asyncio.Future[Result]]], exc: Exception) -> None:
    """Every caller of the group hears of the failure; none of its items was stored."""
    for _, future in group:
        if not future.done():
            future.set_exception(exc)


async def insert_new(engine: AsyncEngine, table: Table, rows: list[dict[str, Any]], key: Sequence[str]) -> list[bool]:
    """Insert a group of rows in one transaction, skipping each whose `key` (a unique constraint's columns) is in
    the table already or came earlier in the group: for each row, whether it was stored. The table's primary key is
    `id`, returned for the rows stored (INSERT ... ON CONFLICT DO NOTHING RETURNING, SQLite and PostgreSQL)."""
    first: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(rows):
        first.setdefault(tuple(row[column] for column in key), i)
    async with engine.begin() as conn:
        insert = _INSERT[conn.dialect.name](table).on_conflict_do_nothing(index_elements=list(key))
        new = [rows[i] for i in first.values()]
        stored = set((await conn.execute(insert.returning(table.c.id), new)).scalars())
    return [first[tuple(row[column] for column in key)] == i and row["id"] in stored for i, row in enumerate(rows)]
