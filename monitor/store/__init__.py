"""Storage: the schema, its migrations, and a narrow repository API.

``open_store(url)`` gives a :class:`~monitor.store.db.Store`; the functions in
``feeds.py`` (feeds, items, hits, poll runs, feed claims), ``articles.py`` (article pages
read for items, their hits and failures; the item listing), ``outbox.py`` (subscribers,
digests and mail), ``instances.py`` (running daemons and their heartbeats) and
``status.py`` (the ``monitor status`` report) take it. ``lock.py`` is the SQLite run lock.
"""

from __future__ import annotations

from monitor.store.db import Store, open_store

__all__ = ["Store", "open_store"]
