"""One daemon per SQLite file: an ``flock`` on ``<database>.lock`` held for the process's life.

The kernel drops the lock when the process ends, however it ends (``kill -9`` included),
so a stale lock file never blocks a restart. The file holds the holder's pid for the
message a second ``monitor run`` prints; a clean exit removes it (still holding the lock,
so a process that opened the old file in between sees it is gone and takes a new one).
PostgreSQL takes no lock here: instances share its feeds through leased claims instead.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from monitor.errors import AlreadyRunning, StoreError
from monitor.store.sqlite_file import sqlite_database


def lock_path(database_url: str) -> Path | None:
    """``<file>.lock`` beside a SQLite file; None for other databases and in-memory ones."""
    return beside_database(database_url, ".lock")


def beside_database(database_url: str, suffix: str) -> Path | None:
    """``<file><suffix>`` beside a SQLite file; None for other databases and in-memory
    ones."""
    database = sqlite_database(database_url)
    if database is None:  # not a plain sqlite:///PATH: SQLAlchemy reads the URL
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(database_url)
        except ArgumentError:
            return None
        if url.get_backend_name() != "sqlite":
            return None
        database = url.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
    return Path(database).expanduser().resolve().with_name(Path(database).name + suffix)


class RunLock:
    """The held lock. :meth:`release` (or process exit) gives it back."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                if _same_file(self._fd, self.path):
                    self.path.unlink()
            except OSError:
                pass  # left behind: harmless, the next start takes it over
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def acquire(database_url: str) -> RunLock | None:
    """Take the daemon lock of a SQLite database, or raise :class:`AlreadyRunning`.

    Returns None when the database needs no lock (PostgreSQL).
    """
    path = lock_path(database_url)
    if path is None:
        return None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            database = path.with_name(path.name.removesuffix(".lock"))
            raise AlreadyRunning(f"another monitor run is using {database}{who}") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # its holder removed the file as we opened it: lock the new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return RunLock(path, fd)


def holder(database_url: str) -> int | None:
    """The pid of the daemon holding the lock, or None when no daemon runs on this file."""
    path = lock_path(database_url)
    if path is None or not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
