"""Config: the defaults table, TOML, environment overrides, secret files, and the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import (
    FEED_KEYS,
    SETTINGS,
    SUBSCRIBER_KEYS,
    WEBHOOK_KEYS,
    load_settings,
    parse_duration,
    parse_size,
)
from monitor.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitor.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [s.key for s in SETTINGS if f"`{s.key}`" not in readme or f"`{s.env}`" not in readme]
    assert not missing, f"settings missing from README.md: {missing}"
    for key in [*FEED_KEYS, *SUBSCRIBER_KEYS, *WEBHOOK_KEYS]:
        assert f"| `{key}` |" in readme, f"[[feeds]]/[[subscribers]] key {key!r} not in README.md"


def test_every_setting_has_help_and_a_valid_default() -> None:
    for s in SETTINGS:
        assert s.help.strip(), s.key
        if s.default is not None:
            assert s.convert(s.default) == s.default, s.key


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={})
    assert settings.database_url == "sqlite:///monitor.db"
    assert settings["polling.interval"] == 900
    assert settings.source == "built-in defaults"


def test_search_order_flag_then_env_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, '[polling]\ninterval = "5m"\n')
    assert load_settings(None, environ={})["polling.interval"] == 300
    other = tmp_path / "other.toml"
    other.write_text('[polling]\ninterval = "1h"\n')
    assert load_settings(None, environ={"MONITOR_CONFIG": str(other)})["polling.interval"] == 3600
    explicit = tmp_path / "x.toml"
    explicit.write_text('[polling]\ninterval = "2h"\n')
    assert (
        load_settings(explicit, environ={"MONITOR_CONFIG": str(other)})["polling.interval"] == 7200
    )


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[database]\nurl = "sqlite:///a.db"\n[polling]\nallow_private_addresses = false\n'
    )
    env = {"MONITOR_DATABASE_URL": "sqlite:///b.db", "MONITOR_POLLING_ALLOW_PRIVATE_ADDRESSES": "yes",
           "MONITOR_POLLING_MAX_BODY": "2MiB"}  # fmt: skip
    settings = load_settings(path, environ=env)
    assert settings.database_url == "sqlite:///b.db"
    assert settings["polling.allow_private_addresses"] is True
    assert settings["polling.max_body"] == 2 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[polling]\nintervall = '5m'\n",
            "monitor.toml: unknown key 'polling.intervall'; [polling] takes: interval",
        ),
        ("[poling]\n", "unknown section [poling]"),
        (
            "[polling]\ninterval = 'soon'\n",
            "polling.interval: expected a duration such as 30s, 15m, 2h or 1d, got 'soon'",
        ),
        ("[polling]\nconcurrency = 'many'\n", "polling.concurrency: expected a whole number"),
        ("[polling]\nallow_private_addresses = 'maybe'\n", "expected true or false"),
        ("[smtp]\nsecurity = 'ssl'\n", "smtp.security: expected one of 'starttls', 'tls', 'none'"),
        ("[database]\nurl = 5\n", "database.url: expected a string, got 5"),
        ("[[feeds]]\ntitle = 'x'\n", "feeds[0]: missing key 'url'"),
        ("[[feeds]]\nurl = 'ftp://x/'\n", "feeds[0].url: expected an http:// or https:// URL"),
        (
            "[[feeds]]\nurl = 'http://x/'\ninterval = 'often'\n",
            "feeds[0].interval: expected a duration",
        ),
        ("[[feeds]]\nurl = 'http://x/'\nheader = {}\n", "feeds[0]: unknown key 'header'"),
        (
            "[[subscribers]]\nemail = 'a@b'\nschedule = 'sometimes'\n",
            "subscribers[0].schedule: expected",
        ),
        (
            "[[subscribers]]\nemail = 'a@b'\ntimezone = 'Mars/Olympus'\n",
            "expected an IANA time zone",
        ),
        ("[[subscribers]]\nemail = 'nobody'\n", "subscribers[0].email: expected an email address"),
        ("[polling\n", "not valid TOML"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text), environ={})
    assert message in str(err.value)
    assert "monitor.toml" in str(err.value)


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="environment MONITOR_POLLING_TIMEOUT: expected a duration"
    ):
        load_settings(write(tmp_path, ""), environ={"MONITOR_POLLING_TIMEOUT": "forever"})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_password_from_file_and_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "smtp-password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_settings(write(tmp_path, ""), environ={}).smtp_password() == "s3cret"
    path = write(tmp_path, '[smtp]\npassword_file = "smtp-password"\n')
    assert load_settings(path, environ={}).smtp_password() == "s3cret"
    (tmp_path / "pw").write_text("other")
    path = write(tmp_path, f'[smtp]\npassword_file = "{tmp_path / "pw"}"\n')
    assert load_settings(path, environ={}).smtp_password() == "other"
    path = write(tmp_path, '[smtp]\npassword_file = "missing"\n')
    with pytest.raises(ConfigError, match=r"smtp\.password_file: missing not found"):
        load_settings(path, environ={}).smtp_password()


def test_subscribers_and_feeds_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[feeds]]
url = "https://example.org/rss"
interval = "5m"
headers = { Authorization = "Bearer x" }

[[subscribers]]
email = "analyst@example.org"
watchlists = ["c5plus1", "gor"]
schedule = "weekly Mon 08:00"
timezone = "Asia/Almaty"
quiet_hours = "22:00-7:00"
""",
    )
    settings = load_settings(path, environ={})
    (feed,) = settings.feeds
    assert (feed.interval, dict(feed.headers)) == (300, {"Authorization": "Bearer x"})
    (sub,) = settings.subscribers
    assert sub.schedule == "weekly mon 08:00" and sub.quiet_hours == ("22:00", "07:00")
    assert sub.follows("gor") and not sub.follows("landau")


