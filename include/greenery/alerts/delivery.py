"""Delivering a Slack payload through an Airflow connection, raising on any failure.

- conn_type ``slackwebhook`` (Incoming Webhook; the password is the token or the full webhook URL): the URL,
  timeout, TLS context and proxy of ``SlackWebhookHook``'s client, posted by webhook_post.py (redirects refused). Slack
  answers a delivered message with 200 and exactly ``ok``: anything else is an error. The channel is fixed by the
  webhook.
- conn_type ``slack`` (API token; extra ``base_url`` may point elsewhere, e.g. ``http://host:port/api/``):
  ``SlackHook.client.chat_postMessage(channel=...)``; a channel is required.

Every failure to deliver raises :class:`SlackDeliveryError` (HTTP status and a truncated response body in
the message, never the webhook URL or token). slack_sdk's own retries are switched off: the Airflow task
owns retries. Slack's Web API reports its errors in HTTP 200 answers (``{"ok": false, "error": code}``), so
the code, not the status, tells a transient one from a configuration error.

Images: a Block Kit image block needs a public URL (``image_url``) or a file uploaded to Slack, and this
deployment has no public image hosting. :func:`upload_image` shares a PNG in a channel through an API-token
connection (``files_upload_v2``, scope ``files:write``), as its own message right after the one it belongs
to. Slack documents that a file uploaded without a channel is visible to the uploader only and that
upload processing is asynchronous, so pointing an image block (``slack_file``) at a fresh private upload
is not reliable; sharing the file into the channel is. Webhooks cannot upload at all.
"""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from greenery.alerts import webhook_post
from greenery.printable import printable
from greenery.redaction import REDACTED, redact

log = logging.getLogger(__name__)

WEBHOOK_CONN_TYPE = "slackwebhook"
API_CONN_TYPE = "slack"
SLACK_OFF = "none"  # GREENERY_ALERT_CONN_ID's value for no Slack, on purpose

# Web API error codes of Slack being busy or failing for a while (docs.slack.dev, chat.postMessage and the errors
# every method may answer): worth another try. Review: they came in HTTP 200 answers and counted as configuration
# errors, so alert_slack failed at once saying to correct the connection, and nobody was paged.
TRANSIENT_API_ERRORS = frozenset({"ratelimited", "rate_limited", "service_unavailable", "request_timeout"})
# Slack documents of these that "some aspect of the operation succeeded before the error was raised": the message
# may have been posted. Transient too, but a second post could page twice: they are maybe delivered.
MAYBE_POSTED_API_ERRORS = frozenset({"internal_error", "fatal_error"})
# Slack refusing the message itself (its Web API's codes, and an Incoming Webhook's 400 answers): nothing in the
# connection to correct (review: "correct the connection" sent on-call to the wrong place).
CONTENT_ERRORS = frozenset(
    {"msg_too_long", "msg_blocks_too_long", "invalid_blocks", "invalid_blocks_format", "no_text", "invalid_payload"}
    | {"too_many_attachments", "invalid_attachments", "invalid_arguments"}
)


