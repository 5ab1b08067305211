"""Operation steps indexed by lot: the business KPIs (lots awaiting inspection, a lot's receipt) and the waits
for a qualified person look operations up by the lot they change.

Revision ID: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_operation_steps_lot_id", "operation_steps", ["lot_id"])


def downgrade() -> None:
    op.drop_index("ix_operation_steps_lot_id", "operation_steps")
