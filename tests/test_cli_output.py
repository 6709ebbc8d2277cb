"""What the command line says, and where: results on stdout, diagnostics on stderr, each
thing once (the installed `monitor`, run as a user would)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from httpserver import FeedServer
from test_cli import FEED, MONITOR, REPO, config, run

BROKEN = "id: broken\nentries:\n  - id: x\n    terms: [\n"


def test_poll_says_each_thing_once_on_its_channel(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.serve("/feed.xml", FEED)
        cfg = config(tmp_path, [server.url("/feed.xml"), "http://127.0.0.1:9/down.xml"])
        first = run("--config", str(cfg), "poll", "--once", cwd=tmp_path)
        again = run("--config", str(cfg), "poll", "--once", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == (
        "2 feeds: 1 fetched, 0 not modified, 1 failed; 2 new items, 2 new hits; "
        "0 articles read, 2 not"  # the feed's items are headline-only, their pages unreachable
    )
    assert "  gor: 1 new hit" in lines
    assert sum(line.startswith("failed: http://127.0.0.1:9/down.xml: ") for line in lines) == 1
    # stderr: only the note that the database was created, nothing said on stdout.
    (note,) = first.stderr.splitlines()
    assert note.endswith(f"created the database {tmp_path / 'm.db'} (set [database] url to keep "
                         "it elsewhere)")  # fmt: skip
    # Both feeds wait for their next poll now: say so instead of a bare "0 feeds".
    assert again.returncode == 0 and again.stderr == ""
    assert again.stdout.splitlines()[1].startswith("2 feeds not due (next in ")
    assert again.stdout.rstrip().endswith("; --all polls them now)")


def test_a_closed_pipe_ends_quietly_with_status_0(tmp_path: Path) -> None:
    with FeedServer() as server:
        server.serve("/feed.xml", FEED)
        subscriber = '[[subscribers]]\nemail = "analyst@example.org"\nwatchlists = ["gor"]\n'
        cfg = config(tmp_path, [server.url("/feed.xml")], subscriber)
        assert run("--config", str(cfg), "poll", "--once", cwd=tmp_path).returncode == 0
    for args in (["hits"], ["hits", "--json"], ["digest", "preview", "analyst@example.org"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader (`head`) has gone before the first line
        try:
            proc = subprocess.run([MONITOR, "--config", str(cfg), *args], stdout=write_end,
                                  stderr=subprocess.PIPE, text=True, timeout=60)  # fmt: skip
        finally:
            os.close(write_end)
        assert (proc.returncode, proc.stderr) == (0, ""), args


@pytest.mark.parametrize(
    "args",
    [["poll", "--once"], ["match"], ["watchlists", "test", "gor"], ["run"]],
    ids=["poll", "match", "watchlists-test", "run"],
)
def test_a_broken_watchlist_is_one_line_on_stderr(tmp_path: Path, args: list[str]) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "gor.yaml").write_text((REPO / "watchlists" / "gor.yaml").read_text())
    (lists / "broken.yaml").write_text(BROKEN)
    cfg = config(tmp_path, [])
    cfg.write_text(cfg.read_text().replace(str(REPO / "watchlists"), str(lists)))
    out = run("--config", str(cfg), *args, cwd=tmp_path, stdin="")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f"monitor: error: {lists / 'broken.yaml'}:5: YAML syntax error: did not find expected "
        "node content (hint: fix the file; `monitor watchlists check` lists every problem)"
    ]


def test_several_watchlist_problems_are_listed_then_counted(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BROKEN)
    (tmp_path / "empty.yaml").write_text("id: empty\nentries: 5\n")
    out = run("match", "--watchlists", str(tmp_path), cwd=tmp_path, stdin="")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f"{tmp_path / 'broken.yaml'}:5: YAML syntax error: did not find expected node content",
        f"{tmp_path / 'empty.yaml'}:2: 'entries' must be a non-empty list",
        "monitor: error: 2 watchlist problems (hint: fix the file; `monitor watchlists check` "
        "lists every problem)",
    ]


def test_match_names_the_line_and_field_that_is_not_text(tmp_path: Path) -> None:
    stdin = '{"id": 1, "title": 5}\n{"id": 2, "title": "Sergio Gor in Astana"}\n'
    out = run("match", "--watchlists", str(REPO / "watchlists"), cwd=tmp_path, stdin=stdin)
    assert out.returncode == 1
    assert [line[:9] for line in out.stdout.splitlines()] == ['{"id": 2,']
    assert out.stderr.splitlines() == [
        "stdin:1: field 'title' is a number, expected a string",
        "monitor: error: 1 input line could not be read (hint: one JSON object a line)",
    ]


def test_feeds_import_that_adds_nothing_and_refuses_something_exits_1(tmp_path: Path) -> None:
    cfg = config(tmp_path, [], "allow_private_addresses = false")
    cfg.write_text(cfg.read_text().replace("allow_private_addresses = true\n", ""))
    opml = tmp_path / "in.opml"
    opml.write_text(
        '<opml version="2.0"><head/><body><outline text="x" xmlUrl="http://127.0.0.1:8/x.xml"/>'
        "</body></opml>"
    )
    out = run("--config", str(cfg), "feeds", "import", str(opml), cwd=tmp_path)
    assert out.returncode == 1
    assert out.stdout == "0 feeds added, 0 already known, 1 refused\n"
    assert out.stderr.splitlines()[-1].startswith(f"monitor: error: no feed added from {opml}")


def test_help_lists_commands_by_job(tmp_path: Path) -> None:
    out = run("--help", cwd=tmp_path)
    headings = [line for line in out.stdout.splitlines() if line.endswith(":")]
    assert headings == ["Options:", "Daily use:", "Feeds:", "Watchlists:", "Mail:", "Operations:"]
    section = out.stdout.split("Mail:")[1].split("Operations:")[0]
    assert "digest" in section and "outbox" in section


def test_an_interval_below_min_interval_is_said_at_load_and_in_feeds_list(tmp_path: Path) -> None:
    cfg = config(tmp_path, [], '[[feeds]]\nurl = "http://127.0.0.1:9/down.xml"\ninterval = "20s"')
    polled = run("--config", str(cfg), "poll", "--once", cwd=tmp_path)
    assert polled.returncode == 0, polled.stderr
    warning = (
        "http://127.0.0.1:9/down.xml: interval 20s is below polling.min_interval: polled every 2m"
    )
    assert sum(warning in line for line in polled.stderr.splitlines()) == 1
    listed = run("--config", str(cfg), "feeds", "list", cwd=tmp_path)
    lines = listed.stdout.splitlines()
    assert " UTC  http://127.0.0.1:9/down.xml" in lines[0]  # times say their zone
    assert lines[1].startswith("      last error (") and " UTC): " in lines[1]
    assert lines[2] == "      interval 20s is below polling.min_interval: polled every 2m"


def test_the_first_command_says_where_it_created_the_database(tmp_path: Path) -> None:
    first = run("status", cwd=tmp_path)  # no config: the built-in ./monitor.db
    assert first.returncode == 0, first.stderr
    assert f"created the database {tmp_path / 'monitor.db'}" in first.stderr
    second = run("status", cwd=tmp_path)
    assert second.returncode == 0 and second.stderr == ""


@pytest.mark.parametrize("driver", ["psycopg", "pg8000"])
def test_a_missing_database_driver_says_what_to_install(tmp_path: Path, driver: str) -> None:
    env = {"MONITOR_DATABASE_URL": f"postgresql+{driver}://monitor@127.0.0.1/monitor"}
    if driver == "psycopg":  # installed here for the PostgreSQL tests: hide it
        (tmp_path / "psycopg").mkdir()
        (tmp_path / "psycopg" / "__init__.py").write_text(
            "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
        )
        env["PYTHONPATH"] = str(tmp_path)
    what = {
        "psycopg": "the PostgreSQL driver into monitor's environment: ",
        "pg8000": "pg8000, or use postgresql+psycopg:// after ",
    }[driver]
    out = run("status", cwd=tmp_path, env=env)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.splitlines() == [
        f"monitor: error: the database driver for postgresql+{driver}:// is not installed "
        f"(no module {driver!r}) (hint: install {what}pip install '.[postgres]' in monitor's "
        "source folder (or 'psycopg[binary]'))"
    ]


def test_shell_completion_as_readme_sets_it_up(tmp_path: Path) -> None:
    script = run(cwd=tmp_path, env={"_MONITOR_COMPLETE": "bash_source"})
    assert script.returncode == 0 and "complete -o nosort -F _monitor_completion monitor" in (
        script.stdout
    )
    env = {"_MONITOR_COMPLETE": "bash_complete", "COMP_WORDS": "monitor feeds im", "COMP_CWORD": "2"}
    assert run(cwd=tmp_path, env=env).stdout.split() == ["plain,import"]
