"""Storage: the schema, its migrations, and a narrow repository API.

``open_store(url)`` gives a :class:`~monitor.store.db.Store`; the functions in
``feeds.py`` (feeds, items, hits, poll runs, feed claims), ``articles.py`` (article pages
read for items, their hits and failures; the item listing), ``outbox.py`` (subscribers,
digests and mail), ``instances.py`` (running daemons and their heartbeats) and
``status.py`` (the ``monitor status`` report) take it. ``lock.py`` is the SQLite run lock.
The records they return are in ``rows.py`` (``status_rows.py`` for the status report);
``sqlite_read.py`` reads some of them from a SQLite file without SQLAlchemy, for the
read-only commands; ``sqlite_file.py`` is what both know of a SQLite file.

``Store`` and ``open_store`` are imported on first use (PEP 562), so that importing
``rows`` or ``sqlite_read`` does not import SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.store.db import Store, open_store

__all__ = ["Store", "open_store"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from monitor.store import db

        return getattr(db, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
