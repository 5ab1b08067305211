"""Reconciliation: divergent lots (open and resolved), each plant's sweep cursor, named leases.

Revision ID: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OPEN = "resolved_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "divergent_lots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("lot_id", sa.String(64), nullable=False),
        sa.Column("plant", sa.String(16), nullable=False, index=True),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("supplier", sa.String(64)),
        sa.Column("quality_status", sa.String(16)),
        sa.Column("kinds", sa.Text, nullable=False),
        sa.Column("statements", sa.JSON, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "uq_divergent_lots_open", "divergent_lots", ["lot_id"], unique=True,
        sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN),
    )  # fmt: skip
    op.create_table(
        "reconciliation_sweeps",
        sa.Column("plant", sa.String(16), primary_key=True),
        sa.Column("cursor", sa.String(64)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("checked", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("reconciliation_sweeps")
    op.drop_index("uq_divergent_lots_open", table_name="divergent_lots")
    op.drop_table("divergent_lots")
