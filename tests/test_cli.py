"""The installed `monitor` command, run as a user would run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from httpserver import FeedServer

REPO = Path(__file__).resolve().parents[1]
MONITOR = shutil.which("monitor", path=str(Path(sys.executable).parent)) or "monitor"


def run(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    full_env.update(env or {})
    return subprocess.run([MONITOR, *args], cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=120, env=full_env)  # fmt: skip


def config(tmp_path: Path, feeds: list[str], extra: str = "") -> Path:
    path = tmp_path / "monitor.toml"
    lines = [
        "[database]", f'url = "sqlite:///{tmp_path / "m.db"}"',
        "[watchlists]", f'dir = "{REPO / "watchlists"}"',
        "[polling]", "allow_private_addresses = true", 'timeout = "5s"', "parse_workers = 1",
        extra,
    ]  # fmt: skip
    lines += [f'[[feeds]]\nurl = "{u}"' for u in feeds]
    path.write_text("\n".join(lines) + "\n")
    return path


FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Region news</title>'
    b"<item><title>Special Envoy Sergio Gor arrives in Tashkent</title>"
    b"<link>https://news.test/gor?utm_source=rss</link><guid>https://news.test/gor</guid>"
    b"<description>&lt;p&gt;Talks on the &lt;b&gt;Middle Corridor&lt;/b&gt;.&lt;/p&gt;</description></item>"
    b"<item><title>Al Gore on climate</title><link>https://news.test/gore</link></item>"
    b"</channel></rss>"
)


def test_poll_once_then_hits_json_and_feeds_list(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.serve("/feed.xml", FEED)
        cfg = config(tmp_path, [server.url("/feed.xml"), "http://127.0.0.1:9/down.xml"])
        polled = run("--config", str(cfg), "poll", "--once", cwd=tmp_path)
    assert polled.returncode == 0, polled.stderr
    assert "2 feeds: 1 fetched, 0 not modified, 1 failed; 2 new items" in polled.stdout
    assert "failed: http://127.0.0.1:9/down.xml:" in polled.stdout
    out = run("--config", str(cfg), "hits", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    by_watchlist = {r["watchlist"]: r for r in records}
    assert {"gor", "middle-corridor"} <= set(by_watchlist)
    gor = by_watchlist["gor"]
    assert gor["title"] == "Special Envoy Sergio Gor arrives in Tashkent"
    assert gor["link"] == "https://news.test/gor" and gor["guid"] == "https://news.test/gor"
    assert gor["feed"].endswith("/feed.xml") and gor["terms"] and gor["first_seen"].endswith("Z")
    assert all("Gore" not in r["title"] for r in records)
    only = run(
        "--config", str(cfg), "hits", "--json", "--watchlist", "gor", "--since", "1d", cwd=tmp_path
    )
    assert {json.loads(line)["watchlist"] for line in only.stdout.splitlines()} == {"gor"}
    listed = run("--config", str(cfg), "feeds", "list", cwd=tmp_path)
    assert "ok" in listed.stdout and "failing(1)" in listed.stdout and "last error" in listed.stdout


def test_match_is_a_dry_run_over_json_lines(tmp_path: Path) -> None:
    items = [
        {"id": 1, "title": "Deputy Secretary Landau visits Astana"},
        {"id": "x", "title": "Lev Landau and the theory of superfluidity"},
        {"id": 3, "summary": "Leaders met in the C5+1 format in Washington."},
    ]
    stdin = "\n".join(json.dumps(i) for i in items) + "\n"
    out = run("match", "--watchlists", str(REPO / "watchlists"), cwd=tmp_path, stdin=stdin)
    assert out.returncode == 0, out.stderr
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in results] == [1, "x", 3]
    assert "landau" in results[0]["watchlists"] and results[1]["watchlists"] == []
    assert "c5plus1" in results[2]["watchlists"]
    assert results[0]["matches"][0]["spans"][0]["field"] == "title"
    bad = run("match", "--watchlists", str(REPO / "watchlists"), cwd=tmp_path, stdin="not json\n")
    assert bad.returncode == 1 and "stdin:1:" in bad.stderr


def test_watchlists_check_names_file_and_line(tmp_path: Path) -> None:
    good = run("watchlists", "check", str(REPO / "watchlists"), cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    broken = tmp_path / "lists"
    broken.mkdir()
    (broken / "bad.yaml").write_text(
        "id: bad\nname: Bad\nentries:\n  - id: x\n    terms: [Gor]\n    regex: '('\n"
    )
    out = run("watchlists", "check", str(broken), cwd=tmp_path)
    assert out.returncode == 1
    assert str(broken / "bad.yaml") + ":6:" in out.stdout or "bad.yaml:6:" in out.stdout


def test_errors_are_one_line_with_exit_1_and_usage_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.toml"
    cfg.write_text("[polling]\ninterval = 'often'\n")
    out = run("--config", str(cfg), "poll", "--once", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "polling.interval: expected a duration" in out.stderr
    verbose = run("-v", "--config", str(cfg), "poll", "--once", cwd=tmp_path)
    assert "Traceback" in verbose.stderr and verbose.returncode == 1
    usage = run("--config", str(cfg), "poll", cwd=tmp_path)
    assert usage.returncode == 2
    env_cfg = run(
        "poll", "--once", cwd=tmp_path, env={"MONITOR_CONFIG": str(tmp_path / "missing.toml")}
    )
    assert env_cfg.returncode == 1 and "config file not found" in env_cfg.stderr


def test_feeds_import_export_and_db_upgrade(tmp_path: Path) -> None:
    cfg = config(tmp_path, [])
    up = run("--config", str(cfg), "db", "upgrade", cwd=tmp_path)
    assert up.returncode == 0 and "upgraded" in up.stdout
    assert "up to date" in run("--config", str(cfg), "db", "upgrade", cwd=tmp_path).stdout
    opml = tmp_path / "in.opml"
    opml.write_text(
        '<opml version="2.0"><head/><body><outline text="Local feed" xmlUrl="http://127.0.0.1:8/x.xml"/>'
        '<outline text="ftp" xmlUrl="ftp://127.0.0.1/x"/></body></opml>'
    )
    imported = run("--config", str(cfg), "feeds", "import", str(opml), cwd=tmp_path)
    assert (
        imported.returncode == 0 and "1 feed added, 0 already known, 1 refused" in imported.stdout
    )
    exported = run("--config", str(cfg), "feeds", "export", cwd=tmp_path)
    assert 'xmlUrl="http://127.0.0.1:8/x.xml"' in exported.stdout and exported.stdout.startswith(
        "<?xml"
    )


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["poll", "--help"]])
def test_help_and_version(tmp_path: Path, args: list[str]) -> None:
    out = run(*args, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout


def test_python_dash_m_works(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "monitor" in out.stdout


def test_newcomer_flow_poll_then_digest_lands_as_eml(tmp_path: Path) -> None:
    """No SMTP configured: the first poll's hits arrive as a digest file in [delivery] dir."""
    with FeedServer() as server:
        server.serve("/feed.xml", FEED)
        extra = (
            f'[delivery]\ndir = "{tmp_path / "outbox"}"\n'
            '[[subscribers]]\nemail = "analyst@example.org"\nwatchlists = ["gor"]\n'
            'schedule = "daily 08:00"\ntimezone = "Asia/Almaty"\n'
        )
        cfg = config(tmp_path, [server.url("/feed.xml")], extra)
        assert run("--config", str(cfg), "poll", "--once", cwd=tmp_path).returncode == 0
    preview = run(
        "--config",
        str(cfg),
        "digest",
        "preview",
        "analyst@example.org",
        "--html",
        str(tmp_path / "p.html"),
        cwd=tmp_path,
    )
    assert preview.returncode == 0, preview.stderr
    assert "Sergio Gor" in (tmp_path / "p.html").read_text(encoding="utf-8")
    sent = run("--config", str(cfg), "digest", "--send-now", cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    mails = list((tmp_path / "outbox").glob("*.eml"))
    assert len(mails) == 1
    text = mails[0].read_text(encoding="utf-8", errors="replace")
    assert "To: analyst@example.org" in text and "Sergio Gor" in text and "Al Gore" not in text
    # Nothing new: no second mail.
    assert run("--config", str(cfg), "digest", "--send-now", cwd=tmp_path).returncode == 0
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1


def test_digest_send_now_posts_to_webhooks_and_outbox_shows_them(tmp_path: Path) -> None:
    from aiohttp import web

    bodies: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        if len(bodies) == 1:
            return web.Response(status=503, text="maintenance")
        return web.Response(text="ok")

    with FeedServer() as server:
        server.serve("/feed.xml", FEED)
        server.route("/hook", receive)
        hook = (
            "[delivery]\nwebhook_allow_private_addresses = true\n"
            f'dir = "{tmp_path / "mail"}"\n'
            f'[[webhooks]]\nname = "desk"\nurl = "{server.url("/hook")}"\nwatchlists = ["gor"]\n'
        )
        cfg = config(tmp_path, [server.url("/feed.xml")], hook)
        assert run("--config", str(cfg), "poll", "--once", cwd=tmp_path).returncode == 0
        first = run("--config", str(cfg), "digest", "--send-now", "--webhook", "desk", cwd=tmp_path)
        assert first.returncode == 1
        assert "1 webhook delivery queued, 0 sent, 1 still queued" in first.stdout
        assert "monitor: error: webhook desk not delivered: HTTP 503" in first.stderr
        assert "[smtp]" not in first.stderr and "check the [[webhooks]] url" in first.stderr
        box = run("--config", str(cfg), "outbox", cwd=tmp_path)
        assert "queued webhook webhook:desk  1 hit, 1 attempt" in box.stdout
        assert "why: HTTP 503 Service Unavailable: maintenance" in box.stdout
        second = run("--config", str(cfg), "digest", "--send-now", cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert "0 webhook deliveries queued, 1 sent" in second.stdout
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    body = json.loads(bodies[1])
    (story,) = body["stories"]
    assert story["title"] == "Special Envoy Sergio Gor arrives in Tashkent"
    assert story["watchlists"] == ["gor"] and "Sergio Gor" in body["text"]
    assert isinstance(story["id"], int) and story["items"][0]["feed"] == server.url("/feed.xml")
    rows = run("--config", str(cfg), "outbox", "--all", "--json", cwd=tmp_path).stdout
    (row,) = [json.loads(line) for line in rows.splitlines()]
    assert (row["kind"], row["status"], row["subscriber"]) == ("webhook", "sent", "webhook:desk")
