"""Opening the database: engine set-up, SQLite pragmas, migrations, the writer lock.

SQLite is the embedded default. It allows one writer at a time, so every transaction starts
with ``BEGIN IMMEDIATE`` (taking the write lock up front, waiting up to ``busy_timeout``
instead of failing half-way with "database is locked"), the journal is WAL (readers never
block the writer), and within one process all writes go through :meth:`Store.write` which a
single lock serialises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from monitor.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
#: Key for ``pg_advisory_lock`` while migrating, so that instances starting together
#: apply each migration once.
PG_MIGRATION_LOCK = 0x6D6F6E69  # "moni"
#: The newest migration's revision. Starting a command compares the database with this
#: instead of importing Alembic (which costs most of a second); a test keeps it equal to
#: Alembic's head, so a new migration must update it.
SCHEMA_HEAD = "0006"


def utcnow() -> datetime:
    """Now, as the aware UTC datetime the store reads and writes."""
    return datetime.now(UTC)


class Store:
    """An engine plus the rules for using it. Create with :func:`open_store`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._write_lock = threading.Lock()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def insert(self, table: Table) -> Any:
        """INSERT for ``table`` with ``on_conflict_do_nothing`` on either backend."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction; commits on success, rolls back on error."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn
            conn.rollback()

    def upgrade(self) -> None:
        """Apply every pending migration (idempotent; safe when instances start together)."""
        from alembic import command

        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
                command.upgrade(_alembic_config(conn), "head")
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot migrate the database: {_short(exc)}") from exc

    def current_revision(self) -> str | None:
        """The revision the database is at; None for an empty database."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def head_revision(self) -> str | None:
        return SCHEMA_HEAD

    def needs_upgrade(self) -> bool:
        return self.current_revision() != SCHEMA_HEAD

    def dispose(self) -> None:
        self.engine.dispose()


def _alembic_config(conn: Connection | None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _short(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def open_store(url: str, *, upgrade: bool = False, read_only: bool = False) -> Store:
    """Open the database at ``url``; with ``upgrade``, apply pending migrations first.

    ``read_only`` (the web view): the database refuses every write on these connections,
    and on SQLite a read does not take the write lock (plain ``BEGIN``), so readers never
    queue behind the daemon's writer or hold it up.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"invalid database url {url!r}",
            hint="use sqlite:///path/monitor.db or postgresql+psycopg://user@host/dbname",
        ) from exc
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(
                    f"the folder for the SQLite database does not exist: {parent}",
                    hint="create it, or change [database] url",
                )
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        # Pooled: closing the last connection to a WAL database checkpoints it, which
        # would make every short transaction pay for a checkpoint.
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use database url {parsed!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, read_only=read_only)
    elif read_only:
        _configure_read_only(engine)
    store = Store(engine)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise StoreError(f"cannot open the database {parsed!r}: {_short(exc)}") from exc
    if upgrade and store.needs_upgrade():
        store.upgrade()
    return store


def _configure_read_only(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        cur.execute("SET statement_timeout = '30s'")
        cur.close()
        dbapi_conn.commit()


def _configure_sqlite(engine: Engine, *, read_only: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE instead of pysqlite's
        # deferred BEGIN, which can fail with "database is locked" on its first write.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        if read_only:
            cur.execute("PRAGMA query_only = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
