"""desk: cases, timeline, joint departments, pauses, FAQ

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 13:54:00.012889
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "desk_case",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("kind_detected", sa.Boolean(), nullable=False),
        sa.Column("kind_confidence", sa.Float(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=True),
        sa.Column("submitted_by_id", sa.Integer(), nullable=True),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.Column("external_ref", sa.String(length=80), nullable=True),
        sa.Column("contact_name", sa.String(length=60), nullable=True),
        sa.Column("contact_phone", sa.String(length=40), nullable=True),
        sa.Column("related_policy_id", sa.Integer(), nullable=True),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("routing_method", sa.String(length=20), nullable=True),
        sa.Column("routing_confidence", sa.Float(), nullable=True),
        sa.Column("routing_candidates", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("instant_answer", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("idempotency_scope", sa.String(length=40), nullable=True),
        sa.Column("idempotency_key", sa.String(length=100), nullable=True),
        sa.Column("visit_record", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("sla_profile", sa.String(length=40), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sla_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contact_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reply_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_provisional", sa.Boolean(), nullable=False),
        sa.Column("due_warnings", sa.JSON(), nullable=False),
        sa.Column("sla_state", sa.String(length=20), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("extensions", sa.JSON(), nullable=False),
        sa.Column("extension_request", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("extension_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("return_request", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("return_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("contacted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_reply_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("supervised", sa.Boolean(), nullable=False),
        sa.Column("rating", sa.String(length=30), nullable=True),
        sa.Column("rating_comment", sa.Text(), nullable=True),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_key.id"], name=op.f("fk_desk_case_api_key_id_api_key"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["department.id"],
            name=op.f("fk_desk_case_department_id_department"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_desk_case_enterprise_id_enterprise"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["related_policy_id"],
            ["policy.id"],
            name=op.f("fk_desk_case_related_policy_id_policy"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by_id"],
            ["user_account.id"],
            name=op.f("fk_desk_case_submitted_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_case")),
        sa.UniqueConstraint("number", name=op.f("uq_desk_case_number")),
    )
    with op.batch_alter_table("desk_case", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_desk_case_channel"), ["channel"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_case_close_due_at"), ["close_due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_case_department_id"), ["department_id"], unique=False)
        batch_op.create_index("ix_desk_case_department_status", ["department_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_case_enterprise_id"), ["enterprise_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_desk_case_extension_requested_at"), ["extension_requested_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_desk_case_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_case_related_policy_id"), ["related_policy_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_case_return_requested_at"), ["return_requested_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_case_sla_state"), ["sla_state"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_case_status"), ["status"], unique=False)
        batch_op.create_index("uq_desk_case_idempotency", ["idempotency_scope", "idempotency_key"], unique=True)

    op.create_table(
        "desk_case_department",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["desk_case.id"], name=op.f("fk_desk_case_department_case_id_desk_case"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["department.id"],
            name=op.f("fk_desk_case_department_department_id_department"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("case_id", "department_id", name=op.f("pk_desk_case_department")),
    )
    with op.batch_alter_table("desk_case_department", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_desk_case_department_department_id"), ["department_id"], unique=False)

    op.create_table(
        "desk_case_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_role", sa.String(length=20), nullable=True),
        sa.Column("actor_name", sa.String(length=80), nullable=True),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("visible_to_firm", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["user_account.id"],
            name=op.f("fk_desk_case_event_actor_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["desk_case.id"], name=op.f("fk_desk_case_event_case_id_desk_case"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["department.id"],
            name=op.f("fk_desk_case_event_department_id_department"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_case_event")),
    )
    with op.batch_alter_table("desk_case_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_desk_case_event_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_case_event_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_case_event_kind"), ["kind"], unique=False)

    op.create_table(
        "desk_case_pause",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["desk_case.id"], name=op.f("fk_desk_case_pause_case_id_desk_case"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_case_pause")),
    )
    with op.batch_alter_table("desk_case_pause", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_desk_case_pause_case_id"), ["case_id"], unique=False)

    op.create_table(
        "desk_faq",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("question", sa.String(length=500), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("related_policies", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["desk_case.id"], name=op.f("fk_desk_faq_case_id_desk_case"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["department_id"], ["department.id"], name=op.f("fk_desk_faq_department_id_department"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_faq")),
        sa.UniqueConstraint("case_id", name="uq_desk_faq_case_id"),
        sa.UniqueConstraint("code", name=op.f("uq_desk_faq_code")),
    )
    with op.batch_alter_table("desk_faq", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_desk_faq_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_desk_faq_department_id"), ["department_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("desk_faq", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_desk_faq_department_id"))
        batch_op.drop_index(batch_op.f("ix_desk_faq_case_id"))

    op.drop_table("desk_faq")
    with op.batch_alter_table("desk_case_pause", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_desk_case_pause_case_id"))

    op.drop_table("desk_case_pause")
    with op.batch_alter_table("desk_case_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_desk_case_event_kind"))
        batch_op.drop_index(batch_op.f("ix_desk_case_event_case_id"))
        batch_op.drop_index(batch_op.f("ix_desk_case_event_at"))

    op.drop_table("desk_case_event")
    with op.batch_alter_table("desk_case_department", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_desk_case_department_department_id"))

    op.drop_table("desk_case_department")
    with op.batch_alter_table("desk_case", schema=None) as batch_op:
        batch_op.drop_index("uq_desk_case_idempotency")
        batch_op.drop_index(batch_op.f("ix_desk_case_status"))
        batch_op.drop_index(batch_op.f("ix_desk_case_sla_state"))
        batch_op.drop_index(batch_op.f("ix_desk_case_return_requested_at"))
        batch_op.drop_index(batch_op.f("ix_desk_case_related_policy_id"))
        batch_op.drop_index(batch_op.f("ix_desk_case_kind"))
        batch_op.drop_index(batch_op.f("ix_desk_case_extension_requested_at"))
        batch_op.drop_index(batch_op.f("ix_desk_case_enterprise_id"))
        batch_op.drop_index("ix_desk_case_department_status")
        batch_op.drop_index(batch_op.f("ix_desk_case_department_id"))
        batch_op.drop_index(batch_op.f("ix_desk_case_close_due_at"))
        batch_op.drop_index(batch_op.f("ix_desk_case_channel"))

    op.drop_table("desk_case")
