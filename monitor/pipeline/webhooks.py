"""Webhooks: pending stories -> JSON body -> outbox (one transaction) -> POST -> mark.

The same outbox as mail (``store/outbox.py``, rows of kind ``webhook``): a body and the
hits it carries are recorded together, so a story is never lost and never put in a second
body; a body that was not accepted stays queued and is posted again, byte for byte with
the same ``X-Monitor-Delivery`` id, after a backoff (1, 2, 4 ... minutes, at most an hour),
or after the receiver's ``Retry-After`` when it asks for longer (at most
``delivery.webhook_retry_after_max``). A body holds the oldest pending stories that fit
the caps (``webhook_max_stories``, ``webhook_max_text``, ``webhook_max_bytes``); the rest
go in the bodies after it. Posting goes through ``fetch.post``: http(s) only, addresses
checked before connecting (the webhook's ``allow_private_addresses``, else
``delivery.webhook_allow_private_addresses``), one deadline (``delivery.webhook_timeout``).

What the receiver said decides the row's fate:

* 2xx: sent.
* 5xx, 408, 425, 429, a timeout or a connection failure: queued, retried with backoff;
  the webhook's other queued bodies wait as long (they keep their order).
* any other 4xx, a refused address, a non-http(s) URL or a redirect that would drop the
  body: failed, with the reason (``monitor outbox``); the receiver or the config must
  change first.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache, partial
from typing import TYPE_CHECKING

import aiohttp

from monitor import webhook as webhook_body
from monitor.config import Settings, WebhookConfig
from monitor.errors import ConfigError, DeliveryError, MonitorError
from monitor.fetch import FetchOptions, PostResult, make_session, post
from monitor.normalise import clean_header
from monitor.pipeline.poll import instance_name
from monitor.schedules import in_quiet_hours, next_digest_time
from monitor.store import Store
from monitor.store import outbox as outbox_store
from monitor.store import webhooks as webhook_store
from monitor.store.db import utcnow
from monitor.wording import plural

if TYPE_CHECKING:
    from monitor.watchlists import Watchlist

log = logging.getLogger(__name__)

#: Bodies one run queues for one webhook, at most (each up to ``webhook_max_stories``);
#: what is left waits for the next run.
MAX_BODIES_PER_RUN = 20
RETRY_STATUSES = frozenset({408, 425, 429})
PERMANENT_KINDS = frozenset(
    {"bad_url", "bad_scheme", "refused_address", "bad_redirect", "redirect_loop",
     "too_many_redirects"}
)  # fmt: skip


@dataclass
class WebhookRunSummary:
    """What one ``send_webhooks`` did."""

    queued: int = 0
    sent: int = 0
    stories: int = 0  # stories in the bodies sent
    failed: list[tuple[str, str]] = field(default_factory=list)  # (webhook, reason)
    retrying: list[tuple[str, str]] = field(default_factory=list)  # (webhook, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (webhook, why not now)

    def line(self) -> str:
        queued = plural(self.queued, "webhook delivery", "webhook deliveries")
        parts = [f"{queued} queued", f"{self.sent} sent"]
        if self.retrying:
            parts.append(f"{len(self.retrying)} still queued (will retry)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return ", ".join(parts)


def allows_private(settings: Settings, hook: WebhookConfig | None) -> bool:
    """Whether ``hook`` may post to private addresses: its own key, else [delivery]'s."""
    if hook is not None and hook.allow_private_addresses is not None:
        return hook.allow_private_addresses
    return bool(settings["delivery.webhook_allow_private_addresses"])


def webhook_fetch_options(settings: Settings, hook: WebhookConfig | None = None) -> FetchOptions:
    """Fetch's rules for posting (to ``hook``): the [delivery] webhook settings, the
    webhook's address rule, the polling User-Agent."""
    timeout = float(settings["delivery.webhook_timeout"])
    options = FetchOptions(
        deadline=timeout,
        connect_timeout=min(10.0, timeout),
        max_connections=10,
        max_per_host=2,
        allow_private_addresses=allows_private(settings, hook),
        action="posted to",
    )
    agent = settings["polling.user_agent"]
    if agent:
        options = replace(options, user_agent=agent)
    return options


