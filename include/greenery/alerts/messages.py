"""Slack messages to on-call: the alert of a run's checks, the source and task-failure alerts (the digest's note:
digest_message.py).

Pure functions from the tasks' JSON-able dicts to Block Kit payloads (``{"text": ..., "blocks": [...]}``).
Everything taken from the input is redacted (DSNs with passwords, Slack tokens, webhook paths) and escaped
for mrkdwn, and the payload respects Slack's limits (50 blocks, 3000 chars per section, 150 per header).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from greenery.alerts import block_kit as kit
from greenery.alerts.text import (
    MAX_BLOCKS,
    MAX_BLOCKS_TEXT,
    MAX_FALLBACK_TEXT,
    as_int,
    block_chars,
    clean,
    code,
    counted,
    escape,
    fmt_int,
    link,
    ranked_rules,
    truncate,
    within,
)
from greenery.checks import root_causes
from greenery.checks.summary import SAMPLE_KEY_CHARS
from greenery.redaction import redact

MAX_SAMPLE_KEYS = 5
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
_SEVERITY_ICON = {"critical": "🔴", "warning": "🟡"}


def as_root_causes(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The summary's root causes; a summary without them (older runs) lists each failure on its own."""
    if summary.get("root_causes") is not None:
        return list(summary["root_causes"])
    causes = []
    for f in summary.get("failures") or []:
        keys = [str(k) for k in f.get("sample_keys") or [] if k is not None]
        counted = {k: keys.count(k) for k in dict.fromkeys(keys)}
        causes.append(
            {
                **f,
                "table": f.get("table") or f.get("suite"),
                "sources": [],
                "keys": [{"key": k, "count": n} for k, n in counted.items()],
                "also_fails_in": [],
            }
        )
    return sorted(causes, key=lambda c: _SEVERITY_ORDER.get(root_causes.severity(c), 3))


RAW_CHANGED = "raw changed since a run read it"  # its description's start (int_source_volumes_daily's suite)
# A key can be a check's own message: the raw-changed and lost-history warnings write the days to run again, and
# how, into theirs. The first key is shown up to this many characters (user trial: cut at 160, "restore raw and
# run the…"), the others as the Data quality view shows them (whole in its tooltip).
FIRST_KEY_CHARS = 600


def _keys_text(keys: list[Mapping[str, Any]]) -> str | None:
    shown = [
        code(k.get("key"), FIRST_KEY_CHARS if i == 0 else SAMPLE_KEY_CHARS)
        + (f" ×{as_int(k.get('count'))}" if as_int(k.get("count")) > 1 else "")
        for i, k in enumerate(keys[:MAX_SAMPLE_KEYS])
    ]
    if not shown:
        return None
    more = f" (+{len(keys) - MAX_SAMPLE_KEYS} more)" if len(keys) > MAX_SAMPLE_KEYS else ""
    return f"keys: {', '.join(shown)}{more}"


def _cause_text(cause: Mapping[str, Any]) -> str:
    severity = root_causes.severity(cause)
    where = code(cause.get("table") or "?")
    if cause.get("sources"):
        where += " ← " + ", ".join(code(s, 80) for s in cause["sources"][:4])
    owner = f" · owner {cause['mention']}" if cause.get("mention") else ""
    lines = [f"{_SEVERITY_ICON.get(severity, '⚪')} *{clean(severity, 20)}* · {where}{owner}"]
    check = code(cause.get("expectation") or "?")
    if cause.get("column"):
        check += f" on {code(cause['column'])}"
    if cause.get("description"):
        # Three backticks in a suite's description opened a code block the error's fence below then closed (review).
        check += " — " + clean(cause["description"]).replace("```", "'''")
    lines.append(check)
    facts = []
    if cause.get("unexpected_count") is not None:
        facts.append(f"unexpected: *{clean(cause['unexpected_count'], 40)}*")
    if cause.get("observed_value") is not None:
        facts.append(f"observed: {code(cause['observed_value'])}")
    keys = _keys_text(list(cause.get("keys") or []))
    if keys or cause.get("detail_error"):  # it failed, but its rows could not be read: say so, not nothing
        facts.append(keys or f"keys could not be read: {code(cause['detail_error'])}")
    if facts:
        lines.append(" · ".join(facts))
    if cause.get("also_fails_in"):
        lines.append("also fails in " + ", ".join(code(t, 120) for t in cause["also_fails_in"][:10]))
    if cause.get("downstream_of"):
        upstream = ", ".join(code(t, 120) for t in cause["downstream_of"][:5])
        lines.append(f"reads {upstream}, failing above: it may follow from that; fix that first")
    runs = as_int(cause.get("runs_failing"))
    if runs > 1:
        lines.append(f"failing since {clean(cause.get('failing_since'), 40)} ({runs} runs)")
    if cause.get("error"):
        error = clean(cause["error"], 1500).replace("```", "'''")
        lines.append(f"could not be evaluated:\n```{error}```")
    return "\n".join(lines)


