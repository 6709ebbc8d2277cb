"""The only place the stages meet: poll a feed, poll what is due, send digests.

``monitor poll --once``, ``monitor digest --send-now`` and the daemon call these same
functions; nothing else wires fetch, parse, match, store, digest and deliver together.

- :mod:`.poll`: ``poll_due`` (claim due feeds, fetch, parse + match in worker processes,
  store with group commit) and ``poll_feed``;
- :mod:`.feeds`: ``sync_config`` (the config's feeds and subscribers into the database),
  OPML import and export with the fetcher's address rule;
- :mod:`.digests`: ``send_digests`` (queue due digests in the outbox, deliver, mark) and
  ``preview_digest``.
"""

from __future__ import annotations

from monitor.pipeline.digests import (
    DigestRunSummary,
    delivery_lease,
    preview_digest,
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
from monitor.pipeline.poll import (
    GroupWriter,
    ParsePool,
    PollContext,
    PollSummary,
    fetch_options,
    instance_name,
    next_due,
    parse_and_match,
    poll_due,
    poll_feed,
    story_index,
)

__all__ = [
    "DigestRunSummary",
    "GroupWriter",
    "ImportSummary",
    "ParsePool",
    "PollContext",
    "PollSummary",
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
    "send_digests",
    "story_index",
    "sync_config",
    "undelivered_error",
]
