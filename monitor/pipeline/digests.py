"""Digests: pending hits -> digest (render) -> outbox (one transaction) -> deliver -> mark.

The outbox guarantees are in ``store/outbox.py``; the mail's rules in ``digest.py``.
Rendering runs in a worker thread while the event loop talks to the mail server, so a
digest is being built while the previous one is on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.config import Settings, SubscriberConfig
from monitor.deliver import (
    Deliverer,
    PermanentFailure,
    TemporaryFailure,
    deliverer_from_settings,
)
from monitor.digest import (
    DigestOptions,
    DigestRenderer,
    RenderedDigest,
    new_message_id,
    readdress,
)
from monitor.errors import ConfigError, DeliveryError, MonitorError
from monitor.pipeline.poll import instance_name
from monitor.schedules import in_quiet_hours, next_digest_time
from monitor.store import Store
from monitor.store import instances as instance_store
from monitor.store import outbox as outbox_store
from monitor.store import stories as story_store
from monitor.store.db import utcnow
from monitor.store.feeds import StoredHit
from monitor.wording import plural

if TYPE_CHECKING:
    from monitor.watchlists import Watchlist

log = logging.getLogger(__name__)


#: Pending stories read per watchlist for one digest: the cap (stories in full and
#: headlines), times this, to leave room for stories shown under another group.
_PENDING_SLACK = 2
#: Watchlist priorities as digest order ranks them.
_PRIORITY_RANK = {"high": 2, "normal": 1, "low": 0}
#: Rendered digests waiting for the sender; bounds the memory a run holds.
_HANDOFF = 16


@dataclass
class DigestRunSummary:
    """What one ``send_digests`` did."""

    queued: int = 0  # digests put in the outbox by this run
    sent: int = 0  # messages the server (or folder) accepted
    failed: list[tuple[str, str]] = field(default_factory=list)  # (email, reason): for good
    retrying: list[tuple[str, str]] = field(default_factory=list)  # (email, reason): queued
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (email, why not now)
    delivered_to: str = ""

    def line(self) -> str:
        parts = [f"{plural(self.queued, 'digest')} queued", f"{self.sent} sent"]
        if self.retrying:
            parts.append(f"{len(self.retrying)} still queued (will retry)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        text = ", ".join(parts)
        return f"{text} ({self.delivered_to})" if self.delivered_to else text


def delivery_lease(settings: Settings) -> timedelta:
    """How long mail taken for sending stays reserved to this instance."""
    return timedelta(seconds=float(settings["delivery.lease"]))


def _digest_options(settings: Settings) -> DigestOptions:
    templates = settings["digest.templates_dir"]
    return DigestOptions(
        sender=settings["smtp.sender"],
        unsubscribe=settings["digest.unsubscribe"],
        max_items_per_watchlist=settings["digest.max_items_per_watchlist"],
        max_headlines_per_watchlist=settings["digest.max_headlines_per_watchlist"],
        templates_dir=Path(templates) if templates else None,
        web_base_url=settings["web.base_url"],
    )


def _watchlist_facts(
    settings: Settings, loaded: Sequence[Watchlist] | None
) -> tuple[dict[str, str], dict[str, int]]:
    """Display names and priority ranks of the watchlists: ``loaded`` (the daemon's last
    good version), else read from the files (nothing if they are broken: a bad watchlist
    edit must not stop the mail)."""
    from monitor.watchlists import load_watchlists

    found: Sequence[Watchlist]
    if loaded is not None:
        found = loaded
    else:
        try:
            found = load_watchlists(settings.watchlists_dir)
        except MonitorError as exc:
            log.warning("digests use watchlist ids: %s", exc.one_line())
            return {}, {}
    return {w.id: w.name for w in found}, {w.id: _PRIORITY_RANK.get(w.priority, 1) for w in found}


def _chosen_subscribers(settings: Settings, email: str | None) -> list[SubscriberConfig]:
    if email is None:
        return list(settings.subscribers)
    chosen = [s for s in settings.subscribers if s.email.lower() == email.strip().lower()]
    if not chosen:
        raise ConfigError(
            f"{email} is not a subscriber in {settings.source}",
            hint="add it as a [[subscribers]] table, or check the spelling",
        )
    return chosen


class _DigestBuilder:
    """Renders and queues digests; what a run shares is computed once (templates, feed
    health, volumes per time zone, and each hit: subscribers mostly share their news)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        now: datetime,
        watchlists: Sequence[Watchlist] | None = None,
    ) -> None:
        self.settings, self.store, self.now = settings, store, now
        self.options = _digest_options(settings)
        self.renderer = DigestRenderer(self.options)
        self.names, self.ranks = _watchlist_facts(settings, watchlists)
        self.priority = {w for w, r in self.ranks.items() if r == _PRIORITY_RANK["high"]}
        self.failing = outbox_store.failing_feeds(store)
        self._volumes: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
        self._hits: dict[int, StoredHit] = {}
        self._members: dict[int, list[story_store.StoryItem]] = {}

    def volumes(self, timezone: str, watchlists: Sequence[str]) -> dict[str, Any]:
        key = (timezone, tuple(sorted(set(watchlists))))
        if key not in self._volumes:
            self._volumes[key] = outbox_store.watchlist_volume(
                self.store, key[1], timezone=timezone, now=self.now
            )
        return self._volumes[key]

    def render(self, sub: SubscriberConfig, watchlists: list[str] | None) -> RenderedDigest | None:
        per_watchlist = self.options.max_items_per_watchlist + max(
            0, self.options.max_headlines_per_watchlist
        )
        plan = outbox_store.pending_plan(
            self.store,
            sub.email,
            watchlists,
            limit_per_watchlist=per_watchlist * _PENDING_SLACK,
            updates=sub.updates,
        )
        if not plan.hit_ids:
            return None
        _let_the_sender_run()
        missing = [i for i in plan.hit_ids if i not in self._hits]
        if missing:
            if len(self._hits) > 50_000:
                self._hits.clear()
                missing = plan.hit_ids
            self._hits.update(outbox_store.hits_by_id(self.store, missing))
        hits = [self._hits[i] for i in plan.hit_ids if i in self._hits]
        return self.renderer.render(
            sub,
            hits,
            now=self.now,
            message_id=new_message_id(self.options.sender),
            names=self.names,
            volumes=self.volumes(sub.timezone, [h.watchlist for h in hits]),
            failing_feeds=self.failing,
            pending_counts=plan.counts,
            members=self.members({h.story_id for h in hits if h.story_id is not None}),
            mailed=plan.mailed,
            priorities=self.ranks,
        )

    def members(self, story_ids: set[int]) -> dict[int, list[story_store.StoryItem]]:
        """Every item of these stories (for "also reported by"), cached for the run."""
        missing = sorted(s for s in story_ids if s not in self._members)
        if missing:
            if len(self._members) > 20_000:
                self._members.clear()
                missing = sorted(story_ids)
            self._members.update(story_store.story_items(self.store, missing))
        return {s: self._members[s] for s in story_ids if s in self._members}

    def scope(
        self, sub: SubscriberConfig, force: bool
    ) -> tuple[list[str] | None, bool, str | None]:
        """(watchlists to mail now, whether the full digest is due, why nothing is due)."""
        followed = None if "*" in sub.watchlists else list(sub.watchlists)
        if force:
            return followed, True, None
        quiet_until = in_quiet_hours(sub, self.now)
        if quiet_until is not None:
            return followed, False, f"quiet hours until {quiet_until:%H:%M} UTC"
        state = outbox_store.subscriber_state(self.store, sub.email)
        if state is None:
            return followed, False, "not yet subscribed"
        due_at = next_digest_time(sub, state.last_digest_at or state.created_at)
        if due_at <= self.now:
            return followed, True, None
        if sub.immediate_priority and self.priority:
            urgent = [w for w in (followed or sorted(self.priority)) if w in self.priority]
            if urgent:
                return urgent, False, None
        return followed, False, f"next digest at {due_at:%Y-%m-%d %H:%M} UTC"

    def queue(
        self, sub: SubscriberConfig, force: bool, summary: DigestRunSummary, claim_for: str
    ) -> outbox_store.OutboxMessage | None:
        """Queue the subscriber's digest if one is due and something is pending; it comes
        back leased to ``claim_for``, ready to send."""
        watchlists, due, why_not = self.scope(sub, force)
        if why_not is not None:
            summary.skipped.append((sub.email, why_not))
            return None
        for _ in range(3):  # another sender may queue some of the same hits meanwhile
            rendered = self.render(sub, watchlists)
            _let_the_sender_run()
            if rendered is None:
                if due and not force:
                    outbox_store.set_last_digest(self.store, sub.email, self.now)
                return None
            outbox_id = outbox_store.enqueue_digest(
                self.store,
                subscriber=sub.email,
                message_id=rendered.message_id,
                subject=rendered.subject,
                message=rendered.data,
                hit_ids=sorted(rendered.hit_ids),
                now=self.now,
                claim_for=claim_for,
                lease=delivery_lease(self.settings),
            )
            if outbox_id is not None:
                summary.queued += 1
                log.info(
                    "queued digest %d for %s: %s (%s)",
                    outbox_id, sub.email, rendered.subject, plural(len(rendered.hit_ids), "hit"),
                )  # fmt: skip
                return outbox_store.OutboxMessage(
                    id=outbox_id,
                    subscriber=sub.email,
                    message_id=rendered.message_id,
                    subject=rendered.subject,
                    message=rendered.data,
                    attempts=0,
                    created_at=self.now,
                )
        log.warning("digest for %s: hits kept being queued by another sender", sub.email)
        return None