def quarantine_text(quarantined: Mapping[str, Any], rules: Mapping[str, Any] | None, limit: int = 20) -> str:
    rules = rules if isinstance(rules, Mapping) else {}
    items = list(quarantined.items())
    total = sum(as_int(v) for _, v in items)
    parts = [f"{code(name, 120)}: {fmt_int(count)}{_rules_text(rules.get(name))}" for name, count in items[:limit]]
    if len(items) > limit:
        parts.append(f"… and {len(items) - limit} more")
    return f"*Quarantined rows* ({fmt_int(total)}): " + ", ".join(parts)


def _rules_text(broken: Any, limit: int = 4) -> str:
    """`` (`future_timestamp` 4, `orphan_user` 2)``: the rules a model's rows broke, most rows first."""
    ranked, hidden = ranked_rules(broken, limit)
    if not ranked:
        return ""
    shown = [f"{code(rule, 60)} {fmt_int(n)}" for rule, n in ranked]
    return f" ({', '.join(shown)}{f', … {hidden} more' if hidden else ''})"


def _publish_text(summary: Mapping[str, Any]) -> str | None:
    if "published" not in summary:
        return None
    if summary["published"]:
        return "✅ Marts published for this run."
    if "serving_run" not in summary:  # the warehouse did not answer when the alert was made
        return "⛔ Marts not published (which run readers still see could not be read)"
    serving = summary.get("serving_run")
    if serving:
        return f"⛔ Marts not published; still serving the run of {clean(serving, 100)}"
    return "⛔ Marts not published; nothing published yet"


def _next_steps(summary: Mapping[str, Any], blocking: bool, links: Mapping[str, str | None], causes: list) -> str:
    if blocking:
        first = root_causes.what_to_fix(causes)
        steps = _clear_the_run(links, first) + " It rebuilds from raw, checks again and publishes if the checks pass."
        if hours := summary.get("backfill_hold_back_hours"):
            where = link(links.get("quality"), "Data quality view") or "Data quality view"
            steps += (
                f"\n_A backfill:_ its other days that fail these same checks in the next {clean(hours, 20)} h"
                f" are blocked too and not paged again, unless a run publishes meanwhile (one page per root cause);"
                f" the {where} lists them."
            )
        return steps
    if not summary.get("published", True):  # review: it said "the marts were published" under "not published"
        return _clear_the_run(links, "Nothing blocks, yet this run published nothing (`publish` marked by hand?)")
    fix = "Fix the source when it matters; the next run checks again."
    if summary.get("quarantined"):  # user trial: fixed, the next run left the rows' day's daily marts without them
        fix = (
            "Fix the source when it matters, then run again, oldest first, the days from the first the quarantined"
            " rows (or the orders and events they belong to) were created on to the latest: a later run rebuilds the"
            " tables, not earlier days' daily marts, and metrics_daily counts every day before its own."
        )
    # User trial: "the next run checks again" beside a warning that repeats until its days run again (review: said
    # beside every warning, a bad email's too).
    if any(str(c.get("description") or "").startswith(RAW_CHANGED) for c in causes):
        fix += " A raw-changed warning repeats until the days it names run again."
    return f"*What to do*\nNothing blocks: the marts were published. {fix}"


