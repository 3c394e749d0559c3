"""policy keyword index: FTS5 trigram table with triggers (SQLite), pg_trgm GIN index (PostgreSQL); status index

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 15:00:00.000000

SQLite: ``policy_fts`` is an external-content FTS5 table over policy.title, search_text and
full_text with the trigram tokenizer; triggers keep it in step with every write to ``policy``
(ORM, bulk inserts, raw SQL alike). A later batch migration that recreates ``policy`` drops these
triggers and must create them again.

PostgreSQL: the pg_trgm extension (in ``public`` where allowed, so that several schemas of one
database share it) and a GIN trigram index on the searched text. Where the extension cannot be
created the migration goes on without it and keyword search scans instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

COLUMNS = "title, search_text, full_text"
SQLITE = [
    f"CREATE VIRTUAL TABLE policy_fts USING fts5({COLUMNS}, content='policy', content_rowid='id', tokenize='trigram')",
    "CREATE VIRTUAL TABLE policy_fts_vocab USING fts5vocab(policy_fts, 'row')",
    f"""CREATE TRIGGER policy_fts_insert AFTER INSERT ON policy BEGIN
        INSERT INTO policy_fts(rowid, {COLUMNS}) VALUES (new.id, new.title, new.search_text, new.full_text);
    END""",
    f"""CREATE TRIGGER policy_fts_delete AFTER DELETE ON policy BEGIN
        INSERT INTO policy_fts(policy_fts, rowid, {COLUMNS})
        VALUES ('delete', old.id, old.title, old.search_text, old.full_text);
    END""",
    f"""CREATE TRIGGER policy_fts_update AFTER UPDATE OF title, search_text, full_text ON policy BEGIN
        INSERT INTO policy_fts(policy_fts, rowid, {COLUMNS})
        VALUES ('delete', old.id, old.title, old.search_text, old.full_text);
        INSERT INTO policy_fts(rowid, {COLUMNS}) VALUES (new.id, new.title, new.search_text, new.full_text);
    END""",
    "INSERT INTO policy_fts(policy_fts) VALUES ('rebuild')",
]
# The same expression as catalog.search_index.PG_DOC: the planner uses the index only for it.
PG_DOC = "lower(coalesce(search_text, '') || ' ' || coalesce(full_text, ''))"


def _pg_trgm_schema(conn) -> str | None:  # type: ignore[no-untyped-def]
    return conn.execute(
        text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'pg_trgm'"
        )
    ).scalar()


def upgrade() -> None:
    conn = op.get_bind()
    # Serving checks the published set's size and last change on every search: an index-only read.
    op.create_index("ix_policy_status_updated", "policy", ["status", "updated_at"])
    if conn.dialect.name == "sqlite":
        for stmt in SQLITE:
            op.execute(stmt)
        return
    if conn.dialect.name != "postgresql":
        return
    schema = _pg_trgm_schema(conn)
    for create in ("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public", "CREATE EXTENSION IF NOT EXISTS pg_trgm"):
        if schema:
            break
        try:
            with conn.begin_nested():
                conn.execute(text(create))
        except Exception as exc:  # noqa: BLE001 - no permission or not installed: search falls back to a scan
            log.warning("pg_trgm not created (%s): keyword search will scan", str(exc).splitlines()[0])
        schema = _pg_trgm_schema(conn)
    if schema:
        op.execute(f'CREATE INDEX ix_policy_trgm ON policy USING gin (({PG_DOC}) "{schema}".gin_trgm_ops)')


def downgrade() -> None:
    conn = op.get_bind()
    op.drop_index("ix_policy_status_updated", table_name="policy")
    if conn.dialect.name == "sqlite":
        for name in ("policy_fts_insert", "policy_fts_delete", "policy_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS policy_fts_vocab")
        op.execute("DROP TABLE IF EXISTS policy_fts")
    elif conn.dialect.name == "postgresql":
        # The extension stays: other schemas of the database may use it.
        op.execute("DROP INDEX IF EXISTS ix_policy_trgm")
