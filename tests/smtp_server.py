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
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

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
        self._server.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), login, envelope.content))
        return "250 Message accepted for delivery"


class FakeSmtp:
    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.logins: list[tuple[tuple, str, bool]] = []  # (client address, user, accepted) per AUTH attempt
        self.rcpts: list[str] = []  # every RCPT TO, accepted or not
        self.port = free_port()
        self._controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            auth_required=True,
            auth_require_tls=False,
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
                "extra": {"from_email": SENDER, "disable_ssl": True, "disable_tls": True, "timeout": 10, **extra},
            }
        )

    def close(self) -> None:
        self._controller.stop()

    def __enter__(self) -> FakeSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
