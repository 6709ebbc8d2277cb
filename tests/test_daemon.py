"""`monitor run` as a real subprocess: feeds on 127.0.0.1, a real SMTP server, real signals.

Intervals are seconds long (tick 0.2 s, feeds every 1-2 s) and every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
from aiohttp import web
from httpserver import FeedServer
from smtpserver import SMTPServer, free_port

MONITOR = shutil.which("monitor", path=str(Path(sys.executable).parent)) or "monitor"

ZOO = """\
id: zoo
name: Zoo
entries:
  - id: zebra
    name: Zebra
    terms: [Zebra]
"""
ZOO_WITH_OKAPI = (
    ZOO
    + """\
  - id: okapi
    name: Okapi
    terms: [Okapi]
"""
)
ZOO_BROKEN = """\
id: zoo
name: Zoo
entries:
  - id: zebra
    name: Zebra
    terms: [Zebra]
    bogus_key: 1
  - id: giraffe
    terms: [Giraffe]
"""


def wait_for(what: str, check: Callable[[], object], timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Feed:
    """A feed whose items the test changes while the daemon polls it."""

    def __init__(self, server: FeedServer, path: str, *, delay: float = 0.0) -> None:
        self.items: list[str] = []
        self.path = path
        self.url = server.url(path)
        self.delay = delay
        server.route(path, self.handler)

    def add(self, title: str) -> None:
        self.items.append(title)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        import asyncio

        if self.delay:
            await asyncio.sleep(self.delay)
        entries = "".join(
            f"<item><title>{t}</title><link>https://news.test{self.path}/{n}</link>"
            f"<guid>https://news.test{self.path}/{n}</guid></item>"
            for n, t in enumerate(self.items)
        )
        body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>{self.path}</title>'
        return web.Response(
            body=f"{body}{entries}</channel></rss>".encode(),
            content_type="application/rss+xml",
        )


def write_config(
    tmp_path: Path,
    feeds: list[str],
    *,
    smtp_port: int | None = None,
    immediate: bool = True,
    extra: str = "",
) -> Path:
    watchlists = tmp_path / "watchlists"
    if not watchlists.exists():
        watchlists.mkdir()
        (watchlists / "zoo.yaml").write_text(ZOO)
    lines = [
        "[database]", f'url = "sqlite:///{tmp_path / "m.db"}"',
        "[watchlists]", f'dir = "{watchlists}"',
        "[polling]", "allow_private_addresses = true", 'timeout = "20s"', "parse_workers = 1",
        'interval = "1s"', 'min_interval = "1s"', 'max_interval = "2s"', 'tick = "0.2s"',
        "[delivery]", f'dir = "{tmp_path / "outbox"}"',
        extra,
    ]  # fmt: skip
    if smtp_port is not None:
        lines += ["[smtp]", 'host = "127.0.0.1"', f"port = {smtp_port}", 'security = "none"',
                  'sender = "Monitor <monitor@example.org>"']  # fmt: skip
    if immediate:
        lines += ["[[subscribers]]", 'email = "analyst@example.org"', 'watchlists = ["*"]',
                  'schedule = "immediate"']  # fmt: skip
    lines += [f'[[feeds]]\nurl = "{u}"' for u in feeds]
    path = tmp_path / "monitor.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class NotifyListener:
    """A Unix datagram socket standing in for systemd's $NOTIFY_SOCKET (abstract name).

    Like systemd, it reads all the time (a thread): a full socket would block the daemon's
    event loop in sendto() while the test is busy elsewhere.
    """

    def __init__(self) -> None:
        self.name = f"@monitor-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name[1:].encode())
        self.sock.settimeout(0.05)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._receive, daemon=True)
        self._reader.start()

    def _receive(self) -> None:
        while not self._closing.is_set():
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append(data.decode())

    def drain(self) -> list[str]:
        with self._lock:
            return list(self.messages)

    def seen(self, line: str) -> bool:
        return any(line in m.splitlines() for m in self.drain())

    def close(self) -> None:
        self._closing.set()
        self._reader.join(5)
        self.sock.close()


class Daemon:
    """One `monitor run` subprocess, its stderr in a file."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.update(env or {})
        self.log_path = config.parent / f"daemon-{uuid.uuid4().hex[:6]}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [MONITOR, "--config", str(config), "run"],
            cwd=config.parent,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@contextmanager
