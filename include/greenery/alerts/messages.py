"""Slack messages: the on-call alert, the source and task-failure alerts, the daily "state of the data" note.

Pure functions from the tasks' JSON-able dicts to Block Kit payloads (``{"text": ..., "blocks": [...]}``).
Everything taken from the input is redacted (DSNs with passwords, Slack tokens, webhook paths) and escaped
for mrkdwn, and the payload respects Slack's limits (50 blocks, 3000 chars per section, 150 per header).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from greenery.alerts.text import (
    MAX_BLOCKS,
    MAX_FALLBACK_TEXT,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    as_int,
    clean,
    code,
    escape,
    fmt_int,
    link,
    plain,
    redact,
    truncate,
)

MAX_SAMPLE_KEYS = 5
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
_SEVERITY_ICON = {"critical": "🔴", "warning": "🟡"}


def _header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": plain(text, MAX_HEADER_TEXT), "emoji": True}}


def _section(text: str, block_id: str | None = None) -> dict:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, MAX_SECTION_TEXT)}}
    if block_id:
        block["block_id"] = block_id
    return block


def _context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, MAX_SECTION_TEXT)}]}


_DIVIDER = {"type": "divider"}


def _severity(failure: Mapping[str, Any]) -> str:
    return str(failure.get("severity") or "critical").lower()


def _sorted_failures(failures: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(failures, key=lambda f: _SEVERITY_ORDER.get(_severity(f), len(_SEVERITY_ORDER)))


def _failure_text(failure: Mapping[str, Any]) -> str:
    severity = _severity(failure)
    icon = _SEVERITY_ICON.get(severity, "⚪")
    where = code(failure.get("table") or failure.get("suite") or "?")
    if failure.get("column"):
        where += f" · column {code(failure['column'])}"
    lines = [f"{icon} *{clean(severity, 20)}* · {where}"]

    expectation = code(failure.get("expectation") or "?")
    if failure.get("description"):
        expectation += f" — {clean(failure['description'])}"
    lines.append(expectation)

    facts = []
    if failure.get("unexpected_count") is not None:
        facts.append(f"unexpected: *{clean(failure['unexpected_count'], 40)}*")
    if failure.get("observed_value") is not None:
        facts.append(f"observed: {code(failure['observed_value'])}")
    if failure.get("suite") and failure.get("table"):
        facts.append(f"suite {code(failure['suite'])}")
    if facts:
        lines.append(" · ".join(facts))

    keys = [k for k in (failure.get("sample_keys") or []) if k is not None]
    if keys:
        shown = ", ".join(code(k, 100) for k in keys[:MAX_SAMPLE_KEYS])
        more = f" (+{len(keys) - MAX_SAMPLE_KEYS} more)" if len(keys) > MAX_SAMPLE_KEYS else ""
        lines.append(f"sample keys: {shown}{more}")

    if failure.get("error"):
        error = clean(failure["error"], 1500).replace("```", "'''")
        lines.append(f"could not be evaluated:\n```{error}```")
    return "\n".join(lines)


def _rerun_text(dag_id: str, logical_date: str | None, run_id: str | None) -> str:
    if logical_date:
        date = clean(logical_date, 80).replace("`", "")
        cli = f"airflow tasks clear {dag_id} -s {date} -e {date} -y"
        ui_run = clean(logical_date, 80)
    elif run_id:
        cli = f"airflow dags clear {dag_id} --run-id {clean(run_id, 250).replace('`', '')} -y"
        ui_run = clean(run_id, 250)
    else:
        return "*How to rerun*\nFix the source data, then clear the failed run in the UI: Grid → run → Clear"
    return (
        f"*How to rerun*\nFix the source data, then clear the run: `{cli}`\n"
        f"Clear in the UI: Grid → run {ui_run} → Clear"
    )


def _quarantine_text(quarantined: Mapping[str, Any], limit: int = 20) -> str:
    items = list(quarantined.items())
    total = sum(as_int(v) for _, v in items)
    parts = [f"{code(name, 120)}: {fmt_int(count)}" for name, count in items[:limit]]
    if len(items) > limit:
        parts.append(f"… and {len(items) - limit} more")
    return f"*Quarantined rows* ({fmt_int(total)}): " + ", ".join(parts)


def _publish_text(summary: Mapping[str, Any]) -> str | None:
    if "published" not in summary:
        return None
    if summary["published"]:
        return "✅ Marts published for this run."
    serving = summary.get("serving_run")
    if serving:
        return f"⛔ Marts not published; still serving the run of {clean(serving, 100)}"
    return "⛔ Marts not published; nothing published yet"


def build_alert(summary: Mapping[str, Any], *, log_url: str | None, docs_url: str | None) -> dict:
    """Block Kit payload for the on-call channel from a validation summary.

    ``docs_url`` falls back to ``summary["data_docs_url"]``. Failures are listed critical first; when they do
    not all fit in Slack's 50 blocks, the first ones are shown with an "… and K more" line.
    """
    dag_id_raw = str(summary.get("dag_id") or "greenery")
    dag_id = clean(dag_id_raw, 200)
    logical_date = summary.get("logical_date")
    run_id = summary.get("run_id")
    failures = _sorted_failures(summary.get("failures") or [])
    n_critical = as_int(summary.get("failed_critical"))
    n_warning = as_int(summary.get("failed_warning"))
    blocking = bool(summary.get("blocking", n_critical > 0 or any(_severity(f) == "critical" for f in failures)))
    docs_url = docs_url or summary.get("data_docs_url")

    # The header names the worst thing in the message.
    held_back = sum(as_int(n) for n in (summary.get("quarantined") or {}).values())
    if blocking:
        title = f"🔴 {redact(dag_id_raw)}: data checks failed"
    elif (failures or n_warning) and held_back:
        title = f"🟡 {redact(dag_id_raw)}: data check warnings and {held_back:,} rows quarantined"
    elif failures or n_warning:
        title = f"🟡 {redact(dag_id_raw)}: data check warnings"
    elif held_back:
        title = f"🟡 {redact(dag_id_raw)}: {held_back:,} rows quarantined"
    else:
        title = f"🟢 {redact(dag_id_raw)}: all data checks passed"

    overview = [f"*DAG* `{dag_id}` · *logical date* {clean(logical_date, 80) or 'n/a'} · *run* {code(run_id, 250)}"]
    overview.append(
        f"*Checks evaluated:* {fmt_int(summary.get('evaluated'))} · *failed critical:* {fmt_int(n_critical)}"
        f" · *failed warning:* {fmt_int(n_warning)}"
    )
    failing_suites = [
        s for s in summary.get("suites") or [] if as_int(s.get("failed_critical")) or as_int(s.get("failed_warning"))
    ]
    if failing_suites:
        parts = [
            f"{code(s.get('table') or s.get('suite'), 120)} ({as_int(s.get('failed_critical'))} critical, "
            f"{as_int(s.get('failed_warning'))} warning of {as_int(s.get('evaluated'))})"
            for s in failing_suites[:15]
        ]
        if len(failing_suites) > 15:
            parts.append(f"… and {len(failing_suites) - 15} more")
        overview.append("*Failing suites:* " + ", ".join(parts))

    status_lines = [line for line in (_publish_text(summary),) if line]
    quarantined = summary.get("quarantined")
    if quarantined:
        status_lines.append(_quarantine_text(quarantined))

    links = [link for link in (link(log_url, "Task log"), link(docs_url, "Data Docs")) if link]
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
        f"{escape(title)} — {n_critical} critical, {n_warning} warning of {as_int(summary.get('evaluated'))} checks"
        f" (logical date {clean(logical_date, 80) or 'n/a'})."
    ]
    for f in failures[:5]:
        column = f".{clean(f.get('column'), 100)}" if f.get("column") else ""
        fallback.append(
            f"• {clean(_severity(f), 20)}: {clean(f.get('table') or f.get('suite'), 120)}{column}"
            f" {clean(f.get('expectation'), 120)}"
        )
    if len(failures) > 5:
        fallback.append(f"… and {len(failures) - 5} more failing checks")
    fallback += status_lines
    return {"text": truncate("\n".join(fallback), MAX_FALLBACK_TEXT), "blocks": blocks}


def build_source_alert(
    *, dag_id: str, logical_date: str, run_id: str, problems: Iterable[Mapping[str, Any]], log_url: str | None
) -> dict:
    """The run stopped before building: raw tables missing, empty, incomplete or stale for the day."""
    problems = list(problems)
    header = f"🟠 {dag_id}: source data not ready for {logical_date}; nothing built"
    lines = [
        f"• {code(p.get('table'), 80)} *{clean(p.get('problem'), 20)}*: {clean(p.get('detail'), 400)}"
        for p in problems[:20]
    ]
    blocks = [
        _header(header),
        _context(f"DAG {code(dag_id)} · logical date {code(logical_date)} · run {code(run_id, 250)}"),
        _section("*Source freshness*\n" + "\n".join(lines)),
        _section("Published marts are untouched (still serving the previous run)."),
    ]
    log_link = link(log_url, "task log")
    rerun = _rerun_text(dag_id, logical_date, run_id).replace("Fix the source data", "Once the source is loaded")
    blocks.append(_section((f"{log_link}\n" if log_link else "") + rerun))
    details = "; ".join(str(p.get("detail")) for p in problems)
    return {"text": plain(redact(f"{header}: {details}"), MAX_FALLBACK_TEXT), "blocks": blocks}


def build_task_failure_alert(
    *, dag_id: str, task_id: str, logical_date: str | None, run_id: str, error: str, log_url: str | None
) -> dict:
    """A task failed (SQL error, lost connection, ...): nothing of this run was published."""
    header = f"🔴 {dag_id}: task {task_id} failed"
    fence = "```"
    blocks = [
        _header(header),
        _context(f"DAG {code(dag_id)} · logical date {code(logical_date or '-')} · run {code(run_id, 250)}"),
        _section(fence + clean(error, 2500).replace(fence, "'''") + fence),
        _section("Nothing was published by this run: readers still see the previous run's marts."),
    ]
    log_link = link(log_url, "task log")
    blocks.append(_section((f"{log_link}\n" if log_link else "") + _rerun_text(dag_id, logical_date, run_id)))
    return {"text": plain(redact(f"{header}: {error}"), MAX_FALLBACK_TEXT), "blocks": blocks}


def build_summary_message(stats: Mapping[str, Any]) -> dict:
    """Short Block Kit payload for the daily "state of the data" message after a successful run."""
    dag_id_raw = str(stats.get("dag_id") or "greenery")
    logical_date = clean(stats.get("logical_date"), 80) or "n/a"
    passed, evaluated = as_int(stats.get("checks_passed")), as_int(stats.get("checks_evaluated"))
    title = f"📊 {redact(dag_id_raw)}: state of the data, {redact(str(stats.get('logical_date') or 'n/a'))}"

    checks_icon = "✅" if passed == evaluated else "⚠️"
    lines = [f"{checks_icon} *Data checks:* {passed:,}/{evaluated:,} passed"]
    repeat_rate = stats.get("repeat_rate")
    if isinstance(repeat_rate, int | float):
        lines.append(f"🔁 *Repeat rate:* {repeat_rate:.1%}")
    else:
        lines.append("🔁 *Repeat rate:* n/a")

    rows = stats.get("rows") or {}
    row_lines = [f"• {code(name, 120)}: {fmt_int(count)} rows" for name, count in sorted(rows.items())[:30]]
    if len(rows) > 30:
        row_lines.append(f"… and {len(rows) - 30} more tables")

    blocks = [_header(title), _section("\n".join(lines), "checks")]
    if row_lines:
        blocks.append(_section("*Tables*\n" + "\n".join(row_lines), "rows"))
    quarantined = stats.get("quarantined")
    if quarantined:
        blocks.append(_section(_quarantine_text(quarantined), "quarantine"))
    blocks.append(_context(f"DAG `{clean(dag_id_raw, 200)}` · logical date {logical_date}"))

    text = f"{title}: {passed:,}/{evaluated:,} checks passed, {len(rows)} tables refreshed."
    return {"text": truncate(escape(redact(text)), MAX_FALLBACK_TEXT), "blocks": blocks}
