"""Starting the command line costs click and nothing heavy (a fresh interpreter each)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = {
    "aiohttp", "aiosmtplib", "alembic", "apscheduler", "asyncio", "css_inline", "feedparser",
    "jinja2", "sqlalchemy", "yaml", "trafilatura", "datasketch", "lingua", "pymorphy3",
    "monitor.config", "monitor.store", "monitor.pipeline",
}  # fmt: skip

PROBE = """
import json, sys
from monitor.cli import cli
code = cli.main(sys.argv[1:], prog_name="monitor", standalone_mode=False)
sys.stdout.flush()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["feeds", "--help"]])
def test_starting_imports_nothing_heavy(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(("monitor, version", "Usage: monitor"))
    loaded = set(json.loads(proc.stderr.splitlines()[-1]))
    assert sorted(HEAVY & loaded) == []


# The read-only commands on a SQLite file at the current schema read it through sqlite3:
# no SQLAlchemy, no Alembic, and nothing SQLAlchemy brings (asyncio, importlib.metadata).
NOT_FOR_READING = {
    "sqlalchemy", "alembic", "asyncio", "importlib.metadata", "aiohttp", "feedparser", "jinja2",
    "apscheduler", "yaml", "monitor.pipeline", "monitor.store.db", "monitor.store.feeds",
    "monitor.store.articles", "monitor.store.outbox", "monitor.store.stories",
}  # fmt: skip
READ_COMMANDS = [
    ["hits"], ["hits", "--json", "--since", "7d", "--watchlist", "gor"], ["status"],
    ["status", "--json"], ["feeds", "list"], ["feeds", "list", "--json"], ["stories"],
    ["stories", "--json", "--since", "7d", "--watchlist", "gor"], ["items"],
    ["items", "--json", "--since", "7d", "--limit", "5"], ["outbox"], ["outbox", "--all"],
]  # fmt: skip


def _database(tmp_path: Path, feeds: list[str]) -> Path:
    """A config with ``feeds`` and its SQLite database, migrated, with a hit in it."""
    from monitor.models import FetchResult, Item, Match, Outcome, ParsedFeed, Span
    from monitor.store import feeds as fs
    from monitor.store import open_store

    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(f'[database]\nurl = "{url}"\n' + "".join(f'[[feeds]]\nurl = "{u}"\n' for u in feeds))
    store = open_store(url, upgrade=True)
    fs.sync_config_feeds(store, [fs.FeedSpec(u) for u in feeds])
    feed = fs.list_feeds(store)[0]
    result = FetchResult(outcome=Outcome.OK, url=feed.url, final_url=feed.url, status=200)
    match = Match("gor", "gor", ("Gor",), (Span("title", 0, 3, "Gor"),))
    fs.save_poll(store, feed, result, ParsedFeed(items=[Item("a", "Gor in Tashkent")]),
                 next_due_at=None, hint_s=None, match=lambda _item: [match])  # fmt: skip
    store.dispose()
    return cfg


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_read_commands_on_sqlite_import_no_sqlalchemy(tmp_path: Path, args: list[str]) -> None:
    cfg = _database(tmp_path, ["https://a.example/rss", "https://b.example/rss"])
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "--config", str(cfg), *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    loaded = set(json.loads(proc.stderr.splitlines()[-1]))
    assert sorted(NOT_FOR_READING & loaded) == []


def test_feeds_list_syncs_a_changed_config_first(tmp_path: Path) -> None:
    """A config whose feeds are not in the database yet goes the long way: synced, then
    listed (the database is written, so through the store)."""
    cfg = _database(tmp_path, ["https://a.example/rss"])
    cfg.write_text(cfg.read_text() + '[[feeds]]\nurl = "https://new.example/rss"\n')
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "--config", str(cfg), "feeds", "list"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "https://new.example/rss" in proc.stdout
    assert "sqlalchemy" in set(json.loads(proc.stderr.splitlines()[-1]))


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_read_commands_print_what_the_store_reads(tmp_path: Path, args: list[str]) -> None:
    """The same output through sqlite3 as through SQLAlchemy (a URL with an option is left
    to SQLAlchemy)."""
    from click.testing import CliRunner

    from monitor.cli import cli

    cfg = _database(tmp_path, ["https://a.example/rss", "https://b.example/rss"])
    other = tmp_path / "other.toml"
    other.write_text(cfg.read_text().replace('.db"', '.db?timeout=30"'))
    fast = CliRunner().invoke(cli, ["--config", str(cfg), *args])
    full = CliRunner().invoke(cli, ["--config", str(other), *args])
    assert fast.exit_code == full.exit_code == 0, (fast.output, full.output)
    assert fast.output == full.output
