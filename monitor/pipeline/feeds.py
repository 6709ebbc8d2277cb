"""The feed list: the config's feeds and subscribers into the database, OPML in and out."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from monitor.config import Settings
from monitor.errors import AddressRefused, FeedError
from monitor.opml import OpmlFeed, read_opml
from monitor.store import Store
from monitor.store import feeds as feed_store
from monitor.store import outbox as outbox_store
from monitor.store import webhooks as webhook_store


def sync_config(settings: Settings, store: Store, *, now: datetime | None = None) -> None:
    """Bring the config's [[feeds]], [[subscribers]] and [[webhooks]] into the database.

    Feeds imported from OPML live there beside the config's. A subscriber (or webhook) is
    recorded before any hit is stored for it, so the first poll's hits reach its first
    digest.
    """
    outbox_store.sync_subscribers(store, settings.subscribers, now=now)
    webhook_store.register_webhooks(store, [h.key for h in settings.webhooks], now=now)
    feed_store.sync_config_feeds(store, [feed_store.FeedSpec.of_config(f) for f in settings.feeds])


# --------------------------------------------------------------------------- feed list


def check_feed_url(url: str, settings: Settings) -> None:
    """Refuse a feed URL that is not http(s) or resolves to a refused address.

    The same rule as the fetcher's (which checks every connection again); this gives the
    operator the error at import time instead of at the first poll. A host that does not
    resolve now is accepted: the fetcher will record the failure on the feed.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FeedError(f"{url}: not an http:// or https:// URL")
    from monitor.pipeline.poll import fetch_options  # aiohttp: only when a URL is checked

    options = fetch_options(settings)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return
    addresses = {str(info[4][0]).split("%")[0] for info in infos}
    refused = sorted(a for a in addresses if not options.allows(ipaddress.ip_address(a)))
    if refused:
        raise AddressRefused(f"{url}: resolves to a refused address ({', '.join(refused)})")


@dataclass
class ImportSummary:
    added: int = 0
    known: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)


def import_opml(settings: Settings, store: Store, path: Path) -> ImportSummary:
    """Add the feeds of an OPML file (URLs already known are left as they are)."""
    summary = ImportSummary()
    for entry in read_opml(path):
        try:
            check_feed_url(entry.url, settings)
        except FeedError as exc:
            summary.refused.append((entry.url, exc.message))
            continue
        spec = feed_store.FeedSpec(url=entry.url, title=entry.title)
        if feed_store.add_feed(store, spec, source="opml"):
            summary.added += 1
        else:
            summary.known += 1
    return summary


def export_feeds(store: Store) -> list[OpmlFeed]:
    return [
        OpmlFeed(url=f.url, title=f.title, site_url=f.site_url)
        for f in feed_store.list_feeds(store, include_retired=False)
    ]
