"""Security hardening: per-user token version, API key scopes

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-06 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_version", sa.Integer(), nullable=False, server_default="0"))
    # Keys made before scopes keep what they could do ("full"); new keys name their scopes.
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.String(length=200), nullable=False, server_default="full"))


def downgrade() -> None:
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_column("scopes")
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("token_version")