def daemon(config: Path, env: dict[str, str] | None = None) -> Iterator[Daemon]:
    d = Daemon(config, env)
    try:
        yield d
    finally:
        d.kill()


def hits(tmp_path: Path) -> list[tuple[str, str]]:
    """(watchlist, item title) of every stored hit."""
    db = tmp_path / "m.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(
            "SELECT hits.watchlist, items.title FROM hits JOIN items ON items.id = hits.item_id"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def mailed_texts(smtp: SMTPServer) -> list[str]:
    texts = []
    for received in smtp.messages:
        body = received.message.get_body(("plain",))
        assert body is not None
        texts.append(str(body.get_content()).replace("*", ""))  # matched terms are *marked*
    return texts


def test_immediate_alert_sd_notify_metrics_status_and_sigterm(tmp_path: Path) -> None:
    notify = NotifyListener()
    metrics_port = free_port()
    web_port = free_port()
    try:
        with FeedServer() as server, SMTPServer() as smtp:
            feed = Feed(server, "/news.xml")
            feed.add("Weather in Almaty")
            cfg = write_config(
                tmp_path,
                [feed.url],
                smtp_port=smtp.port,
                extra=f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
                f'[web]\nlisten = "127.0.0.1:{web_port}"',
            )
            env = {"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": "400000"}
            with daemon(cfg, env) as d:
                wait_for("READY=1", lambda: notify.seen("READY=1"))
                wait_for("a first poll", lambda: server.count("/news.xml") >= 1)
                added = time.monotonic()
                feed.add("Zebra escapes from the zoo")
                wait_for("the alert mail", lambda: smtp.messages, timeout=20)
                latency = time.monotonic() - added
                # One feed interval (1-2 s here) plus sending: far within "interval + 1 min".
                assert latency < 10, latency
                (mail,) = smtp.messages
                assert mail.rcpt_tos == ["analyst@example.org"]
                assert "Zebra escapes from the zoo" in mailed_texts(smtp)[0]
                # The web view, served beside polling, finds what the daemon just stored.
                found = urllib.request.urlopen(
                    f"http://127.0.0.1:{web_port}/search?q=zebra", timeout=5
                ).read().decode()
                assert "Zebra escapes from the zoo" in found
                assert any(m.startswith("STATUS=") for m in notify.drain())
                wait_for(
                    "watchdog pings", lambda: sum("WATCHDOG=1" in m for m in notify.drain()) >= 2
                )

                scraped = (
                    urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
                    .read()
                    .decode()
                )
                for name in ("monitor_poll_cycles_total", "monitor_feed_polls_total",
                             "monitor_fetch_duration_seconds_bucket", "monitor_new_items_total",
                             'monitor_hits_total{watchlist="zoo"} 1.0', "monitor_outbox_queued",
                             "monitor_outbox_oldest_age_seconds", "monitor_digests_sent_total"):  # fmt: skip
                    assert name in scraped, name

                status = subprocess.run(
                    [MONITOR, "--config", str(cfg), "status"],
                    capture_output=True, text=True, timeout=30, cwd=tmp_path,
                )  # fmt: skip
                assert status.returncode == 0, status.stderr
                assert f"daemon: running (pid {d.proc.pid})" in status.stdout
                assert (tmp_path / "m.db.lock").read_text() == f"{d.proc.pid}\n"
                assert "hits today (UTC): 1 (zoo 1)" in status.stdout
                assert "outbox: 0 queued" in status.stdout

                code, took = d.stop()
                assert code == 0, d.log()
                assert took < 10, took
                assert not (tmp_path / "m.db.lock").exists()  # a clean exit leaves no pid behind
                assert notify.seen("STOPPING=1")
                log = d.log()
                assert "poll: 1 feed:" in log  # one line per poll cycle
                assert "password" not in log.lower()
    finally:
        notify.close()


