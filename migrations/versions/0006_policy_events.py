"""policy events for the push funnel; the message of a targeted push

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 13:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "policy_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["push_delivery.id"],
            name=op.f("fk_policy_event_delivery_id_push_delivery"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_policy_event_enterprise_id_enterprise"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policy.id"], name=op.f("fk_policy_event_policy_id_policy"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_event")),
    )
    with op.batch_alter_table("policy_event", schema=None) as batch_op:
        batch_op.create_index("ix_policy_event_policy_kind", ["policy_id", "kind", "enterprise_id"], unique=False)

    with op.batch_alter_table("push_manual", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message", sa.Text(), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("push_manual", schema=None) as batch_op:
        batch_op.drop_column("message")

    with op.batch_alter_table("policy_event", schema=None) as batch_op:
        batch_op.drop_index("ix_policy_event_policy_kind")

    op.drop_table("policy_event")