def _let_the_sender_run() -> None:
    """Release the GIL between the worker's steps, so that the event loop answers the
    mail server at once instead of after a whole switch interval (5 ms, several times
    per message)."""
    time.sleep(0)


def _produce(
    builder_args: tuple[Settings, Store, datetime, Sequence[Watchlist] | None],
    subscribers: Sequence[SubscriberConfig],
    force: bool,
    summary: DigestRunSummary,
    instance: str,
    handoff: queue.Queue[outbox_store.OutboxMessage | None],
    stop: threading.Event,
) -> None:
    """Worker thread: sync subscribers, queue each due digest, hand it to the sender.
    Always ends the hand-off with None."""
    settings, store, now, watchlists = builder_args
    try:
        outbox_store.sync_subscribers(store, settings.subscribers, now=now)
        if not subscribers:
            return
        builder = _DigestBuilder(settings, store, now, watchlists)
        for sub in subscribers:
            if stop.is_set():
                return
            message = builder.queue(sub, force, summary, instance)
            _let_the_sender_run()
            if message is not None:
                handoff.put(message)
    finally:
        handoff.put(None)


class _Sender:
    """Sends leased outbox messages over one deliverer and records each outcome."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        deliverer: Deliverer,
        clock: Callable[[], datetime],
        summary: DigestRunSummary,
    ) -> None:
        self.store, self.deliverer, self.clock, self.summary = store, deliverer, clock, summary
        self.sender = parseaddr(settings["smtp.sender"])[1] or settings["smtp.sender"]
        self.opened = False
        self.down: str | None = None  # set when the server is unreachable: the rest waits
        self.connection_failures = 0

    async def _retry(self, m: outbox_store.OutboxMessage, reason: str, *, attempted: bool) -> None:
        due = await asyncio.to_thread(
            outbox_store.mark_retry,
            self.store,
            m.id,
            reason,
            now=self.clock(),
            count_attempt=attempted,
        )
        self.summary.retrying.append((m.subscriber, reason))
        log.warning(
            "digest %d to %s stays queued, next try %s: %s",
            m.id, m.subscriber, due.isoformat(timespec="seconds"), reason,
        )  # fmt: skip

    async def send(self, m: outbox_store.OutboxMessage) -> None:
        if self.down is not None:
            await self._retry(m, f"not attempted: {self.down}", attempted=False)
            return
        if not self.opened:
            self.summary.delivered_to = self.deliverer.description
            try:
                await self.deliverer.open()
            except TemporaryFailure as exc:
                self.down = exc.message
                await self._retry(m, exc.message, attempted=True)
                return
            self.opened = True
        try:
            reply = await self.deliverer.send(self.sender, m.subscriber, m.message)
        except PermanentFailure as exc:
            await asyncio.to_thread(
                outbox_store.mark_failed, self.store, m.id, exc.message, now=self.clock()
            )
            self.summary.failed.append((m.subscriber, exc.message))
            log.error("digest %d to %s refused: %s", m.id, m.subscriber, exc.message)
            return
        except TemporaryFailure as exc:
            await self._retry(m, exc.message, attempted=True)
            self.connection_failures = self.connection_failures + 1 if exc.reconnect else 0
            if self.connection_failures >= 2:  # reconnecting did not help: the rest waits
                self.down = exc.message
            return
        self.connection_failures = 0
        await asyncio.to_thread(outbox_store.mark_sent, self.store, m.id, now=self.clock())
        self.summary.sent += 1
        log.info("sent digest %d to %s: %s", m.id, m.subscriber, reply)

    async def close(self) -> None:
        if self.opened:
            await self.deliverer.close()


async def send_digests(
    settings: Settings,
    store: Store,
    *,
    now: datetime | None = None,
    subscriber: str | None = None,
    force: bool = False,
    deliverer: Deliverer | None = None,
    watchlists: Sequence[Watchlist] | None = None,
) -> DigestRunSummary:
    """Deliver what is queued and due (``force``: retries too, without waiting for their
    backoff), then queue and deliver the digests that are due (``force``: every subscriber
    with pending hits, whatever the schedule or quiet hours). ``subscriber`` limits both
    to one email. Nothing pending: no mail.

    Delivery failures are in the summary (and on the outbox rows), not raised. A template
    error is raised (:class:`~monitor.errors.TemplateError`) after the mail already queued
    has gone. ``watchlists``: the loaded watchlists for names and priorities (the daemon
    passes its last good version); None reads the files.
    """
    fixed = now
    now = now or utcnow()
    summary = DigestRunSummary()
    chosen = _chosen_subscribers(settings, subscriber)
    instance = instance_name()
    # Mail claimed by a killed instance on this host is sent now, not after its lease.
    await asyncio.to_thread(instance_store.release_dead_claims, store, socket.gethostname())
    sender = _Sender(
        settings,
        store,
        deliverer if deliverer is not None else deliverer_from_settings(settings),
        (lambda: fixed) if fixed is not None else utcnow,
        summary,
    )
    backlog = await asyncio.to_thread(
        outbox_store.claim_due,
        store,
        instance=instance,
        now=now,
        subscribers_only=[s.email for s in chosen] if subscriber is not None else None,
        ignore_backoff=force,
        lease=delivery_lease(settings),
    )
    handoff: queue.Queue[outbox_store.OutboxMessage | None] = queue.Queue(maxsize=_HANDOFF)
    stop = threading.Event()
    producer = asyncio.ensure_future(
        asyncio.to_thread(
            _produce,
            (settings, store, now, watchlists),
            chosen,
            force,
            summary,
            instance,
            handoff,
            stop,
        )
    )
    pending = list(backlog)
    reached_end = False
    try:
        while pending:
            await sender.send(pending.pop(0))
        while (message := await asyncio.to_thread(handoff.get)) is not None:
            await sender.send(message)
        reached_end = True
    finally:
        unsent = [m.id for m in pending]
        if not reached_end:  # stopping early: let the worker finish, give back its mail
            stop.set()
            while (left := await asyncio.to_thread(handoff.get)) is not None:
                unsent.append(left.id)
        if unsent:
            await asyncio.to_thread(outbox_store.release_claims, store, unsent)
        await sender.close()
    await producer  # re-raises a template or store error from the worker
    return summary


def preview_digest(
    settings: Settings, store: Store, email: str, *, now: datetime | None = None
) -> EmailMessage | None:
    """The digest ``email`` would get now for everything pending, rendered but neither
    queued nor sent (its Message-ID is not the one a real send will use). None: nothing
    pending."""
    now = now or utcnow()
    sub = _chosen_subscribers(settings, email)[0]
    outbox_store.sync_subscribers(store, settings.subscribers, now=now)
    builder = _DigestBuilder(settings, store, now)
    rendered = builder.render(sub, None if "*" in sub.watchlists else list(sub.watchlists))
    return rendered.message if rendered is not None else None


def undelivered_error(summary: DigestRunSummary) -> DeliveryError | None:
    """A one-line error for the CLI when some digest was not delivered."""
    problems = summary.failed + summary.retrying
    if not problems:
        return None
    email_, reason = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    if summary.failed:
        # The server refused for good (5xx): nothing retries it unless told to.
        return DeliveryError(
            f"digest to {email_} failed: {reason}{more}",
            hint="the mail server refused it, so it is marked failed and not retried; fix "
            "the cause, then `monitor outbox retry --failed` (see `monitor outbox`)",
        )
    return DeliveryError(f"digest to {email_} not delivered: {reason}{more}")


def retry_failed_mail(
    settings: Settings, store: Store, *, ids: Sequence[int] | None = None
) -> list[int]:
    """Queue failed mail again (``ids``, or all of it) under new Message-IDs; the next
    outbox run (`monitor digest --send-now`, or the daemon within a minute) sends it."""
    sender = settings["smtp.sender"]
    return outbox_store.requeue_failed(store, lambda m: readdress(m, sender), ids=ids)
