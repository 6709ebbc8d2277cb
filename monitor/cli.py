"""The ``monitor`` command line.

Every :class:`~monitor.errors.MonitorError` becomes one line on stderr and exit status 1
(``-v`` adds the traceback); usage errors exit 2. The commands only parse arguments, call
``pipeline`` (or a stage's read-only helper) and print.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar

import click

from monitor import __version__
from monitor.errors import MonitorError, WatchlistError
from monitor.wording import iso, plural

if TYPE_CHECKING:
    from monitor.config import Settings
    from monitor.store import Store
    from monitor.store.sqlite_read import SQLiteReader

# Starting a command imports click and this module only: every command imports what it
# needs (the config loader, the store, the pipeline) in its body, so `monitor --version`
# and `monitor --help` answer at once (tests/test_cli_start.py keeps it so).

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Context:
    config: str | None
    verbose: bool
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from monitor.config import load_settings

            self._settings = load_settings(self.config)
        return self._settings

    def store(self) -> Store:
        """The database, migrated to the current schema."""
        from monitor.store import open_store

        return open_store(self.settings.database_url, upgrade=True)

    def reader(self) -> SQLiteReader | None:
        """The database read without SQLAlchemy, for the read-only commands: a SQLite file
        at the current schema. None otherwise: they read through :meth:`store`."""
        from monitor.store.sqlite_read import open_reader

        reader = open_reader(self.settings.database_url)
        if reader is not None:
            click.get_current_context().call_on_close(reader.close)
        return reader


pass_ctx = click.make_pass_decorator(Context)


def setup_logging(verbose: bool, level: str = "info") -> None:
    """Log lines to stderr; under systemd (journald) without our own timestamps."""
    under_journal = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    fmt = (
        "<%(syslog)s>%(name)s: %(message)s"
        if under_journal
        else ("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level.upper()))
    if not verbose:
        for noisy in ("aiosmtplib", "apscheduler", "alembic", "asyncio"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


class _Formatter(logging.Formatter):
    """Adds ``%(syslog)s``: the syslog priority of the record's level (sd-daemon(3))."""

    PRIORITIES: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
    }

    def format(self, record: logging.LogRecord) -> str:
        record.syslog = self.PRIORITIES.get(record.levelno, 2 if record.levelno > 40 else 6)
        return super().format(record)


#: The headings of `monitor --help`, in order, and the commands under each. A new command
#: joins its heading with one line here; one left out is listed under "Other".
COMMAND_SECTIONS: dict[str, str] = {
    "poll": "Daily use",
    "hits": "Daily use",
    "stories": "Daily use",
    "items": "Daily use",
    "status": "Daily use",
    "feeds": "Feeds",
    "watchlists": "Watchlists",
    "match": "Watchlists",
    "digest": "Mail",
    "outbox": "Mail",
    "web": "Daily use",
    "run": "Operations",
    "db": "Operations",
}
SECTION_ORDER = ("Daily use", "Feeds", "Watchlists", "Mail", "Operations", "Other")


class MonitorGroup(click.Group):
    """The top-level group: help grouped by job, and a closed stdout ends quietly."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed = [
            (name, cmd)
            for name in self.list_commands(ctx)
            if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden
        ]
        if not listed:
            return
        order = list(COMMAND_SECTIONS)
        listed.sort(key=lambda nc: (order.index(nc[0]) if nc[0] in order else len(order), nc[0]))
        limit = formatter.width - 6 - max(len(name) for name, _ in listed)
        sections: dict[str, list[tuple[str, str]]] = {}
        for name, cmd in listed:
            section = COMMAND_SECTIONS.get(name, "Other")
            sections.setdefault(section, []).append((name, cmd.get_short_help_str(limit)))
        for section in sorted(sections, key=_section_rank):
            with formatter.section(section):
                formatter.write_dl(sections[section])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _quiet_exit_on_closed_pipe()


def _section_rank(section: str) -> int:
    return SECTION_ORDER.index(section) if section in SECTION_ORDER else len(SECTION_ORDER) - 1


@click.group(cls=MonitorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    envvar="MONITOR_CONFIG",
    metavar="FILE",
    help="config file (default: $MONITOR_CONFIG, else ./monitor.toml, else built-in defaults)",
)
@click.option("-v", "--verbose", is_flag=True, help="debug logging, and tracebacks on errors")
@click.version_option(__version__, prog_name="monitor")
@click.pass_context
def cli(click_ctx: click.Context, config: str | None, verbose: bool) -> None:
    """monitor: watch news feeds, match watchlists, mail digests."""
    click_ctx.obj = Context(config=config, verbose=verbose)
    setup_logging(verbose)


def main() -> None:
    verbose = any(a in ("-v", "--verbose") for a in sys.argv[1:])
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except WatchlistError as exc:
        # Each problem once: a single one is the error line itself; several are listed
        # (file:line: message), then counted.
        problems = exc.problems or [exc.message]
        for problem in problems if len(problems) > 1 else ():
            click.echo(problem, err=True)
        what = problems[0] if len(problems) == 1 else plural(len(problems), "watchlist problem")
        click.echo(f"monitor: error: {what} (hint: {exc.hint})", err=True)
        sys.exit(1)
    except MonitorError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        click.echo(f"monitor: error: {exc.one_line()}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def _quiet_exit_on_closed_pipe() -> NoReturn:
    """The reader of stdout went away (``monitor hits | head``): stop quietly, status 0,
    as ``git log | head`` does. Output still buffered would fail again at exit, so stdout
    is pointed at /dev/null first."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


