"""Stories through the real pipeline: feeds on 127.0.0.1 polled with ``poll_due``, the real
digest sent to a real SMTP server (aiosmtpd), and ``monitor run`` alerting once per story."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from httpserver import FeedServer
from smtpserver import SMTPServer, free_port
from test_daemon import Feed, daemon, hits, mailed_texts, wait_for, write_config

from monitor import pipeline
from monitor.config import Settings, settings_from_mapping
from monitor.match import compile_watchlists
from monitor.pipeline.poll import story_index
from monitor.pipeline.window_file import window_path
from monitor.store import Store, open_store
from monitor.store import outbox as ob
from monitor.store import stories as ss
from monitor.store.db import utcnow
from monitor.watchlists import load_watchlists

REPO = Path(__file__).resolve().parents[1]
WATCHLISTS = load_watchlists(REPO / "watchlists")
MATCHER = compile_watchlists(WATCHLISTS)

WIRE_TITLE = "US envoy Sergio Gor meets Tokayev in Astana ahead of C5+1 summit"
WIRE = (
    "ASTANA (AP) - Kazakh President Kassym-Jomart Tokayev met U.S. Special Envoy Sergio Gor "
    "and Deputy Secretary of State Christopher Landau on Wednesday to prepare the C5+1 summit "
    "that President Donald Trump will host in Washington on November 6."
)
OTHER_TITLE = "Sergio Gor opens new US trade office in Tashkent"
OTHER = "The U.S. envoy Sergio Gor opened a trade and investment office in Uzbekistan's capital."


def rss(name: str, *items: tuple[str, str, str]) -> str:
    body = "".join(
        f"<item><title>{t}</title><link>https://{name}.test/{g}</link><guid>https://{name}.test/{g}</guid>"
        f"<description>{d}</description></item>"
        for g, t, d in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{name.title()} News</title>{body}</channel></rss>'


def make_settings(server: FeedServer, smtp: SMTPServer, feeds: list[str]) -> Settings:
    return settings_from_mapping(
        {
            "polling": {"allow_private_addresses": True, "parse_workers": 1, "timeout": "5s"},
            "watchlists": {"dir": str(REPO / "watchlists")},
            "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                     "sender": "Monitor <monitor@example.org>"},
            "subscribers": [{"email": "analyst@example.org", "watchlists": ["gor"]}],
            "feeds": [{"url": server.url(f)} for f in feeds],
        },
        environ={},
    )  # fmt: skip


def poll(settings: Settings, store: Store) -> None:
    pipeline.sync_config(settings, store)
    asyncio.run(pipeline.poll_due(settings, store, MATCHER, everything=True))


def test_poll_then_one_digest_entry_per_story(store: Store) -> None:
    with FeedServer() as server, SMTPServer() as smtp:
        server.serve("/a.xml", rss("alpha", ("s", WIRE_TITLE, WIRE), ("t", OTHER_TITLE, OTHER)))
        server.serve("/b.xml", rss("bravo", ("s", WIRE_TITLE, WIRE)))
        edited = WIRE.replace(" on Wednesday", "") + " Officials said more talks would follow."
        server.serve("/c.xml", rss("charlie", ("s", "Gor meets Tokayev in Astana", edited)))
        settings = make_settings(server, smtp, ["/a.xml", "/b.xml", "/c.xml"])
        ob.sync_subscribers(store, settings.subscribers, now=utcnow() - timedelta(minutes=1))
        poll(settings, store)

        stories = ss.list_stories(store, watchlist="gor")
        assert sorted(len(s.items) for s in stories) == [1, 3]
        summary = asyncio.run(pipeline.send_digests(settings, store, force=True))
        assert (summary.queued, summary.sent) == (1, 1)
        (message,) = smtp.messages
        assert message.message["Subject"] == "Sergio Gor: 2 new stories"
        (text,) = mailed_texts(smtp)
        assert text.count(WIRE_TITLE) == 1 and OTHER_TITLE in text
        assert "Gor meets Tokayev in Astana\n" not in text  # the edited copy is no entry of its own
        assert "Also reported by: Bravo News <https://bravo.test/s>, Charlie News <https://charlie.test/s>" in text
        html = message.message.get_body(("html",)).get_content()
        assert "Also reported by <a" in html and 'href="https://bravo.test/s"' in html
        assert html.count("Bravo News</a>") == 1

        # A fourth outlet carries the story later: it joins the story, and is no news again.
        server.serve("/d.xml", rss("delta", ("s", WIRE_TITLE, WIRE)))
        settings = make_settings(server, smtp, ["/a.xml", "/b.xml", "/c.xml", "/d.xml"])
        poll(settings, store)
        grown = ss.get_story(store, stories[-1].id if len(stories[-1].items) == 3 else stories[0].id)
        assert grown is not None and len(grown.items) == 4
        again = asyncio.run(pipeline.send_digests(settings, store, force=True))
        assert (again.queued, again.sent) == (0, 0) and len(smtp.messages) == 1


def test_an_immediate_subscriber_gets_one_alert_per_story(tmp_path: Path) -> None:
    title = "Zebra escapes from Almaty zoo and is seen grazing near Big Almaty Lake"
    with FeedServer() as server, SMTPServer() as smtp:
        feeds = [Feed(server, f"/f{n}.xml") for n in range(3)]
        metrics_port = free_port()
        cfg = write_config(tmp_path, [f.url for f in feeds], smtp_port=smtp.port,
                           extra=f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"')  # fmt: skip
        with daemon(cfg) as d:
            wait_for("a first poll", lambda: all(server.count(f.path) for f in feeds), 40)
            for f in feeds:  # the story arrives from three feeds a few seconds apart
                f.add(title)
                time.sleep(1.5)
            wait_for("three copies stored", lambda: len(hits(tmp_path)) == 3, 20)
            wait_for("the alert", lambda: len(smtp.messages) >= 1, 20)
            time.sleep(3)  # more cycles: a copy is no new alert
            feeds[1].add("Zebra foal born at Shymkent zoo after a rare twin pregnancy")
            wait_for("the next story's alert", lambda: len(smtp.messages) >= 2, 20)
            time.sleep(1.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
                exposed = r.read().decode()
            assert "monitor_stories_today 2.0" in exposed
            assert "monitor_story_items_mean_7d 2.0" in exposed  # 3 copies + 1, in 2 stories
            code, _ = d.stop()
            assert code == 0, d.log()
        texts = mailed_texts(smtp)
        assert len(texts) == 2, texts
        assert sum(t.count(title) for t in texts) == 1
        assert "Zebra foal" in texts[1] and title not in texts[1]


# --------------------------------------------------------------------------- the window file

LATER_TITLE = "Gor and Landau meet Mirziyoyev in Tashkent after the Astana talks"
LATER = (
    "TASHKENT - U.S. Special Envoy Sergio Gor and Deputy Secretary of State Christopher "
    "Landau met President Shavkat Mirziyoyev on Thursday, a day after their talks in Astana."
)


def _first_feeds(server: FeedServer) -> None:
    server.serve("/a.xml", rss("alpha", ("s", WIRE_TITLE, WIRE), ("t", OTHER_TITLE, OTHER)))
    server.serve("/b.xml", rss("bravo", ("s", WIRE_TITLE, WIRE)))


def _later_feeds(server: FeedServer) -> None:
    """The feeds moved on: a copy of the wire story elsewhere, and a new story twice."""
    server.serve("/a.xml", rss("alpha", ("u", LATER_TITLE, LATER), ("s", WIRE_TITLE, WIRE)))
    server.serve("/b.xml", rss("bravo", ("u", LATER_TITLE, LATER), ("s", WIRE_TITLE, WIRE)))
    server.serve("/c.xml", rss("charlie", ("s", WIRE_TITLE, WIRE)))


def _stories_by_link(store: Store) -> set[frozenset[str]]:
    """The stories as sets of their items' links (ids aside)."""
    return {frozenset(i.link or "" for i in s.items) for s in ss.list_stories(store)}


