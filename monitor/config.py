"""Settings: one frozen :class:`Settings`, every default and help text in one table.

Where settings come from, later ones winning:

1. the defaults in :data:`SETTINGS`;
2. the TOML file: ``--config FILE``, else ``$MONITOR_CONFIG``, else ``./monitor.toml`` if it
   exists (none at all is fine: the defaults run);
3. environment overrides ``MONITOR_<SECTION>_<KEY>`` for every scalar key, e.g.
   ``MONITOR_DATABASE_URL`` or ``MONITOR_POLLING_INTERVAL=5m``;
4. secrets from files: ``smtp.password_file`` (a relative name is looked up in systemd's
   ``$CREDENTIALS_DIRECTORY`` first), or ``$CREDENTIALS_DIRECTORY/smtp-password``.

A wrong key, type or value is a :class:`~monitor.errors.ConfigError` naming the file, the
key and what was expected. Relative paths are relative to the working directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_NAME = "monitor.toml"
ENV_PREFIX = "MONITOR_"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3,
}  # fmt: skip


def parse_duration(value: object) -> float:
    """``"15m"`` -> 900.0. Numbers are seconds. Units: ms, s, m, h, d, w."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 30s, 15m, 2h or 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError("a duration such as 30s, 15m, 2h or 1d")
        seconds = float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "s").lower()]
    if seconds < 0:
        raise ValueError("a duration that is not negative")
    return seconds


