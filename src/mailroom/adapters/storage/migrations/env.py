"""Alembic environment: mailroom runs migrations itself, on the connection Database.migrate() gives."""

from __future__ import annotations

from alembic import context

from mailroom.adapters.storage.database import VERSION_TABLE
from mailroom.adapters.storage.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through mailroom (Database.migrate), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
