"""The digest's daily "state of the data" note in Slack, after a run that published (Block Kit, as messages.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from greenery import trend
from greenery.alerts import block_kit as kit
from greenery.alerts import chart
from greenery.alerts.messages import quarantine_text
from greenery.alerts.text import MAX_FALLBACK_TEXT, as_int, clean, code, escape, fmt_int, truncate
from greenery.redaction import redact


def build_summary_message(stats: Mapping[str, Any]) -> dict:
    """Short Block Kit payload for the daily "state of the data" message after a successful run.

    With ``stats["trend"]`` (rows of :func:`greenery.trend.as_json`), a section shows the last days' repeat
    rate, conversion and orders as sparklines.
    """
    dag_id_raw = str(stats.get("dag_id") or "greenery")
    logical_date = clean(stats.get("logical_date"), 80) or "n/a"
    passed, evaluated = as_int(stats.get("checks_passed")), as_int(stats.get("checks_evaluated"))
    title = f"📊 {redact(dag_id_raw)}: state of the data, {redact(str(stats.get('logical_date') or 'n/a'))}"

    checks_icon, scope = ("✅" if passed == evaluated else "⚠️"), stats.get("checks_scope", "")  # digest.read_stats
    lines = [f"{checks_icon} *Data checks:* {passed:,}/{evaluated:,} passed{scope}"]
    notes = [str(n) for n in stats.get("notes") or []]
    if notes:
        lines.append(":information_source: *For information:* " + "; ".join(clean(n, 200) for n in notes[:5]))
    repeat_rate = stats.get("repeat_rate")
    if isinstance(repeat_rate, int | float):
        lines.append(f"🔁 *Repeat rate:* {repeat_rate:.1%}")
    else:
        lines.append("🔁 *Repeat rate:* n/a")

    rows = stats.get("rows") or {}
    row_lines = [f"• {code(name, 120)}: {fmt_int(count)} rows" for name, count in sorted(rows.items())[:30]]
    if len(rows) > 30:
        row_lines.append(f"… and {len(rows) - 30} more tables")

    blocks = [kit.header(title), kit.section("\n".join(lines), "checks")]
    if stats.get("trend"):
        blocks.append(kit.section(chart.as_text(trend.from_json(stats["trend"])), "trend"))
    if row_lines:
        blocks.append(kit.section("*Tables*\n" + "\n".join(row_lines), "rows"))
    quarantined = stats.get("quarantined")
    if quarantined:
        blocks.append(kit.section(quarantine_text(quarantined, stats.get("quarantined_rules")), "quarantine"))
    buttons = kit.buttons(stats.get("links") or {})  # the run, the Data quality view, the Data Docs
    if buttons:
        blocks.append(buttons)
    blocks.append(kit.context(f"DAG `{clean(dag_id_raw, 200)}` · logical date {logical_date}"))

    text = f"{title}: {passed:,}/{evaluated:,} checks passed{scope}, {len(rows)} tables refreshed."
    return {"text": truncate(escape(redact(text)), MAX_FALLBACK_TEXT), "blocks": blocks}
