"""Delivery against real SMTP servers on 127.0.0.1 (aiosmtpd), and to .eml files."""

from __future__ import annotations

import email
import email.policy
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from smtpserver import HOST, SMTPServer, free_port, self_signed_cert
from sqlalchemy import insert

from monitor.cli import cli
from monitor.config import Settings, settings_from_mapping
from monitor.deliver import (
    FileDeliverer,
    PermanentFailure,
    SMTPDeliverer,
    SMTPOptions,
    TemporaryFailure,
    deliverer_from_settings,
)
from monitor.errors import ConfigError
from monitor.pipeline import preview_digest, send_digests
from monitor.store import Store, open_store
from monitor.store import outbox as ob
from monitor.store.schema import hits, items

pytestmark = pytest.mark.timeout(60)

SENDER = "monitor@example.org"


def mail(n: int, to: str = "analyst@example.org") -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {to}\r\nSubject: test {n}\r\n"
        f"Message-ID: <{n}@example.org>\r\n\r\nbody {n}\r\n.leading dot\r\n"
    ).encode()


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def plain() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server


def smtp(server: SMTPServer, **kw: object) -> SMTPDeliverer:
    options: dict[str, object] = {"host": HOST, "port": server.port, "timeout": 5.0}
    options.setdefault("security", "none")
    options.update(kw)
    return SMTPDeliverer(SMTPOptions(**options))  # type: ignore[arg-type]


async def test_one_connection_carries_a_batch(plain: SMTPServer) -> None:
    d = smtp(plain)
    await d.open()
    try:
        for n in range(3):
            reply = await d.send(SENDER, f"user{n}@example.org", mail(n))
            assert reply.startswith("2.0.0") or "accepted" in reply
    finally:
        await d.close()
    got = plain.messages
    assert [m.rcpt_tos for m in got] == [[f"user{n}@example.org"] for n in range(3)]
    assert plain.connections == 1
    body = got[0].message.get_content()
    assert ".leading dot" in body  # dot-stuffing undone by the server
    assert not got[0].tls


async def test_permanent_refusal_of_one_recipient_does_not_block_the_rest(
    plain: SMTPServer,
) -> None:
    plain.refuse("gone@example.org", "550 5.1.1 no such user")
    d = smtp(plain)
    try:
        await d.send(SENDER, "a@example.org", mail(1))
        with pytest.raises(PermanentFailure, match=r"550 5\.1\.1 no such user"):
            await d.send(SENDER, "gone@example.org", mail(2))
        await d.send(SENDER, "b@example.org", mail(3))
    finally:
        await d.close()
    assert [m.rcpt_tos[0] for m in plain.messages] == ["a@example.org", "b@example.org"]
    assert plain.connections == 1


@pytest.mark.parametrize(
    ("reply", "reconnect"),
    [("451 4.3.0 try again later", False), ("421 4.3.2 shutting down", True), ("drop", True)],
)
async def test_temporary_failures_then_recovery(
    plain: SMTPServer, reply: str, reconnect: bool
) -> None:
    plain.script_data(reply)
    d = smtp(plain)
    try:
        with pytest.raises(TemporaryFailure) as info:
            await d.send(SENDER, "a@example.org", mail(1))
        assert info.value.reconnect is reconnect
        if reply != "drop":
            assert reply.split()[0] in str(info.value)
        await d.send(SENDER, "a@example.org", mail(1))  # reconnects when needed
    finally:
        await d.close()
    assert len(plain.messages) == 1
    assert plain.data_attempts == 2


async def test_server_down_is_temporary() -> None:
    d = SMTPDeliverer(SMTPOptions(host=HOST, port=free_port(), security="none", timeout=3))
    with pytest.raises(TemporaryFailure, match="cannot connect"):
        await d.open()
    with pytest.raises(TemporaryFailure):
        await d.send(SENDER, "a@example.org", mail(1))
    await d.close()


async def test_starttls_with_ca_file(cert: tuple[Path, Path]) -> None:
    with SMTPServer(starttls=cert) as server:
        d = smtp(server, security="starttls", ca_file=str(cert[0]))
        try:
            await d.send(SENDER, "a@example.org", mail(1))
        finally:
            await d.close()
        assert [m.tls for m in server.messages] == [True]


