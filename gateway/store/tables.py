"""The gateway's own state, as SQLAlchemy Core tables: operations and their steps (durable sagas),
and the hash-chained audit log. The schema itself is owned by the Alembic migrations beside this file."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint

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
    Column("lot_id", String(64), nullable=False),
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


T = TypeVar("T")


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def record(cls: type[T], row: Mapping[str, Any], **overrides: Any) -> T:
    """A dataclass from a table row: the row's columns that are fields of `cls`, then `overrides`."""
    names = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{**{key: value for key, value in row.items() if key in names}, **overrides})
