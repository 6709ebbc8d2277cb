"""The only place the stages meet: poll a feed, poll what is due, send digests.

``monitor poll --once``, ``monitor digest --send-now`` and the daemon call these same
functions; nothing else wires fetch, parse, match, store, digest and deliver together.

- :mod:`.poll`: ``poll_due`` (claim due feeds, fetch, parse + match in worker processes,
  store with group commit) and ``poll_feed``;
- :mod:`.parsing`: ``parse_and_match``, what a worker process runs (and all it imports);
- :mod:`.articles`: ``ArticleRunner`` (the article pages behind new headline-only items,
  read after the items are stored: fetch, extract and match in the workers, store);
- :mod:`.feeds`: ``sync_config`` (the config's feeds and subscribers into the database),
  OPML import and export with the fetcher's address rule;
- :mod:`.digests`: ``send_digests`` (queue due digests in the outbox, deliver, mark) and
  ``preview_digest``; ``retry_failed_mail`` queues failed mail again.
- :mod:`.webhooks`: ``send_webhooks`` (the same for ``[[webhooks]]``: JSON bodies posted
  under fetch's address rules).

The names below are imported on first use (PEP 562), so a command that needs only
``sync_config`` does not pay for aiohttp, feedparser and the digest renderer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.pipeline.digests import (
        DigestRunSummary,
        delivery_lease,
        preview_digest,
        retry_failed_mail,
        send_digests,
        undelivered_error,
    )
    from monitor.pipeline.feeds import (
        ImportSummary,
        check_feed_url,
        export_feeds,
        import_opml,
        sync_config,
    )
    from monitor.pipeline.parsing import parse_and_match, watchlist_registry
    from monitor.pipeline.poll import (
        GroupWriter,
        ParsePool,
        PollContext,
        PollSummary,
        fetch_options,
        instance_name,
        next_due,
        poll_due,
        poll_feed,
        story_index,
    )
    from monitor.pipeline.webhooks import (
        WebhookRunSummary,
        send_webhooks,
        undelivered_webhooks,
        webhook_fetch_options,
    )

#: Each public name and the module that defines it.
_WHERE = {
    "DigestRunSummary": "digests",
    "delivery_lease": "digests",
    "preview_digest": "digests",
    "retry_failed_mail": "digests",
    "send_digests": "digests",
    "undelivered_error": "digests",
    "ImportSummary": "feeds",
    "check_feed_url": "feeds",
    "export_feeds": "feeds",
    "import_opml": "feeds",
    "sync_config": "feeds",
    "GroupWriter": "poll",
    "ParsePool": "poll",
    "PollContext": "poll",
    "PollSummary": "poll",
    "fetch_options": "poll",
    "instance_name": "poll",
    "next_due": "poll",
    "parse_and_match": "parsing",
    "poll_due": "poll",
    "poll_feed": "poll",
    "story_index": "poll",
    "watchlist_registry": "parsing",
    "WebhookRunSummary": "webhooks",
    "send_webhooks": "webhooks",
    "undelivered_webhooks": "webhooks",
    "webhook_fetch_options": "webhooks",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DigestRunSummary",
    "GroupWriter",
    "ImportSummary",
    "ParsePool",
    "PollContext",
    "PollSummary",
    "WebhookRunSummary",
    "check_feed_url",
    "delivery_lease",
    "export_feeds",
    "fetch_options",
    "import_opml",
    "instance_name",
    "next_due",
    "parse_and_match",
    "poll_due",
    "poll_feed",
    "preview_digest",
    "retry_failed_mail",
    "send_digests",
    "send_webhooks",
    "story_index",
    "sync_config",
    "undelivered_error",
    "undelivered_webhooks",
    "watchlist_registry",
    "webhook_fetch_options",
]