def test_watchlist_and_config_edits_sighup_with_broken_file_and_second_instance(
    tmp_path: Path,
) -> None:
    with FeedServer() as server:
        feed = Feed(server, "/news.xml")
        cfg = write_config(tmp_path, [feed.url], immediate=False)
        zoo = tmp_path / "watchlists" / "zoo.yaml"
        with daemon(cfg) as d:
            wait_for("a first poll", lambda: server.count("/news.xml") >= 1)

            second = subprocess.run(
                [MONITOR, "--config", str(cfg), "run"],
                capture_output=True, text=True, timeout=30, cwd=tmp_path,
            )  # fmt: skip
            assert second.returncode == 1
            assert (
                f"monitor: error: another monitor run is using {tmp_path / 'm.db'} "
                f"(pid {d.proc.pid})" in second.stderr
            )

            # An edit is picked up without a signal.
            zoo.write_text(ZOO_WITH_OKAPI)
            wait_for("the reload", lambda: "watchlists reloaded" in d.log())
            feed.add("Okapi born in Tashkent")
            wait_for("the okapi hit", lambda: ("zoo", "Okapi born in Tashkent") in hits(tmp_path))

            # A broken edit plus SIGHUP: the error names file:line, the old version matches.
            zoo.write_text(ZOO_BROKEN)
            d.proc.send_signal(signal.SIGHUP)
            wait_for("the SIGHUP", lambda: "SIGHUP: reloading" in d.log())
            wait_for("file:line", lambda: f"{zoo}:7:" in d.log())
            assert "keeping the last good watchlists" in d.log()
            feed.add("Okapi and Zebra together")
            wait_for(
                "a hit by the old version",
                lambda: ("zoo", "Okapi and Zebra together") in hits(tmp_path),
            )
            # A feed added to the config is polled without a signal or a restart.
            added = Feed(server, "/added.xml")
            with cfg.open("a") as fh:
                fh.write(f'[[feeds]]\nurl = "{added.url}"\n')
            wait_for("the added feed's poll", lambda: server.count("/added.xml") >= 1)
            assert "config reloaded" in d.log()

            feed.add("Giraffe only")  # the broken file's new entry is not in use
            wait_for("the giraffe poll", lambda: server.count("/news.xml") >= 6)
            time.sleep(1.5)
            assert ("zoo", "Giraffe only") not in hits(tmp_path)
            code, _took = d.stop()
            assert code == 0, d.log()
        assert "Traceback" not in d.log()


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_stop_mid_cycle_then_restart_loses_and_duplicates_nothing(tmp_path: Path, how: str) -> None:
    with FeedServer() as server, SMTPServer() as smtp:
        fast = [Feed(server, f"/fast{n}.xml") for n in range(3)]
        slow = Feed(server, "/slow.xml", delay=20.0)
        for n, f in enumerate(fast):
            f.add(f"Zebra sighting {n}")
        slow.add("Zebra sighting slow")
        cfg = write_config(tmp_path, [f.url for f in [*fast, slow]], smtp_port=smtp.port)
        expected = {f"Zebra sighting {n}" for n in range(3)} | {"Zebra sighting slow"}

        with daemon(cfg) as first:
            # Mid-cycle: the fast feeds are stored, the slow one is still being fetched.
            wait_for("the fast feeds' hits", lambda: len(hits(tmp_path)) >= 3)
            wait_for("the slow fetch", lambda: server.count("/slow.xml") >= 1)
            assert len(hits(tmp_path)) == 3
            if how == "sigterm":
                code, took = first.stop()
                assert code == 0, first.log()
                assert took < 10, took
                # A clean stop keeps the story window for the next start (on SQLite).
                assert (tmp_path / "m.db.stories").stat().st_mode & 0o777 == 0o600
            else:
                first.proc.kill()
                first.proc.wait(10)
        mailed_before = len(smtp.messages)

        slow.delay = 0.0
        with daemon(cfg) as second:
            wait_for("every hit", lambda: {t for _w, t in hits(tmp_path)} == expected, 20)

            def all_mailed() -> bool:
                text = "\n".join(mailed_texts(smtp))
                return all(title in text for title in expected)

            wait_for("every hit mailed", all_mailed, 20)
            time.sleep(1.5)  # a few more cycles: nothing may arrive twice
            code, _took = second.stop()
            assert code == 0, second.log()

        stored = hits(tmp_path)
        assert sorted(t for _w, t in stored) == sorted(expected)  # each once
        texts = mailed_texts(smtp)
        for title in expected:
            assert sum(title in t for t in texts) == 1, (title, texts)
        assert mailed_before == 0  # the cycle never finished, so nothing was mailed early
        if how == "sigkill":
            assert "freed" in second.log()  # the dead instance's claim on the slow feed
            assert "story window" not in second.log()  # nothing kept: rebuilt
        else:
            assert "story window: 3 items from the last run" in second.log(), second.log()


