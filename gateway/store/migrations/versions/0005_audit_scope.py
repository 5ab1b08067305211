"""The plants and suppliers of the lots each audit entry is about, so plant-scoped auditors read their own.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("plants", sa.Text))
        batch.add_column(sa.Column("suppliers", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("suppliers")
        batch.drop_column("plants")