def _chosen(settings: Settings, name: str | None) -> list[WebhookConfig]:
    if name is None:
        return list(settings.webhooks)
    chosen = [w for w in settings.webhooks if w.name == name]
    if not chosen:
        raise ConfigError(
            f"no webhook named {name} in {settings.source}",
            hint="`name` of a [[webhooks]] table; see `monitor outbox` for webhook:NAME rows",
        )
    return chosen


def _due(store: Store, hook: WebhookConfig, now: datetime, force: bool) -> str | None:
    """None when the webhook's stories are due now, else why not."""
    if force:
        return None
    quiet_until = in_quiet_hours(hook, now)
    if quiet_until is not None:
        return f"quiet hours until {quiet_until:%H:%M} UTC"
    state = outbox_store.subscriber_state(store, hook.key)
    if state is None:
        return "not yet registered"
    due_at = next_digest_time(hook, state.last_digest_at or state.created_at)
    return None if due_at <= now else f"next delivery at {due_at:%Y-%m-%d %H:%M} UTC"


def _queue(
    settings: Settings,
    store: Store,
    hook: WebhookConfig,
    names: Callable[[], dict[str, str]],
    now: datetime,
    instance: str,
) -> tuple[outbox_store.OutboxMessage, int] | None:
    """Build and queue one body of the webhook's oldest pending stories, leased to
    ``instance``; None when nothing is pending. ``names`` (the watchlists' display
    names) is called only when there is a body to build."""
    followed = None if "*" in hook.watchlists else list(hook.watchlists)
    for _ in range(3):  # another instance may queue some of the same hits meanwhile
        stories = webhook_store.pending_stories(
            store, hook.key, followed, limit=settings["delivery.webhook_max_stories"]
        )
        if not stories:
            return None
        delivery = str(uuid.uuid4())
        body = webhook_body.build_body(
            [
                webhook_body.StoryInput(s.id, s.title, s.first_seen, s.last_seen, s.hits)
                for s in stories
            ],
            webhook=hook.name,
            delivery=delivery,
            now=now,
            names=names(),
            max_text=settings["delivery.webhook_max_text"],
            max_bytes=settings["delivery.webhook_max_bytes"],
        )
        outbox_id = outbox_store.enqueue_digest(
            store,
            subscriber=hook.key,
            message_id=delivery,
            subject=body.summary,
            message=body.data,
            hit_ids=sorted(body.hit_ids),
            now=now,
            claim_for=instance,
            lease=timedelta(seconds=float(settings["delivery.lease"])),
            kind=outbox_store.WEBHOOK,
        )
        if outbox_id is not None:
            log.info("queued webhook delivery %d for %s: %s", outbox_id, hook.name, body.summary)
            message = outbox_store.OutboxMessage(
                outbox_id, hook.key, delivery, body.summary, body.data, 0, now
            )
            return message, body.story_count
    log.warning("webhook %s: stories kept being queued by another sender", hook.name)
    return None


def _watchlist_names(settings: Settings, loaded: Sequence[Watchlist] | None) -> dict[str, str]:
    from monitor.watchlists import load_watchlists

    if loaded is not None:
        return {w.id: w.name for w in loaded}
    try:
        return {w.id: w.name for w in load_watchlists(settings.watchlists_dir)}
    except MonitorError as exc:
        log.warning("webhooks use watchlist ids: %s", exc.one_line())
        return {}