#: What a ``--since``/``?since=`` value may be, for error messages.
SINCE_EXPECTED = "a duration such as 7d or 12h, or a date such as 2026-11-01"


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """``7d`` (that long before ``now``) or an ISO date/time (UTC unless it says
    otherwise); ValueError (see :data:`SINCE_EXPECTED`) for anything else."""
    try:
        return (now or datetime.now(UTC)) - timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def format_duration(seconds: float) -> str:
    """900.0 -> ``"15m"``: the largest unit that divides it (``"90s"``, ``"1.5s"``)."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_size(value: object) -> int:
    """``"10MiB"`` -> 10485760. Numbers are bytes."""
    if isinstance(value, bool):
        raise ValueError("a size such as 512KiB or 10MiB")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError("a size such as 512KiB or 10MiB")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("true or false")


def _int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("a whole number")
    try:
        return int(str(value))
    except ValueError:
        raise ValueError("a whole number") from None


def _nice(value: object) -> int:
    n = _int(value)
    if not 0 <= n <= 19:
        raise ValueError("a whole number from 0 to 19")
    return n


def _positive_int(value: object) -> int:
    n = _int(value)
    if n < 1:
        raise ValueError("a whole number of 1 or more")
    return n


def _fraction(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("a number between 0 and 1")
    try:
        f = float(value)
    except ValueError:
        raise ValueError("a number between 0 and 1") from None
    if not 0.0 <= f <= 1.0:
        raise ValueError("a number between 0 and 1")
    return f


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def _optional_str(value: object) -> str | None:
    return _str(value) or None


def _at_least(minimum: int, convert: Callable[[object], int], what: str) -> Callable[[object], int]:
    def checked(value: object) -> int:
        n = convert(value)
        if n < minimum:
            raise ValueError(f"{what} of {minimum:,} or more")
        return n

    return checked


def _choice(*choices: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        text = _str(value).lower()
        if text not in choices:
            raise ValueError("one of " + ", ".join(repr(c) for c in choices))
        return text

    return convert


def _str_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError("a list of strings")


def _timezone(value: object) -> str:
    name = _str(value)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("an IANA time zone such as Europe/London or Asia/Almaty") from None
    return name


def parse_listen(value: object) -> str | None:
    """A ``host:port`` to listen on (None when empty); ValueError names what is expected."""
    text = _str(value).strip()
    if not text:
        return None
    _host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("host:port, such as 127.0.0.1:9464")
    return text


def _base_url(value: object) -> str | None:
    text = _str(value).strip()
    if not text:
        return None
    if not re.match(r"^https?://[^/\s]+", text, re.IGNORECASE):
        raise ValueError("an http:// or https:// URL")
    return text.rstrip("/")


@dataclass(frozen=True, slots=True)
class Setting:
    """One scalar key: its section, name, converter, default and help text."""

    section: str
    name: str
    convert: Callable[[object], Any]
    default: Any
    help: str
    secret: bool = False

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section}_{self.name}".upper()


#: Every scalar setting, with its default and help text. README.md documents each one
#: (a test fails when one is missing there).
SETTINGS: tuple[Setting, ...] = (
    Setting("database", "url", _str, "sqlite:///monitor.db",
            "SQLAlchemy URL of the store: sqlite:///path (embedded default) or "
            "postgresql+psycopg://user@host/db to scale out"),
    Setting("watchlists", "dir", _str, "watchlists",
            "folder of watchlist YAML files; edits are picked up without a restart"),
    Setting("polling", "interval", parse_duration, 900.0,
            "how often a feed is polled unless the feed sets its own interval"),
    Setting("polling", "min_interval", parse_duration, 120.0,
            "never poll one feed more often than this, whatever the feed or server asks"),
    Setting("polling", "max_interval", parse_duration, 86400.0,
            "longest wait between polls of a working feed, and the cap of failure backoff"),
    Setting("polling", "allow_private_addresses", _bool, False,
            "allow feed URLs that resolve to loopback, private, link-local or metadata addresses"),
    Setting("polling", "concurrency", _positive_int, 50,
            "requests in flight at once, over all hosts"),
    Setting("polling", "per_host", _positive_int, 4,
            "requests in flight at once to one host"),
    Setting("polling", "timeout", parse_duration, 30.0,
            "total deadline of one fetch, redirects and body included"),
    Setting("polling", "max_body", parse_size, 10 * 1024**2,
            "largest response body accepted, as sent on the wire"),
    Setting("polling", "max_decoded", parse_size, 32 * 1024**2,
            "largest body accepted after gzip/deflate decoding"),
    Setting("polling", "max_items", _positive_int, 1000,
            "items kept of one feed's poll: the newest this many; the rest are ignored "
            "(the feed gets a warning)"),
    Setting("polling", "user_agent", _optional_str, None,
            "User-Agent header; empty for the built-in one naming monitor and its version"),
    Setting("polling", "parse_workers", _int, 0,
            "processes that parse feeds; 0 means one per CPU core, 1 parses in-process"),
    Setting("polling", "tick", parse_duration, 5.0,
            "how often the daemon looks for due feeds (each feed keeps its own interval)"),
    Setting("polling", "lease", parse_duration, 300.0,
            "how long a feed claimed for polling stays reserved to its instance (renewed "
            "while it works); an instance that died loses its feeds to the others after this"),
    Setting("fulltext", "mode", _choice("auto", "always", "never"), "auto",
            "when to read the article page behind a new item: auto (when the feed's text is "
            "short or looks truncated), always, or never; a feed's own fulltext key wins"),
    Setting("fulltext", "short_text", _int, 600,
            "auto mode: a feed text shorter than this many characters fetches the article"),
    Setting("fulltext", "min_text", _int, 250,
            "an extracted page text shorter than this many characters is not an article "
            "(paywall stub, consent wall, index page): the feed text is kept"),
    Setting("fulltext", "max_text", parse_size, 100 * 1000,
            "stored article text is cut to this many characters (matching sees the same)"),
    Setting("fulltext", "max_page", parse_size, 5 * 1024**2,
            "largest article page accepted, as sent and after decoding"),
    Setting("fulltext", "timeout", parse_duration, 20.0,
            "total deadline of one article fetch, redirects and body included"),
    Setting("fulltext", "pace", parse_duration, 1.0,
            "least time between the starts of two article requests to one host"),
    Setting("fulltext", "budget", parse_duration, 300.0,
            "longest a poll waits for article pages once its feeds are done; pages not read "
            "by then stay pending and the next poll reads them"),
    Setting("fulltext", "robots", _bool, True,
            "obey the robots.txt of article hosts (read once per host and poll run)"),
    Setting("smtp", "host", _optional_str, None,
            "mail server; without it digests are written as .eml files to [delivery] dir"),
    Setting("smtp", "port", _positive_int, 587, "mail server port"),
    Setting("smtp", "security", _choice("starttls", "tls", "none"), "starttls",
            "starttls (fails if the server does not offer it), tls (implicit, port 465) "
            "or none"),
    Setting("smtp", "username", _optional_str, None, "login name, if the server needs one"),
    Setting("smtp", "password", _optional_str, None,
            "login password; prefer password_file or systemd credentials", secret=True),
    Setting("smtp", "password_file", _optional_str, None,
            "file holding the password; a bare name is looked up in $CREDENTIALS_DIRECTORY"),
    Setting("smtp", "sender", _str, "Monitor <monitor@localhost>", "From: address of digests"),
    Setting("smtp", "timeout", parse_duration, 30.0, "deadline of each SMTP operation"),
    Setting("smtp", "verify_certificate", _bool, True,
            "check the server's TLS certificate (turn off only for a test server)"),
    Setting("smtp", "ca_file", _optional_str, None,
            "extra CA certificate file (PEM) to trust for the mail server"),
    Setting("delivery", "dir", _str, "outbox",
            "folder where digests are written as .eml files when no [smtp] host is set"),
    Setting("delivery", "lease", parse_duration, 600.0,
            "how long queued mail taken by one instance for sending stays reserved to it; "
            "mail held by an instance that died is sent by another after this"),
    Setting("delivery", "webhook_timeout", parse_duration, 30.0,
            "deadline of one webhook POST, connection and response included"),
    Setting("delivery", "webhook_max_stories", _positive_int, 50,
            "stories in one webhook delivery; more pending go in the deliveries after it"),
    Setting("delivery", "webhook_max_text", _at_least(1000, _int, "a number of characters"),
            16000,
            "characters of a webhook delivery's chat text at most (Mattermost takes 16,383 by "
            "default, Slack 40,000); the stories past it go in the deliveries after it"),
    Setting("delivery", "webhook_max_bytes", _at_least(16 * 1024, parse_size, "a size"),
            512 * 1024,
            "bytes of one webhook body at most; the stories past it go in the deliveries "
            "after it (a single story over it goes alone)"),
    Setting("delivery", "webhook_retry_after_max", parse_duration, 3600.0,
            "longest wait a webhook receiver's Retry-After (429, 503) imposes before the "
            "next try; a longer one is cut to this"),
    Setting("delivery", "webhook_allow_private_addresses", _bool, False,
            "allow webhook URLs that resolve to loopback, private or link-local addresses "
            "(cloud metadata addresses stay refused); a [[webhooks]] table's own "
            "allow_private_addresses wins"),
    Setting("digest", "templates_dir", _optional_str, None,
            "folder with digest.html.j2 / digest.txt.j2 overriding the shipped templates"),
    Setting("digest", "max_items_per_watchlist", _positive_int, 25,
            "stories shown in full (snippet, other outlets) per watchlist in one digest; the "
            "next ones are listed as one-line headlines"),
    Setting("digest", "max_headlines_per_watchlist", _int, 100,
            "stories past max_items_per_watchlist listed as one-line headlines (title, link) "
            "per watchlist while the mail stays under ~90 KB; the rest wait, counted in the mail"),
    Setting("digest", "unsubscribe", _optional_str, None,
            "mailto: address for List-Unsubscribe and the footer; default: the sender"),
    Setting("stories", "duplicate_similarity", _fraction, 0.6,
            "share of word 3-grams (MinHash estimate) two items must have in common to be "
            "near-duplicates of one story (an edited wire text)"),
    Setting("stories", "duplicate_window", parse_duration, 259200.0,
            "how far apart in time copies and near-duplicates may be and still join one story; "
            "also how far back the in-memory window of recent items reaches"),
    Setting("stories", "event_similarity", _fraction, 0.25,
            "TF-IDF cosine (adjusted for shared and differing watchlist hits and time apart) "
            "two different write-ups need to count as one event; higher merges less"),
    Setting("stories", "entity_similarity", _fraction, 0.2,
            "TF-IDF cosine enough when two items share three or more watchlist hits and "
            "neither has one the other contradicts; divided by one less than the number "
            "shared"),
    Setting("stories", "event_window", parse_duration, 129600.0,
            "how far apart in time two write-ups of one event may be"),
    Setting("stories", "max_items", _positive_int, 100000,
            "most recent items kept in the in-memory window stories are matched against "
            "(about 3 KB each)"),
    Setting("metrics", "listen", parse_listen, None,
            "host:port for a Prometheus /metrics endpoint; empty: off"),
    Setting("web", "listen", parse_listen, None,
            "host:port of the read-only web view, Atom feeds and JSON API served by "
            "monitor run (e.g. 127.0.0.1:8470); empty: off (monitor web defaults to "
            "127.0.0.1:8470)"),
    Setting("web", "base_url", _base_url, None,
            "public http(s) URL of the web view; digests then link titles to story pages"),
    Setting("web", "token_file", _optional_str, None,
            "file holding the access token (Bearer, or the basic-auth password); a bare "
            "name is looked up in $CREDENTIALS_DIRECTORY"),
    Setting("web", "trust_proxy_auth", _optional_str, None,
            "name of a header set by an authenticating reverse proxy (e.g. X-Remote-User); "
            "requests without it are refused"),
    Setting("web", "nice", _nice, 10,
            "scheduling priority the web view lowers itself by (0-19, as nice(1)), so "
            "polling keeps the CPU when both want it; 0: unchanged"),
    Setting("log", "level", _choice("debug", "info", "warning", "error"), "info",
            "log level (-v on the command line means debug)"),
)  # fmt: skip

#: Keys of a ``[[feeds]]`` table.
FEED_KEYS: dict[str, str] = {
    "url": "the feed's http(s) URL (required)",
    "title": "a display name; default: the feed's own title",
    "interval": "this feed's polling interval, overriding [polling] interval",
    "headers": "extra request headers, as a table of name = value",
    "fulltext": '"auto", "always" or "never": read the article page behind new items '
    "(default: [fulltext] mode)",
}
#: Keys of a ``[[subscribers]]`` table.
SUBSCRIBER_KEYS: dict[str, str] = {
    "email": "where digests go (required)",
    "watchlists": 'watchlist ids to follow, or ["*"] for all (default)',
    "schedule": '"immediate", "hourly", "daily HH:MM", "weekly DAY HH:MM" or a 5-field '
    'cron expression (default "daily 08:00")',
    "timezone": "IANA time zone of the schedule and of times in the mail (default UTC)",
    "quiet_hours": 'a "HH:MM-HH:MM" span in which no mail is sent; it waits until the end',
    "immediate_priority": "high-priority watchlists mailed at once, the rest on the schedule "
    "(default false)",
    "updates": "mail a story again, marked as an update, when new reports join it after it "
    "was mailed (default false: only when it gains a watchlist you follow)",
}

#: Keys of a ``[[webhooks]]`` table.
WEBHOOK_KEYS: dict[str, str] = {
    "url": "the receiver's http(s) URL, e.g. a Slack or Mattermost incoming webhook (required)",
    "name": "a stable name for the webhook in the outbox and logs; default: the URL's host "
    "and a short hash of the URL",
    "watchlists": 'watchlist ids to send, or ["*"] for all (default)',
    "schedule": 'as for subscribers (default "immediate")',
    "timezone": "IANA time zone of the schedule (default UTC)",
    "quiet_hours": 'a "HH:MM-HH:MM" span in which nothing is sent; it waits until the end',
    "secret_file": "file holding the signing secret (a bare name is looked up in "
    "$CREDENTIALS_DIRECTORY); without it the body is not signed",
    "allow_private_addresses": "post to this URL even if it resolves to a loopback, private "
    "or link-local address, e.g. a chat server on your own network (cloud metadata "
    "addresses stay refused); default: [delivery] webhook_allow_private_addresses",
}

_SECTIONS = {s.section for s in SETTINGS}
_ARRAYS = ("feeds", "subscribers", "webhooks")


@dataclass(frozen=True, slots=True)
class FeedConfig:
    url: str
    title: str | None = None
    interval: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    fulltext: str | None = None  # None: [fulltext] mode


#: Values of ``[fulltext] mode`` and of a feed's ``fulltext`` key.
FULLTEXT_MODES = ("auto", "always", "never")


@dataclass(frozen=True, slots=True)
class SubscriberConfig:
    email: str
    watchlists: tuple[str, ...] = ("*",)
    schedule: str = "daily 08:00"
    timezone: str = "UTC"
    quiet_hours: tuple[str, str] | None = None
    immediate_priority: bool = False
    updates: bool = False  # stories mailed already come back when they grow

    def follows(self, watchlist: str) -> bool:
        return "*" in self.watchlists or watchlist in self.watchlists


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """A ``[[webhooks]]`` table. ``key`` names it in the store (its outbox rows and what it
    has been sent): ``webhook:<name>``."""

    url: str
    name: str
    watchlists: tuple[str, ...] = ("*",)
    schedule: str = "immediate"
    timezone: str = "UTC"
    quiet_hours: tuple[str, str] | None = None
    secret_file: str | None = None
    allow_private_addresses: bool | None = None  # None: [delivery]'s setting

    @property
    def key(self) -> str:
        return f"{WEBHOOK_PREFIX}{self.name}"

    @property
    def shown_url(self) -> str:
        """The URL as shown (``monitor outbox``): scheme, host and port; the path, query
        and any user info left out as "…" (an incoming webhook's path is its secret)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        rest = "/…" if parts.path.strip("/") or parts.query else "/"
        return f"{parts.scheme}://{host}{port}{rest}"

    def secret(self) -> bytes | None:
        """The signing secret, read from its file now (so a rotated file takes effect at
        the next delivery); None without ``secret_file``."""
        if not self.secret_file:
            return None
        return _read_secret(self.secret_file, f"webhook {self.name}: secret_file").encode()


WEBHOOK_PREFIX = "webhook:"


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings, validated. ``values`` maps ``section.key`` to its converted value."""

    values: Mapping[str, Any]
    feeds: tuple[FeedConfig, ...] = ()
    subscribers: tuple[SubscriberConfig, ...] = ()
    webhooks: tuple[WebhookConfig, ...] = ()
    source: str = "built-in defaults"  # the config file read, for messages

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str) -> Any:
        return self.values[key]

    @property
    def database_url(self) -> str:
        return str(self.values["database.url"])

    @property
    def watchlists_dir(self) -> Path:
        return Path(self.values["watchlists.dir"])

    def raised_intervals(self) -> list[tuple[str, float, float]]:
        """``(what, asked, used)`` for each interval below ``polling.min_interval``: the
        ``[polling] interval`` and every feed's own; they are polled every min_interval."""
        floor = float(self.values["polling.min_interval"])
        out: list[tuple[str, float, float]] = []
        if self.values["polling.interval"] < floor:
            out.append(("[polling] interval", float(self.values["polling.interval"]), floor))
        out += [(f.url, f.interval, floor) for f in self.feeds
                if f.interval is not None and f.interval < floor]  # fmt: skip
        return out

    def web_token(self) -> str | None:
        """The web view's access token, read from ``web.token_file`` (never logged)."""
        name = self.values.get("web.token_file")
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not name:
            default = Path(creds) / "web-token" if creds else None
            if default is None or not default.is_file():
                return None
            name = str(default)
        path = Path(name)
        candidates = [path]
        if creds and not path.is_absolute() and len(path.parts) == 1:
            candidates.insert(0, Path(creds) / path)
        for candidate in candidates:
            try:
                token = candidate.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ConfigError(
                    f"web.token_file: cannot read {candidate}: {exc.strerror}"
                ) from None
            if not token:
                raise ConfigError(f"web.token_file: {candidate} is empty")
            return token
        raise ConfigError(f"web.token_file: {name} not found")

    def smtp_password(self) -> str | None:
        """The SMTP password, read from its file when one is configured (never logged)."""
        return _read_password(self)


def locate_config(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if environ.get("MONITOR_CONFIG"):
        return Path(environ["MONITOR_CONFIG"])
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the config file (see the module docstring for the search order)."""
    environ = os.environ if environ is None else environ
    located = locate_config(str(path) if path else None, environ)
    data: dict[str, Any] = {}
    where = "built-in defaults"
    if located is not None:
        where = str(located)
        try:
            with located.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(
                f"{where}: config file not found",
                hint="pass --config FILE, set MONITOR_CONFIG, or create ./monitor.toml",
            ) from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    return settings_from_mapping(data, environ, where=where)


def settings_from_mapping(
    data: Mapping[str, Any], environ: Mapping[str, str], *, where: str = "config"
) -> Settings:
    """Validate an already-parsed TOML document plus environment overrides."""
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    by_key = {s.key: s for s in SETTINGS}
    for section, body in data.items():
        if section in _ARRAYS:
            continue
        if section not in _SECTIONS:
            raise ConfigError(
                f"{where}: unknown section [{section}]; expected one of "
                + ", ".join(sorted(_SECTIONS | set(_ARRAYS)))
            )
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        for name, raw in body.items():
            key = f"{section}.{name}"
            setting = by_key.get(key)
            if setting is None:
                known = ", ".join(s.name for s in SETTINGS if s.section == section)
                raise ConfigError(f"{where}: unknown key {key!r}; [{section}] takes: {known}")
            values[key] = _convert(setting.convert, raw, f"{where}: {key}", setting.secret)
    for setting in SETTINGS:
        if setting.env in environ:
            values[setting.key] = _convert(
                setting.convert, environ[setting.env], f"environment {setting.env}", setting.secret
            )
    for key in ("polling.lease", "delivery.lease"):
        if values[key] < 1:
            raise ConfigError(f"{where}: {key} must be at least 1s")
    if values["polling.min_interval"] > values["polling.max_interval"]:
        raise ConfigError(f"{where}: polling.min_interval is longer than polling.max_interval")
    feeds = tuple(_feeds(data.get("feeds", []), where))
    subscribers = tuple(_subscribers(data.get("subscribers", []), where))
    webhooks = tuple(_webhooks(data.get("webhooks", []), where))
    settings = Settings(
        values=values, feeds=feeds, subscribers=subscribers, webhooks=webhooks, source=where
    )
    for what, asked, used in settings.raised_intervals():
        log.warning(
            "%s: interval %s is below polling.min_interval: polled every %s",
            what, format_duration(asked), format_duration(used),
        )  # fmt: skip
    return settings


def _convert(
    convert: Callable[[object], Any], raw: object, label: str, secret: bool = False
) -> Any:
    try:
        return convert(raw)
    except ValueError as exc:
        got = "(a secret, not shown)" if secret else repr(raw)
        raise ConfigError(f"{label}: expected {exc}, got {got}") from None


def _tables(raw: object, name: str, where: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError(f"{where}: {name} must be an array of tables ([[{name}]])")
    return raw


def _check_keys(table: Mapping[str, Any], allowed: Mapping[str, str], label: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{label}: unknown key {key!r}; expected one of " + ", ".join(allowed)
            )


def _optional_keys(
    table: Mapping[str, Any], label: str, converters: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """The keys of ``table`` that ``converters`` names, each converted (errors name it)."""
    return {
        key: _convert(convert, table[key], f"{label}.{key}")
        for key, convert in converters.items()
        if key in table
    }


def _http_url(table: Mapping[str, Any], label: str, *, show: bool) -> str:
    """The table's required ``url``, an http(s) URL; ``show`` puts it in the error."""
    if "url" not in table:
        raise ConfigError(f"{label}: missing key 'url'")
    url = _convert(_str, table["url"], f"{label}.url").strip()
    if not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
        got = f", got {url!r}" if show else ""
        raise ConfigError(f"{label}.url: expected an http:// or https:// URL{got}")
    return str(url)


def _feeds(raw: object, where: str) -> list[FeedConfig]:
    out: list[FeedConfig] = []
    seen: set[str] = set()
    for i, table in enumerate(_tables(raw, "feeds", where)):
        label = f"{where}: feeds[{i}]"
        _check_keys(table, FEED_KEYS, label)
        url = _http_url(table, label, show=True)
        if url in seen:
            raise ConfigError(f"{label}.url: {url} is listed twice")
        seen.add(url)
        headers = table.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ConfigError(f'{label}.headers: expected a table of name = "value" strings')
        interval = table.get("interval")
        out.append(
            FeedConfig(
                url=url,
                title=_convert(_optional_str, table["title"], f"{label}.title")
                if "title" in table
                else None,
                interval=None
                if interval is None
                else _convert(parse_duration, interval, f"{label}.interval"),
                headers=dict(headers),
                fulltext=_convert(_choice(*FULLTEXT_MODES), table["fulltext"], f"{label}.fulltext")
                if "fulltext" in table
                else None,
            )
        )
    return out


_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_HHMM = r"([01]?\d|2[0-3]):([0-5]\d)"
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CRON_FIELD = re.compile(r"^[\d*/,\-a-zA-Z?LW#]+$")


def validate_schedule(value: object) -> str:
    """Check a schedule's syntax; the scheduler turns it into a trigger."""
    text = " ".join(_str(value).split()).lower()
    if text in ("immediate", "hourly"):
        return text
    if re.fullmatch(rf"daily {_HHMM}", text):
        return text
    m = re.fullmatch(rf"weekly ([a-z]+) {_HHMM}", text)
    if m:
        if m.group(1)[:3] not in _WEEKDAYS:
            raise ValueError("a weekday name such as mon or monday in 'weekly DAY HH:MM'")
        return text
    fields = text.split(" ")
    if len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields):
        return text
    raise ValueError(
        '"immediate", "hourly", "daily HH:MM", "weekly DAY HH:MM" or a 5-field cron expression'
    )


def _quiet_hours(value: object) -> tuple[str, str]:
    m = re.fullmatch(rf"\s*{_HHMM}\s*-\s*{_HHMM}\s*", _str(value))
    if not m:
        raise ValueError('a span "HH:MM-HH:MM" such as "22:00-07:00"')
    return (f"{int(m.group(1)):02d}:{m.group(2)}", f"{int(m.group(3)):02d}:{m.group(4)}")


#: Optional keys of a [[subscribers]] and a [[webhooks]] table, and their converters.
_SUBSCRIBER_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "watchlists": _str_list,
    "schedule": validate_schedule,
    "timezone": _timezone,
    "quiet_hours": _quiet_hours,
    "immediate_priority": _bool,
    "updates": _bool,
}
_WEBHOOK_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "watchlists": _str_list,
    "schedule": validate_schedule,
    "timezone": _timezone,
    "quiet_hours": _quiet_hours,
    "secret_file": _optional_str,
    "allow_private_addresses": _bool,
}