async def test_starttls_without_verification(cert: tuple[Path, Path]) -> None:
    with SMTPServer(starttls=cert) as server:
        d = smtp(server, security="starttls", verify_certificate=False)
        try:
            await d.send(SENDER, "a@example.org", mail(1))
        finally:
            await d.close()
        assert [m.tls for m in server.messages] == [True]


async def test_starttls_untrusted_certificate_fails_closed(cert: tuple[Path, Path]) -> None:
    with SMTPServer(starttls=cert) as server:
        d = smtp(server, security="starttls")  # default: verify against the system CAs
        with pytest.raises(TemporaryFailure, match="certificate not trusted") as info:
            await d.send(SENDER, "a@example.org", mail(1))
        assert "ca_file" in info.value.hint
        await d.close()
        assert server.messages == []
        assert server.data_attempts == 0


async def test_starttls_not_offered_fails_closed(plain: SMTPServer) -> None:
    d = smtp(plain, security="starttls", verify_certificate=False)
    with pytest.raises(TemporaryFailure, match="does not offer STARTTLS"):
        await d.send(SENDER, "a@example.org", mail(1))
    await d.close()
    assert plain.messages == []
    assert plain.data_attempts == 0


async def test_implicit_tls(cert: tuple[Path, Path]) -> None:
    with SMTPServer(implicit_tls=cert) as server:
        d = smtp(server, security="tls", ca_file=str(cert[0]))
        try:
            await d.send(SENDER, "a@example.org", mail(1))
        finally:
            await d.close()
        assert [m.tls for m in server.messages] == [True]
        bad = smtp(server, security="tls")
        with pytest.raises(TemporaryFailure, match="certificate not trusted"):
            await bad.open()
        await bad.close()


async def test_login_with_password_file_over_starttls(
    cert: tuple[Path, Path], tmp_path: Path
) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret\n")
    with SMTPServer(starttls=cert, auth={"monitor": "s3cret"}) as server:
        settings = settings_from_mapping(
            {
                "smtp": {
                    "host": HOST,
                    "port": server.port,
                    "username": "monitor",
                    "password_file": str(secret),
                    "ca_file": str(cert[0]),
                    "timeout": "5s",
                }
            },
            {},
        )
        d = deliverer_from_settings(settings)
        assert isinstance(d, SMTPDeliverer)
        try:
            await d.send(SENDER, "a@example.org", mail(1))
        finally:
            await d.close()
        assert [m.login for m in server.messages] == ["monitor"]

        wrong = smtp(server, security="starttls", ca_file=str(cert[0]), username="monitor",
                     password="nope")  # fmt: skip
        with pytest.raises(TemporaryFailure, match="login refused"):
            await wrong.open()
        await wrong.close()


