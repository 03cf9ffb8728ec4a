"""Sending an email through an Airflow SMTP connection (apache-airflow-providers-smtp), raising on any failure.

The provider's ``SmtpHook`` does what a deployment configures in the connection: host, port, implicit TLS
(on unless the extra ``disable_ssl`` is true), STARTTLS on a plain connection (unless ``disable_tls``; never
inside implicit TLS, where the provider would ask for it too), ``ssl_context``, timeout,
login (basic, or ``auth_type`` oauth2) and the sender (extra ``from_email``). Two things are ours:

- The message. The hook's ``send_email_smtp`` builds its own ``multipart/mixed`` with files attached as
  ``application/octet-stream`` and no text part; the digest needs ``alternative``/``related`` with an inline
  PNG. So the hook logs in and this module hands the finished message to the hook's SMTP client.
- Retries. The hook retries a lost connection and every failed send ``retry_limit`` more times (5 unless
  the connection says otherwise), a refused recipient or a wrong password included. The Airflow task owns
  retries (with backoff, and visible in the UI), so the hook here tries once and every failure raises
  :class:`EmailDeliveryError` with the reason: the SMTP code and text, or the network error. Its ``retryable`` is
  False for settings no retry can fix (no connection, host, sender or recipient).

A recipient the server refuses fails the send even when others accepted it: the task must not report a
digest as sent to people who did not get it.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
import unicodedata
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr

from greenery.redaction import REDACTED, redact

log = logging.getLogger(__name__)


class EmailDeliveryError(RuntimeError):
    """An email was not delivered (or not to every recipient); the message says why and through what."""

    def __init__(
        self,
        message: str,
        *,
        conn_id: str,
        delivered: Sequence[str] = (),
        maybe_delivered: bool = False,
        retryable: bool = True,
    ):
        super().__init__(message)
        self.conn_id = conn_id
        # False for a settings error found before any server is asked (no connection, host, sender or recipient):
        # retrying cannot fix it, it only delays the red (review: the digest retried these for minutes while Slack's
        # failed at once). Whatever the server or the network answered is worth the task's retries, as before.
        self.retryable = retryable
        self.delivered = list(delivered)  # the recipients the server took before it refused the others
        # The message went to the server and its answer never came: it may be in the inboxes (a retry would send a
        # second copy to everyone).
        self.maybe_delivered = maybe_delivered


def invalid_addresses(addresses: Sequence[str]) -> list[str]:
    """The addresses that do not look like one address each (``name@domain``, nothing else): a domain of at least two
    labels, none empty (``example..com``), and no invisible character (a direction control, a zero-width space)."""
    bad = []
    for address in addresses:
        _, parsed = parseaddr(address)
        local, at, domain = parsed.rpartition("@")
        labels = domain.split(".")
        if (
            not (at and local and len(labels) > 1 and all(labels))
            or any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in parsed)
            or parsed != address.strip()
        ):
            bad.append(address)
    return bad


def _reply(code: int | None, text: bytes | str | None) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text or "")
    return f"{code} {text}".strip() if code is not None else text


def _connection(conn_id: str):
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise EmailDeliveryError(
            f"SMTP connection {conn_id!r} is not defined (create it: conn_type smtp, host, port, login, password,"
            " extra from_email)",
            conn_id=conn_id,
            retryable=False,
        ) from None


def sender_of(conn_id: str) -> str:
    """The sender the SMTP connection names (extra ``from_email``: ``name@domain`` or ``Name <name@domain>``, as
    Airflow's own email settings take it); raises EmailDeliveryError without one."""
    sender = _connection(conn_id).extra_dejson.get("from_email")
    if not sender or not parseaddr(str(sender))[1] or invalid_addresses([parseaddr(str(sender))[1]]):
        raise EmailDeliveryError(
            f"SMTP connection {conn_id!r} names no valid sender: set its extra from_email (found {sender!r})",
            conn_id=conn_id,
            retryable=False,
        )
    return str(sender)


def send(message: EmailMessage, conn_id: str) -> list[str]:
    """Send ``message`` through the SMTP connection ``conn_id``; returns the recipients.

    The message's ``From`` defaults to the connection's ``from_email`` extra. Raises EmailDeliveryError
    naming the server and the reason when the connection is missing or incomplete, the server cannot be
    reached, TLS fails, the login is refused, or the server refuses the sender, any recipient or the data.
    """
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    class OneTrySmtpHook(SmtpHook):
        """SmtpHook whose connect and send loops run once: the Airflow task retries, not the hook."""

        @property
        def smtp_retry_limit(self) -> int:
            return 0

        @property
        def smtp_starttls(self) -> bool:
            # STARTTLS upgrades a plain connection only: inside implicit TLS (the default) the server offers none,
            # and with neither extra set every try failed on it (review).
            return super().smtp_starttls and not self.use_ssl

    conn = _connection(conn_id)
    secrets = [s for s in (conn.password,) if s]

    def safe(text: object) -> str:
        text = str(text)
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return redact(text)

    hook = OneTrySmtpHook(smtp_conn_id=conn_id)
    hook.smtp_connection = conn
    implicit_tls = hook.use_ssl
    where = f"{conn.host or '?'}:{conn.port or (465 if implicit_tls else 25)}"
    what = f"email not sent through SMTP connection {conn_id!r} ({where})"
    if not conn.host:
        raise EmailDeliveryError(f"{what}: the connection has no host", conn_id=conn_id, retryable=False)
    if "From" not in message:
        if not hook.from_email:
            raise EmailDeliveryError(
                f"{what}: no sender: set the connection's extra from_email", conn_id=conn_id, retryable=False
            )
        message["From"] = hook.from_email
    recipients = [address for _, address in getaddresses(message.get_all("To", []) + message.get_all("Cc", []))]
    if not recipients:
        raise EmailDeliveryError(f"{what}: the message has no recipient", conn_id=conn_id, retryable=False)

    data_sent = False
    try:
        hook.get_conn()  # connect, TLS, login: the connection's settings, as Airflow defines them
        client = hook._smtp_client  # the hook has no public "send this MIME message" (see the docstring)
        data = client.data

        def data_noted(msg):
            # Review: the server took the message but its answer after it came too late (a content scanner, a
            # dropped link); the retry then mailed everyone a second copy. Once DATA is under way, a lost
            # connection may mean delivered (RFC 5321 §4.5.3.2.6 waits 10 minutes for that answer; the hook 30 s).
            nonlocal data_sent
            data_sent = True
            return data(msg)

        client.data = data_noted  # send_message's own flattening and envelope, unchanged
        refused = client.send_message(message, to_addrs=recipients)
    except smtplib.SMTPAuthenticationError as err:
        raise EmailDeliveryError(
            f"{what}: the server refused the login of {conn.login!r}: {_reply(err.smtp_code, err.smtp_error)};"
            " check the connection's login and password",
            conn_id=conn_id,
        ) from None
    except smtplib.SMTPRecipientsRefused as err:
        refusals = "; ".join(f"{a}: {_reply(*reason)}" for a, reason in err.recipients.items())
        raise EmailDeliveryError(
            f"{what}: the server refused every recipient: {safe(refusals)}", conn_id=conn_id
        ) from None
    except smtplib.SMTPSenderRefused as err:
        raise EmailDeliveryError(
            f"{what}: the server refused the sender {err.sender!r}: {_reply(err.smtp_code, err.smtp_error)}",
            conn_id=conn_id,
        ) from None
    except smtplib.SMTPResponseException as err:
        raise EmailDeliveryError(f"{what}: {safe(_reply(err.smtp_code, err.smtp_error))}", conn_id=conn_id) from None
    except ssl.SSLError as err:
        if data_sent:  # TLS broke while the server took the message: maybe delivered, as below (review)
            raise _maybe_delivered(len(recipients), conn_id, where, err, safe) from None
        hint = (
            "the server may not speak TLS from the start (port 465): set the extra disable_ssl to true for"
            " STARTTLS or a plain port"
            if implicit_tls
            else "check the server's certificate, or the extras disable_tls / ssl_context"
        )
        raise EmailDeliveryError(f"{what}: TLS failed ({safe(err)}); {hint}", conn_id=conn_id) from None
    except (smtplib.SMTPException, OSError) as err:  # refused, unreachable, DNS, timeout, STARTTLS unsupported
        if data_sent:
            raise _maybe_delivered(len(recipients), conn_id, where, err, safe) from None
        raise EmailDeliveryError(
            f"{what}: cannot talk to the server: {type(err).__name__}: {safe(err)}", conn_id=conn_id
        ) from None
    except Exception as err:  # the hook's own AirflowException ("Unable to connect to smtp server", oauth2)
        # Review: the hook's "Unable to connect" hid why (closed at once, no answer): the error it wraps says.
        cause = err.__cause__ or err.__context__
        why = f" ({type(cause).__name__}: {safe(cause) or '-'})" if cause is not None else ""
        raise EmailDeliveryError(f"{what}: {type(err).__name__}: {safe(err)}{why}", conn_id=conn_id) from None
    finally:
        client = getattr(hook, "_smtp_client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.quit()
            with contextlib.suppress(Exception):
                client.close()
    if refused:
        refusals = "; ".join(f"{a}: {_reply(*reason)}" for a, reason in refused.items())
        delivered = len(recipients) - len(refused)
        raise EmailDeliveryError(
            f"{what}: delivered to {delivered} of {len(recipients)} recipients; refused: {safe(refusals)}",
            conn_id=conn_id,
            delivered=[r for r in recipients if r not in refused],
        )
    log.info("email %r sent through %r (%s) to %d recipients", message["Subject"], conn_id, where, len(recipients))
    return recipients


def _maybe_delivered(count: int, conn_id: str, where: str, err: BaseException, safe) -> EmailDeliveryError:
    """The connection broke once DATA was under way: the server may have taken the message (not retried)."""
    return EmailDeliveryError(
        f"email to {count} recipients through SMTP connection {conn_id!r} ({where}) may have been delivered: the"
        f" connection was lost while the server took the message ({type(err).__name__}: {safe(err)}); look in a"
        " recipient's inbox before sending it again",
        conn_id=conn_id,
        maybe_delivered=True,
    )
