"""Alembic's environment: run on the connection `app.service.migrate` hands over, never from an ini file."""

from __future__ import annotations

from alembic import context

from app.service.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters a table by copying it; batch mode does that for every later revision.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
