"""The read-only web view: stories, search, watchlists, feeds and the outbox as pages,
Atom feeds per watchlist and per subscriber, a JSON API, ``/healthz``.

``monitor web`` serves it alone; ``monitor run`` serves it beside polling when
``[web] listen`` is set. :mod:`.app` holds the routes, :mod:`.security` who may see them
and the headers every answer carries, :mod:`.render` the templates, snippets and chart,
:mod:`.atom` the feeds. Templates and the stylesheet live beside the code.
"""

from __future__ import annotations

from monitor.web.server import DEFAULT_LISTEN, WebServer, lower_priority, serve_forever

__all__ = ["DEFAULT_LISTEN", "WebServer", "lower_priority", "serve_forever"]
