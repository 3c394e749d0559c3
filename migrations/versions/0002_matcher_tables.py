"""matcher tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:47:25.121948
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "enterprise_tag",
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_enterprise_tag_enterprise_id_enterprise"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["tag_id"], ["tag.id"], name=op.f("fk_enterprise_tag_tag_id_tag"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("enterprise_id", "tag_id", name=op.f("pk_enterprise_tag")),
    )
    with op.batch_alter_table("enterprise_tag", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enterprise_tag_tag_id"), ["tag_id"], unique=False)

    op.create_table(
        "match_result",
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("rule_score", sa.Float(), nullable=False),
        sa.Column("tag_score", sa.Float(), nullable=False),
        sa.Column("semantic_score", sa.Float(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("shared_tags", sa.JSON(), nullable=False),
        sa.Column("condition_states", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_match_result_enterprise_id_enterprise"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policy.id"], name=op.f("fk_match_result_policy_id_policy"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("enterprise_id", "policy_id", name=op.f("pk_match_result")),
    )
    with op.batch_alter_table("match_result", schema=None) as batch_op:
        batch_op.create_index("ix_match_result_enterprise_status", ["enterprise_id", "status"], unique=False)
        batch_op.create_index("ix_match_result_policy_status", ["policy_id", "status"], unique=False)

    op.create_table(
        "policy_tag_suggestion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["user_account.id"],
            name=op.f("fk_policy_tag_suggestion_decided_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policy.id"], name=op.f("fk_policy_tag_suggestion_policy_id_policy"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tag.id"], name=op.f("fk_policy_tag_suggestion_tag_id_tag"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_tag_suggestion")),
    )
    with op.batch_alter_table("policy_tag_suggestion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policy_tag_suggestion_policy_id"), ["policy_id"], unique=False)
        batch_op.create_index("uq_policy_tag_suggestion_policy_tag", ["policy_id", "tag_id"], unique=True)


def downgrade() -> None:

    with op.batch_alter_table("policy_tag_suggestion", schema=None) as batch_op:
        batch_op.drop_index("uq_policy_tag_suggestion_policy_tag")
        batch_op.drop_index(batch_op.f("ix_policy_tag_suggestion_policy_id"))

    op.drop_table("policy_tag_suggestion")
    with op.batch_alter_table("match_result", schema=None) as batch_op:
        batch_op.drop_index("ix_match_result_policy_status")
        batch_op.drop_index("ix_match_result_enterprise_status")

    op.drop_table("match_result")
    with op.batch_alter_table("enterprise_tag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enterprise_tag_tag_id"))

    op.drop_table("enterprise_tag")
