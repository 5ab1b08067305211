"""Group commit (`gateway/store/groups.py`), on SQLite and PostgreSQL: inbox events arriving together are stored
in one transaction, each exactly once, and `accept` returns only once its own row is committed; a duplicate inside
one group is answered as a duplicate; a group the store refuses answers each of its callers with the error and
stores nothing of theirs, while a row the store refuses fails alone, its group stored. The dispatcher's DONE
outcomes share transactions too, and so do notification deliveries added together (one per target and event)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.errors import StoreError
from gateway.events.envelope import Event, EventType, LotRef
from gateway.store import Store
from gateway.store.inbox import InboxEntry

REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse_broken BEFORE INSERT ON inbox WHEN NEW.source = 'broken' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_broken BEFORE INSERT ON inbox FOR EACH ROW WHEN (NEW.source = 'broken') "
        "EXECUTE FUNCTION refuse()",
    ],
}  # a store that refuses one kind of row: what a constraint or a bad value does to one request among many


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    try:
        yield opened
    finally:
        await opened.aclose()


def commits(store: Store) -> list[None]:
    """One item per transaction the store's engine commits from now on."""
    seen: list[None] = []
    event.listen(store.engine.sync_engine, "commit", lambda _conn: seen.append(None))
    return seen


async def accept(store: Store, event_id: str, source: str = "qms") -> InboxEntry | None:
    e = Event(id=event_id, type=EventType.LOT_STATUS_CHANGED, source=source, plant="P100", lot=LotRef(id="L1"),
              occurred=datetime.now(UTC))  # fmt: skip
    return await store.inbox.accept(e.id, e.type.value, source, e.model_dump(mode="json"), owner="me", seconds=30)


async def stored(store: Store) -> list[str]:
    """The ids in the inbox, as another connection sees them."""
    engine = create_async_engine(store.engine.url)
    try:
        async with engine.connect() as conn:
            return sorted((await conn.execute(text("SELECT id FROM inbox"))).scalars())
    finally:
        await engine.dispose()


async def test_events_arriving_together_share_a_transaction_and_each_is_stored_once(store: Store) -> None:
    transactions = commits(store)
    ids = [f"qms:{n:03}" for n in range(100)]
    entries = await asyncio.gather(*(accept(store, event_id) for event_id in ids))
    assert [entry.id for entry in entries if entry is not None] == ids, "every caller hears its own event stored"
    assert await stored(store) == ids
    assert len(transactions) < 10, f"100 arrivals took {len(transactions)} transactions"


async def test_accept_returns_once_its_row_is_committed(store: Store) -> None:
    for n in range(3):  # alone, and while other arrivals are still being committed
        first, *_ = await asyncio.gather(accept(store, f"qms:first-{n}"), accept(store, f"qms:later-{n}"))
        assert first is not None
        assert f"qms:first-{n}" in await stored(store)


async def test_a_duplicate_inside_one_group_is_a_duplicate(store: Store) -> None:
    assert await accept(store, "qms:known") is not None
    answers = await asyncio.gather(*(accept(store, event_id) for event_id in ["qms:a", "qms:a", "qms:known", "qms:b"]))
    assert [answer is not None for answer in answers] == [True, False, False, True]
    assert await stored(store) == ["qms:a", "qms:b", "qms:known"]


async def test_a_group_the_store_refuses_answers_each_caller_with_an_error_and_stores_none(store: Store) -> None:
    async with store.engine.begin() as conn:
        for statement in REFUSE[store.engine.dialect.name]:
            await conn.execute(text(statement))
    answers = await asyncio.gather(*(accept(store, f"qms:{n}", "broken") for n in range(5)), return_exceptions=True)
    assert all(isinstance(answer, StoreError) for answer in answers), answers
    assert await stored(store) == []


async def test_a_row_the_store_refuses_fails_alone_and_its_group_is_stored(store: Store) -> None:
    async with store.engine.begin() as conn:
        for statement in REFUSE[store.engine.dialect.name]:
            await conn.execute(text(statement))
    answers = await asyncio.gather(accept(store, "qms:a"), accept(store, "qms:bad", "broken"), accept(store, "qms:b"),
                                   return_exceptions=True)  # fmt: skip
    assert isinstance(answers[1], StoreError)
    assert [answer.id for answer in answers if isinstance(answer, InboxEntry)] == ["qms:a", "qms:b"]
    assert await stored(store) == ["qms:a", "qms:b"]
    assert await accept(store, "qms:a") is None, "stored once: a redelivery is a duplicate"


async def test_runs_ending_together_are_recorded_done_in_one_transaction(store: Store) -> None:
    ids = [f"qms:{n:02}" for n in range(20)]
    await asyncio.gather(*(accept(store, event_id) for event_id in ids))
    transactions = commits(store)
    await asyncio.gather(*(store.inbox.done(event_id, "me") for event_id in ids))
    assert await store.inbox.count_pending() == 0
    assert len(transactions) < 5, f"20 outcomes took {len(transactions)} transactions"
    await store.inbox.done("qms:00", "me")  # again, after its lease was given back: nothing changes, no error
    assert await store.inbox.count_pending() == 0


def add(store: Store, delivery_id: str, target: str, event_id: str) -> Awaitable[bool]:
    return store.outbox.add(delivery_id, target, event_id, "InspectionCompleted", plants=["P100"], lot_id="L1",
                            correlation_id=None, body={"event": event_id})  # fmt: skip


async def test_deliveries_added_together_share_a_transaction_one_per_target_and_event(store: Store) -> None:
    transactions = commits(store)
    added = await asyncio.gather(*(add(store, f"msg_{n}{t}", t, f"evt-{n}") for n in range(30) for t in ("a", "b")))
    assert all(added)
    assert len(transactions) < 10, f"60 deliveries took {len(transactions)} transactions"
    again = await asyncio.gather(
        add(store, "msg_x", "a", "evt-0"), add(store, "msg_y", "c", "evt-0"), add(store, "msg_z", "c", "evt-0")
    )
    assert again == [False, True, False], "one delivery per target and event, within a group too"
    due = await store.outbox.claim("me", 30, 100, ["a", "b", "c"])
    assert len(due) == 61


async def test_deliveries_ending_together_are_recorded_in_one_transaction_by_their_lease_holder(store: Store) -> None:
    await asyncio.gather(*(add(store, f"msg_{n}", "a", f"evt-{n}") for n in range(20)))
    claimed = await store.outbox.claim("me", 30, 100, ["a"])
    transactions = commits(store)
    *mine, stranger = await asyncio.gather(
        *(store.outbox.delivered(delivery.id, "me") for delivery in claimed), store.outbox.delivered("msg_0", "other")
    )
    assert len(mine) == 20 and all(mine) and stranger is False, "only the lease's holder records an outcome"
    assert len(transactions) < 5, f"20 outcomes took {len(transactions)} transactions"
    async with store.engine.connect() as conn:
        states = (await conn.execute(text("SELECT state, attempts FROM deliveries"))).all()
    assert set(states) == {("DELIVERED", 1)}
