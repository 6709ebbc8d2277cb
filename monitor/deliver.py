"""Delivery: hand rendered messages to a mail server, or write them as .eml files.

Both deliverers follow :class:`Deliverer`: ``open()`` once, ``send()`` per message,
``close()`` once, so one SMTP connection carries a whole batch. ``send`` returns what the
server (or the file system) said, or raises:

* :class:`TemporaryFailure`: try again later. Server unreachable, a 4xx reply, a dropped
  connection or timeout, TLS that cannot be set up or verified, a refused login, our
  sender refused. ``reconnect`` says the connection is gone (``send`` reconnects itself).
* :class:`PermanentFailure`: a 5xx reply about *this* message or recipient; the other
  messages of the batch go on.

Security (``[smtp] security``): ``starttls`` upgrades the connection and refuses to send
when the server does not offer STARTTLS (never a silent plain-text fallback); ``tls`` is
TLS from the first byte (port 465); ``none`` is plain text (for a local relay).
Certificates are verified unless ``verify_certificate = false``; ``ca_file`` adds a CA.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Protocol

import aiosmtplib

from monitor.config import Settings
from monitor.errors import DeliveryError

__all__ = [
    "Deliverer",
    "FileDeliverer",
    "PermanentFailure",
    "SMTPDeliverer",
    "TemporaryFailure",
    "deliverer_from_settings",
]

log = logging.getLogger(__name__)


class TemporaryFailure(DeliveryError):
    """Not delivered this time; the message stays queued."""

    def __init__(self, message: str, *, reconnect: bool = False, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.reconnect = reconnect


class PermanentFailure(DeliveryError):
    """The server refused this message for good (5xx)."""

    hint = "see `monitor outbox`; the reason is the server's"


class Deliverer(Protocol):
    """Where digests go. ``open``/``close`` bracket a batch."""

    @property
    def description(self) -> str: ...

    async def open(self) -> None: ...

    async def send(self, sender: str, recipient: str, message: bytes) -> str: ...

    async def close(self) -> None: ...


# --- SMTP ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SMTPOptions:
    host: str
    port: int = 587
    security: str = "starttls"  # starttls | tls | none
    username: str | None = None
    password: str | None = None
    verify_certificate: bool = True
    ca_file: str | None = None
    timeout: float = 30.0
    local_hostname: str | None = None


def tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """The client TLS context: system CAs (plus ``ca_file``), hostname checked; or, with
    ``verify`` off, encryption without any certificate check."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(
                f"smtp.ca_file: cannot load {ca_file}: {exc}",
                hint="point [smtp] ca_file at a PEM file of CA certificates",
            ) from exc
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _code_reason(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {' '.join(exc.message.split())}"


class SMTPDeliverer:
    """Delivery over SMTP with aiosmtplib, one connection per batch."""

    def __init__(self, options: SMTPOptions) -> None:
        if options.security not in ("starttls", "tls", "none"):
            raise DeliveryError(f"smtp.security: unknown value {options.security!r}")
        self.options = options
        self._context = (
            tls_context(options.verify_certificate, options.ca_file)
            if options.security != "none"
            else None
        )
        self._client: aiosmtplib.SMTP | None = None

    @property
    def description(self) -> str:
        o = self.options
        return f"smtp://{o.host}:{o.port} ({o.security})"

    async def open(self) -> None:
        if self._client is not None and self._client.is_connected:
            return
        o = self.options
        client = aiosmtplib.SMTP(
            hostname=o.host,
            port=o.port,
            timeout=o.timeout,
            use_tls=o.security == "tls",
            start_tls=o.security == "starttls",  # True: fail when not offered
            tls_context=self._context,
            local_hostname=o.local_hostname,
        )
        try:
            await client.connect()
            if o.username:
                if o.security == "none":
                    log.warning("logging in to %s without TLS", self.description)
                await client.login(o.username, o.password or "")
        except BaseException as exc:
            await _quietly_close(client)
            raise self._connect_failure(exc) from exc
        self._client = client
        log.debug("connected to %s", self.description)

    def _connect_failure(self, exc: BaseException) -> BaseException:
        where = self.description
        if isinstance(exc, ssl.SSLCertVerificationError) or (
            isinstance(exc.__cause__ or exc.__context__, ssl.SSLCertVerificationError)
        ):
            return TemporaryFailure(
                f"{where}: TLS certificate not trusted: {_ssl_reason(exc)}",
                hint="install the server's CA in [smtp] ca_file (or, for a test server only, "
                "set verify_certificate = false); mail stays queued",
            )
        if isinstance(exc, ssl.SSLError):
            return TemporaryFailure(f"{where}: TLS failed: {_ssl_reason(exc)}")
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return TemporaryFailure(
                f"{where}: login refused: {_code_reason(exc)}",
                hint="check [smtp] username and the password file; mail stays queued",
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return TemporaryFailure(f"{where}: {_code_reason(exc)}")
        if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS" in str(exc).upper():
            return TemporaryFailure(
                f"{where}: the server does not offer STARTTLS; not sending in plain text",
                hint='use security = "tls" (port 465) if the server speaks TLS from the start, '
                'or "none" only for a trusted local relay; mail stays queued',
            )
        if isinstance(exc, TimeoutError):
            return TemporaryFailure(f"{where}: timed out connecting")
        if isinstance(exc, aiosmtplib.SMTPException | OSError):
            return TemporaryFailure(f"{where}: cannot connect: {_plain(exc)}")
        if isinstance(exc, asyncio.CancelledError):
            return exc
        return TemporaryFailure(f"{where}: {type(exc).__name__}: {_plain(exc)}")

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Send one message; reconnects first when the last connection was lost."""
        if self._client is None or not self._client.is_connected:
            self._client = None
            await self.open()
        assert self._client is not None
        try:
            return await self._sendmail(sender, recipient, message)
        except TemporaryFailure as exc:
            if exc.reconnect:
                await self._drop()
            raise

    async def _sendmail(self, sender: str, recipient: str, message: bytes) -> str:
        assert self._client is not None
        try:
            errors, reply = await self._client.sendmail(sender, [recipient], message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            raise self._reply_failure(first, f"recipient {recipient} refused") from exc
        except aiosmtplib.SMTPSenderRefused as exc:
            # Our envelope sender is refused: a configuration problem, not this mail's.
            raise TemporaryFailure(
                f"{self.description}: sender {sender} refused: {_code_reason(exc)}",
                reconnect=exc.code == 421,
                hint="check [smtp] sender; mail stays queued",
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise self._reply_failure(exc, "message refused") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporaryFailure(
                f"{self.description}: connection lost: {_plain(exc)}", reconnect=True
            ) from exc
        if errors:  # one recipient per message: any refusal is the refusal
            code, text = next(iter(errors.values()))
            raise self._reply_failure(
                aiosmtplib.SMTPResponseException(code, text), "recipient refused"
            )
        return " ".join(reply.split())

    def _reply_failure(
        self, exc: aiosmtplib.SMTPResponseException, what: str
    ) -> TemporaryFailure | PermanentFailure:
        reason = f"{what}: {_code_reason(exc)}"
        if 500 <= exc.code < 600:
            return PermanentFailure(reason)
        if exc.code == 421:  # the server is closing the connection
            return TemporaryFailure(reason, reconnect=True)
        return TemporaryFailure(reason)

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quietly_close(client)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.is_connected:
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            await _quietly_close(client)


async def _quietly_close(client: aiosmtplib.SMTP) -> None:
    try:
        client.close()
    except Exception:  # closing a broken transport may fail in many ways; it is gone
        log.debug("closing the SMTP client failed", exc_info=True)
    await asyncio.sleep(0)  # let the transport finish closing (no unclosed warnings)


def _plain(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _ssl_reason(exc: BaseException) -> str:
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, ssl.SSLCertVerificationError):
            return e.verify_message or _plain(e)
        if isinstance(e, ssl.SSLError):
            return e.reason or _plain(e)
    return _plain(exc)


# --- files --------------------------------------------------------------------------


_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


class FileDeliverer:
    """Writes each message as ``<time>-<recipient>-<hash>.eml`` in a folder, atomically
    (a temporary file in the same folder, fsync, rename): a reader never sees half a
    message, and a crash leaves at most a stray ``.tmp`` file."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @property
    def description(self) -> str:
        return f"files in {self.directory}"

    async def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TemporaryFailure(
                f"cannot create the delivery folder {self.directory}: {exc.strerror}",
                hint="check [delivery] dir",
            ) from exc

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        digest = sha256(message).hexdigest()[:12]
        name = f"{stamp}-{_UNSAFE.sub('_', recipient)[:80]}-{digest}.eml"
        path = self.directory / name
        try:
            await asyncio.to_thread(_write_atomically, path, message)
        except OSError as exc:
            raise TemporaryFailure(f"cannot write {path}: {exc.strerror or exc}") from exc
        return str(path)

    async def close(self) -> None:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".eml", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- choosing -----------------------------------------------------------------------


def deliverer_from_settings(settings: Settings) -> Deliverer:
    """SMTP when ``[smtp] host`` is set, else .eml files in ``[delivery] dir``."""
    host = settings["smtp.host"]
    if not host:
        return FileDeliverer(settings["delivery.dir"])
    return SMTPDeliverer(
        SMTPOptions(
            host=host,
            port=settings["smtp.port"],
            security=settings["smtp.security"],
            username=settings["smtp.username"],
            password=settings.smtp_password() if settings["smtp.username"] else None,
            verify_certificate=settings["smtp.verify_certificate"],
            ca_file=settings["smtp.ca_file"],
            timeout=settings["smtp.timeout"],
        )
    )
