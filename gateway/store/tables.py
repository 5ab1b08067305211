"""The gateway's own state, as SQLAlchemy Core tables: operations and their steps (durable sagas), the
hash-chained audit log, the inbox of plant events, the exception queue, the outbox of notifications, and
reconciliation's divergent lots, sweeps and leases. The schema itself is owned by the Alembic migrations beside this
file."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    literal,
    text,
)
from sqlalchemy.sql import ColumnElement

metadata = MetaData()

operations = Table(
    "operations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("input", JSON, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("result", JSON),
    Column("error", Text),
    Column("correlation_id", String(128)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime(timezone=True)),
    UniqueConstraint("actor", "idempotency_key", name="uq_operations_actor_key"),
)

operation_steps = Table(
    "operation_steps",
    metadata,
    Column("operation_id", ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("system", String(8), nullable=False),
    Column("lot_id", String(64), nullable=False, index=True),  # a lot's operations: leases, KPIs
    Column("action", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("contract", String(100)),
    Column("detail", JSON),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Which operation is changing a lot right now: operations on one lot take turns, whichever replica runs them.
lot_leases = Table(
    "lot_leases",
    metadata,
    Column("lot_id", String(64), primary_key=True),
    Column("operation_id", String(36), nullable=False, index=True),
    Column("until", DateTime(timezone=True), nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False, index=True),
    Column("resource", String(200), nullable=False, index=True),
    Column("decision", String(8), nullable=False),
    Column("policy_ids", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Column("correlation_id", String(128)),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("plants", Text),  # `|P100|P200|`: plants of the lots the entry is about (audit.py); NULL: no lot
    Column("suppliers", Text),
)

ingest_cursors = Table(
    "ingest_cursors",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("cursor", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Every inbound plant event, stored before it is acknowledged (its id is the key: a redelivery is a duplicate),
# until its reactions are done or it is parked; `published` once it is on the bus.
inbox = Table(
    "inbox",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("source", String(32), nullable=False),
    Column("event", JSON, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("published", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

ACTIVE_EXCEPTION = "state IN ('OPEN', 'RETRIED')"  # at most one active entry per subject (the partial index)

# What cannot succeed by retrying: parked events, failed operation steps, undeliverable notifications.
exceptions = Table(
    "exceptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("reason_code", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("subject", String(200), nullable=False),
    Column("lot_id", String(64)),
    Column("plants", Text, nullable=False),  # `|P100|P200|` as in the audit log; `|?|`: of no known plant
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("correlation_id", String(128)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("resolved_by", String(200)),
    Column("resolution", Text),
    Index(
        "uq_exceptions_active_subject",
        "kind",
        "subject",
        unique=True,
        sqlite_where=text(ACTIVE_EXCEPTION),
        postgresql_where=text(ACTIVE_EXCEPTION),
    ),
)

# Outbound notifications (the outbox): one delivery per target and event, sent by the delivery worker under a lease,
# until a target answers 2xx (DELIVERED), the tries are spent (PARKED, in the exception queue) or a person gives
# it up (DISCARDED).
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("target", String(100), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("plants", Text, nullable=False),  # `|P100|` as in the exception queue; `|?|`: of no known plant
    Column("lot_id", String(64)),
    Column("correlation_id", String(128)),
    Column("body", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("target", "event_id", name="uq_deliveries_target_event"),
    Index("ix_deliveries_state_due", "state", "due_at"),
)

ACTIVE_DIVERGENCE = "resolved_at IS NULL"  # at most one open divergence per lot (the partial index)

# Lots whose systems disagree, as the reconciliation sweep (or a re-check) found them: open while `resolved_at` is
# NULL; kept once resolved, so how long each divergence lasted stays on record.
divergent_lots = Table(
    "divergent_lots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lot_id", String(64), nullable=False),
    Column("plant", String(16), nullable=False, index=True),
    Column("material", String(64), nullable=False),
    Column("supplier", String(64)),
    Column("quality_status", String(16)),  # what QMS says (NULL: it has no record of the lot)
    Column("kinds", Text, nullable=False),  # `|AVAILABLE_WHILE_BLOCKED|...|`, joined as plants are
    Column("statements", JSON, nullable=False),  # each system's statement and the disagreements, as found last
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Index(
        "uq_divergent_lots_open",
        "lot_id",
        unique=True,
        sqlite_where=text(ACTIVE_DIVERGENCE),
        postgresql_where=text(ACTIVE_DIVERGENCE),
    ),
)

# One row per plant: how far its reconciliation sweep has come (`cursor`, the last lot checked; NULL between
# sweeps), so a restarted gateway carries on where the last one stopped.
reconciliation_sweeps = Table(
    "reconciliation_sweeps",
    metadata,
    Column("plant", String(16), primary_key=True),
    Column("cursor", String(64)),
    Column("started_at", DateTime(timezone=True)),
    Column("checked", Integer, nullable=False),
    Column("total", Integer),
    Column("completed_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Named leases: one holder at a time among the replicas sharing the store (the reconciliation sweeper).
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
)

T = TypeVar("T")


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def record(cls: type[T], row: Mapping[str, Any], **overrides: Any) -> T:
    """A dataclass from a table row: the row's columns that are fields of `cls`, then `overrides`."""
    names = _fields(cls)
    return cls(**{**{key: value for key, value in row.items() if key in names}, **overrides})


@functools.cache
def _fields(cls: type) -> frozenset[str]:
    """Asked once per class: a recall's operation is tens of thousands of step rows."""
    return frozenset(field.name for field in dataclasses.fields(cls))


_SEP = "|"


def joined(values: Iterable[str] | None) -> str | None:
    """`|P100|P200|`: each value between separators, so `within` can strike out whole values."""
    if values is None:
        return None
    listed = sorted(set(values))
    if any(_SEP in value for value in listed):
        raise ValueError(f"a plant or supplier id contains {_SEP!r}: {listed}")
    return _SEP + _SEP.join(listed) + _SEP if listed else _SEP


def split_joined(joined: str | None) -> tuple[str, ...] | None:
    return None if joined is None else tuple(value for value in joined.split(_SEP) if value)


def within(column: Any, plants: Collection[str]) -> ColumnElement[bool]:
    """Every value in the joined `column` is one of `plants` (a subset test any SQL dialect can run: strike
    out each allowed `|P|`, and nothing may be left); NULL (about no lot) is never within."""
    remaining: Any = column
    for plant in sorted(plants):
        remaining = func.replace(remaining, f"{_SEP}{plant}{_SEP}", _SEP)
    return and_(column.is_not(None), remaining == literal(_SEP))
