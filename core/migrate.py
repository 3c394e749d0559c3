"""Run Alembic migrations programmatically (CLI, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(*, url: str | None = None, connection: Connection | None = None) -> Config:
    """Build an Alembic config for a URL or an open connection."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["configure_logging"] = False
    if url:
        cfg.attributes["url"] = url
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(*, url: str | None = None, connection: Connection | None = None, revision: str = "head") -> None:
    """Upgrade the database to a revision (head by default)."""
    command.upgrade(alembic_config(url=url, connection=connection), revision)


def downgrade(*, url: str | None = None, connection: Connection | None = None, revision: str = "base") -> None:
    """Downgrade the database to a revision (base by default)."""
    command.downgrade(alembic_config(url=url, connection=connection), revision)
