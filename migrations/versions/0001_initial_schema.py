"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 11:07:08.475650
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "category",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["category.id"], name=op.f("fk_category_parent_id_category"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_category")),
        sa.UniqueConstraint("code", name=op.f("uq_category_code")),
        sa.UniqueConstraint("parent_id", "name", name=op.f("uq_category_parent_id_name")),
    )
    with op.batch_alter_table("category", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_category_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "department",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("short_name", sa.String(length=40), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("contact_phone", sa.String(length=40), nullable=True),
        sa.Column("contact_email", sa.String(length=120), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_department")),
        sa.UniqueConstraint("code", name=op.f("uq_department_code")),
        sa.UniqueConstraint("name", name=op.f("uq_department_name")),
    )
    op.create_table(
        "enterprise",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("credit_code", sa.String(length=18), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=True),
        sa.Column("industry_code", sa.String(length=6), nullable=True),
        sa.Column("established_on", sa.Date(), nullable=True),
        sa.Column("registered_capital", sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=True),
        sa.Column("employees", sa.Integer(), nullable=True),
        sa.Column("annual_revenue", sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=True),
        sa.Column("total_assets", sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=True),
        sa.Column("rd_expense", sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=True),
        sa.Column("export_revenue", sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=True),
        sa.Column("credit_standing", sa.String(length=20), nullable=True),
        sa.Column("tax_credit_level", sa.String(length=2), nullable=True),
        sa.Column("business_scope", sa.Text(), nullable=True),
        sa.Column("products", sa.Text(), nullable=True),
        sa.Column("needs", sa.Text(), nullable=True),
        sa.Column("contact_name", sa.String(length=60), nullable=True),
        sa.Column("contact_phone", sa.String(length=40), nullable=True),
        sa.Column("contact_email", sa.String(length=120), nullable=True),
        sa.Column("size_class", sa.String(length=10), nullable=True),
        sa.Column("rd_ratio", sa.Float(), nullable=True),
        sa.Column("completeness", sa.Integer(), nullable=False),
        sa.Column("missing_fields", sa.JSON(), nullable=False),
        sa.Column("profile_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enterprise")),
        sa.UniqueConstraint("credit_code", name=op.f("uq_enterprise_credit_code")),
    )
    with op.batch_alter_table("enterprise", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enterprise_industry_code"), ["industry_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_enterprise_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_enterprise_region_code"), ["region_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_enterprise_size_class"), ["size_class"], unique=False)

    op.create_table(
        "tag",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "industry",
                "size",
                "qualification",
                "benefit",
                "stage",
                "region",
                name="tag_kind",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("synonyms", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag")),
        sa.UniqueConstraint("name", name=op.f("uq_tag_name")),
    )
    op.create_table(
        "topic",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic")),
        sa.UniqueConstraint("code", name=op.f("uq_topic_code")),
        sa.UniqueConstraint("name", name=op.f("uq_topic_name")),
    )
    op.create_table(
        "enterprise_qualification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("valid_until_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_enterprise_qualification_enterprise_id_enterprise"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tag.id"], name=op.f("fk_enterprise_qualification_tag_id_tag"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enterprise_qualification")),
        sa.UniqueConstraint("enterprise_id", "tag_id", name=op.f("uq_enterprise_qualification_enterprise_id_tag_id")),
    )
    with op.batch_alter_table("enterprise_qualification", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enterprise_qualification_enterprise_id"), ["enterprise_id"], unique=False)

    op.create_table(
        "user_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("display_name", sa.String(length=60), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "admin", "curator", "desk", "supervisor", "enterprise", name="user_role", native_enum=False, length=20
            ),
            nullable=False,
        ),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("enterprise_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=120), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["department.id"],
            name=op.f("fk_user_account_department_id_department"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_user_account_enterprise_id_enterprise"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_account")),
        sa.UniqueConstraint("username", name=op.f("uq_user_account_username")),
    )
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_account_department_id"), ["department_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_user_account_enterprise_id"), ["enterprise_id"], unique=False)

    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "admin", "curator", "desk", "supervisor", "enterprise", name="user_role", native_enum=False, length=20
            ),
            nullable=False,
        ),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_api_key_created_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["department_id"], ["department.id"], name=op.f("fk_api_key_department_id_department"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_key_key_hash")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_key_prefix")),
    )
    op.create_table(
        "policy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("doc_number", sa.String(length=80), nullable=True),
        sa.Column("issuing_department_id", sa.Integer(), nullable=False),
        sa.Column("handling_department_id", sa.Integer(), nullable=True),
        sa.Column(
            "level",
            sa.Enum("national", "provincial", "municipal", "county", name="policy_level", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column(
            "policy_type",
            sa.Enum("application", "exempt", "informational", name="policy_type", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("interpretation", sa.Text(), nullable=True),
        sa.Column("interpreter_name", sa.String(length=60), nullable=True),
        sa.Column("interpreter_contact", sa.String(length=120), nullable=True),
        sa.Column("full_text", sa.Text(), nullable=True),
        sa.Column("apply_start_on", sa.Date(), nullable=True),
        sa.Column("apply_end_on", sa.Date(), nullable=True),
        sa.Column("valid_from_on", sa.Date(), nullable=True),
        sa.Column("valid_to_on", sa.Date(), nullable=True),
        sa.Column("max_amount", sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=True),
        sa.Column("amount_text", sa.String(length=500), nullable=True),
        sa.Column("apply_url", sa.String(length=500), nullable=True),
        sa.Column("rules", sa.JSON(), nullable=True),
        sa.Column(
            "status",
            sa.Enum("draft", "published", "expired", "withdrawn", name="policy_status", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_policy_created_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["handling_department_id"],
            ["department.id"],
            name=op.f("fk_policy_handling_department_id_department"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["issuing_department_id"],
            ["department.id"],
            name=op.f("fk_policy_issuing_department_id_department"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["user_account.id"],
            name=op.f("fk_policy_updated_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy")),
        sa.UniqueConstraint("doc_number", name=op.f("uq_policy_doc_number")),
        sa.UniqueConstraint("issuing_department_id", "title", name=op.f("uq_policy_issuing_department_id_title")),
    )
    with op.batch_alter_table("policy", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policy_apply_end_on"), ["apply_end_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_policy_handling_department_id"), ["handling_department_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_policy_issuing_department_id"), ["issuing_department_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_policy_status"), ["status"], unique=False)

    op.create_table(
        "policy_category",
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"], ["category.id"], name=op.f("fk_policy_category_category_id_category"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policy.id"], name=op.f("fk_policy_category_policy_id_policy"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("policy_id", "category_id", name=op.f("pk_policy_category")),
    )
    with op.batch_alter_table("policy_category", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policy_category_category_id"), ["category_id"], unique=False)

    op.create_table(
        "policy_region",
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policy.id"], name=op.f("fk_policy_region_policy_id_policy"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("policy_id", "region_code", name=op.f("pk_policy_region")),
    )
    with op.batch_alter_table("policy_region", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policy_region_region_code"), ["region_code"], unique=False)

    op.create_table(
        "policy_tag",
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policy.id"], name=op.f("fk_policy_tag_policy_id_policy"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["tag_id"], ["tag.id"], name=op.f("fk_policy_tag_tag_id_tag"), ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("policy_id", "tag_id", name=op.f("pk_policy_tag")),
    )
    with op.batch_alter_table("policy_tag", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policy_tag_tag_id"), ["tag_id"], unique=False)

    op.create_table(
        "policy_topic",
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policy.id"], name=op.f("fk_policy_topic_policy_id_policy"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"], ["topic.id"], name=op.f("fk_policy_topic_topic_id_topic"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("policy_id", "topic_id", name=op.f("pk_policy_topic")),
    )
    with op.batch_alter_table("policy_topic", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policy_topic_topic_id"), ["topic_id"], unique=False)

    op.create_table(
        "policy_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["user_account.id"], name=op.f("fk_policy_version_actor_id_user_account"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policy.id"], name=op.f("fk_policy_version_policy_id_policy"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_version")),
        sa.UniqueConstraint("policy_id", "version", name=op.f("uq_policy_version_policy_id_version")),
    )
    with op.batch_alter_table("policy_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policy_version_policy_id"), ["policy_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("policy_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_policy_version_policy_id"))

    op.drop_table("policy_version")
    with op.batch_alter_table("policy_topic", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_policy_topic_topic_id"))

    op.drop_table("policy_topic")
    with op.batch_alter_table("policy_tag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_policy_tag_tag_id"))

    op.drop_table("policy_tag")
    with op.batch_alter_table("policy_region", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_policy_region_region_code"))

    op.drop_table("policy_region")
    with op.batch_alter_table("policy_category", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_policy_category_category_id"))

    op.drop_table("policy_category")
    with op.batch_alter_table("policy", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_policy_status"))
        batch_op.drop_index(batch_op.f("ix_policy_issuing_department_id"))
        batch_op.drop_index(batch_op.f("ix_policy_handling_department_id"))
        batch_op.drop_index(batch_op.f("ix_policy_apply_end_on"))

    op.drop_table("policy")
    op.drop_table("api_key")
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_account_enterprise_id"))
        batch_op.drop_index(batch_op.f("ix_user_account_department_id"))

    op.drop_table("user_account")
    with op.batch_alter_table("enterprise_qualification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enterprise_qualification_enterprise_id"))

    op.drop_table("enterprise_qualification")
    op.drop_table("topic")
    op.drop_table("tag")
    with op.batch_alter_table("enterprise", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enterprise_size_class"))
        batch_op.drop_index(batch_op.f("ix_enterprise_region_code"))
        batch_op.drop_index(batch_op.f("ix_enterprise_name"))
        batch_op.drop_index(batch_op.f("ix_enterprise_industry_code"))

    op.drop_table("enterprise")
    op.drop_table("department")
    with op.batch_alter_table("category", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_category_parent_id"))

    op.drop_table("category")