def build_alert(summary: Mapping[str, Any], *, log_url: str | None = None, docs_url: str | None = None) -> dict:
    """Block Kit payload for the on-call channel from a validation summary: one entry per root cause.

    Links come from ``summary["links"]`` (run, log, quality, docs: built from Airflow's base URL);
    ``log_url`` and ``docs_url`` override theirs. When the causes do not all fit in Slack's 50 blocks, the
    first ones are shown with an "… and K more" line.
    """
    dag_id_raw = str(summary.get("dag_id") or "greenery")
    dag_id = clean(dag_id_raw, 200)
    logical_date = summary.get("logical_date")
    run_id = summary.get("run_id")
    causes = as_root_causes(summary)
    n_critical = as_int(summary.get("failed_critical"))
    n_warning = as_int(summary.get("failed_warning"))
    blocking = bool(
        summary.get("blocking", n_critical > 0 or any(root_causes.severity(c) == "critical" for c in causes))
    )
    links = {**(summary.get("links") or {})}
    links["log"] = log_url or links.get("log") or summary.get("log_url")
    links["docs"] = docs_url or links.get("docs") or summary.get("data_docs_url")

    # The header names the worst thing in the message.
    held_back = sum(as_int(n) for n in (summary.get("quarantined") or {}).values())
    rows = f"{counted(held_back, 'row')} quarantined"
    if blocking:
        title = f"🔴 {redact(dag_id_raw)}: data checks failed"
    elif (causes or n_warning) and held_back:
        title = f"🟡 {redact(dag_id_raw)}: data check warnings and {rows}"
    elif causes or n_warning:
        title = f"🟡 {redact(dag_id_raw)}: data check warnings"
    elif held_back:
        title = f"🟡 {redact(dag_id_raw)}: {rows}"
    else:
        title = f"🟢 {redact(dag_id_raw)}: all data checks passed"

    overview = [f"*DAG* `{dag_id}` · *day* {clean(logical_date, 80) or 'n/a'} · *run* {code(run_id, 250)}"]
    # Checks count each table's failure; root causes fold a problem seen downstream into one (user trial: "3 critical
    # failures, root causes: 2" beside a CLI's "1 critical problem": the critical ones are counted too).
    critical_causes = sum(root_causes.severity(c) == "critical" for c in causes)
    overview.append(
        f"*Checks evaluated:* {fmt_int(summary.get('evaluated'))} · *failed critical:* {fmt_int(n_critical)}"
        f" · *failed warning:* {fmt_int(n_warning)} · *root causes:* {len(causes)}"
        + (f" ({critical_causes} critical)" if 0 < critical_causes < len(causes) else "")
    )
    mentions = sorted({c["mention"] for c in causes if c.get("mention")})
    if mentions:
        overview.append("*Owners:* " + " ".join(mentions))
    status_lines = [line for line in (_publish_text(summary),) if line]
    if summary.get("quarantined"):
        status_lines.append(quarantine_text(summary["quarantined"], summary.get("quarantined_rules")))

    head = [kit.header(title), kit.section("\n".join(overview), "overview")]
    tail = [kit.DIVIDER]
    if status_lines:
        tail.append(kit.section("\n".join(status_lines), "status"))
    tail.append(kit.section(_next_steps(summary, blocking, links, causes), "next-steps"))
    buttons = kit.buttons(links)
    if buttons:
        tail.append(buttons)

    slots = MAX_BLOCKS - len(head) - len(tail) - (1 if causes else 0)  # 1 = divider before the causes
    if len(causes) > slots:
        slots -= 1  # room for the "… and K more" line
    # Review: 45 causes with long compound keys made 49k characters; Slack refused the alert and paged nobody.
    room = MAX_BLOCKS_TEXT - block_chars([*head, *tail, kit.DIVIDER, _more(len(causes), links)])
    shown = within([kit.section(_cause_text(c), f"cause-{i}") for i, c in enumerate(causes[:slots])], room)
    middle: list[dict] = [kit.DIVIDER, *shown] if causes else []
    if len(causes) > len(shown):
        middle.append(_more(len(causes) - len(shown), links))
    blocks = head + middle + tail

    fallback = [
        f"{escape(title)} — {n_critical} critical and {n_warning} warning failures"
        f" of {as_int(summary.get('evaluated'))} checks (day {clean(logical_date, 80) or 'n/a'})."
    ]
    for c in causes[:5]:
        column = f".{clean(c.get('column'), 100)}" if c.get("column") else ""
        level = clean(root_causes.severity(c), 20)
        fallback.append(f"• {level}: {clean(c.get('table'), 120)}{column} {clean(c.get('expectation'), 120)}")
    if len(causes) > 5:
        fallback.append(f"… and {len(causes) - 5} more root causes")
    fallback += status_lines
    return {"text": truncate("\n".join(fallback), MAX_FALLBACK_TEXT), "blocks": blocks}


def _more(hidden: int, links: Mapping[str, str | None]) -> dict:
    where = link(links.get("quality"), "Data quality view") or "Data quality view"
    return kit.context(f"… and {hidden} more root causes, left out to fit Slack (see the {where})")


def _clear_the_run(links: Mapping[str, str | None], first: str) -> str:
    run = links.get("run")
    where = link(run, "the run") if run and urlsplit(run).scheme in ("http", "https") else "the run"
    clear = f"{where} → *Clear* (shift+C) → *Clear existing tasks*"  # Airflow 3.3's words (user trial)
    if links.get("rerun"):  # a run of `greenery run`, whose UI may not be up: its command first
        return f"*What to do*\n{first}, then run the day again: {code(links['rerun'], 200)} (or {clear})."
    return f"*What to do*\n{first}, then clear the whole run: open {clear}."


