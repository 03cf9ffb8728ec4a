"""What ``greenery run`` says of a finished day: a green run's warnings and quarantine, a red run's failed tasks."""

from __future__ import annotations

import contextlib
import traceback

from psycopg import sql

from greenery import audit, warehouse
from greenery.alerts.text import found
from greenery.cli_types import span
from greenery.printable import printable
from greenery.redaction import redact


def notes(dag_run) -> str:
    """`` (2 warnings, 3 rows quarantined: ...)`` from a green run's latest recorded validation; '' when clean (or
    not green: the lines after it say why).

    Review: a run that quarantined rows or failed warnings printed a bare "success"; only Slack or the Data quality
    view told. A record that cannot be read is said too: the line must not read as clean for want of it.
    """
    if dag_run.state != "success":
        return ""
    try:
        with warehouse.connect() as conn:
            row = conn.execute(
                sql.SQL("select summary from {} where run_id = %s order by validated_at desc limit 1").format(
                    audit.table("validation_runs")
                ),
                (dag_run.run_id,),
            ).fetchone()
    except Exception as exc:  # the run is green: its record may be unreadable (a permission), not its tables
        return f" (its checks' record could not be read: {type(exc).__name__})"
    if row is None:  # publish records every green run's validation: its absence is news, not a clean run
        return " (no validation is recorded for it)"
    said, held = found(row[0]), sorted(row[0].get("quarantined") or {})
    # A terminal's reader may have no UI running (user trial): the tables that hold the rows are named too.
    tables = (
        f"; rows in {', '.join(f'quarantine.{name}' for name in held[:3])}{', …' * (len(held) > 3)}" if held else ""
    )
    # User trial: a green day whose alert suppression held back read the same as one that paged.
    instances = getattr(dag_run, "get_task_instances", list)()
    skipped = any(ti.task_id == "alert_slack" and ti.state == "skipped" for ti in instances)
    quiet = "; not alerted: alert_slack skipped it, a repeat held back, sent by an earlier try or Slack off"
    quiet = quiet if skipped else ""
    return f" ({said}: see the Data quality view{tables}{quiet})" if said else ""


CAUSE_LINES = 6  # a failed validate's root causes (verdict()) fit; a traceback's tail does not matter here


def failures(dag_run, failed: list[str]) -> list[tuple[str, list[str]]]:
    """Each failed task with its error as the failure callback recorded it: the first line says what failed,
    the next few (a failed validate's root causes) say where; the log has the rest."""
    try:
        with warehouse.connect() as conn:
            recorded = {f["task_id"]: f["error"] for f in audit.task_failures(conn, dag_run.run_id)}
        unrecorded = "see the log"
    except Exception as exc:  # the warehouse may be why the run failed (its callback could not record it either)
        said = " ".join(str(exc).split())
        # Review: a role that may not read greenery_audit was told "the warehouse did not answer" (it did).
        why = "the warehouse did not answer"
        if getattr(exc, "sqlstate", None) == "42501":
            why = "this role may not read them"
        elif isinstance(exc, warehouse.ConnectionSettingError):  # it was never asked (trial): the setting is wrong
            why = "the warehouse connection is written wrong"
        elif "FATAL" in said:  # refused at login (a role or password it does not know): it did answer (second review)
            why = "the warehouse refused this command's login"
        recorded, unrecorded = {}, f"the tasks' errors could not be read: {why} ({said}); the log has them"
        if not failed:
            return [("run", [str(exc)])]
    return [(t, cause_lines(recorded.get(t) or unrecorded)) for t in failed]


FIRST_LINE, OTHER_LINES = 2000, 300  # characters: the first line is the error itself (its advice at its end)


def _cut(line: str, limit: int) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def cause_lines(error: str) -> list[str]:
    """The error's first lines, the first whole (review: cut at 300 characters, a skipped-days error lost the
    command that fixes it, mid-word and without a mark); a line cut says so with "…"."""
    # A line may quote raw data (a key, a name): shown on the terminal, never obeyed (review: escape sequences).
    lines = [printable(line.rstrip()) for line in error.strip().splitlines() if line.strip()]
    lines = [_cut(line, FIRST_LINE if i == 0 else OTHER_LINES) for i, line in enumerate(lines)]
    if len(lines) > CAUSE_LINES:
        lines = [*lines[: CAUSE_LINES - 1], f"... ({len(lines) - CAUSE_LINES + 1} more lines in the log)"]
    return lines


def published_anyway(dag_run) -> str | None:
    """A line for a red run whose ``publish`` succeeded: what failed came after it, and the marts went out (review:
    a day that quarantined rows, with no Slack connection, read as if nothing had been published)."""
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    if states.get("publish") != "success":
        return None
    return "its tables WERE published (publish succeeded); what failed came after it:"


@contextlib.contextmanager
def line_ends_on_a_stop(console):
    """End a day's progress line (``[2/3] D ...``) with " stopped" when its run raises, before the stop's own line on
    stderr (review: it was left open on stdout); a reader that left (a closed pipe) is told nothing more."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            print(" stopped", file=console, flush=True)
        raise


def ran_and_not(days: list, done: int, partly: bool = False) -> str:
    """What a range cut short after its first ``done`` days did: the days that ran, and those that did not.
    ``partly``: the next day's run ended unfinished (review: that day was listed as not run)."""
    ran, rest = days[:done], days[done:]
    said = [f"ran {span(ran)}"] if ran else []
    if partly and rest:
        said.append(f"{rest[0]} ran in part (its run ended unfinished)")
        rest = rest[1:]
    if rest or not partly:
        said.append(f"not run: {span(rest)}" if rest else "every day ran")
    return "; ".join(said)


def stopped_later(exc: Exception, before: bool, day, days: list, done: int) -> str:
    """What a range says when ``exc`` stops it at ``day``, after its first ``done`` days (review: exit 2 and the error
    alone, as if nothing had run): the error on one line, masked, and what ran; an error not of this package's kinds
    (a bug's) keeps its traceback after them. ``before``: refused before the day's run started. An error saying the
    day's run ended unfinished (``ran_in_part``: local_airflow.RunDidNothingError) says the day ran in part."""
    why = printable(redact(str(exc)) if before else redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:600])
    partly = getattr(exc, "ran_in_part", False)
    said = f"stopped {'before' if before else 'at'} {day}: {why}\n  {ran_and_not(days, done, partly)}"
    if not type(exc).__module__.startswith("greenery."):
        said += "\n" + redact("".join(traceback.format_exception(exc)).rstrip())
    return said
