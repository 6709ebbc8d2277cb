"""Alembic migrations of the schema (``versions/``; applied by ``Store.upgrade``)."""

#: The newest migration's revision. Starting a command compares the database with this
#: instead of importing Alembic (which costs most of a second); a test keeps it equal to
#: Alembic's head, so a new migration must update it.
SCHEMA_HEAD = "0011"
