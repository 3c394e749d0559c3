"""Listing runs: policies' kept lists written per unit of firms with a checkpoint, resumable

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 07:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "list_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("first_id", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("units_done", sa.Integer(), nullable=False),
        sa.Column("policies", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_list_run")),
    )
    op.create_index("ix_list_run_status_kind", "list_run", ["status", "kind"])
    op.create_table(
        "list_run_policy",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["list_run.id"], name=op.f("fk_list_run_policy_run_id_list_run"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policy.id"], name=op.f("fk_list_run_policy_policy_id_policy"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "policy_id", name=op.f("pk_list_run_policy")),
    )
    op.create_table(
        "list_run_unit",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("unit_no", sa.Integer(), nullable=False),
        sa.Column("firms", sa.Integer(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["list_run.id"], name=op.f("fk_list_run_unit_run_id_list_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "unit_no", name=op.f("pk_list_run_unit")),
    )


def downgrade() -> None:
    op.drop_table("list_run_unit")
    op.drop_table("list_run_policy")
    op.drop_index("ix_list_run_status_kind", table_name="list_run")
    op.drop_table("list_run")
