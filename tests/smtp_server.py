"""A real SMTP server on 127.0.0.1 for tests (aiosmtpd), that requires a login and records what it receives.

- AUTH PLAIN/LOGIN over the plain loopback connection (``auth_require_tls=False``: no certificate to make),
  and required before MAIL FROM; the one account is ``USER``/``PASSWORD``. Every login attempt is recorded
  with the client's address (``logins``), every RCPT TO too (``rcpts``), so a test sees whether a client
  reconnected or retried.
- Recipients in the domain ``REFUSED_DOMAIN`` are refused with 550 at RCPT TO (a bad recipient), and so are
  senders at MAIL FROM, with 553 (a sender the server does not relay for).
- ``messages`` holds every accepted message: envelope sender, recipients, the login, the raw bytes.
- ``conn_json()`` is the AIRFLOW_CONN_* value of an Airflow SMTP connection to it (no TLS: the provider's
  extras ``disable_ssl`` and ``disable_tls``).
- ``FakeSmtp(tls="starttls")`` requires STARTTLS before a login, ``tls="implicit"`` speaks TLS from the start (as
  port 465 does), each with a certificate made for the server, for 127.0.0.1 (``certified``: another address);
  ``ca_file`` is that certificate, for a client to trust (``SSL_CERT_FILE``), and ``conn_json()`` then leaves TLS
  to the provider's defaults.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = "digest"
PASSWORD = "s3cret-smtp-pw"  # noqa: S105 (fake)
SENDER = "greenery@example.com"
REFUSED_DOMAIN = "nowhere.invalid"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    login: str | None
    content: bytes
    tls: bool  # the message came over TLS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, server: FakeSmtp) -> None:
        self._server = server

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address.lower().endswith("@" + REFUSED_DOMAIN):
            return f"553 5.7.1 <{address}>: sender address rejected"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self._server.rcpts.append(address)
        if address.lower().endswith("@" + REFUSED_DOMAIN):
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data if session.authenticated else None  # what _authenticate returned
        # STARTTLS sets session.ssl; implicit TLS is the transport's (aiosmtpd leaves session.ssl unset then).
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), login, envelope.content, tls)
        self._server.messages.append(received)
        if self._server.data_answer_delay:  # stored, answered late: a content scanner, a slow link
            await asyncio.sleep(self._server.data_answer_delay)
        return "250 Message accepted for delivery"


def _certificate(folder: Path, address: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``address`` and its key, written to ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class FakeSmtp:
    def __init__(self, tls: str | None = None, certified: str = "127.0.0.1") -> None:
        self.messages: list[Received] = []
        self.logins: list[tuple[tuple, str, bool]] = []  # (client address, user, accepted) per AUTH attempt
        self.rcpts: list[str] = []  # every RCPT TO, accepted or not
        self.data_answer_delay = 0.0
        self.port = free_port()
        self.tls = tls
        self._folder = tempfile.TemporaryDirectory(prefix="fake-smtp-")
        self.ca_file: Path | None = None
        options: dict = {"auth_require_tls": False}
        if tls is not None:
            self.ca_file, key_file = _certificate(Path(self._folder.name), certified)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.ca_file, key_file)
            if tls == "starttls":  # a login before STARTTLS is refused
                options = {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
            elif tls == "implicit":  # all TLS (aiosmtpd's auth_require_tls would hide AUTH: it looks for STARTTLS)
                options |= {"ssl_context": context}
            else:
                raise ValueError(f"tls: 'starttls', 'implicit' or None, not {tls!r}")
        self._controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            auth_required=True,
            **options,
        )
        self._controller.start()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        ok = (user, password) == (USER, PASSWORD)
        self.logins.append((session.peer, user, ok))
        return AuthResult(success=ok, handled=False, auth_data=user)  # handled=False: the server answers 535

    def conn_json(self, *, password: str = PASSWORD, port: int | None = None, **extra) -> str:
        return json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port or self.port,
                "login": USER,
                "password": password,
                "extra": {
                    "from_email": SENDER,
                    "disable_ssl": self.tls != "implicit",
                    "disable_tls": self.tls != "starttls",
                    "timeout": 10,
                    **extra,
                },
            }
        )

    def answer_data_after(self, seconds: float) -> None:
        """Store each message at once but answer it ``seconds`` later."""
        self.data_answer_delay = seconds

    def close(self) -> None:
        self._controller.stop()
        self._folder.cleanup()

    def __enter__(self) -> FakeSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
