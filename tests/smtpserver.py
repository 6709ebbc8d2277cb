"""Real SMTP servers on 127.0.0.1 for tests: aiosmtpd in a thread of its own.

::

    with SMTPServer() as server:                 # plain SMTP, accepts everything
        ... deliver to 127.0.0.1:server.port ...
        assert server.messages[0].rcpt_tos == ["a@example.org"]

    server.script_data("451 4.3.0 try later", "drop", "250")   # replies to the next DATAs
    server.refuse("gone@example.org", "550 5.1.1 no such user") # a RCPT reply

    cert = self_signed_cert(tmp_path)             # (cert.pem, key.pem) for 127.0.0.1
    with SMTPServer(starttls=cert) as server: ...   # offers STARTTLS
    with SMTPServer(implicit_tls=cert) as server: ...  # TLS from the first byte
    with SMTPServer(starttls=cert, auth={"monitor": "secret"}) as server: ...
    with SMTPServer(port=port) as server: ...        # a given port (a server coming back)

``"drop"`` closes the connection after the message's data arrived, before any reply: the
client cannot know whether it was accepted (it was not). Servers stop cleanly on exit.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import ssl
import subprocess
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Handler:
    """Records accepted messages; replies as scripted."""

    messages: list[Received] = field(default_factory=list)
    data_replies: deque[str] = field(default_factory=deque)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_attempts: int = 0
    sessions: list[Session] = field(default_factory=list)  # one per connection that sent DATA
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        with self.lock:
            reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.data_attempts += 1
            if not any(s is session for s in self.sessions):
                self.sessions.append(session)
            reply = self.data_replies.popleft() if self.data_replies else "250"
        if reply == "drop":
            assert server.transport is not None
            server.transport.abort()
            return "250 never seen"
        if not reply.startswith("2"):
            return reply
        data = envelope.original_content or b""
        tls = server.transport is not None and bool(server.transport.get_extra_info("ssl_object"))
        login = session.auth_data.login.decode() if session.auth_data else None  # type: ignore[union-attr]
        with self.lock:
            self.messages.append(
                Received(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    data=data,
                    tls=tls,
                    login=login,
                )
            )
        return "250 2.0.0 Message accepted for delivery"


class _Controller(Controller):
    def __init__(
        self, handler: Handler, *, port: int, implicit_ssl: ssl.SSLContext | None, **kw: Any
    ) -> None:
        self._implicit_ssl = implicit_ssl
        super().__init__(handler, hostname=HOST, port=port, ssl_context=implicit_ssl, **kw)

    def _trigger_server(self) -> None:
        # The stock readiness check wraps its probe with the *server* context; probe with
        # a client context that trusts anything instead.
        with socket.create_connection((HOST, self.port), 1.0) as raw:
            if self._implicit_ssl is None:
                raw.recv(1024)
                return
            probe = ssl.create_default_context()
            probe.check_hostname = False
            probe.verify_mode = ssl.CERT_NONE
            with probe.wrap_socket(raw) as wrapped:
                wrapped.recv(1024)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


class SMTPServer:
    """An aiosmtpd server on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        *,
        starttls: tuple[Path, Path] | None = None,
        implicit_tls: tuple[Path, Path] | None = None,
        auth: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.handler = Handler()
        kwargs: dict[str, Any] = {"ready_timeout": 5.0}
        if starttls is not None:
            kwargs["tls_context"] = server_context(starttls)
        if auth is not None:
            users = dict(auth)

            def authenticator(
                server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
            ) -> AuthResult:
                ok = isinstance(data, LoginPassword) and users.get(data.login.decode()) == (
                    data.password.decode()
                )
                return AuthResult(success=ok, handled=False, auth_data=data)

            kwargs["authenticator"] = authenticator
            kwargs["auth_require_tls"] = starttls is not None
        self.controller = _Controller(
            self.handler,
            port=port or free_port(),
            implicit_ssl=server_context(implicit_tls) if implicit_tls is not None else None,
            **kwargs,
        )
        self.host = HOST

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def data_attempts(self) -> int:
        with self.handler.lock:
            return self.handler.data_attempts

    @property
    def connections(self) -> int:
        """Connections that carried at least one DATA."""
        with self.handler.lock:
            return len(self.handler.sessions)

    def script_data(self, *replies: str) -> None:
        """Replies to the next DATA commands, in order ("250", "451 ...", "drop")."""
        with self.handler.lock:
            self.handler.data_replies.extend(replies)

    def refuse(self, address: str, reply: str) -> None:
        with self.handler.lock:
            self.handler.rcpt_replies[address] = reply

    def accept_all(self) -> None:
        with self.handler.lock:
            self.handler.rcpt_replies.clear()
            self.handler.data_replies.clear()

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def self_signed_cert(directory: Path, host: str = HOST) -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (cert.pem, key.pem): with the
    ``cryptography`` package when installed, else the ``openssl`` command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        _cert_with_cryptography(cert, key, host)
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("need the cryptography package or the openssl command") from None
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={host}",
             "-addext", f"subjectAltName=IP:{host},DNS:localhost",
             "-addext", "basicConstraints=critical,CA:TRUE"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    return cert, key


def _cert_with_cryptography(cert_path: Path, key_path: Path, host: str) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
