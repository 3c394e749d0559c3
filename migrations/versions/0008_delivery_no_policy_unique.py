"""delivery: unique pushes about no policy (digests, profile reminders)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 15:06:21.827812
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("policy_id IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("push_delivery", schema=None) as batch_op:
        batch_op.create_index(
            "uq_push_delivery_no_policy",
            ["enterprise_id", "kind", "dedupe_key", "channel"],
            unique=True,
            sqlite_where=WHERE,
            postgresql_where=WHERE,
        )


def downgrade() -> None:
    with op.batch_alter_table("push_delivery", schema=None) as batch_op:
        batch_op.drop_index("uq_push_delivery_no_policy", sqlite_where=WHERE, postgresql_where=WHERE)