def test_webhooks_are_read_with_their_secret_from_a_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "hook-secret").write_text("s3cret\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = write(
        tmp_path,
        """
[[webhooks]]
url = "https://hooks.slack.example/services/T0/B0/XYZ"
watchlists = ["gor"]
secret_file = "hook-secret"

[[webhooks]]
name = "desk"
url = "https://chat.example/hooks/abc"
schedule = "daily 08:00"
timezone = "Asia/Almaty"
""",
    )
    first, desk = load_settings(path, environ={}).webhooks
    assert first.name.startswith("hooks.slack.example-") and "XYZ" not in first.name
    assert first.key == f"webhook:{first.name}" and first.schedule == "immediate"
    assert first.watchlists == ("gor",) and first.secret() == b"s3cret"
    assert (desk.key, desk.schedule, desk.secret()) == ("webhook:desk", "daily 08:00", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[webhooks]]\nurl = "ftp://x.example/"', "webhooks[0].url: expected an http"),
        ("[[webhooks]]\nname = 'a'", "webhooks[0]: missing key 'url'"),
        ('[[webhooks]]\nurl = "https://x.example/"\nsecret = "s"', "unknown key 'secret'"),
        ('[[webhooks]]\nurl = "https://x.example/"\nname = "a b"', "webhooks[0].name"),
        ('[[webhooks]]\nurl = "https://x.example/"\nschedule = "often"', "webhooks[0].schedule"),
        (
            '[[webhooks]]\nurl = "https://x.example/a"\n[[webhooks]]\nurl = "https://x.example/a"',
            "used twice",
        ),
    ],
)
def test_webhook_errors_name_the_table_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write(tmp_path, text), environ={})


def test_a_missing_webhook_secret_names_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path, f'[[webhooks]]\nurl = "https://x.example/"\nsecret_file = "{tmp_path}/no"'
    )
    (hook,) = load_settings(path, environ={}).webhooks
    with pytest.raises(ConfigError, match=r"secret_file: .*/no not found"):
        hook.secret()


def test_shipped_example_config_is_valid() -> None:
    settings = load_settings(REPO / "deploy" / "monitor.toml", environ={})
    assert len(settings.feeds) >= 10 and settings.subscribers


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("1.5h", 5400), ("250ms", 0.25), ("2w", 1209600), (30, 30)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_sizes() -> None:
    assert parse_size("10MiB") == 10 * 1024**2 and parse_size("1kb") == 1000 and parse_size(7) == 7
    with pytest.raises(ValueError):
        parse_size("big")
