"""A lease on each lot an operation is changing, so operations on the same lot take turns across replicas.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lot_leases",
        sa.Column("lot_id", sa.String(64), primary_key=True),
        sa.Column("operation_id", sa.String(36), nullable=False, index=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lot_leases")
