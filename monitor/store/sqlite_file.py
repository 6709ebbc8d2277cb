"""A SQLite file as both readers of it see it (the engine set-up in ``db.py`` and the
read-only commands' ``sqlite_read.py``): the file a URL names, how long to wait for the
writer's lock, and what SQLite's errors about the file itself mean."""

from __future__ import annotations

from monitor.errors import DatabaseUnusable

BUSY_TIMEOUT_MS = 30_000

# What SQLite says about a file it cannot use -> what it means, and what to do. Matched in
# the error's first line, lower-cased.
_SQLITE_PROBLEMS: tuple[tuple[str, str, str], ...] = (
    ("file is not a database", "file is not a database",
     "check [database] url names a monitor database, or restore the file from a backup"),
    ("database disk image is malformed", "database disk image is malformed",
     "restore the file from a backup, or save what is left with "
     "`sqlite3 {file} .recover | sqlite3 recovered.db`"),
    ("readonly database", "the file is read-only",
     "check the permissions of {file}, its -wal and -shm files and its folder: the user "
     "running monitor must be able to write them"),
    ("unable to open database file", "unable to open the database file",
     "check that {file} and its folder exist and that the user running monitor may read "
     "and write them"),
    ("disk i/o error", "disk I/O error", "check the disk and the file system holding {file}"),
    ("database or disk is full", "the disk is full", "free space on the disk holding {file}"),
)  # fmt: skip


def sqlite_problem(exc: BaseException, database: str) -> DatabaseUnusable | None:
    """The :class:`DatabaseUnusable` that ``exc`` (a sqlite3 error) means for the file
    ``database``, or None when it is not about the file itself (a locked database, a
    constraint, a bug)."""
    first = str(exc).splitlines()[0].lower() if str(exc) else ""
    for needle, cause, hint in _SQLITE_PROBLEMS:
        if needle in first:
            return DatabaseUnusable(
                f"database {database}: {cause}", hint=hint.format(file=database)
            )
    return None


def sqlite_database(url: str) -> str | None:
    """The file name in a plain ``sqlite:///PATH`` URL; None for anything else (other
    databases, in-memory or ``file:`` URIs, URL options or escapes), which SQLAlchemy's
    URL parser is left to read."""
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            database = url.removeprefix(prefix)
            break
    else:
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    if "?" in database or "%" in database:
        return None
    return database