class SlackDeliveryError(RuntimeError):
    """A Slack message was not delivered (HTTP error, Slack API error, unreachable, misconfigured).

    ``status`` is the HTTP status when Slack (or whatever answered) replied, else None; ``body`` is the
    truncated, redacted response body when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        conn_id: str,
        status: int | None = None,
        body: str | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
        maybe_delivered: bool = False,
        api_error: str | None = None,
    ):
        super().__init__(message)
        self.conn_id = conn_id
        self.status = status
        self.body = body
        # Seconds Slack asked to wait before trying again (its Retry-After header), when it did.
        self.retry_after = retry_after
        # The request went out and no answer came (a read timeout, the connection dropped), or Slack answered an error
        # after which it may have posted it (MAYBE_POSTED_API_ERRORS): sending it again could post it twice. A refused
        # or unreachable connection sent nothing.
        self.maybe_delivered = maybe_delivered
        # Slack's error code when its Web API answered {"ok": false} with a 2xx status, else None.
        self.api_error = api_error
        # False for a configuration error: retrying cannot fix it, it only delays the red (review: a missing channel,
        # a wrong conn_type, a revoked token or an unknown channel were retried). Worth another try: no answer at all
        # (unreachable), Slack rate limiting (429), failing (5xx) or saying so in a 200 (TRANSIENT_API_ERRORS,
        # MAYBE_POSTED_API_ERRORS); any other answer is the configuration's.
        transient = api_error in TRANSIENT_API_ERRORS or api_error in MAYBE_POSTED_API_ERRORS
        self.retryable = retryable and (status is None or status == 429 or status >= 500 or transient)
        # Slack refused what was sent, not who sent it (CONTENT_ERRORS).
        self.content_refused = api_error in CONTENT_ERRORS or (status == 400 and (body or "").strip() in CONTENT_ERRORS)


def _connection_secrets(conn: Any) -> list[str]:
    """Strings of a connection that must never leave in a payload or an error message."""
    secrets = []
    password = (conn.password or "").strip()
    if password:
        secrets.append(password)
        path = urlsplit(password).path if "://" in password else password
        secrets.append(path.strip("/"))
        secrets += [s for s in path.split("/") if len(s) >= 8 and s not in ("services", "workflows", "triggers")]
    host = (conn.host or "").strip()
    if "/services/" in host:
        secrets.append(host)
    # Longest first, so that a URL is replaced before its parts; short strings would mask too much.
    return sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value


def _safe(text: Any, secrets: list[str], limit: int = 500) -> str:
    text = redact(_scrub(str(text), secrets))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(text: Any, secrets: list[str], limit: int = 200) -> str:
    """What answered, for an error message on one line: it is untrusted (a proxy's HTML page), so its newlines and
    other invisible or direction-changing characters are shown as escapes, credentials masked, and it is cut."""
    return _safe(printable(text or ""), secrets, limit)


def send(
    payload: Mapping[str, Any], conn_id: str, channel: str | None = None, *, timeout: int | None = None
) -> dict[str, str] | None:
    """Deliver ``payload`` (``{"text", "blocks", ...}``) through the Airflow connection ``conn_id``.

    ``slackwebhook`` connections post to their webhook (``channel`` cannot be changed and is ignored with a
    warning); ``slack`` connections call ``chat.postMessage`` on ``channel`` (required). ``timeout``
    (seconds) overrides the connection's ``timeout`` extra / slack_sdk's 30 s default. No client-side
    retries. Raises SlackDeliveryError on any failure. Returns, for an API-token connection, the posted
    message's ``channel`` (its id) and ``ts``; None for a webhook (it answers "ok" and nothing else).
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise SlackDeliveryError(not_defined(conn_id), conn_id=conn_id, retryable=False) from None
    conn_type = (conn.conn_type or "").lower()
    slack = conn_type in (WEBHOOK_CONN_TYPE, API_CONN_TYPE)  # any other: refused below, naming its type
    if slack and (problem := _unusable(conn, conn_id)):  # trial: retried for minutes ("does not contain password")
        raise SlackDeliveryError(problem, conn_id=conn_id, retryable=False)
    secrets = _connection_secrets(conn)
    body = _scrub(dict(payload), secrets)
    what = f"Slack message not delivered via connection {conn_id!r} ({conn_type or 'no conn_type'})"

    if conn_type == WEBHOOK_CONN_TYPE:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        if channel:
            log.warning("Connection %r is an Incoming Webhook: its channel is fixed; ignoring %r", conn_id, channel)
        hook = SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=timeout, retry_handlers=[])
        try:
            # Not the client's own send: it follows redirects (review: a 302 turned the POST into a GET without the
            # message, and the page counted as sent). The answer keeps its headers (a 429's Retry-After).
            status, answer, headers = webhook_post.post(hook.client, {k: v for k, v in body.items() if v is not None})
        except Exception as err:  # connection refused, DNS, TLS, timeout, bad URL in the connection
            raise SlackDeliveryError(
                f"{what}: {type(err).__name__}: {_safe(err, secrets)}",
                conn_id=conn_id,
                maybe_delivered=_unanswered(err),
                retryable=not isinstance(err, webhook_post.NotHttp),
            ) from None
        if 300 <= status < 400:
            raise SlackDeliveryError(
                f"{what}: HTTP {status}, a redirect to {_shown(headers.get('location') or '-', secrets)}, not"
                " followed: Slack's webhooks answer themselves, so the connection's URL is not the webhook's or a"
                " proxy intercepts it",
                conn_id=conn_id,
                status=status,
                body=_shown(answer, secrets),
            )
        resp_body = _shown(answer, secrets)
        if not 200 <= status < 300:
            raise SlackDeliveryError(
                f"{what}: HTTP {status}, response body: {resp_body}",
                conn_id=conn_id,
                status=status,
                body=resp_body,
                retry_after=_retry_after(headers),
            )
        if answer.strip() != "ok" and not webhook_post.json_ok(answer):  # a workflow trigger answers {"ok": true}
            # Review: a proxy's login page (200, HTML) counted as sent, and the alert was then held back as a repeat.
            raise SlackDeliveryError(
                f"{what}: HTTP {status} without Slack's answer 'ok' (something else answered), response body:"
                f" {resp_body}",
                conn_id=conn_id,
                status=status,
                body=resp_body,
            )
        return

    if conn_type == API_CONN_TYPE:
        if not channel:
            raise SlackDeliveryError(
                f"{what}: a channel is required for a Slack API connection (conn_type 'slack'); "
                "pass channel='#name' or a channel id",
                conn_id=conn_id,
                retryable=False,
            )
        from airflow.providers.slack.hooks.slack import SlackHook
        from slack_sdk.errors import SlackApiError

        hook = SlackHook(slack_conn_id=conn_id, timeout=timeout, retry_handlers=[])
        extra = {k: v for k, v in body.items() if k not in ("text", "blocks", "channel")}
        try:
            response = hook.client.chat_postMessage(
                channel=channel, text=body.get("text"), blocks=body.get("blocks"), **extra
            )
        except SlackApiError as err:  # HTTP errors and {"ok": false} answers
            status = getattr(err.response, "status_code", None)
            data = getattr(err.response, "data", None)
            resp_body = _safe(json.dumps(data, default=str) if isinstance(data, dict) else data, secrets)
            api_error = _api_error(status, data)
            maybe = api_error in MAYBE_POSTED_API_ERRORS
            raise SlackDeliveryError(
                f"{what} to channel {channel!r}: HTTP {status}, response body: {resp_body}"
                + ("; Slack says the message may have been posted all the same" if maybe else ""),
                conn_id=conn_id,
                status=status,
                body=resp_body,
                retry_after=_retry_after(getattr(err.response, "headers", None)),
                maybe_delivered=maybe,
                api_error=api_error,
            ) from None
        except Exception as err:
            raise SlackDeliveryError(
                f"{what} to channel {channel!r}: {type(err).__name__}: {_safe(err, secrets)}",
                conn_id=conn_id,
                maybe_delivered=_unanswered(err),
            ) from None
        return {"channel": str(response.get("channel") or channel), "ts": str(response.get("ts") or "")}

    raise SlackDeliveryError(
        f"{what}: unsupported conn_type; use {WEBHOOK_CONN_TYPE!r} (Incoming Webhook) or {API_CONN_TYPE!r} (API token)",
        conn_id=conn_id,
        retryable=False,
    )


