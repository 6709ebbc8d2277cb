"""Alembic environment: run migrations on the connection the store hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from monitor.store.schema import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if _connection is None:
    raise RuntimeError("migrations run through monitor.store.Store.upgrade(), with a connection")
run_migrations(_connection)