def build_source_alert(
    *,
    dag_id: str,
    logical_date: str,
    run_id: str,
    problems: Iterable[Mapping[str, Any]],
    log_url: str | None,
    links: Mapping[str, str | None] | None = None,
    serving: Mapping[str, str | None] | None = None,
    first_step: str = "Load the source",
) -> dict:
    """The run stopped before building: raw tables missing, empty, incomplete or stale for the day. ``serving``:
    {"serving_run": the day readers still see, or None when nothing was published}; {} or None: not known."""
    problems = list(problems)
    links = {**(links or {}), "log": log_url or (links or {}).get("log")}
    header = f"🟠 {dag_id}: source data not ready for {logical_date}; nothing built"
    lines = [
        f"• {code(p.get('table'), 80)} *{clean(p.get('problem'), 20)}*: {clean(p.get('detail'), 400)}"
        for p in problems[:20]
    ]
    blocks = [
        kit.header(header),
        kit.context(f"DAG {code(dag_id)} · day {code(logical_date)} · run {code(run_id, 250)}"),
        kit.section("*Source freshness*\n" + "\n".join(lines)),
        kit.section(_untouched(serving or {})),
        kit.section(_clear_the_run(links, first_step)),
    ]
    if buttons := kit.buttons(links):
        blocks.append(buttons)
    details = "; ".join(str(p.get("detail")) for p in problems)
    return {"text": truncate(escape(redact(f"{header}: {details}")), MAX_FALLBACK_TEXT), "blocks": blocks}


def _untouched(serving: Mapping[str, str | None]) -> str:
    if "serving_run" not in serving:
        return "Published marts are untouched (still serving the previous run)."
    if serving["serving_run"] is None:
        return "Nothing was ever published to this warehouse: there are no marts to read until a run publishes."
    return f"Published marts are untouched (still serving the run of {clean(serving['serving_run'], 40)})."


def build_task_failure_alert(
    *,
    dag_id: str,
    task_id: str,
    logical_date: str | None,
    run_id: str,
    error: str,
    log_url: str | None,
    links: Mapping[str, str | None] | None = None,
    published: bool = False,
    next_step: str | None = None,
    mention: str | None = None,
) -> dict:
    """A task failed (SQL error, lost connection, timeout...): before publish, nothing of this run was
    published; after it (``published``: the digest, the alert), the marts are this run's. ``next_step``: the one
    thing to do, when the failure knows it better than "fix the cause, then clear". ``mention``: the Slack handle of
    the failed model's owner (_owners.yml), as a failed check's alert names it."""
    links = {**(links or {}), "log": log_url or (links or {}).get("log")}
    header = f"🔴 {dag_id}: task {task_id} failed" if task_id != "?" else f"🔴 {dag_id}: the run failed"
    fence = "```"
    blocks = [
        kit.header(header),
        kit.context(
            f"DAG {code(dag_id)} · day {code(logical_date or '-')} · run {code(run_id, 250)}"
            + (f" · owner {mention}" if mention else "")  # _owners.yml's own text: a <!subteam^…> must stay live
        ),
        kit.section(fence + clean(error, 2500).replace(fence, "'''") + fence),
        *_after_a_failure(task_id, links, published, next_step),
    ]
    if buttons := kit.buttons(links):
        blocks.append(buttons)
    return {"text": truncate(escape(redact(f"{header}: {error}")), MAX_FALLBACK_TEXT), "blocks": blocks}


def _after_a_failure(task_id: str, links: Mapping[str, str | None], published: bool, step: str | None) -> list:
    if published:  # clearing the whole run would publish again, and send the whole digest again
        ran_by = str(links.get("rerun") or "")  # `greenery run`'s Airflow is `greenery ui`'s (not the demo's)
        where = "in `greenery ui` (the command's Airflow), " if ran_by.startswith("greenery run") else ""
        then = f"then {where}clear {code(task_id)} (with its downstream tasks, the Clear dialog's default)"
        step = step or f"Fix the cause (the task log has the details), {then}, not the whole run."
        return [kit.section("The marts were published by this run."), kit.section(f"*What to do*\n{step}")]
    step = f"*What to do*\n{step}" if step else _clear_the_run(links, "Fix the cause (the task log has the details)")
    return [
        kit.section("Nothing was published by this run: readers still see the previous run's marts."),
        kit.section(step),
    ]