def _api_error(status: int | None, data: Any) -> str | None:
    """Slack's error code of a Web API answer ``{"ok": false, "error": code}`` that came with a 2xx status."""
    if isinstance(status, int) and 200 <= status < 300 and isinstance(data, dict) and data.get("ok") is False:
        return str(data.get("error") or "") or None
    return None


def _unanswered(err: BaseException) -> bool:
    """Whether ``err`` came after the request was sent: urllib wraps what fails while sending in URLError
    (refused, DNS, a connect timeout); a read timeout, a dropped connection or an answer cut short or garbled
    (http.client's errors reading the status line, headers or body) comes as itself. Review: a post whose answer was
    cut short was retried as never sent, and on-call got the page three times."""
    before_sending = http.client.InvalidURL | http.client.ImproperConnectionState
    return isinstance(err, TimeoutError | ConnectionResetError | http.client.HTTPException) and not isinstance(
        err, before_sending
    )


def _retry_after(headers: Any) -> float | None:
    """Slack's Retry-After (seconds) from a response's headers, or None."""
    try:
        value = {str(k).lower(): v for k, v in dict(headers or {}).items()}.get("retry-after")
        value = value[0] if isinstance(value, list) else value
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def not_defined(conn_id: str) -> str:
    """Why Airflow found no connection ``conn_id``: its AIRFLOW_CONN_* variable unparsable, or none at all."""
    from greenery.warehouse import unparsed_connection

    if conn_id == SLACK_OFF:
        return f"Slack is off (GREENERY_ALERT_CONN_ID={SLACK_OFF})"
    # Not as JSON: Airflow's log masks a "password" key's value, and the hint read "***" (trial).
    written_as = "JSON, as the README has it: conn_type slackwebhook, the webhook URL as its password"
    return unparsed_connection(conn_id, written_as) or f"Slack connection {conn_id!r} is not defined"