async def test_file_delivery_is_atomic_and_complete(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    d = FileDeliverer(outdir)
    await d.open()
    paths = [await d.send(SENDER, "a@example.org", mail(n)) for n in range(2)]
    await d.close()
    files = sorted(outdir.iterdir())
    assert [p.name for p in files] == sorted(Path(p).name for p in paths)
    assert all(p.suffix == ".eml" and not p.name.startswith(".") for p in files)
    msg = email.message_from_bytes(Path(paths[1]).read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "test 1"


async def test_file_delivery_failure_is_temporary(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    d = FileDeliverer(blocker / "out")
    with pytest.raises(TemporaryFailure):
        await d.open()


def test_no_smtp_host_means_file_delivery(tmp_path: Path) -> None:
    settings = settings_from_mapping({"delivery": {"dir": str(tmp_path / "mail")}}, {})
    d = deliverer_from_settings(settings)
    assert isinstance(d, FileDeliverer)
    assert d.directory == tmp_path / "mail"


# --- the outbox end to end: send_digests with real servers --------------------------


T0 = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
PEOPLE = ("ana@example.org", "bek@example.org", "chen@example.org")
_counter = itertools.count(1)


def digest_settings(tmp_path: Path, smtp_table: dict[str, Any] | None, **extra: Any) -> Settings:
    watchdir = tmp_path / "watchlists"
    watchdir.mkdir(exist_ok=True)
    for wid, name, prio in (("gor", "Sergio Gor", "high"), ("c5plus1", "C5+1", "normal")):
        (watchdir / f"{wid}.yaml").write_text(
            f"id: {wid}\nname: {name}\npriority: {prio}\nentries:\n  - id: e\n    terms: [{name}]\n"
        )
    data: dict[str, Any] = {
        "watchlists": {"dir": str(watchdir)},
        "delivery": {"dir": str(tmp_path / "mail")},
        "subscribers": extra.pop(
            "subscribers",
            [{"email": e, "watchlists": ["*"], "schedule": "immediate"} for e in PEOPLE],
        ),
    }
    if smtp_table is not None:
        data["smtp"] = {"host": HOST, "security": "none", "timeout": "5s",
                        "sender": "Monitor <monitor@example.org>", **smtp_table}  # fmt: skip
    data.update(extra)
    return settings_from_mapping(data, {})


def new_hits(store: Store, watchlist: str, n: int, at: datetime) -> list[str]:
    """``n`` new stories matched by ``watchlist``; returns their unique titles."""
    titles = []
    with store.write() as conn:
        for _ in range(n):
            k = next(_counter)
            title = f"Story {k:05d} about {'Sergio Gor' if watchlist == 'gor' else 'C5+1'}"
            item = conn.execute(
                insert(items)
                .values(identity=f"i{k}", title=title, summary=f"Text of story {k:05d}.",
                        link=f"https://news.example/{k}", first_seen_at=at)
                .returning(items.c.id)
            ).scalar_one()  # fmt: skip
            conn.execute(
                insert(hits).values(item_id=item, watchlist=watchlist, matches=[], created_at=at)
            )
            titles.append(f"Story {k:05d}")
    return titles


def titles_in(message: EmailMessage) -> list[str]:
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    return re.findall(r"Story \d{5}", text.get_content())


def assert_each_arrived_once(
    server: SMTPServer, store: Store, expected: dict[str, list[str]]
) -> None:
    got: dict[str, list[str]] = {e: [] for e in expected}
    ids: list[str] = []
    for m in server.messages:
        got[m.rcpt_tos[0]].extend(titles_in(m.message))
        ids.append(m.message["Message-ID"])
    assert {e: sorted(t) for e, t in got.items()} == {e: sorted(t) for e, t in expected.items()}
    assert len(ids) == len(set(ids)), "a message arrived twice"
    assert ob.list_outbox(store) == []  # nothing queued or failed
    sent = ob.list_outbox(store, statuses=("sent",))
    assert sorted(e.message_id for e in sent) == sorted(ids)


async def test_every_hit_arrives_once_through_4xx_and_dropped_connections(
    tmp_path: Path, store: Store, plain: SMTPServer
) -> None:
    settings = digest_settings(tmp_path, {"port": plain.port})
    ob.sync_subscribers(store, settings.subscribers, now=T0)
    expected = {e: [] for e in PEOPLE}  # type: dict[str, list[str]]
    first = new_hits(store, "gor", 3, T0) + new_hits(store, "c5plus1", 2, T0)
    for e in PEOPLE:
        expected[e] += first
    plain.script_data("451 4.3.0 mailbox busy", "drop")
    s1 = await send_digests(settings, store, now=T0 + timedelta(minutes=1))
    assert (s1.queued, s1.sent, len(s1.retrying)) == (3, 1, 2)
    queued = {e.subscriber: e for e in ob.list_outbox(store)}
    assert set(queued) == set(PEOPLE[:2])
    assert "451 4.3.0 mailbox busy" in (queued[PEOPLE[0]].last_error or "")
    assert "connection lost" in (queued[PEOPLE[1]].last_error or "")
    retry_ids = {e.subscriber: e.message_id for e in queued.values()}

    # More news while two digests wait: it goes in new digests, never into the queued ones.
    later = new_hits(store, "gor", 2, T0 + timedelta(minutes=2))
    for e in PEOPLE:
        expected[e] += later
    plain.script_data("421 4.7.0 too busy")  # the first retry hits a closing server
    s2 = await send_digests(settings, store, now=T0 + timedelta(minutes=3))
    assert s2.queued == 3 and len(s2.retrying) == 1
    s3 = await send_digests(settings, store, now=T0 + timedelta(minutes=10))
    assert s3.queued == 0 and s3.sent == 1 and not s3.retrying
    assert_each_arrived_once(plain, store, expected)
    resent = {m.rcpt_tos[0]: m.message["Message-ID"] for m in plain.messages
              if m.message["Message-ID"] in retry_ids.values()}  # fmt: skip
    assert resent == retry_ids  # a retry is the same message, Message-ID and all
    # Nothing pending: another run sends nothing.
    s4 = await send_digests(settings, store, now=T0 + timedelta(hours=1), force=True)
    assert (s4.queued, s4.sent) == (0, 0)


async def test_server_down_then_back(tmp_path: Path, store: Store) -> None:
    port = free_port()
    settings = digest_settings(tmp_path, {"port": port})
    ob.sync_subscribers(store, settings.subscribers, now=T0)
    titles = new_hits(store, "c5plus1", 4, T0)
    down = await send_digests(settings, store, now=T0 + timedelta(minutes=1))
    assert down.queued == 3 and down.sent == 0 and len(down.retrying) == 3
    assert all("cannot connect" in e.last_error for e in ob.list_outbox(store))  # type: ignore[operator]
    assert all(e.status == "queued" for e in ob.list_outbox(store))
    with SMTPServer(port=port) as server:
        early = await send_digests(settings, store, now=T0 + timedelta(minutes=1, seconds=30))
        assert early.sent == 0  # backing off
        back = await send_digests(settings, store, now=T0 + timedelta(minutes=3))
        assert back.sent == 3 and server.connections == 1
        assert_each_arrived_once(server, store, {e: titles for e in PEOPLE})


async def test_a_5xx_for_one_recipient_is_failed_visibly_and_blocks_no_one(
    tmp_path: Path, store: Store, plain: SMTPServer
) -> None:
    settings = digest_settings(tmp_path, {"port": plain.port})
    ob.sync_subscribers(store, settings.subscribers, now=T0)
    titles = new_hits(store, "gor", 2, T0)
    plain.refuse(PEOPLE[1], "550 5.1.1 mailbox unavailable")
    s = await send_digests(settings, store, now=T0 + timedelta(minutes=1))
    assert s.sent == 2 and s.failed == [
        (PEOPLE[1], "recipient bek@example.org refused: 550 5.1.1 mailbox unavailable")
    ]
    (failed,) = ob.list_outbox(store)
    assert failed.status == "failed" and failed.subscriber == PEOPLE[1] and failed.hits == 2
    assert "550 5.1.1" in (failed.last_error or "")
    # Not retried: the next run sends nothing more, and the failure stays visible.
    again = await send_digests(settings, store, now=T0 + timedelta(hours=2), force=True)
    assert again.sent == 0 and [e.id for e in ob.list_outbox(store)] == [failed.id]
    got = {m.rcpt_tos[0]: sorted(titles_in(m.message)) for m in plain.messages}
    assert got == {PEOPLE[0]: titles, PEOPLE[2]: titles}


async def test_starttls_fails_closed_and_stays_queued_until_trusted(
    tmp_path: Path, store: Store, cert: tuple[Path, Path]
) -> None:
    with SMTPServer(starttls=cert) as server:
        strict = digest_settings(tmp_path, {"port": server.port, "security": "starttls"})
        ob.sync_subscribers(store, strict.subscribers, now=T0)
        titles = new_hits(store, "gor", 2, T0)
        s = await send_digests(strict, store, now=T0 + timedelta(minutes=1))
        assert s.sent == 0 and len(s.retrying) == 3
        assert all("certificate not trusted" in r for _, r in s.retrying)
        assert server.data_attempts == 0 and len(ob.list_outbox(store)) == 3
        trusted = digest_settings(
            tmp_path, {"port": server.port, "security": "starttls", "ca_file": str(cert[0])}
        )
        s = await send_digests(trusted, store, now=T0 + timedelta(minutes=5))
        assert s.sent == 3
        assert all(m.tls for m in server.messages)
        assert_each_arrived_once(server, store, {e: titles for e in PEOPLE})


async def test_starttls_required_but_not_offered_stays_queued(
    tmp_path: Path, store: Store, plain: SMTPServer
) -> None:
    settings = digest_settings(
        tmp_path, {"port": plain.port, "security": "starttls", "verify_certificate": False}
    )
    ob.sync_subscribers(store, settings.subscribers, now=T0)
    new_hits(store, "gor", 1, T0)
    s = await send_digests(settings, store, now=T0 + timedelta(minutes=1))
    assert s.sent == 0 and all("does not offer STARTTLS" in r for _, r in s.retrying)
    assert plain.data_attempts == 0 and len(ob.list_outbox(store)) == 3


class CrashAfterSend:
    """Delivers, then dies before the outbox can record it (as a killed process would)."""

    def __init__(self, inner: SMTPDeliverer) -> None:
        self.inner = inner
        self.description = inner.description

    async def open(self) -> None:
        await self.inner.open()

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        await self.inner.send(sender, recipient, message)
        raise SystemExit("killed between the server's 250 and our commit")

    async def close(self) -> None:
        await self.inner.close()


async def test_the_one_duplicate_window_resends_the_same_message(
    tmp_path: Path, store: Store, plain: SMTPServer
) -> None:
    settings = digest_settings(tmp_path, {"port": plain.port},
                               subscribers=[{"email": PEOPLE[0], "schedule": "immediate"}])  # fmt: skip
    ob.sync_subscribers(store, settings.subscribers, now=T0)
    titles = new_hits(store, "gor", 2, T0)
    crashing = CrashAfterSend(smtp(plain))
    with pytest.raises(SystemExit):
        await send_digests(settings, store, now=T0 + timedelta(minutes=1), deliverer=crashing)
    # The claim protects the message from a second sender until its lease runs out...
    s = await send_digests(settings, store, now=T0 + timedelta(minutes=2))
    assert s.sent == 0
    s = await send_digests(settings, store, now=T0 + timedelta(minutes=1) + ob.CLAIM_LEASE)
    assert s.sent == 1
    # ...then the very same message goes again: a duplicate a mail client can recognise.
    first, second = plain.messages
    assert first.data == second.data
    assert sorted(titles_in(first.message)) == titles
    assert len(ob.list_outbox(store, statuses=("sent",))) == 1


async def test_file_delivery_is_the_default(tmp_path: Path, store: Store) -> None:
    settings = digest_settings(tmp_path, None)
    ob.sync_subscribers(store, settings.subscribers, now=T0)
    titles = new_hits(store, "gor", 3, T0)
    s = await send_digests(settings, store, now=T0 + timedelta(minutes=1))
    assert s.sent == 3 and "files in" in s.line()
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 3 and not list((tmp_path / "mail").glob(".tmp*"))
    msgs = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert sorted(m["To"] for m in msgs) == sorted(PEOPLE)
    assert all(sorted(titles_in(m)) == titles for m in msgs)  # type: ignore[arg-type]
    again = await send_digests(settings, store, now=T0 + timedelta(minutes=2), force=True)
    assert again.sent == 0 and len(list((tmp_path / "mail").glob("*.eml"))) == 3


async def test_loaded_watchlists_name_the_digest_while_a_file_is_broken(
    tmp_path: Path, store: Store
) -> None:
    """The daemon passes its last good watchlists: a bad edit on disk changes nothing in
    the mail; read from the (broken) files instead, the digest falls back to the ids."""
    from dataclasses import replace

    from monitor.watchlists import load_watchlists

    settings = digest_settings(tmp_path, None)
    loaded = [replace(w, name=f"{w.name} desk") for w in load_watchlists(settings.watchlists_dir)]
    (settings.watchlists_dir / "gor.yaml").write_text("id: gor\nentries: [\n")  # broken
    ob.sync_subscribers(store, settings.subscribers, now=T0)
    new_hits(store, "gor", 1, T0)
    s = await send_digests(settings, store, now=T0 + timedelta(minutes=1), watchlists=loaded)
    assert s.sent == 3
    new_hits(store, "gor", 1, T0 + timedelta(minutes=2))
    s = await send_digests(settings, store, now=T0 + timedelta(minutes=3))
    assert s.sent == 3
    files = sorted((tmp_path / "mail").glob("*.eml"), key=lambda f: f.stat().st_mtime_ns)
    texts = []
    for f in files:
        m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        body = m.get_body(preferencelist=("plain",))
        assert body is not None
        texts.append(body.get_content())
    assert all("Sergio Gor desk" in t for t in texts[:3])
    assert not any("desk" in t for t in texts[3:]) and all("gor" in t for t in texts[3:])


async def test_schedules_quiet_hours_and_priority(tmp_path: Path, store: Store) -> None:
    settings = digest_settings(
        tmp_path,
        None,
        subscribers=[
            {"email": "daily@example.org", "schedule": "daily 08:00", "timezone": "Asia/Almaty"},
            {"email": "quiet@example.org", "schedule": "immediate", "quiet_hours": "22:00-07:00",
             "timezone": "Asia/Almaty"},
            {"email": "prio@example.org", "schedule": "daily 08:00", "timezone": "Asia/Almaty",
             "immediate_priority": True},
        ],
    )  # fmt: skip
    start = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)  # 05:00 in Almaty
    ob.sync_subscribers(store, settings.subscribers, now=start)
    new_hits(store, "c5plus1", 1, start)
    gor = new_hits(store, "gor", 1, start)

    s = await send_digests(settings, store, now=start + timedelta(minutes=5))
    # daily: not due till 08:00; quiet: quiet until 07:00; prio: the high-priority hit now.
    assert s.queued == 1 and s.sent == 1
    assert dict(s.skipped)["daily@example.org"].startswith("next digest at 2025-03-03 03:00")
    assert dict(s.skipped)["quiet@example.org"].startswith("quiet hours until 02:00")
    prio_msgs = list((tmp_path / "mail").glob("*prio@example.org*"))
    assert len(prio_msgs) == 1
    msg = email.message_from_bytes(prio_msgs[0].read_bytes(), policy=email.policy.default)
    assert titles_in(msg) == gor  # type: ignore[arg-type]

    s = await send_digests(settings, store, now=start + timedelta(hours=2, minutes=1))  # 07:01
    assert [e for e, _ in s.skipped] == ["daily@example.org"]  # prio: nothing urgent
    assert s.sent == 1  # quiet hours are over
    s = await send_digests(settings, store, now=start + timedelta(hours=3))  # 08:00
    assert s.sent == 2 and not s.skipped  # daily gets both; prio gets the rest
    s = await send_digests(settings, store, now=start + timedelta(days=1, hours=3))
    assert s.sent == 0  # due again, nothing pending: no mail
    state = ob.subscriber_state(store, "daily@example.org")
    assert state is not None and state.last_digest_at == start + timedelta(days=1, hours=3)


async def test_preview_marks_nothing(tmp_path: Path, store: Store) -> None:
    settings = digest_settings(tmp_path, None)
    ob.sync_subscribers(store, settings.subscribers, now=T0)
    titles = new_hits(store, "gor", 2, T0)
    msg = preview_digest(settings, store, PEOPLE[0], now=T0 + timedelta(minutes=1))
    assert msg is not None and sorted(titles_in(msg)) == titles
    assert msg["Subject"] == "Sergio Gor: 2 new stories"
    assert ob.list_outbox(store, statuses=("queued", "sent", "failed")) == []
    assert len(ob.pending_hits(store, PEOPLE[0], None)) == 2
    assert preview_digest(settings, store, PEOPLE[0], now=T0) is not None
    with pytest.raises(ConfigError):
        preview_digest(settings, store, "stranger@example.org")


def test_cli_send_now_preview_and_outbox(tmp_path: Path, plain: SMTPServer) -> None:
    config = tmp_path / "monitor.toml"
    db = tmp_path / "monitor.db"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[watchlists]\ndir = "{tmp_path / "wl"}"\n'
        f'[smtp]\nhost = "{HOST}"\nport = {plain.port}\nsecurity = "none"\n'
        '[[subscribers]]\nemail = "ana@example.org"\nschedule = "weekly mon 08:00"\n'
    )
    (tmp_path / "wl").mkdir()
    runner = CliRunner()
    first = runner.invoke(cli, ["--config", str(config), "digest", "--send-now"])
    assert first.exit_code == 0, first.output
    assert "0 digests queued" in first.output
    store = open_store(f"sqlite:///{db}")
    try:
        titles = new_hits(store, "gor", 2, datetime.now(UTC))
    finally:
        store.dispose()
    html = tmp_path / "preview.html"
    out = runner.invoke(cli, ["--config", str(config), "digest", "preview", "ana@example.org",
                              "--html", str(html)])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "Subject: gor: 2 new stories" in out.output and titles[0] in out.output
    assert "<table" in html.read_text()
    plain.refuse("ana@example.org", "550 5.7.1 not here")
    sent = runner.invoke(cli, ["--config", str(config), "digest", "--send-now",
                               "--subscriber", "ana@example.org"])  # fmt: skip
    assert sent.exit_code == 1
    assert "failed: ana@example.org: recipient ana@example.org refused: 550 5.7.1" in sent.output
    listing = runner.invoke(cli, ["--config", str(config), "outbox"])
    assert listing.exit_code == 0
    assert "failed" in listing.output and "550 5.7.1 not here" in listing.output
