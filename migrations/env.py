"""Alembic environment: the schema of every domain, on the configured database."""

from __future__ import annotations

import importlib
from logging.config import fileConfig

from alembic import context

from core.config import get_settings
from core.db import Base, make_engine
from core.lease import include_object

# Every module that defines tables; a new domain adds its models module here.
MODEL_MODULES = (
    "catalog.models",
    "profiles.models",
    "auth.models",
    "matcher.models",
    "core.lease",
    "core.attachments",
    "push.models",
    "applications.models",
    "desk.models",
)
for _module in MODEL_MODULES:
    importlib.import_module(_module)

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    return config.attributes.get("url") or get_settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _render_item(type_: str, obj, autogen_context):  # type: ignore[no-untyped-def]
    # Migrations must not import application types: UTCDateTime is a timezone-aware DateTime in SQL.
    from core.db import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    # Batch mode lets later migrations alter SQLite tables (it has no ALTER COLUMN).
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
