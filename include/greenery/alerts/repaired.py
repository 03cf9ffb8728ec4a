"""The notice that a run on-call heard about is repaired: it failed in an earlier attempt and its marts are out now.

A page says what failed and what to do; nothing said when somebody did it and the run went green (user trial: the
channel kept the red page as the day's last word, and a second engineer started on a day already fixed). The notice
names the run, when it published, and each earlier failure: its task, its attempt, and whether on-call was paged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from greenery.alerts import block_kit as kit
from greenery.alerts.text import MAX_FALLBACK_TEXT, code, escape, truncate
from greenery.audit import utc_minute
from greenery.redaction import redact

SHOWN = 10  # failures listed; the Data quality view lists them all


def attempt_name(clear_number: int | None) -> str:
    """An attempt of a run as the Data quality view names it: its first run, or its Nth clear."""
    return "first run" if not clear_number else f"clear {clear_number}"


def build_repaired_notice(
    *,
    dag_id: str,
    logical_date: str,
    run_id: str,
    published_at: dt.datetime,
    failures: Sequence[Mapping[str, Any]],
    links: Mapping[str, str | None],
) -> dict:
    """``failures``: the run's earlier ones (task_id, clear_number, failed_at, paged), oldest first."""
    header = f"✅ {dag_id}: {logical_date} repaired"
    lines = [
        f"• {code(f.get('task_id'), 80)} failed in its {attempt_name(f.get('clear_number'))} at"
        f" {utc_minute(f['failed_at'])}" + ("" if f.get("paged") else " (on-call was NOT paged about it)")
        for f in failures[:SHOWN]
    ]
    if len(failures) > SHOWN:
        lines.append(f"… and {len(failures) - SHOWN} more (the Data quality view lists them)")
    said = f"The run published at {utc_minute(published_at)}: readers see its marts. What failed before:"
    blocks = [
        kit.header(header),
        kit.context(f"DAG {code(dag_id)} · day {code(logical_date)} · run {code(run_id, 250)}"),
        kit.section(said + "\n" + "\n".join(lines), "repaired"),
    ]
    if buttons := kit.buttons({k: v for k, v in links.items() if k in ("run", "quality")}):
        blocks.append(buttons)
    text = f"{header}: {said} " + "; ".join(
        f"{f.get('task_id')} ({attempt_name(f.get('clear_number'))})" for f in failures
    )
    return {"text": truncate(escape(redact(text)), MAX_FALLBACK_TEXT), "blocks": blocks}