class _Poster:
    """Posts leased webhook rows and records each outcome.

    Each webhook is posted under its own address rule: a session given by the caller
    serves them all (its resolver's rule applies to host names), else one session is
    made per rule when first needed."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        session: aiohttp.ClientSession | None,
        now: datetime | None,
        summary: WebhookRunSummary,
    ) -> None:
        self.settings, self.store, self.summary, self._now = settings, store, summary, now
        self._given = session
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self.hooks = {w.key: w for w in settings.webhooks}
        self.retry_after_max = timedelta(
            seconds=float(settings["delivery.webhook_retry_after_max"])
        )
        #: Per webhook key: when its first failed row is due again (this run's failures).
        self.waiting: dict[str, datetime] = {}
        #: Per webhook key: until when its receiver asked us to wait (Retry-After).
        self.asked: dict[str, datetime] = {}

    def clock(self) -> datetime:
        return self._now or utcnow()

    def _session(self, options: FetchOptions) -> aiohttp.ClientSession:
        if self._given is not None:
            return self._given
        session = self._sessions.get(options.allow_private_addresses)
        if session is None:
            session = self._sessions[options.allow_private_addresses] = make_session(options)
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def send(self, m: outbox_store.OutboxMessage) -> bool:
        """Post one row; True when the receiver accepted it."""
        name = m.subscriber.removeprefix("webhook:")
        hook = self.hooks.get(m.subscriber)
        if hook is None:
            await self._retry(m, name, f"no [[webhooks]] entry named {name}", attempted=False)
            return False
        try:
            secret = hook.secret()
        except ConfigError as exc:
            await self._retry(m, name, exc.one_line(), attempted=False)
            return False
        headers = webhook_body.request_headers(m.message, m.message_id, secret)
        options = webhook_fetch_options(self.settings, hook)
        result = await post(hook.url, m.message, headers, self._session(options), options)
        if result.ok:
            await asyncio.to_thread(outbox_store.mark_sent, self.store, m.id, now=self.clock())
            self.summary.sent += 1
            log.info("webhook %s accepted delivery %d (HTTP %s)", name, m.id, result.status)
            return True
        reason = _reason(result)
        if _permanent(result):
            await asyncio.to_thread(
                outbox_store.mark_failed, self.store, m.id, reason, now=self.clock()
            )
            self.summary.failed.append((name, reason))
            log.error("webhook %s: delivery %d failed: %s", name, m.id, reason)
        else:
            wait = None
            if result.retry_after is not None:
                wait = min(timedelta(seconds=result.retry_after), self.retry_after_max)
                reason += f" (asked to retry after {result.retry_after:g} s)"
            await self._retry(m, name, reason, attempted=True, at_least=wait)
        return False

    async def _retry(
        self,
        m: outbox_store.OutboxMessage,
        name: str,
        reason: str,
        *,
        attempted: bool,
        at_least: timedelta | None = None,
    ) -> None:
        due = await asyncio.to_thread(
            outbox_store.mark_retry,
            self.store,
            m.id,
            reason,
            now=self.clock(),
            count_attempt=attempted,
            at_least=at_least,
        )
        self.waiting.setdefault(m.subscriber, due)
        if at_least is not None:  # the receiver's own wait, which --send-now keeps too
            self.asked.setdefault(m.subscriber, self.clock() + at_least)
        self.summary.retrying.append((name, reason))
        log.warning(
            "webhook %s: delivery %d stays queued, next try %s: %s",
            name, m.id, due.isoformat(timespec="seconds"), reason,
        )  # fmt: skip


def _reason(result: PostResult) -> str:
    reason = result.error or f"HTTP {result.status}"
    reply = clean_header(result.reply[:400].decode("utf-8", "replace"), 200)  # untrusted
    if reply and result.status is not None:
        reason += f": {reply}"
    if result.error_kind == "refused_address":
        reason += (
            " (set allow_private_addresses = true in its [[webhooks]] table for a receiver"
            " on your network)"
        )
    return reason


def _permanent(result: PostResult) -> bool:
    if result.error_kind in PERMANENT_KINDS:
        return True
    status = result.status
    return status is not None and 400 <= status < 500 and status not in RETRY_STATUSES


async def send_webhooks(
    settings: Settings,
    store: Store,
    *,
    now: datetime | None = None,
    name: str | None = None,
    force: bool = False,
    session: aiohttp.ClientSession | None = None,
    watchlists: Sequence[Watchlist] | None = None,
) -> WebhookRunSummary:
    """Post what is queued and due (``force``: retries too, without waiting for their
    backoff), then queue and post the stories of every webhook that is due (``force``:
    whatever its schedule). ``name`` limits both to one webhook. After a temporary
    failure, the webhook's other queued rows are not posted in this run: they wait as
    long as the failed one. Failures are in the summary and on the outbox rows, not
    raised. ``watchlists``: the loaded watchlists, for their names (the daemon passes its
    last good version); None reads the files when a body is built."""
    fixed = now
    now = now or utcnow()
    summary = WebhookRunSummary()
    hooks = _chosen(settings, name)
    if not hooks:  # rows of a webhook removed from the config wait for it to come back
        return summary
    instance = instance_name()
    await asyncio.to_thread(
        webhook_store.register_webhooks, store, [h.key for h in hooks], now=now
    )
    poster = _Poster(settings, store, session, fixed, summary)
    try:
        backlog = await asyncio.to_thread(
            outbox_store.claim_due,
            store,
            instance=instance,
            now=now,
            # Rows of a webhook no longer configured stay queued (and shown) until it is back.
            subscribers_only=[h.key for h in hooks],
            ignore_backoff=force,
            lease=timedelta(seconds=float(settings["delivery.lease"])),
            kind=outbox_store.WEBHOOK,
        )
        down: set[str] = set()
        held: dict[str, list[int]] = {}
        for m in backlog:
            if m.subscriber in poster.waiting:  # in order: behind the row that failed
                held.setdefault(m.subscriber, []).append(m.id)
            elif not await poster.send(m):
                down.add(m.subscriber)
        for key, ids in held.items():
            await asyncio.to_thread(
                outbox_store.postpone,
                store,
                ids,
                poster.waiting[key],
                asked=poster.asked.get(key),
            )
        # Read from the watchlist files once, and only when some body is built: the
        # daemon runs this every 30 s, mostly with nothing to queue.
        names = cache(partial(_watchlist_names, settings, watchlists))
        for hook in hooks:
            await _deliver_due(settings, store, hook, names, now, force, instance, poster, down)
    finally:
        await poster.close()
    return summary


async def _deliver_due(
    settings: Settings,
    store: Store,
    hook: WebhookConfig,
    names: Callable[[], dict[str, str]],
    now: datetime,
    force: bool,
    instance: str,
    poster: _Poster,
    down: set[str],
) -> None:
    why_not = await asyncio.to_thread(_due, store, hook, now, force)
    if why_not is not None:
        poster.summary.skipped.append((hook.name, why_not))
        return
    if hook.key in down:  # its backlog failed just now: new stories wait for it
        return
    waiting = await asyncio.to_thread(webhook_store.queued_count, store, hook.key)
    if waiting:  # in order, and no new bodies for a receiver in backoff
        poster.summary.skipped.append(
            (hook.name, f"{waiting} queued deliveries wait to be retried")
        )
        return
    for _ in range(MAX_BODIES_PER_RUN):
        queued = await asyncio.to_thread(_queue, settings, store, hook, names, now, instance)
        if queued is None:
            if not force:
                await asyncio.to_thread(outbox_store.set_last_digest, store, hook.key, now)
            return
        message, stories = queued
        poster.summary.queued += 1
        if not await poster.send(message):
            return
        poster.summary.stories += stories


def undelivered_webhooks(summary: WebhookRunSummary) -> DeliveryError | None:
    """A one-line error for the CLI when some webhook delivery was not accepted."""
    problems = summary.failed + summary.retrying
    if not problems:
        return None
    name, reason = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return DeliveryError(
        f"webhook {name} not delivered: {reason}{more}",
        hint="check the [[webhooks]] url and its receiver; undelivered bodies stay queued"
        " (`monitor outbox`)",
    )