def _poll_twice(
    url: str, server: FeedServer, smtp: SMTPServer, **kwargs: object
) -> set[frozenset[str]]:
    store = open_store(url, upgrade=True)
    try:
        _first_feeds(server)
        settings = make_settings(server, smtp, ["/a.xml", "/b.xml", "/c.xml"])
        server.serve("/c.xml", rss("charlie"))
        pipeline.sync_config(settings, store)
        asyncio.run(pipeline.poll_due(settings, store, MATCHER, everything=True, **kwargs))  # type: ignore[arg-type]
        _later_feeds(server)
        asyncio.run(pipeline.poll_due(settings, store, MATCHER, everything=True, **kwargs))  # type: ignore[arg-type]
        return _stories_by_link(store)
    finally:
        store.dispose()


def test_poll_once_keeps_its_story_window_beside_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first run saves its window (0600, beside the SQLite file); the next loads it
    instead of rebuilding it and decides as one window kept in memory for both runs."""
    url = f"sqlite:///{tmp_path / 'kept.db'}"
    path = window_path(url)
    assert path == tmp_path / "kept.db.stories"
    caplog.set_level(logging.DEBUG, logger="monitor.pipeline.window_file")
    with FeedServer() as server, SMTPServer() as smtp:
        store = open_store(url, upgrade=True)
        try:
            _first_feeds(server)
            server.serve("/c.xml", rss("charlie"))
            settings = make_settings(server, smtp, ["/a.xml", "/b.xml", "/c.xml"])
            pipeline.sync_config(settings, store)
            asyncio.run(
                pipeline.poll_due(settings, store, MATCHER, everything=True, window_file=path)
            )
            assert path.stat().st_mode & 0o777 == 0o600
            header = json.loads(path.read_bytes().split(b"\n", 1)[0])
            assert header["seq"] == 3 and header["params"]["event_similarity"] == 0.25
            saved = path.stat().st_mtime_ns
            # A run of 304s neither loads nor saves it.
            for f in ("/a.xml", "/b.xml", "/c.xml"):
                server.serve(f, b"", status=304)
            asyncio.run(
                pipeline.poll_due(settings, store, MATCHER, everything=True, window_file=path)
            )
            assert path.stat().st_mtime_ns == saved and "loaded" not in caplog.text
            # A run that parses items all stored already loads it, and leaves it as it was.
            server.serve("/c.xml", rss("alpha", ("s", WIRE_TITLE, WIRE)))
            asyncio.run(
                pipeline.poll_due(settings, store, MATCHER, everything=True, window_file=path)
            )
            assert "story window: 3 items loaded" in caplog.text
            assert path.stat().st_mtime_ns == saved
            caplog.clear()
            _later_feeds(server)
            asyncio.run(
                pipeline.poll_due(settings, store, MATCHER, everything=True, window_file=path)
            )
            assert "story window: 3 items loaded" in caplog.text
            assert json.loads(path.read_bytes().split(b"\n", 1)[0])["seq"] == 6
            kept = _stories_by_link(store)
        finally:
            store.dispose()
        # The same polls with one window in memory throughout (as a daemon keeps it).
        in_memory = _poll_twice(
            f"sqlite:///{tmp_path / 'daemon.db'}", server, smtp,
            stories=story_index(make_settings(server, smtp, [])),
        )  # fmt: skip
    wire = {f"https://{n}.test/s" for n in ("alpha", "bravo", "charlie")}
    later = {"https://alpha.test/u", "https://bravo.test/u"}
    assert kept == in_memory == {frozenset(wire), frozenset(later), frozenset({"https://alpha.test/t"})}


@pytest.mark.parametrize("spoil", ["others may write", "damaged", "other settings", "new database"])
def test_a_story_window_file_that_may_not_be_used_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil: str
) -> None:
    """A window file another user could have written, a damaged one, one saved under
    other [stories] settings and one of a database since replaced are not loaded: the
    window is rebuilt from the store and decides as before."""
    db = tmp_path / "m.db"
    url = f"sqlite:///{db}"
    path = tmp_path / "m.db.stories"
    caplog.set_level(logging.DEBUG, logger="monitor.pipeline.window_file")
    with FeedServer() as server, SMTPServer() as smtp:
        settings = make_settings(server, smtp, ["/a.xml", "/b.xml", "/c.xml"])
        store = open_store(url, upgrade=True)
        try:
            _first_feeds(server)
            server.serve("/c.xml", rss("charlie"))
            pipeline.sync_config(settings, store)
            asyncio.run(
                pipeline.poll_due(settings, store, MATCHER, everything=True, window_file=path)
            )
            assert path.exists()
            if spoil == "others may write":
                path.chmod(0o666)
            elif spoil == "damaged":
                data = path.read_bytes()
                path.write_bytes(data[: len(data) // 2])
            elif spoil == "other settings":
                header, rest = path.read_bytes().split(b"\n", 1)
                fields = json.loads(header)
                fields["params"]["event_similarity"] = 0.5
                path.write_bytes(json.dumps(fields).encode() + b"\n" + rest)
            else:  # the database deleted and made anew; the same first poll again
                store.dispose()
                db.unlink()
                store = open_store(url, upgrade=True)
                pipeline.sync_config(settings, store)
                first = story_index(settings)
                asyncio.run(
                    pipeline.poll_due(settings, store, MATCHER, everything=True, stories=first)
                )
            caplog.clear()
            _later_feeds(server)
            asyncio.run(
                pipeline.poll_due(settings, store, MATCHER, everything=True, window_file=path)
            )
            assert "loaded" not in caplog.text
            expected = {
                "others may write": "another user could have written it (owner uid",
                "damaged": "unreadable",
                "other settings": "of another database, code or [stories] settings",
                "new database": "of another database, code or [stories] settings",
            }[spoil]
            assert expected in caplog.text
            wire = {f"https://{n}.test/s" for n in ("alpha", "bravo", "charlie")}
            assert frozenset(wire) in _stories_by_link(store)
            assert path.stat().st_mode & 0o777 == 0o600  # saved anew for the next run
        finally:
            store.dispose()


def test_no_story_window_file_for_postgresql() -> None:
    assert window_path("postgresql+psycopg://127.0.0.1/test") is None
    assert window_path("sqlite://") is None