def test_immediate_webhook_gets_the_story_after_the_poll_that_found_it(tmp_path: Path) -> None:
    import json

    received: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        return web.Response(text="ok")

    with FeedServer() as server:
        feed = Feed(server, "/news.xml")
        feed.add("Weather in Almaty")
        server.route("/hook", hook)
        extra = (
            "webhook_allow_private_addresses = true\n"
            f'[[webhooks]]\nname = "desk"\nurl = "{server.url("/hook")}"\n'
        )  # continues [delivery]
        cfg = write_config(tmp_path, [feed.url], immediate=False, extra=extra)
        with daemon(cfg) as d:
            wait_for("a first poll", lambda: server.count("/news.xml") >= 1)
            added = time.monotonic()
            feed.add("Zebra escapes from the zoo")
            wait_for("the webhook", lambda: received, timeout=20)
            assert time.monotonic() - added < 10
            wait_for("a few more polls", lambda: server.count("/news.xml") >= 4)
            code, _ = d.stop()
            assert code == 0, d.log()
    (body,) = received  # once, though the feed was polled again
    assert [s["title"] for s in body["stories"]] == ["Zebra escapes from the zoo"]  # type: ignore[index]
    assert "webhook desk accepted delivery" in d.log()


def web_children(parent: int) -> list[int]:
    """The `monitor web` processes whose parent is ``parent`` and that are not zombies."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == parent and stat[0] != "Z" and b"web" in args and b"--listen" in args:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_web_view_is_a_child_at_lower_priority_restarted_and_gone_with_the_daemon(
    tmp_path: Path,
) -> None:
    web_port = free_port()

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=5).read()
            return True
        except OSError:
            return False

    with FeedServer() as server:
        feed = Feed(server, "/news.xml")
        feed.add("Weather in Almaty")
        cfg = write_config(
            tmp_path, [feed.url], immediate=False,
            extra=f'[web]\nlisten = "127.0.0.1:{web_port}"\nnice = 7',
        )  # fmt: skip
        with daemon(cfg) as d:
            wait_for("the web view", answers)
            (child,) = web_children(d.proc.pid)
            ours = os.getpriority(os.PRIO_PROCESS, d.proc.pid)
            assert os.getpriority(os.PRIO_PROCESS, child) == min(19, ours + 7)
            os.kill(child, signal.SIGKILL)
            wait_for("a new web view", lambda: web_children(d.proc.pid) not in ([], [child]), 30)
            wait_for("its answers", answers)
            assert "starting it again" in d.log()
            (second,) = web_children(d.proc.pid)
            d.proc.kill()  # the daemon gone, however: the view goes too
            wait_for("the web view to stop", lambda: not alive(second))
