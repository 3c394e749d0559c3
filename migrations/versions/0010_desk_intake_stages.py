"""desk_case: intake_done_at, so intake can acknowledge a case before its answer or routing is recorded

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("intake_done_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("desk_case", schema=None) as batch_op:
        batch_op.add_column(sa.Column("intake_done_at", sa.DateTime(timezone=True), nullable=True))
    # Every case written so far got its outcome in the transaction that wrote it.
    op.execute("UPDATE desk_case SET intake_done_at = created_at")
    with op.batch_alter_table("desk_case", schema=None) as batch_op:
        batch_op.create_index(
            "ix_desk_case_intake_pending", ["id"], unique=False, sqlite_where=PENDING, postgresql_where=PENDING
        )


def downgrade() -> None:
    with op.batch_alter_table("desk_case", schema=None) as batch_op:
        batch_op.drop_index("ix_desk_case_intake_pending", sqlite_where=PENDING, postgresql_where=PENDING)
        batch_op.drop_column("intake_done_at")
