"""The one error tree of monitor. Every error carries a hint for the user.

::

    MonitorError                 anything the CLI reports as one line, exit 1
    ├── ConfigError              monitor.toml, environment overrides, secret files
    ├── WatchlistError           a watchlist file (file:line: message)
    ├── StoreError               the database: cannot open, migrate or lock
    │   ├── DatabaseUnusable     a SQLite file that is corrupt, not a database, read-only ...
    │   └── AlreadyRunning       another daemon holds the SQLite file
    ├── FeedError                a feed URL or OPML file the user gave us
    │   └── AddressRefused       a URL that resolves to a private/loopback address
    ├── TemplateError            a digest template the operator supplied
    └── DeliveryError            the mail server or the delivery folder

Fetch failures of individual feeds are *not* exceptions that reach the user: they are
recorded on the feed (see ``fetch.FetchResult``) and the run goes on.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base class. ``str(err)`` is the message; ``err.hint`` says what to do about it."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def one_line(self) -> str:
        """The message and hint as the CLI prints them."""
        text = " ".join(self.message.split())
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(MonitorError):
    hint = "see the Configuration section of README.md"


class WatchlistError(MonitorError):
    """A watchlist problem. ``problems`` holds every ``file:line: message`` found."""

    hint = "fix the file; `monitor watchlists check` lists every problem"

    def __init__(
        self, message: str, *, problems: list[str] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems: list[str] = problems if problems is not None else [message]


class StoreError(MonitorError):
    hint = "check [database] url and that the database is reachable"


class DatabaseUnusable(StoreError):
    """The SQLite file itself is the problem (corrupt, not a database, read-only, cannot
    be opened): retrying will not help until the operator acts on the hint."""


class AlreadyRunning(StoreError):
    hint = "stop the other `monitor run` (systemctl stop monitor) or use another database"


class FeedError(MonitorError):
    hint = "check the feed URL"


class AddressRefused(FeedError):
    hint = "set [polling] allow_private_addresses = true to poll feeds on private networks"


class TemplateError(MonitorError):
    hint = "check the templates in [digest] templates_dir"


class DeliveryError(MonitorError):
    hint = "check the [smtp] settings; undelivered mail stays queued (`monitor outbox`)"
