"""Storage: the schema, its migrations, and a narrow repository API.

``open_store(url)`` gives a :class:`~monitor.store.db.Store`; the functions in
``feeds.py`` (feeds, items, hits, poll runs) and ``outbox.py`` (digests and mail) take it.
"""

from __future__ import annotations

from monitor.store.db import Store, open_store

__all__ = ["Store", "open_store"]