def _subscribers(raw: object, where: str) -> list[SubscriberConfig]:
    out: list[SubscriberConfig] = []
    seen: set[str] = set()
    for i, table in enumerate(_tables(raw, "subscribers", where)):
        label = f"{where}: subscribers[{i}]"
        _check_keys(table, SUBSCRIBER_KEYS, label)
        if "email" not in table:
            raise ConfigError(f"{label}: missing key 'email'")
        email = _convert(_str, table["email"], f"{label}.email").strip()
        if not _EMAIL.match(email):
            raise ConfigError(f"{label}.email: expected an email address, got {email!r}")
        if email.lower() in seen:
            raise ConfigError(f"{label}.email: {email} is listed twice")
        seen.add(email.lower())
        kwargs = _optional_keys(table, label, _SUBSCRIBER_CONVERTERS)
        out.append(SubscriberConfig(email=email, **kwargs))
    return out


_WEBHOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _default_webhook_name(url: str) -> str:
    """The URL's host and 8 hex digits of its hash: stable for one URL, and it shows no
    path (an incoming-webhook URL's path is its secret)."""
    host = urlsplit(url).hostname or "webhook"
    return f"{host}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def _webhooks(raw: object, where: str) -> list[WebhookConfig]:
    out: list[WebhookConfig] = []
    seen: set[str] = set()
    for i, table in enumerate(_tables(raw, "webhooks", where)):
        label = f"{where}: webhooks[{i}]"
        _check_keys(table, WEBHOOK_KEYS, label)
        url = _http_url(table, label, show=False)  # a webhook URL's path may be its secret
        name = (
            _convert(_str, table["name"], f"{label}.name").strip()
            if "name" in table
            else _default_webhook_name(url)
        )
        if not _WEBHOOK_NAME.match(name):
            raise ConfigError(
                f"{label}.name: expected letters, digits, '.', '_' or '-' (at most 100), "
                f"got {name!r}"
            )
        if name.lower() in seen:
            raise ConfigError(f"{label}.name: {name} is used twice; give each webhook a name")
        seen.add(name.lower())
        kwargs = _optional_keys(table, label, _WEBHOOK_CONVERTERS)
        out.append(WebhookConfig(url=url, name=name, **kwargs))
    return out


