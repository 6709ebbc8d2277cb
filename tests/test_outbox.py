"""The outbox repository on a real SQLite file and on the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from monitor.config import SubscriberConfig
from monitor.store import Store
from monitor.store import outbox as ob
from monitor.store.feeds import REMOVED_FROM_CONFIG
from monitor.store.schema import deliveries, feeds, hits, items, outbox

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ANALYST = "analyst@example.org"


def add_feed(store: Store, url: str = "https://news.example/rss", **values: object) -> int:
    with store.write() as conn:
        return int(
            conn.execute(
                insert(feeds)
                .values(url=url, headers={}, created_at=T0, **values)
                .returning(feeds.c.id)
            ).scalar_one()
        )


def add_hit(
    store: Store,
    watchlist: str,
    created_at: datetime,
    *,
    item: int | None = None,
    feed: int | None = None,
) -> int:
    """A hit on a new item (or on ``item``); returns the hit id."""
    with store.write() as conn:
        if item is None:
            n = conn.execute(select(func.count()).select_from(items)).scalar_one()
            item = int(
                conn.execute(
                    insert(items)
                    .values(identity=f"item-{n}", feed_id=feed, title=f"Story {n}",
                            first_seen_at=created_at)
                    .returning(items.c.id)
                ).scalar_one()
            )  # fmt: skip
        return int(
            conn.execute(
                insert(hits)
                .values(item_id=item, watchlist=watchlist, matches=[], created_at=created_at)
                .returning(hits.c.id)
            ).scalar_one()
        )


def item_of(store: Store, hit_id: int) -> int:
    with store.read() as conn:
        return int(conn.execute(select(hits.c.item_id).where(hits.c.id == hit_id)).scalar_one())


def subscribe(store: Store, email: str = ANALYST, at: datetime = T0) -> None:
    ob.sync_subscribers(store, [SubscriberConfig(email=email)], now=at)


def test_new_subscriber_gets_hits_from_now_on_not_the_history(store: Store) -> None:
    old = add_hit(store, "gor", T0 - timedelta(days=3))
    subscribe(store)
    new = add_hit(store, "gor", T0 + timedelta(minutes=1))
    assert [h.id for h in ob.pending_hits(store, ANALYST, None)] == [new]
    assert old != new
    # Syncing again (a restart) keeps the original start.
    subscribe(store, at=T0 + timedelta(days=1))
    state = ob.subscriber_state(store, ANALYST)
    assert state is not None and state.created_at == T0
    # Unknown subscribers have nothing pending.
    assert ob.pending_hits(store, "nobody@example.org", None) == []
    assert ob.pending_counts(store, "nobody@example.org", None) == {}


def test_pending_follows_watchlists_and_excludes_delivered(store: Store) -> None:
    subscribe(store)
    g1 = add_hit(store, "gor", T0 + timedelta(minutes=1))
    c1 = add_hit(store, "c5plus1", T0 + timedelta(minutes=2))
    g2 = add_hit(store, "gor", T0 + timedelta(minutes=3))
    assert [h.id for h in ob.pending_hits(store, ANALYST, ["gor"])] == [g1, g2]
    assert [h.id for h in ob.pending_hits(store, ANALYST, None)] == [g1, c1, g2]
    assert ob.pending_counts(store, ANALYST, None) == {"gor": 2, "c5plus1": 1}
    oid = ob.enqueue_digest(
        store, subscriber=ANALYST, message_id="<1@x>", subject="s", message=b"m",
        hit_ids=[g1, c1], now=T0 + timedelta(minutes=5),
    )  # fmt: skip
    assert oid is not None
    assert [h.id for h in ob.pending_hits(store, ANALYST, None)] == [g2]
    assert ob.delivered_hit_ids(store, ANALYST) == {g1, c1}
    # Another subscriber is independent.
    subscribe(store, "other@example.org", at=T0)
    assert len(ob.pending_hits(store, "other@example.org", None)) == 3


def test_limit_per_watchlist_takes_the_oldest_of_each(store: Store) -> None:
    subscribe(store)
    ids = {
        w: [add_hit(store, w, T0 + timedelta(minutes=i)) for i in range(1, 6)] for w in ("a", "b")
    }
    got = [h.id for h in ob.pending_hits(store, ANALYST, None, limit_per_watchlist=2)]
    assert sorted(got) == sorted(ids["a"][:2] + ids["b"][:2])
    assert ob.pending_counts(store, ANALYST, ["a"]) == {"a": 5}


def test_enqueue_is_all_or_nothing(store: Store) -> None:
    subscribe(store)
    h1 = add_hit(store, "gor", T0 + timedelta(minutes=1))
    h2 = add_hit(store, "gor", T0 + timedelta(minutes=2))
    first = ob.enqueue_digest(store, subscriber=ANALYST, message_id="<1@x>", subject="s",
                              message=b"m1", hit_ids=[h1], now=T0)  # fmt: skip
    assert first is not None
    # h1 is already out: a second digest holding it is refused, and nothing is written.
    again = ob.enqueue_digest(store, subscriber=ANALYST, message_id="<2@x>", subject="s",
                              message=b"m2", hit_ids=[h1, h2], now=T0)  # fmt: skip
    assert again is None
    assert [e.message_id for e in ob.list_outbox(store)] == ["<1@x>"]
    assert [h.id for h in ob.pending_hits(store, ANALYST, None)] == [h2]
    # The database itself refuses a second delivery of a hit to a subscriber.
    with pytest.raises(IntegrityError), store.write() as conn:
        conn.execute(insert(deliveries).values(subscriber=ANALYST, hit_id=h1, outbox_id=first))
    with pytest.raises(ValueError):
        ob.enqueue_digest(store, subscriber=ANALYST, message_id="<3@x>", subject="s",
                          message=b"m", hit_ids=[])  # fmt: skip


def test_claim_lease_retry_backoff_sent_and_failed(store: Store) -> None:
    subscribe(store)
    oids = []
    for n in range(3):
        h = add_hit(store, "gor", T0 + timedelta(minutes=n))
        oid = ob.enqueue_digest(store, subscriber=ANALYST, message_id=f"<{n}@x>",
                                subject=f"s{n}", message=b"m", hit_ids=[h], now=T0)  # fmt: skip
        assert oid is not None
        oids.append(oid)
    claimed = ob.claim_due(store, instance="a", now=T0)
    assert [m.id for m in claimed] == oids
    assert claimed[0].message == b"m" and claimed[0].attempts == 0
    # Leased: another sender gets nothing until the lease runs out.
    assert ob.claim_due(store, instance="b", now=T0 + timedelta(minutes=1)) == []
    assert len(ob.claim_due(store, instance="b", now=T0 + ob.CLAIM_LEASE)) == 3

    ob.mark_sent(store, oids[0], now=T0)
    due = ob.mark_retry(store, oids[1], "451 4.3.0 try later", now=T0)
    assert due == T0 + timedelta(minutes=1)
    ob.mark_failed(store, oids[2], "550 5.1.1 no such user", now=T0)

    entries = {e.id: e for e in ob.list_outbox(store, statuses=("queued", "sent", "failed"))}
    assert entries[oids[0]].status == "sent" and entries[oids[0]].sent_at == T0
    assert (
        entries[oids[1]].status == "queued" and entries[oids[1]].last_error == "451 4.3.0 try later"
    )
    assert entries[oids[2]].status == "failed" and entries[oids[2]].hits == 1
    assert [e.id for e in ob.list_outbox(store)] == [oids[1], oids[2]]  # queued + failed

    # Backing off: not due before next_attempt_at, unless asked to ignore the backoff.
    assert ob.claim_due(store, instance="a", now=T0 + timedelta(seconds=30)) == []
    assert [m.id for m in ob.claim_due(store, instance="a", now=T0, ignore_backoff=True)] == [
        oids[1]
    ]
    due2 = ob.mark_retry(store, oids[1], "connection lost", now=T0)
    assert due2 == T0 + timedelta(minutes=2)
    assert [m.id for m in ob.claim_due(store, instance="a", now=due2)] == [oids[1]]
    ob.mark_retry(store, oids[1], "not attempted", now=T0, count_attempt=False)
    assert {e.id: e.attempts for e in ob.list_outbox(store)}[oids[1]] == 2


def test_retry_delay_grows_and_is_capped() -> None:
    assert [ob.retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert ob.retry_delay(50) == ob.RETRY_MAX


def test_claim_only_some_subscribers(store: Store) -> None:
    subscribe(store)
    subscribe(store, "other@example.org")
    for n, who in enumerate((ANALYST, "other@example.org")):
        h = add_hit(store, "gor", T0 + timedelta(minutes=n))
        ob.enqueue_digest(store, subscriber=who, message_id=f"<{n}@x>", subject="s",
                          message=b"m", hit_ids=[h], now=T0)  # fmt: skip
    got = ob.claim_due(store, instance="a", now=T0, subscribers_only=["other@example.org"])
    assert [m.subscriber for m in got] == ["other@example.org"]


def test_volume_is_counted_per_local_day(store: Store) -> None:
    now = datetime(2025, 3, 14, 20, 0, tzinfo=UTC)  # 15 March 01:00 in Almaty (+05)
    add_hit(store, "gor", datetime(2025, 3, 14, 19, 30, tzinfo=UTC))  # 15 Mar local
    add_hit(store, "gor", datetime(2025, 3, 14, 18, 0, tzinfo=UTC))  # 14 Mar 23:00 local
    add_hit(store, "gor", datetime(2025, 3, 2, 0, 0, tzinfo=UTC))  # 2 Mar local: day 1
    add_hit(store, "gor", datetime(2025, 3, 1, 18, 0, tzinfo=UTC))  # 1 Mar 23:00: too old
    add_hit(store, "c5plus1", datetime(2025, 3, 10, tzinfo=UTC))
    vol = ob.watchlist_volume(store, ["gor", "landau"], timezone="Asia/Almaty", now=now)
    assert set(vol) == {"gor", "landau"}
    gor = dict(vol["gor"])
    assert len(vol["gor"]) == 14 and vol["gor"][-1][0] == date(2025, 3, 15)
    assert gor[date(2025, 3, 15)] == 1 and gor[date(2025, 3, 14)] == 1
    assert gor[date(2025, 3, 2)] == 1 and sum(gor.values()) == 3
    assert sum(n for _, n in vol["landau"]) == 0


def test_failing_feeds_are_news_but_not_ones_removed_on_purpose(store: Store) -> None:
    add_feed(store, "https://ok.example/rss")
    add_feed(store, "https://flaky.example/rss", consecutive_failures=2, last_error="timeout")
    add_feed(store, "https://gone.example/rss", retired_at=T0, retired_reason="410 Gone")
    add_feed(
        store, "https://dropped.example/rss", retired_at=T0, retired_reason=REMOVED_FROM_CONFIG
    )
    got = ob.failing_feeds(store)
    assert [f.url for f in got] == ["https://gone.example/rss", "https://flaky.example/rss"]
    assert got[1].consecutive_failures == 2 and got[1].last_error == "timeout"


def test_last_digest_marker(store: Store) -> None:
    subscribe(store)
    ob.set_last_digest(store, ANALYST, T0 + timedelta(hours=1))
    state = ob.subscriber_state(store, ANALYST)
    assert state is not None and state.last_digest_at == T0 + timedelta(hours=1)
    with store.write() as conn:  # outbox ids survive
        conn.execute(update(outbox).values(attempts=0))
