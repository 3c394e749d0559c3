"""serving store: catalog revision, per-firm ranked matches, firm vectors, batch runs

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_revision")),
    )
    op.execute("INSERT INTO catalog_revision (id, revision, changed_at) VALUES (1, 1, CURRENT_TIMESTAMP)")
    op.create_table(
        "matcher_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("matched_revision", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matcher_state")),
    )
    op.execute("INSERT INTO matcher_state (id, matched_revision, updated_at) VALUES (1, 0, CURRENT_TIMESTAMP)")
    op.create_table(
        "firm_match",
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("profile_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("eligible", sa.Integer(), nullable=False),
        sa.Column("likely", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_firm_match_enterprise_id_enterprise"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("enterprise_id", name=op.f("pk_firm_match")),
    )
    op.create_table(
        "firm_tag_state",
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("vocabulary", sa.String(length=32), nullable=False),
        sa.Column("tagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_firm_tag_state_enterprise_id_enterprise"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("enterprise_id", name=op.f("pk_firm_tag_state")),
    )
    op.create_table(
        "firm_vector",
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=120), nullable=False),
        sa.Column("text_key", sa.String(length=32), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("embedded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_firm_vector_enterprise_id_enterprise"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("enterprise_id", name=op.f("pk_firm_vector")),
    )
    op.create_table(
        "match_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("first_id", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("firms", sa.Integer(), nullable=False),
        sa.Column("firms_done", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_run")),
    )
    op.create_index("ix_match_run_key_status", "match_run", ["key", "status"])
    op.create_table(
        "match_run_chunk",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("chunk_no", sa.Integer(), nullable=False),
        sa.Column("firms", sa.Integer(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["match_run.id"], name=op.f("fk_match_run_chunk_run_id_match_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "chunk_no", name=op.f("pk_match_run_chunk")),
    )
    with op.batch_alter_table("policy_match_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("eligible", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("likely", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("listed", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("policy_match_state", schema=None) as batch_op:
        batch_op.drop_column("listed")
        batch_op.drop_column("likely")
        batch_op.drop_column("eligible")
    op.drop_table("match_run_chunk")
    op.drop_index("ix_match_run_key_status", table_name="match_run")
    op.drop_table("match_run")
    op.drop_table("firm_vector")
    op.drop_table("firm_tag_state")
    op.drop_table("firm_match")
    op.drop_table("matcher_state")
    op.drop_table("catalog_revision")