def _since(value: str | None) -> datetime | None:
    """``--since``: ``7d`` (that long ago) or an ISO date/time (UTC unless it says otherwise)."""
    if not value:
        return None
    from monitor.config import SINCE_EXPECTED, parse_since

    try:
        return parse_since(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected {SINCE_EXPECTED}") from None


def _now() -> datetime:
    return datetime.now(UTC)


def _short_time(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if when else "-"


def _utc_time(when: datetime | None) -> str:
    """``2026-11-01 08:00 UTC`` (``-`` for never)."""
    return f"{_short_time(when)} UTC" if when else "-"


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal (stderr), nothing otherwise."""
    if not enabled:
        yield None
        return
    bar_cm: Any = None
    last = 0

    def update(done: int, total: int) -> None:
        nonlocal bar_cm, last
        if bar_cm is None:
            bar_cm = click.progressbar(length=total, label=label, file=sys.stderr)
            bar_cm.__enter__()
        bar_cm.update(done - last)
        last = done

    try:
        yield update
    finally:
        if bar_cm is not None:
            bar_cm.__exit__(None, None, None)


# --------------------------------------------------------------------------- poll


@cli.command()
@click.option("--once", is_flag=True, help="poll once and exit (the daemon is `monitor run`)")
@click.option("--all", "everything", is_flag=True, help="poll every feed, due or not")
@pass_ctx
def poll(ctx: Context, once: bool, everything: bool) -> None:
    """Poll due feeds once, match new items and store the hits.

    Exits 0 even when some feeds failed: they are listed, and recorded on the feed
    (`monitor feeds list`).
    """
    import asyncio
    import gc
    from functools import partial

    from monitor import pipeline
    from monitor.match import compile_watchlists
    from monitor.pipeline.window_file import window_path
    from monitor.watchlists import load_watchlists

    if not once:
        raise click.UsageError("use `monitor poll --once`, or `monitor run` to poll on schedule")
    settings = ctx.settings
    # Loaded (and so checked) now; compiled when the first feed is to be parsed: a poll in
    # which every feed answers 304 needs no matcher.
    watchlists = load_watchlists(settings.watchlists_dir)
    store = ctx.store()
    pipeline.sync_config(settings, store)
    poll_due = pipeline.poll_due
    # What start-up made (modules, settings, watchlists) lives until the command ends:
    # frozen, the full collections of a long poll stop walking it each time (~0.1 s of
    # CPU in a first poll of 300 feeds). Unfrozen after, for a caller in this process.
    gc.freeze()
    try:
        with _progress(sys.stderr.isatty() and not ctx.verbose, "polling") as progress:
            summary = asyncio.run(
                poll_due(
                    settings,
                    store,
                    partial(compile_watchlists, watchlists),
                    everything=everything,
                    progress=progress,
                    log_results=False,  # printed below, once
                    # The story window is kept beside a SQLite file for the next run.
                    window_file=window_path(settings.database_url),
                )
            )
    finally:
        gc.unfreeze()
    click.echo(summary.line())
    if summary.held_elsewhere:
        click.echo(
            f"skipped {plural(summary.held_elsewhere, 'due feed')}: another running instance is "
            "polling them (`monitor status`)"
        )
    if summary.not_due:
        ahead = ""
        if summary.next_due_at is not None:
            ahead = f"next in {_age((summary.next_due_at - datetime.now(UTC)).total_seconds())}; "
        click.echo(f"{plural(summary.not_due, 'feed')} not due ({ahead}--all polls them now)")
    for watchlist, n in sorted(summary.hits_by_watchlist.items()):
        click.echo(f"  {watchlist}: {plural(n, 'new hit')}")
    for url, reason in summary.failures:
        click.echo(f"failed: {url}: {reason}")
    for url, warning in summary.warnings:
        click.echo(f"warning: {url}: {warning}")


# --------------------------------------------------------------------------- hits


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one hit a line")
@click.option("--since", help="only hits stored since: a duration (7d, 12h) or an ISO date")
@click.option("--watchlist", "watchlist_ids", multiple=True, metavar="ID", help="only this one")
@click.option("--limit", type=click.IntRange(min=1), help="at most this many")
@pass_ctx
def hits(
    ctx: Context,
    as_json: bool,
    since: str | None,
    watchlist_ids: tuple[str, ...],
    limit: int | None,
) -> None:
    """List stored hits, oldest first."""
    from monitor.records import hit_record

    start = _since(since)
    reader = ctx.reader()
    if reader is not None:
        rows = reader.list_hits(since=start, watchlists=watchlist_ids, limit=limit)
    else:
        from monitor.store import feeds as feed_store

        rows = feed_store.list_hits(
            ctx.store(), since=start, watchlists=list(watchlist_ids), limit=limit
        )
    for hit in rows:
        if as_json:
            record = hit_record(hit)
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            terms = ", ".join(hit.terms)
            click.echo(
                f"{_short_time(hit.first_seen_at)}  {hit.watchlist:<18} {hit.title}  "
                f"[{terms}]  {hit.link or ''}"
            )
    if not as_json and not rows:
        click.echo("no hits", err=True)


# --------------------------------------------------------------------------- stories


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one story a line")
@click.option("--since", help="only stories seen since: a duration (7d, 12h) or an ISO date")
@click.option("--watchlist", metavar="ID", help="only stories with a hit of this watchlist")
@click.option("--limit", type=click.IntRange(min=1), help="at most this many")
@pass_ctx
def stories(
    ctx: Context, as_json: bool, since: str | None, watchlist: str | None, limit: int | None
) -> None:
    """List stories (one event across outlets), the most recently seen first."""
    reader = ctx.reader()
    if reader is not None:
        rows = reader.list_stories(since=_since(since), watchlist=watchlist, limit=limit)
    else:
        from monitor.store import stories as story_store

        rows = story_store.list_stories(
            ctx.store(), since=_since(since), watchlist=watchlist, limit=limit
        )
    for story in rows:
        if as_json:
            click.echo(json.dumps(story.to_dict(), ensure_ascii=False))
            continue
        outlets = len({i.feed for i in story.items})
        click.echo(
            f"{_short_time(story.first_seen)}  #{story.id}  {story.title}  "
            f"({plural(len(story.items), 'item')}, {plural(outlets, 'feed')})"
        )
        for item in story.items:
            click.echo(f"    {item.title}  {item.link or ''}")
    if not as_json and not rows:
        click.echo("no stories", err=True)


# --------------------------------------------------------------------------- items


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one item a line")
@click.option("--since", help="only items first seen since: a duration (7d, 12h) or an ISO date")
@click.option("--feed", "feed_url", metavar="URL", help="only this feed's items")
@click.option("--limit", type=click.IntRange(min=1), help="only the newest N")
@pass_ctx
def items(
    ctx: Context, as_json: bool, since: str | None, feed_url: str | None, limit: int | None
) -> None:
    """List stored items, oldest first, with the text matching saw and where it came
    from (the feed, or the article page behind it)."""
    from monitor.records import item_record

    reader = ctx.reader()
    if reader is not None:
        rows = reader.list_items(since=_since(since), feed_url=feed_url, limit=limit)
    else:
        from monitor.store import articles as article_store

        rows = article_store.list_items(
            ctx.store(), since=_since(since), feed_url=feed_url, limit=limit
        )
    for row in rows:
        if as_json:
            click.echo(json.dumps(item_record(row), ensure_ascii=False))
            continue
        line = f"{_short_time(row.first_seen)}  {row.text_source:<7} {row.title}"
        click.echo(f"{line}  {row.link or ''}")
        if row.article_error:
            click.echo(f"      article not used: {row.article_error}")
    if not as_json and not rows:
        click.echo("no items", err=True)


# --------------------------------------------------------------------------- match


@cli.command("match")
@click.option(
    "--watchlists",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="watchlist folder (default: [watchlists] dir)",
)
@pass_ctx
def match_command(ctx: Context, directory: Path | None) -> None:
    """Match JSON Lines items from stdin; print JSON Lines results (a dry run).

    Each input line is an object with `id` and any of `title`, `summary`, `content`
    (plain text), `link` and `lang` (detected when absent). Each output line is
    {"id": ..., "lang": ..., "watchlists": [...], "matches": [...]}.
    """
    from monitor.lang import detect as detect_language
    from monitor.match import compile_watchlists
    from monitor.watchlists import load_watchlists

    matcher = compile_watchlists(load_watchlists(directory or ctx.settings.watchlists_dir))
    bad = 0
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            fields = _text_fields(record)
        except ValueError as exc:
            click.echo(f"stdin:{number}: {exc}", err=True)
            bad += 1
            continue
        lang = record.get("lang")
        if not isinstance(lang, str) or not lang:
            lang = detect_language(fields["title"], fields["summary"], fields["content"])
        matches = matcher.match_fields(fields, lang=lang)
        out = {
            "id": record.get("id"),
            "lang": lang,
            "watchlists": sorted({m.watchlist for m in matches}),
            "matches": [m.to_dict() for m in matches],
        }
        click.echo(json.dumps(out, ensure_ascii=False))
    if bad:
        raise MonitorError(
            f"{plural(bad, 'input line')} could not be read", hint="one JSON object a line"
        )


_JSON_TYPES = {bool: "true/false", int: "a number", float: "a number", list: "a list",
               dict: "an object"}  # fmt: skip


def _text_fields(record: dict[str, Any]) -> dict[str, str]:
    """``title``, ``summary`` and ``content`` of one input line: strings, or null/missing.

    Anything else is a ValueError naming the field: matching ``5`` as text would hide a
    mistake in the input."""
    for name in ("title", "summary", "content", "link"):
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"field {name!r} is {_JSON_TYPES.get(type(value), 'not text')}, "
                             "expected a string")  # fmt: skip
    return {name: record.get(name) or "" for name in ("title", "summary", "content")}


# --------------------------------------------------------------------------- watchlists


@cli.group()
def watchlists() -> None:
    """Check and back-test watchlists."""


@watchlists.command("check")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@pass_ctx
def watchlists_check(ctx: Context, directory: Path | None) -> None:
    """Validate every watchlist file; print each problem as file:line: message."""
    from monitor.watchlists import check_watchlists, load_watchlists

    directory = directory or ctx.settings.watchlists_dir
    problems = check_watchlists(directory)
    if problems:
        for problem in problems:
            click.echo(problem)
        sys.exit(1)
    loaded = load_watchlists(directory)
    entries = sum(len(w.entries) for w in loaded)
    click.echo(
        f"{directory}: {plural(len(loaded), 'watchlist')}, {plural(entries, 'entry', 'entries')}, "
        "no problems"
    )


@watchlists.command("test")
@click.argument("watchlist_id", metavar="ID")
@click.option("--since", default="7d", show_default=True, help="items first seen since")
@click.option("--watchlists", "directory", type=click.Path(path_type=Path), help="folder")
@pass_ctx
def watchlists_test(ctx: Context, watchlist_id: str, since: str, directory: Path | None) -> None:
    """Back-test a watchlist (as it is on disk now) against stored items, storing nothing.

    Lines start with `+` for an item the edit would add, `-` for a stored hit it would no
    longer match, and a space for an unchanged one.
    """
    from monitor.match import compile_watchlists
    from monitor.store import feeds as feed_store
    from monitor.watchlists import load_watchlists

    chosen = [w for w in load_watchlists(directory or ctx.settings.watchlists_dir)
              if w.id == watchlist_id]  # fmt: skip
    if not chosen:
        raise MonitorError(
            f"no watchlist with id {watchlist_id!r}", hint="see `monitor watchlists check`"
        )
    matcher = compile_watchlists(chosen)
    store = ctx.store()
    start = _since(since)
    stored = {
        h.identity for h in feed_store.list_hits(store, since=start, watchlists=[watchlist_id])
    }
    seen = 0
    counts = {"+": 0, "-": 0, " ": 0}
    matched: set[str] = set()
    for item in feed_store.iter_items(store, since=start):
        seen += 1
        found = matcher.match(item)
        if not found:
            continue
        matched.add(item.identity)
        mark = " " if item.identity in stored else "+"
        counts[mark] += 1
        terms = sorted({t for m in found for t in m.terms})
        click.echo(f"{mark} {item.title}  [{', '.join(terms)}]  {item.link or ''}")
    for hit in feed_store.list_hits(store, since=start, watchlists=[watchlist_id]):
        if hit.identity not in matched:
            counts["-"] += 1
            click.echo(f"- {hit.title}  {hit.link or ''}")
    click.echo(
        f"{watchlist_id}: {counts['+'] + counts[' ']} of {seen} stored items match "
        f"({counts['+']} new, {counts['-']} no longer, {counts[' ']} unchanged)"
    )


# --------------------------------------------------------------------------- feeds


@cli.group()
def feeds() -> None:
    """List, import and export feeds."""


@feeds.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one feed a line")
@pass_ctx
def feeds_list(ctx: Context, as_json: bool) -> None:
    """Each feed with its health: state, failures, last poll (UTC), last error, and an
    interval raised to `polling.min_interval`."""
    from monitor.config import format_duration
    from monitor.store.rows import FeedSpec, feed_sync_plan

    settings = ctx.settings
    reader = ctx.reader()
    if reader is not None and not feed_sync_plan(
        reader.feed_sync_rows(), [FeedSpec.of_config(f) for f in settings.feeds], _now()
    ):
        rows = reader.list_feeds()  # the database has the config's feeds already
    else:
        from monitor import pipeline
        from monitor.store import feeds as feed_store

        store = ctx.store()
        pipeline.sync_config(settings, store)
        rows = feed_store.list_feeds(store)
    floor = float(settings["polling.min_interval"])
    for f in rows:
        state = _feed_state(f)
        asked = float(settings["polling.interval"] if f.interval_s is None else f.interval_s)
        raised = floor if asked < floor else None
        if as_json:
            click.echo(json.dumps({
                "id": f.id, "url": f.url, "title": f.title, "source": f.source, "state": state,
                "consecutive_failures": f.consecutive_failures, "last_status": f.last_status,
                "last_polled": iso(f.last_polled_at), "next_due": iso(f.next_due_at),
                "last_error": f.last_error, "last_error_at": iso(f.last_error_at),
                "warnings": f.warnings, "retired_reason": f.retired_reason,
                "interval_s": asked, "interval_raised_to_s": raised,
                "fulltext": f.fulltext or ctx.settings["fulltext.mode"],
                "article_failures": f.article_failures,
                "article_last_error": f.article_last_error,
                "article_last_error_at": iso(f.article_last_error_at),
            }, ensure_ascii=False))  # fmt: skip
            continue
        line = f"{f.id:>4}  {state:<12} {_utc_time(f.last_polled_at):<20}  {f.url}"
        if f.title:
            line += f"  ({f.title})"
        click.echo(line)
        if f.retired_reason:
            click.echo(f"      retired: {f.retired_reason}")
        elif f.last_error and f.consecutive_failures:
            click.echo(f"      last error ({_utc_time(f.last_error_at)}): {f.last_error}")
        if f.warnings:
            click.echo(f"      warning: {f.warnings.splitlines()[0]}")
        if raised is not None and f.retired_at is None:
            click.echo(
                f"      interval {format_duration(asked)} is below polling.min_interval: "
                f"polled every {format_duration(raised)}"
            )
        if f.article_failures:
            click.echo(
                f"      articles not read: {f.article_failures}, last "
                f"({_short_time(f.article_last_error_at)}): {f.article_last_error}"
            )
    if not rows and not as_json:
        click.echo("no feeds: add [[feeds]] to the config or `monitor feeds import FILE.opml`")


def _feed_state(f: Any) -> str:
    if f.retired_at is not None:
        return "retired"
    if f.last_polled_at is None:
        return "new"
    if f.consecutive_failures:
        return f"failing({f.consecutive_failures})"
    return "ok"


@feeds.command("import")
@click.argument("opml_file", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def feeds_import(ctx: Context, opml_file: Path) -> None:
    """Add the feeds of an OPML file (URLs pass the same address checks as polling).

    Exits 1 when nothing could be added and some URLs were refused.
    """
    from monitor import pipeline

    store = ctx.store()
    summary = pipeline.import_opml(ctx.settings, store, opml_file)
    for _url, reason in summary.refused:
        click.echo(f"refused: {reason}", err=True)
    click.echo(
        f"{plural(summary.added, 'feed')} added, {summary.known} already known, "
        f"{len(summary.refused)} refused"
    )
    if summary.refused and not summary.added:
        raise MonitorError(
            f"no feed added from {opml_file}: every new URL was refused",
            hint="see the reasons above; loopback and private addresses need "
            "[polling] allow_private_addresses = true",
        )


@feeds.command("export")
@pass_ctx
def feeds_export(ctx: Context) -> None:
    """Print every active feed as OPML 2.0."""
    from monitor import pipeline
    from monitor.opml import write_opml

    store = ctx.store()
    pipeline.sync_config(ctx.settings, store)
    click.echo(write_opml(pipeline.export_feeds(store)), nl=False)


# --------------------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Apply pending schema migrations (the daemon does this at start too)."""
    from monitor.store import open_store

    store = open_store(ctx.settings.database_url)
    before = store.current_revision()
    store.upgrade()
    after = store.current_revision()
    if before == after:
        click.echo(f"database is up to date (revision {after})")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to {after}")


# --- daemon commands ---


@cli.command()
@pass_ctx
def run(ctx: Context) -> None:
    """The daemon: poll feeds and send digests on schedule, until SIGTERM.

    Applies migrations at start and tells systemd when it is ready (Type=notify). SIGHUP
    reloads the config and watchlists (an invalid file keeps the running version); edits
    to either are also picked up on their own. One `monitor run` per SQLite file.
    """
    from monitor.scheduler import run_daemon

    settings = ctx.settings
    setup_logging(ctx.verbose, settings["log.level"])
    sys.exit(run_daemon(ctx.config, settings))


@cli.command("web")
@click.option("--listen", metavar="HOST:PORT", help="default: [web] listen, else 127.0.0.1:8470")
@pass_ctx
def web_command(ctx: Context, listen: str | None) -> None:
    """The read-only web view, Atom feeds and JSON API, until Ctrl-C or SIGTERM.

    `monitor run` serves the same when [web] listen is set. Any address but loopback
    needs [web] token_file or trust_proxy_auth.
    """
    import asyncio
    import time

    from monitor.config import parse_listen
    from monitor.pipeline import watchlist_registry
    from monitor.store import open_store
    from monitor.web import DEFAULT_LISTEN, WebServer, lower_priority, serve_forever

    settings = ctx.settings
    setup_logging(ctx.verbose, settings["log.level"])
    try:
        address = parse_listen(listen) if listen else None
    except ValueError as exc:
        raise click.BadParameter(f"{listen!r}: expected {exc}", param_hint="--listen") from None
    address = address or settings["web.listen"] or DEFAULT_LISTEN
    ctx.store().dispose()  # migrated; the view itself only reads
    store = open_store(settings.database_url, read_only=True)
    registry = watchlist_registry(settings.watchlists_dir)
    checked = [time.monotonic()]

    def watchlists() -> tuple[Any, Any]:
        if time.monotonic() - checked[0] > 5:  # edits show without a restart
            checked[0] = time.monotonic()
            registry.refresh()
        return registry.watchlists, registry.matcher

    server = WebServer(address, store, watchlists, lambda: settings)
    lower_priority(settings["web.nice"])
    host = address.rpartition(":")[0]

    def announce(port: int) -> None:
        click.echo(f"monitor web: http://{host}:{port}/ (Ctrl-C to stop)", err=True)

    try:
        asyncio.run(serve_forever(server, announce))
    finally:
        store.dispose()


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Health from the database: the instances running and what each holds, last poll
    cycle, failing feeds, hits today, the outbox (queued, failed, sent; mail and webhooks
    apart)."""
    from monitor.store import lock as store_lock
    from monitor.store.status_rows import Holdings

    reader = ctx.reader()
    if reader is not None:
        report = reader.status_report()
    else:
        from monitor.store.status import status_report

        report = status_report(ctx.store())
    now = report.now
    holder = store_lock.holder(ctx.settings.database_url)
    last = report.last_run
    registered = {i.id for i in report.instances}
    orphans = {h: c for h, c in report.holdings.items() if h not in registered}
    nothing = Holdings()
    if as_json:
        click.echo(json.dumps({
            "daemon_pid": holder,
            "instances": [
                {"id": i.id, "host": i.hostname, "pid": i.pid, "started": iso(i.started_at),
                 "heartbeat": iso(i.heartbeat_at), "alive": report.alive(i),
                 "feeds_claimed": report.holdings.get(i.id, nothing).feeds,
                 "outbox_claimed": report.holdings.get(i.id, nothing).outbox}
                for i in report.instances
            ],
            "claims_of_stopped_instances": {
                h: {"feeds_claimed": c.feeds, "outbox_claimed": c.outbox}
                for h, c in sorted(orphans.items())
            },
            "last_poll": None if last is None else {
                "started": iso(last["started_at"]), "finished": iso(last["finished_at"]),
                **{k: last[k] for k in ("feeds", "fetched", "not_modified", "failed",
                                       "new_items", "new_hits")},
            },
            "active_feeds": report.active_feeds,
            "failing_feeds": [
                {"url": f.url, "title": f.title, "consecutive_failures": f.consecutive_failures,
                 "last_error": f.last_error, "retired_reason": f.retired_reason}
                for f in report.failing
            ],
            "article_failures": [
                {"url": a.url, "count": a.count, "last_error": a.last_error,
                 "last_error_at": iso(a.last_error_at)}
                for a in report.article_failures
            ],
            "hits_today_utc": report.hits_today,
            "hits_today_by_watchlist": report.hits_today_by_watchlist,
            "outbox_queued": report.outbox.queued,
            "outbox_oldest_age_s": None if report.outbox.oldest_queued_at is None
            else round((now - report.outbox.oldest_queued_at).total_seconds()),
            "outbox_failed": report.outbox.failed,
            "outbox_by_kind": {
                kind: {"queued": c.queued, "oldest_age_s": _age_s(now, c.oldest_queued_at),
                       "failed": c.failed, "sent": c.sent}
                for kind, c in report.outbox.by_kind.items()
            },
            "stories_today_utc": report.stories.today if report.stories else None,
            "stories_per_day_7d": report.stories.per_day_7d if report.stories else None,
            "items_per_story_7d": report.stories.items_per_story_7d if report.stories else None,
        }, ensure_ascii=False))  # fmt: skip
        return
    if holder:
        click.echo(f"daemon: running (pid {holder})")
    elif report.instances:
        for inst in report.instances:
            held = report.holdings.get(inst.id, nothing)
            click.echo(
                f"daemon: {inst.id}, up {_age((now - inst.started_at).total_seconds())}, "
                f"heartbeat {_age((now - inst.heartbeat_at).total_seconds())} ago"
                + ("" if report.alive(inst) else " (not responding)")
                + f"; holds {plural(held.feeds, 'feed')}, "
                + plural(held.outbox, "delivery", "deliveries")
            )
    else:
        click.echo("daemon: not running")
    for h, c in sorted(orphans.items()):
        click.echo(
            f"claims left by {h} (stopped): {plural(c.feeds, 'feed')}, "
            f"{plural(c.outbox, 'delivery', 'deliveries')}; "
            "taken over when their lease runs out"
        )
    if last is None:
        click.echo("last poll cycle: none yet")
    else:
        click.echo(
            f"last poll cycle: {_short_time(last['finished_at'])} UTC "
            f"({_age((now - last['finished_at']).total_seconds())} ago): "
            f"{plural(last['feeds'], 'feed')}, {last['fetched']} fetched, "
            f"{last['not_modified']} not modified, {last['failed']} failed; "
            f"{plural(last['new_items'], 'new item')}, {plural(last['new_hits'], 'new hit')}"
        )
    failing = [f for f in report.failing if f.retired_at is None]
    click.echo(f"feeds: {report.active_feeds} active, {len(failing)} failing")
    for f in report.failing:
        why = f.retired_reason if f.retired_at is not None else f.last_error
        state = "retired" if f.retired_at is not None else f"failing({f.consecutive_failures})"
        click.echo(f"  {state:<12} {f.url}: {why or 'unknown'}")
    if report.article_failures:
        total = sum(a.count for a in report.article_failures)
        click.echo(f"article pages not read: {total} (the feed text was kept)")
        for a in report.article_failures:
            click.echo(f"  {a.count:>5} {a.url}: last: {a.last_error or 'unknown'}")
    per = ", ".join(f"{w} {n}" for w, n in sorted(report.hits_today_by_watchlist.items()))
    click.echo(f"hits today (UTC): {report.hits_today}" + (f" ({per})" if per else ""))
    if report.stories is not None:
        st = report.stories
        mean = f", {st.items_per_story_7d} items per story" if st.items_per_story_7d else ""
        click.echo(f"stories today (UTC): {st.today}; last 7 days: {st.per_day_7d} a day{mean}")
    box = report.outbox
    line = f"outbox: {box.queued} queued"
    if box.oldest_queued_at is not None:
        line += f", oldest {_age((now - box.oldest_queued_at).total_seconds())}"
    if box.failed:
        line += f"; {box.failed} failed (see `monitor outbox`)"
    click.echo(line)
    for kind, counts in box.by_kind.items():
        oldest = counts.oldest_queued_at
        age = "" if oldest is None else f" (oldest {_age((now - oldest).total_seconds())})"
        label = "webhooks" if kind == "webhook" else kind
        click.echo(
            f"  {label}: {counts.queued} queued{age}, {counts.failed} failed, {counts.sent} sent"
        )


def _age_s(now: datetime, when: datetime | None) -> int | None:
    return None if when is None else round((now - when).total_seconds())


# --- digest commands ---


@cli.group(invoke_without_command=True)
@click.option(
    "--send-now", is_flag=True, help="send every pending digest now, whatever the schedule"
)
@click.option("--subscriber", "email", metavar="EMAIL", help="only this subscriber")
@click.option("--webhook", "webhook", metavar="NAME", help="only this webhook")
@click.pass_context
def digest(
    click_ctx: click.Context, send_now: bool, email: str | None, webhook: str | None
) -> None:
    """Send digests now (`--send-now`), or preview one (`digest preview EMAIL`).

    `--send-now` sends the mail of every subscriber and posts to every webhook
    (`--subscriber` or `--webhook` chooses one). Nothing pending: nothing sent. What cannot
    be delivered stays queued and is retried (`monitor outbox` shows it); the command then
    exits 1 naming the reason.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    if not send_now:
        raise click.UsageError(
            "use `monitor digest --send-now [--subscriber EMAIL]` or `monitor digest preview EMAIL`"
        )
    import asyncio

    if email is not None and webhook is not None:
        raise click.UsageError("use --subscriber or --webhook, not both")
    from monitor import pipeline

    ctx = click_ctx.find_object(Context)
    assert ctx is not None
    store = ctx.store()
    error = None
    if webhook is None:
        summary = asyncio.run(
            pipeline.send_digests(ctx.settings, store, subscriber=email, force=True)
        )
        click.echo(summary.line())
        for who, reason in summary.failed:
            click.echo(f"failed: {who}: {reason}")
        for who, reason in summary.retrying:
            click.echo(f"queued: {who}: {reason}")
        error = pipeline.undelivered_error(summary)
    if email is None and (webhook is not None or ctx.settings.webhooks):
        hooks = asyncio.run(pipeline.send_webhooks(ctx.settings, store, name=webhook, force=True))
        click.echo(hooks.line())
        for who, reason in hooks.failed:
            click.echo(f"failed: webhook {who}: {reason}")
        for who, reason in hooks.retrying:
            click.echo(f"queued: webhook {who}: {reason}")
        error = error or pipeline.undelivered_webhooks(hooks)
    if error is not None:
        raise error


@digest.command("preview")
@click.argument("email")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="also write the HTML part to this file")  # fmt: skip
@pass_ctx
def digest_preview(ctx: Context, email: str, html_file: Path | None) -> None:
    """Print EMAIL's pending digest (headers and text part) without sending it or marking
    anything sent."""
    from monitor import pipeline

    message = pipeline.preview_digest(ctx.settings, ctx.store(), email)
    if message is None:
        click.echo(f"nothing pending for {email}", err=True)
        return
    for name in ("From", "To", "Subject", "List-Unsubscribe"):
        click.echo(f"{name}: {message[name]}")
    click.echo("")
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    if text_part is not None:
        click.echo(text_part.get_payload(decode=True).decode("utf-8"), nl=False)  # type: ignore[union-attr]
    if html_file is not None and html_part is not None:
        html = html_part.get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
        html_file.write_text(html, encoding="utf-8")
        click.echo(f"HTML written to {html_file}", err=True)


@cli.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="sent messages too")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one message a line")
@click.pass_context
def outbox(click_ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Mail and webhook deliveries that are queued (and why) or failed; `--all` adds what
    was sent. Each row shows its kind; webhook rows name their webhook as `webhook:NAME`
    and its receiver's scheme, host and port (the path and query, often secret, left out).

    `monitor outbox retry ID|--failed` queues failed deliveries again.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from monitor.store.rows import WEBHOOK, target_namer

    ctx = click_ctx.find_object(Context)
    assert ctx is not None

    statuses = ("queued", "failed", "sent") if show_all else ("queued", "failed")
    reader = ctx.reader()
    if reader is not None:
        entries = reader.list_outbox(statuses=statuses)
    else:
        from monitor.store import outbox as outbox_store

        entries = outbox_store.list_outbox(ctx.store(), statuses=statuses)
    target = target_namer(ctx.settings.webhooks)

    if as_json:
        for e in entries:
            click.echo(json.dumps({
                "id": e.id, "status": e.status, "subscriber": e.subscriber,
                "subject": e.subject, "message_id": e.message_id, "hits": e.hits,
                "attempts": e.attempts, "created": iso(e.created_at),
                "next_attempt": iso(e.next_attempt_at), "sent": iso(e.sent_at),
                "last_error": e.last_error, "kind": e.kind, "target": target(e),
            }, ensure_ascii=False))  # fmt: skip
        return
    if not entries:
        click.echo("outbox: empty" if show_all else "outbox: nothing queued or failed")
        return
    for e in entries:
        if e.status == "queued":
            when = f"next try {_short_time(e.next_attempt_at)} UTC"
        elif e.status == "sent":
            when = f"sent {_short_time(e.sent_at)} UTC"
        else:
            when = "will not be retried"
        click.echo(
            f"{e.id:>5} {e.status:<6} {e.kind:<7} {e.subscriber}  {plural(e.hits, 'hit')}, "
            f"{plural(e.attempts, 'attempt')}, "
            f"{when}: {e.subject}"
        )
        if e.kind == WEBHOOK:
            click.echo(f"      to: {target(e) or '(no [[webhooks]] entry of this name)'}")
        if e.last_error:
            click.echo(f"      why: {e.last_error}")


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=int, metavar="[ID]...")
@click.option("--failed", "every_failed", is_flag=True, help="every failed message")
@pass_ctx
def outbox_retry(ctx: Context, ids: tuple[int, ...], every_failed: bool) -> None:
    """Queue failed deliveries again: mail with the same hits under a new Message-ID, a
    webhook body as it was under its delivery id. They go out with the next outbox run
    (`monitor digest --send-now`, or the daemon within a minute)."""
    from monitor import pipeline

    if bool(ids) == every_failed:
        raise click.UsageError("give the IDs of failed messages (see `monitor outbox`) or --failed")
    store = ctx.store()
    done = pipeline.retry_failed_mail(ctx.settings, store, ids=list(ids) or None)
    skipped = sorted(set(ids) - set(done))
    for n in done:
        click.echo(f"requeued: {n}")
    if skipped:
        raise MonitorError(
            f"not failed, so not requeued: {', '.join(str(n) for n in skipped)}",
            hint="`monitor outbox --all` lists every message and its status",
        )
    if not done:
        click.echo("no failed mail")
