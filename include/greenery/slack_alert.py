"""Slack messages for the data checks: the on-call alert, the daily "state of the data" note, and delivery.

``build_alert`` / ``build_summary_message`` are pure functions from the validation task's JSON-able dicts to
Block Kit payloads (``{"text": ..., "blocks": [...]}``). Everything taken from the input is redacted (DSNs
with passwords, Slack tokens, webhook paths) and escaped for mrkdwn, and the payload respects Slack's
limits (50 blocks, 3000 chars per section, 150 per header).

``send`` delivers a payload through an Airflow connection with the Slack provider's hooks:

- conn_type ``slackwebhook`` (Incoming Webhook; the password is the token or the full webhook URL):
  ``SlackWebhookHook.send``. The channel is fixed by the webhook.
- conn_type ``slack`` (API token; extra ``base_url`` may point elsewhere, e.g. ``http://host:port/api/``):
  ``SlackHook.client.chat_postMessage(channel=...)``; a channel is required.

Every failure to deliver raises :class:`SlackDeliveryError` (HTTP status and a truncated response body in
the message, never the webhook URL or token). slack_sdk's own retries are switched off: the Airflow task
owns retries.

Only the standard library is imported at module level; Airflow and slack_sdk are imported in ``send``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# Slack limits (https://api.slack.com/reference/block-kit/blocks).
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FALLBACK_TEXT = 3000
MAX_SAMPLE_KEYS = 5

WEBHOOK_CONN_TYPE = "slackwebhook"
API_CONN_TYPE = "slack"

_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
_SEVERITY_ICON = {"critical": "🔴", "warning": "🟡"}
_REDACTED = "***"


class SlackDeliveryError(RuntimeError):
    """A Slack message was not delivered (HTTP error, Slack API error, unreachable, misconfigured).

    ``status`` is the HTTP status when Slack (or whatever answered) replied, else None; ``body`` is the
    truncated, redacted response body when there was one.
    """

    def __init__(self, message: str, *, conn_id: str, status: int | None = None, body: str | None = None):
        super().__init__(message)
        self.conn_id = conn_id
        self.status = status
        self.body = body


# --------------------------------------------------------------------------------------------------------
# Redaction and escaping
# --------------------------------------------------------------------------------------------------------

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host and scheme://token@host (DSNs, URLs with credentials)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@<>|]+@"), rf"\1{_REDACTED}@"),
    # Slack tokens: xoxb-, xoxp-, xoxa-, xoxe-, xoxr-, xoxs-, app-level xapp-
    (re.compile(r"\bxox[a-z]-[A-Za-z0-9\-]+"), f"xox-{_REDACTED}"),
    (re.compile(r"\bxapp-[A-Za-z0-9\-]+"), f"xapp-{_REDACTED}"),
    # Incoming webhooks / workflow triggers
    (
        re.compile(r"(?i)(hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/)[^\s<>|\"'`)\]]+"),
        rf"\1{_REDACTED}",
    ),
    # key=value / key: value secrets (libpq keyword DSNs, config dumps)
    (
        re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)"),
        rf"\1\2{_REDACTED}",
    ),
)


def redact(text: str) -> str:
    """Mask credentials in free text: URL userinfo, Slack tokens, webhook paths, ``password=...``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clean(value: Any, limit: int = 300) -> str:
    """Any input value → redacted, length-capped, mrkdwn-escaped text."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = redact(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape(text)


def _code(value: Any, limit: int = 300) -> str:
    """Inline code span; backticks inside would end the span, so they become quotes."""
    text = _clean(value, limit).replace("`", "'").replace("\n", " ")
    return f"`{text}`" if text else ""


def _truncate(text: str, limit: int) -> str:
    """Cut escaped mrkdwn to ``limit`` characters without splitting an entity or leaving a code block open."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 4]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    if cut.count("```") % 2:
        cut += "```"
        if len(cut) > limit - 1:  # closing the block made it too long: drop the block entirely
            cut = cut[: cut.find("```")]
    return cut + "…"