def route_problem(conn_id: str) -> str | None:
    """Why nothing can go through ``conn_id`` (not defined, its variable unparsable, no webhook URL or token in its
    password: Compose's with SLACK_WEBHOOK_URL unset), or None when a message can be tried."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return _unusable(BaseHook.get_connection(conn_id), conn_id)
    except AirflowNotFoundException:
        return not_defined(conn_id)


def _unusable(conn: Any, conn_id: str) -> str | None:
    return None if (conn.password or "").strip() else f"Slack connection {conn_id!r} has no webhook URL or token"


def conn_type_of(conn_id: str) -> str | None:
    """The connection's conn_type (lowercase), or None when it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return (BaseHook.get_connection(conn_id).conn_type or "").lower()
    except AirflowNotFoundException:
        return None


def upload_image(
    png: bytes, conn_id: str, channel: str, *, filename: str, title: str, alt_text: str, comment: str | None = None
) -> None:
    """Share ``png`` in ``channel`` (an id, as :func:`send` returns it) through the API-token connection
    ``conn_id`` with ``files_upload_v2``; ``comment`` is the message shown with it. No client-side retries.
    Raises SlackDeliveryError on any failure (a missing ``files:write`` scope comes back as ``missing_scope``).
    """
    from airflow.providers.slack.hooks.slack import SlackHook
    from airflow.sdk import BaseHook
    from slack_sdk.errors import SlackApiError

    conn = BaseHook.get_connection(conn_id)
    secrets = _connection_secrets(conn)
    what = f"Slack image {filename!r} not uploaded via connection {conn_id!r} to channel {channel!r}"
    if (conn.conn_type or "").lower() != API_CONN_TYPE:
        raise SlackDeliveryError(f"{what}: uploads need an API-token connection ({API_CONN_TYPE!r})", conn_id=conn_id)
    hook = SlackHook(slack_conn_id=conn_id, retry_handlers=[])
    try:
        hook.client.files_upload_v2(
            channel=channel,
            file=png,
            filename=filename,
            title=title,
            alt_txt=alt_text[:1000],
            initial_comment=comment,
        )
    except SlackApiError as err:
        status = getattr(err.response, "status_code", None)
        data = getattr(err.response, "data", None)
        resp_body = _safe(json.dumps(data, default=str) if isinstance(data, dict) else data, secrets)
        api_error = _api_error(status, data)
        raise SlackDeliveryError(
            f"{what}: HTTP {status}, response body: {resp_body}",
            conn_id=conn_id,
            status=status,
            body=resp_body,
            # Only the step that shares the file can have posted it (see below).
            maybe_delivered=api_error in MAYBE_POSTED_API_ERRORS and not _failed_in(err, _UPLOAD_STEPS_BEFORE_SHARING),
            api_error=api_error,
        ) from None
    except Exception as err:  # the upload URL refused the bytes (SlackRequestError), network errors
        # Review: a completeUploadExternal that Slack took without answering was retried, and the chart was posted
        # twice. Only that last step shares the file; an earlier step that failed posted nothing.
        raise SlackDeliveryError(
            f"{what}: {type(err).__name__}: {_safe(err, secrets)}",
            conn_id=conn_id,
            maybe_delivered=_unanswered(err) and not _failed_in(err, _UPLOAD_STEPS_BEFORE_SHARING),
        ) from None


# The steps of files_upload_v2 before the one that shares the file (slack_sdk's method names): a failure in them
# posted nothing, whatever it was. Any other failure left unanswered is taken as possibly posted.
_UPLOAD_STEPS_BEFORE_SHARING = frozenset({"files_getUploadURLExternal", "_upload_file"})


def _failed_in(err: BaseException, functions: frozenset[str]) -> bool:
    """Whether ``err`` was raised inside a call of one of ``functions`` (by name)."""
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in functions:
            return True
        tb = tb.tb_next
    return False