def _read_secret(name: str, label: str) -> str:
    """A secret from a file; a bare name is looked up in ``$CREDENTIALS_DIRECTORY`` first."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(name)
    candidates = [path]
    if creds and not path.is_absolute() and len(path.parts) == 1:
        candidates.insert(0, Path(creds) / path)
    for candidate in candidates:
        try:
            return candidate.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"{label}: cannot read {candidate}: {exc.strerror}") from None
    raise ConfigError(
        f"{label}: {name} not found",
        hint="create the file, or pass it as a systemd credential (LoadCredential=)",
    )


def _read_password(settings: Settings) -> str | None:
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    name = settings.values.get("smtp.password_file")
    candidates: list[Path] = []
    if name:
        path = Path(name)
        if creds and not path.is_absolute() and len(path.parts) == 1:
            candidates.append(Path(creds) / path)
        candidates.append(path)
    elif settings.values.get("smtp.password"):
        return str(settings.values["smtp.password"])
    elif creds:
        default = Path(creds) / "smtp-password"
        if default.is_file():
            candidates.append(default)
    for candidate in candidates:
        try:
            return candidate.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(
                f"smtp.password_file: cannot read {candidate}: {exc.strerror}"
            ) from None
    if name:
        raise ConfigError(f"smtp.password_file: {name} not found")
    return None