def _plain(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(url: str | None, label: str) -> str | None:
    """A clickable mrkdwn link for http(s) URLs; other schemes (file://) are shown as code."""
    if not url:
        return None
    url = redact(str(url))
    if urlsplit(url).scheme.lower() in ("http", "https"):
        return f"<{escape(url).replace('|', '%7C')}|{label}>"
    return f"{label}: {_code(url, 1000)}"


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _fmt_int(value: Any) -> str:
    return f"{_int(value):,}"


# --------------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------------


def _header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": _plain(text, MAX_HEADER_TEXT), "emoji": True}}


def _section(text: str, block_id: str | None = None) -> dict:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(text, MAX_SECTION_TEXT)}}
    if block_id:
        block["block_id"] = block_id
    return block


def _context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _truncate(text, MAX_SECTION_TEXT)}]}


_DIVIDER = {"type": "divider"}


def _severity(failure: Mapping[str, Any]) -> str:
    return str(failure.get("severity") or "critical").lower()


def _sorted_failures(failures: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(failures, key=lambda f: _SEVERITY_ORDER.get(_severity(f), len(_SEVERITY_ORDER)))


def _failure_text(failure: Mapping[str, Any]) -> str:
    severity = _severity(failure)
    icon = _SEVERITY_ICON.get(severity, "⚪")
    where = _code(failure.get("table") or failure.get("suite") or "?")
    if failure.get("column"):
        where += f" · column {_code(failure['column'])}"
    lines = [f"{icon} *{_clean(severity, 20)}* · {where}"]

    expectation = _code(failure.get("expectation") or "?")
    if failure.get("description"):
        expectation += f" — {_clean(failure['description'])}"
    lines.append(expectation)

    facts = []
    if failure.get("unexpected_count") is not None:
        facts.append(f"unexpected: *{_clean(failure['unexpected_count'], 40)}*")
    if failure.get("observed_value") is not None:
        facts.append(f"observed: {_code(failure['observed_value'])}")
    if failure.get("suite") and failure.get("table"):
        facts.append(f"suite {_code(failure['suite'])}")
    if facts:
        lines.append(" · ".join(facts))

    keys = [k for k in (failure.get("sample_keys") or []) if k is not None]
    if keys:
        shown = ", ".join(_code(k, 100) for k in keys[:MAX_SAMPLE_KEYS])
        more = f" (+{len(keys) - MAX_SAMPLE_KEYS} more)" if len(keys) > MAX_SAMPLE_KEYS else ""
        lines.append(f"sample keys: {shown}{more}")

    if failure.get("error"):
        error = _clean(failure["error"], 1500).replace("```", "'''")
        lines.append(f"could not be evaluated:\n```{error}```")
    return "\n".join(lines)


def _rerun_text(dag_id: str, logical_date: str | None, run_id: str | None) -> str:
    if logical_date:
        date = _clean(logical_date, 80).replace("`", "")
        cli = f"airflow tasks clear {dag_id} -s {date} -e {date} -y"
        ui_run = _clean(logical_date, 80)
    elif run_id:
        cli = f"airflow dags clear {dag_id} --run-id {_clean(run_id, 250).replace('`', '')} -y"
        ui_run = _clean(run_id, 250)
    else:
        return "*How to rerun*\nFix the source data, then clear the failed run in the UI: Grid → run → Clear"
    return (
        f"*How to rerun*\nFix the source data, then clear the run: `{cli}`\n"
        f"Clear in the UI: Grid → run {ui_run} → Clear"
    )


def _quarantine_text(quarantined: Mapping[str, Any], limit: int = 20) -> str:
    items = list(quarantined.items())
    total = sum(_int(v) for _, v in items)
    parts = [f"{_code(name, 120)}: {_fmt_int(count)}" for name, count in items[:limit]]
    if len(items) > limit:
        parts.append(f"… and {len(items) - limit} more")
    return f"*Quarantined rows* ({_fmt_int(total)}): " + ", ".join(parts)


def _publish_text(summary: Mapping[str, Any]) -> str | None:
    if "published" not in summary:
        return None
    if summary["published"]:
        return "✅ Marts published for this run."
    serving = summary.get("serving_run")
    if serving:
        return f"⛔ Marts not published; still serving the run of {_clean(serving, 100)}"
    return "⛔ Marts not published; nothing published yet"


def build_alert(summary: Mapping[str, Any], *, log_url: str | None, docs_url: str | None) -> dict:
    """Block Kit payload for the on-call channel from a validation summary.

    ``docs_url`` falls back to ``summary["data_docs_url"]``. Failures are listed critical first; when they do
    not all fit in Slack's 50 blocks, the first ones are shown with an "… and K more" line.
    """
    dag_id_raw = str(summary.get("dag_id") or "greenery")
    dag_id = _clean(dag_id_raw, 200)
    logical_date = summary.get("logical_date")
    run_id = summary.get("run_id")
    failures = _sorted_failures(summary.get("failures") or [])
    n_critical = _int(summary.get("failed_critical"))
    n_warning = _int(summary.get("failed_warning"))
    blocking = bool(summary.get("blocking", n_critical > 0 or any(_severity(f) == "critical" for f in failures)))
    docs_url = docs_url or summary.get("data_docs_url")

    if blocking:
        title = f"🔴 {redact(dag_id_raw)}: data checks failed"
    elif failures or n_warning:
        title = f"🟡 {redact(dag_id_raw)}: data check warnings"
    else:
        title = f"🟢 {redact(dag_id_raw)}: all data checks passed"

    overview = [f"*DAG* `{dag_id}` · *logical date* {_clean(logical_date, 80) or 'n/a'} · *run* {_code(run_id, 250)}"]
    overview.append(
        f"*Checks evaluated:* {_fmt_int(summary.get('evaluated'))} · *failed critical:* {_fmt_int(n_critical)}"
        f" · *failed warning:* {_fmt_int(n_warning)}"
    )
    failing_suites = [
        s for s in summary.get("suites") or [] if _int(s.get("failed_critical")) or _int(s.get("failed_warning"))
    ]
    if failing_suites:
        parts = [
            f"{_code(s.get('table') or s.get('suite'), 120)} ({_int(s.get('failed_critical'))} critical, "
            f"{_int(s.get('failed_warning'))} warning of {_int(s.get('evaluated'))})"
            for s in failing_suites[:15]
        ]
        if len(failing_suites) > 15:
            parts.append(f"… and {len(failing_suites) - 15} more")
        overview.append("*Failing suites:* " + ", ".join(parts))

    status_lines = [line for line in (_publish_text(summary),) if line]
    quarantined = summary.get("quarantined")
    if quarantined:
        status_lines.append(_quarantine_text(quarantined))

    links = [link for link in (_link(log_url, "Task log"), _link(docs_url, "Data Docs")) if link]
    footer = []
    if links:
        footer.append("*Links:* " + " · ".join(links))
    footer.append(_rerun_text(dag_id, logical_date, run_id))

    head = [_header(title), _section("\n".join(overview), "overview")]
    tail = [_DIVIDER]
    if status_lines:
        tail.append(_section("\n".join(status_lines), "status"))
    tail.append(_section("\n".join(footer), "next-steps"))

    slots = MAX_BLOCKS - len(head) - len(tail) - (1 if failures else 0)  # 1 = divider before the failures
    if len(failures) > slots:
        slots -= 1  # room for the "… and K more" line
    shown = failures[:slots]
    middle: list[dict] = [_DIVIDER] if failures else []
    middle += [_section(_failure_text(f), f"failure-{i}") for i, f in enumerate(shown)]
    hidden = len(failures) - len(shown)
    if hidden:
        docs_hint = " (see Data Docs)" if docs_url else ""
        middle.append(_context(f"… and {hidden} more failing checks{docs_hint}"))
    blocks = head + middle + tail

    fallback = [
        f"{escape(title)} — {n_critical} critical, {n_warning} warning of {_int(summary.get('evaluated'))} checks"
        f" (logical date {_clean(logical_date, 80) or 'n/a'})."
    ]
    for f in failures[:5]:
        column = f".{_clean(f.get('column'), 100)}" if f.get("column") else ""
        fallback.append(
            f"• {_clean(_severity(f), 20)}: {_clean(f.get('table') or f.get('suite'), 120)}{column}"
            f" {_clean(f.get('expectation'), 120)}"
        )
    if len(failures) > 5:
        fallback.append(f"… and {len(failures) - 5} more failing checks")
    fallback += status_lines
    return {"text": _truncate("\n".join(fallback), MAX_FALLBACK_TEXT), "blocks": blocks}


def build_source_alert(
    *, dag_id: str, logical_date: str, run_id: str, problems: Iterable[Mapping[str, Any]], log_url: str | None
) -> dict:
    """The run stopped before building: raw tables missing, empty, incomplete or stale for the day."""
    problems = list(problems)
    header = f"🟠 {dag_id}: source data not ready for {logical_date}; nothing built"
    lines = [
        f"• {_code(p.get('table'), 80)} *{_clean(p.get('problem'), 20)}*: {_clean(p.get('detail'), 400)}"
        for p in problems[:20]
    ]
    blocks = [
        _header(header),
        _context(f"DAG {_code(dag_id)} · logical date {_code(logical_date)} · run {_code(run_id, 250)}"),
        _section("*Source freshness*\n" + "\n".join(lines)),
        _section("Published marts are untouched (still serving the previous run)."),
    ]
    link = _link(log_url, "task log")
    rerun = _rerun_text(dag_id, logical_date, run_id).replace("Fix the source data", "Once the source is loaded")
    blocks.append(_section((f"{link}\n" if link else "") + rerun))
    details = "; ".join(str(p.get("detail")) for p in problems)
    return {"text": _plain(redact(f"{header}: {details}"), MAX_FALLBACK_TEXT), "blocks": blocks}


def build_task_failure_alert(
    *, dag_id: str, task_id: str, logical_date: str | None, run_id: str, error: str, log_url: str | None
) -> dict:
    """A task failed (SQL error, lost connection, ...): nothing of this run was published."""
    header = f"🔴 {dag_id}: task {task_id} failed"
    fence = "```"
    blocks = [
        _header(header),
        _context(f"DAG {_code(dag_id)} · logical date {_code(logical_date or '-')} · run {_code(run_id, 250)}"),
        _section(fence + _clean(error, 2500).replace(fence, "'''") + fence),
        _section("Nothing was published by this run: readers still see the previous run's marts."),
    ]
    link = _link(log_url, "task log")
    blocks.append(_section((f"{link}\n" if link else "") + _rerun_text(dag_id, logical_date, run_id)))
    return {"text": _plain(redact(f"{header}: {error}"), MAX_FALLBACK_TEXT), "blocks": blocks}


def build_summary_message(stats: Mapping[str, Any]) -> dict:
    """Short Block Kit payload for the daily "state of the data" message after a successful run."""
    dag_id_raw = str(stats.get("dag_id") or "greenery")
    logical_date = _clean(stats.get("logical_date"), 80) or "n/a"
    passed, evaluated = _int(stats.get("checks_passed")), _int(stats.get("checks_evaluated"))
    title = f"📊 {redact(dag_id_raw)}: state of the data, {redact(str(stats.get('logical_date') or 'n/a'))}"

    checks_icon = "✅" if passed == evaluated else "⚠️"
    lines = [f"{checks_icon} *Data checks:* {passed:,}/{evaluated:,} passed"]
    repeat_rate = stats.get("repeat_rate")
    if isinstance(repeat_rate, int | float):
        lines.append(f"🔁 *Repeat rate:* {repeat_rate:.1%}")
    else:
        lines.append("🔁 *Repeat rate:* n/a")

    rows = stats.get("rows") or {}
    row_lines = [f"• {_code(name, 120)}: {_fmt_int(count)} rows" for name, count in sorted(rows.items())[:30]]
    if len(rows) > 30:
        row_lines.append(f"… and {len(rows) - 30} more tables")

    blocks = [_header(title), _section("\n".join(lines), "checks")]
    if row_lines:
        blocks.append(_section("*Tables*\n" + "\n".join(row_lines), "rows"))
    quarantined = stats.get("quarantined")
    if quarantined:
        blocks.append(_section(_quarantine_text(quarantined), "quarantine"))
    blocks.append(_context(f"DAG `{_clean(dag_id_raw, 200)}` · logical date {logical_date}"))

    text = f"{title}: {passed:,}/{evaluated:,} checks passed, {len(rows)} tables refreshed."
    return {"text": _truncate(escape(redact(text)), MAX_FALLBACK_TEXT), "blocks": blocks}


# --------------------------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------------------------


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
            value = value.replace(secret, _REDACTED)
        return value
    if isinstance(value, Mapping):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
    return value


def _safe(text: Any, secrets: list[str], limit: int = 500) -> str:
    text = redact(_scrub(str(text), secrets))
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PROVIDER_WEBHOOK_ERROR = re.compile(r"Response body: (?P<body>.*), Status Code: (?P<status>\d+)", re.S)


def send(payload: Mapping[str, Any], conn_id: str, channel: str | None = None, *, timeout: int | None = None) -> None:
    """Deliver ``payload`` (``{"text", "blocks", ...}``) through the Airflow connection ``conn_id``.

    ``slackwebhook`` connections post to their webhook (``channel`` cannot be changed and is ignored with a
    warning); ``slack`` connections call ``chat.postMessage`` on ``channel`` (required). ``timeout``
    (seconds) overrides the connection's ``timeout`` extra / slack_sdk's 30 s default. No client-side
    retries. Raises SlackDeliveryError on any failure.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise SlackDeliveryError(f"Slack connection {conn_id!r} is not defined", conn_id=conn_id) from None
    conn_type = (conn.conn_type or "").lower()
    secrets = _connection_secrets(conn)
    body = _scrub(dict(payload), secrets)
    what = f"Slack message not delivered via connection {conn_id!r} ({conn_type or 'no conn_type'})"

    if conn_type == WEBHOOK_CONN_TYPE:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        if channel:
            log.warning("Connection %r is an Incoming Webhook: its channel is fixed; ignoring %r", conn_id, channel)
        hook = SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=timeout, retry_handlers=[])
        try:
            response = hook.send(**body)
        except AirflowException as err:  # the provider raises on any status != 200
            match = _PROVIDER_WEBHOOK_ERROR.search(str(err))
            if not match:
                raise SlackDeliveryError(f"{what}: {_safe(err, secrets)}", conn_id=conn_id) from None
            status, resp_body = int(match["status"]), _safe(match["body"], secrets)
            raise SlackDeliveryError(
                f"{what}: HTTP {status}, response body: {resp_body}", conn_id=conn_id, status=status, body=resp_body
            ) from None
        except Exception as err:  # connection refused, DNS, TLS, timeout, bad URL in the connection
            raise SlackDeliveryError(f"{what}: {type(err).__name__}: {_safe(err, secrets)}", conn_id=conn_id) from None
        status = getattr(response, "status_code", None)
        if not isinstance(status, int) or not 200 <= status < 300:  # defensive: the provider checks != 200
            resp_body = _safe(getattr(response, "body", ""), secrets)
            raise SlackDeliveryError(
                f"{what}: HTTP {status}, response body: {resp_body}", conn_id=conn_id, status=status, body=resp_body
            )
        return

    if conn_type == API_CONN_TYPE:
        if not channel:
            raise SlackDeliveryError(
                f"{what}: a channel is required for a Slack API connection (conn_type 'slack'); "
                "pass channel='#name' or a channel id",
                conn_id=conn_id,
            )
        from airflow.providers.slack.hooks.slack import SlackHook
        from slack_sdk.errors import SlackApiError

        hook = SlackHook(slack_conn_id=conn_id, timeout=timeout, retry_handlers=[])
        extra = {k: v for k, v in body.items() if k not in ("text", "blocks", "channel")}
        try:
            hook.client.chat_postMessage(channel=channel, text=body.get("text"), blocks=body.get("blocks"), **extra)
        except SlackApiError as err:  # HTTP errors and {"ok": false} answers
            status = getattr(err.response, "status_code", None)
            data = getattr(err.response, "data", None)
            resp_body = _safe(json.dumps(data, default=str) if isinstance(data, dict) else data, secrets)
            raise SlackDeliveryError(
                f"{what} to channel {channel!r}: HTTP {status}, response body: {resp_body}",
                conn_id=conn_id,
                status=status,
                body=resp_body,
            ) from None
        except Exception as err:
            raise SlackDeliveryError(
                f"{what} to channel {channel!r}: {type(err).__name__}: {_safe(err, secrets)}", conn_id=conn_id
            ) from None
        return

    raise SlackDeliveryError(
        f"{what}: unsupported conn_type; use {WEBHOOK_CONN_TYPE!r} (Incoming Webhook) or {API_CONN_TYPE!r} (API token)",
        conn_id=conn_id,
    )
