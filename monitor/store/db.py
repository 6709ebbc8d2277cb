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
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from monitor.errors import StoreError
from monitor.store.migrations import SCHEMA_HEAD
from monitor.store.sqlite_file import BUSY_TIMEOUT_MS, sqlite_problem

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
#: Key for ``pg_advisory_lock`` while migrating, so that instances starting together
#: apply each migration once.
PG_MIGRATION_LOCK = 0x6D6F6E69  # "moni"
#: How to install the PostgreSQL driver (the ``postgres`` extra), for error hints.
INSTALL_PSYCOPG = "pip install '.[postgres]' in monitor's source folder (or 'psycopg[binary]')"


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
        # Imported here: the PostgreSQL dialect module costs a SQLite command ~30 ms.
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

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

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read whose statements all see the database as it was at the first of them:
        on PostgreSQL a REPEATABLE READ transaction (each statement of a READ COMMITTED
        one sees what committed before it); on SQLite a transaction is one already."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn
            conn.rollback()

    @contextmanager
    def reading(self, conn: Connection | None) -> Iterator[Connection]:
        """``conn`` if given (a caller's transaction, such as a :meth:`snapshot`), else a
        read of its own."""
        if conn is not None:
            yield conn
        else:
            with self.read() as own:
                yield own

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
    queue behind the daemon's writer or hold it up; on PostgreSQL each statement is a
    transaction of its own (autocommit), which saves two round trips a read, and a
    connection is not pinged before each read (one round trip more): a read that finds
    its connection gone fails with ``connection_invalidated`` set, the pool has then let
    go of its old connections, and the caller reads again (the web view does).
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"invalid database url {url!r}",
            hint="use sqlite:///path/monitor.db or postgresql+psycopg://user@host/dbname",
        ) from exc
    kwargs: dict[str, Any] = {}
    new_file: Path | None = None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser().resolve()
            new_file = None if path.exists() else path
            parent = path.parent
            if not parent.is_dir():
                raise StoreError(
                    f"the folder for the SQLite database does not exist: {parent}",
                    hint="create it, or change [database] url",
                )
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        # Pooled: closing the last connection to a WAL database checkpoints it, which
        # would make every short transaction pay for a checkpoint.
    else:
        kwargs["pool_pre_ping"] = not read_only
        if read_only:
            # Each read its own statement: no BEGIN and ROLLBACK round trips per page.
            kwargs["isolation_level"] = "AUTOCOMMIT"
    try:
        engine = create_engine(parsed, **kwargs)
    except ArgumentError as exc:
        raise StoreError(f"cannot use database url {parsed!r}: {exc}") from exc
    except ImportError as exc:
        raise _missing_driver(parsed.drivername, exc) from exc
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, read_only=read_only)
        name = (parsed.database or ":memory:").removeprefix("file:").partition("?")[0]
        _report_sqlite_problems(engine, name)
    elif read_only:
        _configure_read_only(engine)
    store = Store(engine)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        shown = parsed.render_as_string(hide_password=True)
        raise StoreError(f"cannot open the database {shown}: {_short(exc)}") from exc
    if new_file is not None and new_file.exists():
        log.info("created the database %s (set [database] url to keep it elsewhere)", new_file)
    if upgrade and store.needs_upgrade():
        store.upgrade()
    return store


def _missing_driver(drivername: str, exc: ImportError) -> StoreError:
    """The database driver is not installed: say what to install."""
    module = exc.name or str(exc)
    if module.split(".")[0] == "psycopg":
        hint = f"install the PostgreSQL driver into monitor's environment: {INSTALL_PSYCOPG}"
    else:
        hint = f"install {module}, or use postgresql+psycopg:// after {INSTALL_PSYCOPG}"
    return StoreError(
        f"the database driver for {drivername}:// is not installed (no module {module!r})",
        hint=hint,
    )


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


def _report_sqlite_problems(engine: Engine, database: str) -> None:
    """Turn SQLite's errors about the file itself into :class:`DatabaseUnusable`, wherever
    they happen (opening, migrating, a write in the middle of a run)."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        problem = sqlite_problem(context.original_exception, database)
        if problem is not None:
            raise problem from context.sqlalchemy_exception
