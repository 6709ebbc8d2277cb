"""Delivery against real SMTP servers on 127.0.0.1 (aiosmtpd), and to .eml files."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtpserver import HOST, SMTPServer, free_port, self_signed_cert

from monitor.config import settings_from_mapping
from monitor.deliver import (
    FileDeliverer,
    PermanentFailure,
    SMTPDeliverer,
    SMTPOptions,
    TemporaryFailure,
    deliverer_from_settings,
)

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
