"""Faults a hostile feed or a bad day brings, run against the installed `monitor` command:
real SQLite files, a real HTTP server and a real SMTP server on 127.0.0.1, real signals.
Every wait is bounded."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from httpserver import FeedServer
from smtpserver import SMTPServer
from test_cli import MONITOR, REPO, run

from monitor.normalise import clean_header

ONE_ITEM = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Region news</title>'
    b"<item><title>Special Envoy Sergio Gor arrives in Tashkent</title>"
    b"<link>https://news.test/gor</link><guid>https://news.test/gor</guid></item>"
    b"</channel></rss>"
)


def write_config(tmp_path: Path, feeds: list[str], extra: str = "", workers: int = 1) -> Path:
    path = tmp_path / "monitor.toml"
    lines = [
        "[database]", f'url = "sqlite:///{tmp_path / "m.db"}"',
        "[watchlists]", f'dir = "{REPO / "watchlists"}"',
        "[polling]", "allow_private_addresses = true", 'timeout = "5s"',
        f"parse_workers = {workers}", extra,
    ]  # fmt: skip
    lines += [f'[[feeds]]\nurl = "{u}"' for u in feeds]
    path.write_text("\n".join(lines) + "\n")
    return path


def items(tmp_path: Path) -> list[dict[str, object]]:
    """The stored items, read from the SQLite file as any tool would."""
    with sqlite3.connect(tmp_path / "m.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT feeds.url AS feed, items.title, items.summary || items.content AS text "
            "FROM items JOIN feeds ON feeds.id = items.feed_id"
        )
        return [dict(r) for r in rows]


def peak_rss_mib(stderr_of_time: str) -> float:
    # GNU time's -f "%M" line: peak RSS in KiB.
    return int(stderr_of_time.strip().splitlines()[-1]) / 1024


# --- 1: entity amplification; stored field caps; the item cap -----------------------------


def entity_bomb(refs: int = 4_000) -> bytes:
    value = "A" * 50_000
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n'
        f'<!ENTITY big "{value}">\n<!ENTITY nbsp "&#160;">\n]>\n'
        '<rss version="2.0"><channel><title>Bomb</title>'
        f"<item><title>Sergio&nbsp;Gor {'&big;' * refs}</title>"
        "<link>https://bomb.test/1</link></item></channel></rss>"
    ).encode()


def test_an_entity_bomb_is_not_expanded_and_other_feeds_go_on(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.serve("/bomb.xml", entity_bomb())
        server.serve("/news.xml", ONE_ITEM)
        cfg = write_config(tmp_path, [server.url("/bomb.xml"), server.url("/news.xml")])
        # 200 million characters if expanded; the whole process stays small.
        timed = subprocess.run(
            ["/usr/bin/time", "-f", "%M", MONITOR, "--config", str(cfg), "poll", "--once"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
    assert timed.returncode == 0, timed.stderr
    assert "2 feeds: 2 fetched, 0 not modified, 0 failed; 2 new items" in timed.stdout
    assert (
        f"warning: {server.url('/bomb.xml')}: ignored the DOCTYPE's internal subset "
        "(1 declaration): entities are not expanded"
    ) in timed.stdout
    assert peak_rss_mib(timed.stderr) < 200
    titles = {str(i["feed"]): str(i["title"]) for i in items(tmp_path)}
    bomb = titles[server.url("/bomb.xml")]
    assert "Gor &big;&big;&big;" in bomb  # the reference stays as text
    assert len(bomb) == 1_000  # the title cap
    assert titles[server.url("/news.xml")] == "Special Envoy Sergio Gor arrives in Tashkent"


def many_items(count: int, big_at: int, big: int) -> bytes:
    parts = ['<?xml version="1.0"?><rss version="2.0"><channel><title>Many</title>']
    for i in range(count):
        text = "Middle Corridor. " * (big // 17) if i == big_at else f"Item {i}"
        parts.append(
            f"<item><title>Item {i}</title><link>https://many.test/{i}</link>"
            f"<pubDate>Sun, 01 Nov 2026 00:{i // 60 % 60:02d}:{i % 60:02d} GMT</pubDate>"
            f"<description>{text}</description></item>"
        )
    return ("".join(parts) + "</channel></rss>").encode()


def test_only_the_newest_items_are_kept_and_long_fields_are_cut(tmp_path: Path) -> None:
    with FeedServer() as server:
        # Oldest first in the document: the newest are the last 50.
        server.serve("/many.xml", many_items(3_000, big_at=2_990, big=1_000_000))
        cfg = write_config(tmp_path, [server.url("/many.xml")], "max_items = 50")
        out = run("--config", str(cfg), "poll", "--once", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "1 feed: 1 fetched, 0 not modified, 0 failed; 50 new items" in out.stdout
    assert "3000 items; only the 50 newest kept (polling.max_items)" in out.stdout
    assert "1 item had a field over its size cap; cut" in out.stdout
    stored = items(tmp_path)
    assert sorted(str(i["title"]) for i in stored) == sorted(
        f"Item {n}" for n in range(2_950, 3_000)
    )
    (big,) = [i for i in stored if i["title"] == "Item 2990"]
    assert len(str(big["text"])) <= 100_000 + 20


# --- 2: a database file that is not one, is corrupt or read-only --------------------------


def test_a_broken_database_file_is_one_error_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [])
    db = tmp_path / "m.db"
    db.write_bytes(os.urandom(8192))
    out = run("--config", str(cfg), "hits", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr == (
        f"monitor: error: database {db}: file is not a database (hint: check [database] url "
        "names a monitor database, or restore the file from a backup)\n"
    )
    verbose = run("--config", str(cfg), "-v", "hits", cwd=tmp_path)
    assert "Traceback" in verbose.stderr and verbose.returncode == 1

    db.unlink()
    assert run("--config", str(cfg), "db", "upgrade", cwd=tmp_path).returncode == 0
    raw = bytearray(db.read_bytes())
    raw[100:700] = b"\x0d" * 600  # the schema page
    db.write_bytes(bytes(raw))
    out = run("--config", str(cfg), "feeds", "list", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith(
        f"monitor: error: database {db}: database disk image is malformed (hint: restore "
        f"the file from a backup, or save what is left with `sqlite3 {db} .recover"
    )
    assert out.stderr.count("\n") == 1


def test_a_read_only_database_is_one_error_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, [])
    assert run("--config", str(cfg), "db", "upgrade", cwd=tmp_path).returncode == 0
    # Read-only as SQLite sees it, whoever runs the test (root ignores file modes).
    text = cfg.read_text().replace(
        f'url = "sqlite:///{tmp_path / "m.db"}"',
        f'url = "sqlite:///file:{tmp_path / "m.db"}?mode=ro&uri=true"',
    )
    cfg.write_text(text + '[[feeds]]\nurl = "http://127.0.0.1:9/x.xml"\n')
    out = run("--config", str(cfg), "poll", "--once", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.endswith(
        f"monitor: error: database {tmp_path / 'm.db'}: the file is read-only (hint: check "
        f"the permissions of {tmp_path / 'm.db'}, its -wal and -shm files and its folder: "
        "the user running monitor must be able to write them)\n"
    )
    assert "Traceback" not in out.stderr


# --- 3 and 4: kill -9 of a poll ----------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def test_kill_9_of_a_poll_leaves_no_workers_and_no_claims(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.serve("/news.xml", ONE_ITEM)
        server.serve("/slow.xml", ONE_ITEM, delay=30)
        cfg = write_config(
            tmp_path, [server.url("/news.xml"), server.url("/slow.xml")], workers=2
        )
        proc = subprocess.Popen(
            [MONITOR, "--config", str(cfg), "poll", "--once"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            # Parsed news.xml (so a parse worker runs), waiting on slow.xml.
            while time.monotonic() < deadline:
                if server.count("/slow.xml") and len(_children(proc.pid)) >= 2:
                    break
                time.sleep(0.1)
            workers = _children(proc.pid)
            assert len(workers) >= 2, "no parse worker started"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            deadline = time.monotonic() + 10
            while any(_running(w) for w in workers) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not [w for w in workers if _running(w)]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        server.serve("/slow.xml", ONE_ITEM)  # answers at once now
        again = run("--config", str(cfg), "poll", "--once", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    # Both feeds were claimed by the dead poll; neither is skipped for the lease.
    assert again.stdout.startswith("2 feeds: 2 fetched"), again.stdout
    assert "freed 2 claims left by stopped instances on this host" in again.stderr


def test_poll_once_says_which_due_feeds_a_live_instance_holds(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.serve("/news.xml", ONE_ITEM)
        cfg = write_config(tmp_path, [server.url("/news.xml"), "http://127.0.0.1:9/x.xml"])
        assert run("--config", str(cfg), "db", "upgrade", cwd=tmp_path).returncode == 0
        assert run("--config", str(cfg), "feeds", "list", cwd=tmp_path).returncode == 0
        # A live process of this host (pytest itself) holds one feed.
        with sqlite3.connect(tmp_path / "m.db") as conn:
            conn.execute(
                "UPDATE feeds SET claimed_by = ?, claim_expires_at = ? WHERE url = ?",
                (f"{os.uname().nodename}:{os.getpid()}", "2999-01-01 00:00:00.000000",
                 server.url("/news.xml")),
            )  # fmt: skip
        out = run("--config", str(cfg), "poll", "--once", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "1 feed: 0 fetched, 0 not modified, 1 failed" in out.stdout
    assert (
        "skipped 1 due feed: another running instance is polling them (`monitor status`)"
        in out.stdout
    )


# --- 5: a 5xx for one recipient, then `monitor outbox retry` ---------------------------


def test_a_failed_mail_is_requeued_with_its_hits_and_a_new_message_id(tmp_path: Path) -> None:
    with FeedServer() as server, SMTPServer() as smtp:
        server.serve("/news.xml", ONE_ITEM)
        cfg = write_config(
            tmp_path,
            [server.url("/news.xml")],
            f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n'
            '[[subscribers]]\nemail = "gone@example.org"\n',
        )
        assert run("--config", str(cfg), "poll", "--once", cwd=tmp_path).returncode == 0
        smtp.refuse("gone@example.org", "550 5.1.1 no such user")
        sent = run("--config", str(cfg), "digest", "--send-now", cwd=tmp_path)
        assert sent.returncode == 1
        assert "digest to gone@example.org failed: " in sent.stderr
        assert "marked failed and not retried" in sent.stderr
        assert "stays queued" not in sent.stderr
        listed = run("--config", str(cfg), "outbox", "--json", cwd=tmp_path)
        (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
        assert row["status"] == "failed" and row["hits"] == 1

        smtp.accept_all()
        again = run("--config", str(cfg), "outbox", "retry", "--failed", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert again.stdout == f"requeued: {row['id']}\n"
        assert run("--config", str(cfg), "digest", "--send-now", cwd=tmp_path).returncode == 0
        (mail,) = smtp.messages
    message = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert message["Message-ID"] != row["message_id"]
    assert "Sergio Gor arrives in Tashkent" in mail.data.decode("utf-8", "replace")
    final = run("--config", str(cfg), "outbox", "--all", "--json", cwd=tmp_path)
    (done,) = [json.loads(line) for line in final.stdout.splitlines()]
    assert (done["id"], done["status"], done["hits"]) == (row["id"], "sent", 1)
    assert done["message_id"] == message["Message-ID"]
    nothing = run("--config", str(cfg), "outbox", "retry", str(row["id"]), cwd=tmp_path)
    assert nothing.returncode == 1
    assert nothing.stderr.startswith(f"monitor: error: not failed, so not requeued: {row['id']}")


# --- 6: numeric IPv4 hosts; bidi controls in headers ------------------------------------


def test_numeric_ipv4_hosts_are_named_as_the_address_they_are(tmp_path: Path) -> None:
    hosts = ["2130706433", "127.1", "0177.0.0.1", "0x7f.0.0.1"]
    cfg = write_config(tmp_path, [f"http://{host}/feed.xml" for host in hosts])
    cfg.write_text(cfg.read_text().replace("allow_private_addresses = true", ""))
    out = run("--config", str(cfg), "poll", "--once", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for host in hosts:
        assert (
            f"failed: http://{host}/feed.xml: {host} is 127.0.0.1 written as a number: a "
            "private, loopback or link-local address, which is not polled"
        ) in out.stdout


def test_bidi_controls_never_reach_a_header() -> None:
    title = "Envoy \u202egnp.exe\u202c visit \u2066isolated\u2069 \u200fnote"
    assert clean_header(title) == "Envoy gnp.exe visit isolated note"


# --- 2, in the daemon: an unusable database mid-run ---------------------------------------


async def test_the_daemon_logs_an_unusable_database_once_a_cycle_and_backs_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from monitor import pipeline
    from monitor.config import settings_from_mapping
    from monitor.scheduler import DATABASE_RETRY, Daemon
    from monitor.store import open_store

    db = tmp_path / "m.db"
    settings = settings_from_mapping(
        {
            "database": {"url": f"sqlite:///{db}"},
            "watchlists": {"dir": str(REPO / "watchlists")},
            "feeds": [{"url": "http://127.0.0.1:9/news.xml"}],
        },
        {},
    )
    writable = open_store(settings.database_url, upgrade=True)
    pipeline.sync_config(settings, writable)
    writable.dispose()
    # The file turns read-only under the running daemon.
    store = open_store(f"sqlite:///file:{db}?mode=ro&uri=true")
    registry = pipeline.watchlist_registry(settings.watchlists_dir)
    daemon = Daemon(None, settings, store, registry)
    daemon.pool = pipeline.ParsePool(1, registry.matcher)
    try:
        with caplog.at_level(logging.INFO, logger="monitor"):
            for _ in range(5):  # ticks in a row: one cycle tried, the rest wait
                await daemon._poll_job()
            daemon._database_retry_at = 0.0  # the wait is over
            await daemon._poll_job()
    finally:
        daemon.pool.close()
        daemon.notifier.close()
        store.dispose()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        f"poll cycle failed: database {db}: the file is read-only (hint: check the "
        f"permissions of {db}, its -wal and -shm files and its folder: the user running "
        f"monitor must be able to write them); next try in {DATABASE_RETRY:.0f}s",
        f"poll cycle failed: database {db}: the file is read-only (hint: check the "
        f"permissions of {db}, its -wal and -shm files and its folder: the user running "
        f"monitor must be able to write them); next try in {2 * DATABASE_RETRY:.0f}s",
    ]
    assert all(r.exc_info is None for r in errors)  # no traceback


# --- a service manager that stops reading sd_notify ----------------------------------------


def test_notifications_never_wait_for_a_manager_that_does_not_read(tmp_path: Path) -> None:
    import socket
    import threading

    from monitor.notify import Notifier

    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)  # never read
    notifier = Notifier({"NOTIFY_SOCKET": path})
    results: list[bool] = []
    sender = threading.Thread(target=lambda: results.extend(notifier.send(watchdog=1)
                                                            for _ in range(200)))  # fmt: skip
    try:
        sender.start()
        sender.join(10)
        assert not sender.is_alive(), "sd_notify blocked on a full socket queue"
        assert results[0] is True and results[-1] is False
    finally:
        notifier.close()
        listener.close()
