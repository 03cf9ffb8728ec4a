"""Memory of the checks, read from the recorded validations: since when a failing check fails, and how long each
suite took.

A root cause gets ``failing_since`` (the logical date of the first run of its current streak) and
``runs_failing`` (how many recorded runs in a row it failed, this one included), so the alert can say
"failing since 2021-02-10, 3 runs" instead of sounding new every day.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from psycopg import sql

from greenery import audit

# Enough to tell a streak of weeks; older runs do not change what on-call does.
LOOKBACK_RUNS = 90
# The validations a suite's seconds are looked for in: a run that validated a few suites (its validate cleared
# after one model task) leaves the others' seconds in the runs before it.
SECONDS_RUNS = 20


def _key(suite: Any, expectation: Any, column: Any, description: Any) -> tuple:
    # The description tells apart the checks with no column: a suite's several unexpected_rows queries
    # (a relationship, a primary key, a reconciliation) are all of one type.
    return (suite, expectation, column, description)


def _failed_checks(summary: dict[str, Any]) -> set[tuple]:
    return {
        _key(f.get("suite"), f.get("expectation"), f.get("column"), f.get("description"))
        for f in summary.get("failures") or []
    }


def _earlier(conn, summary: dict[str, Any], limit: int) -> list[tuple]:
    """(logical_date, summary) of the validations recorded before ``summary``'s run, newest first."""
    if not audit.exists(conn, "validation_runs"):
        return []
    return conn.execute(
        sql.SQL(
            # The days before this one (a backfill of an older day has later days validated before it).
            # Each run's latest validation only (review: a run cleared and validated again counted twice).
            "select logical_date, summary from (select distinct on (run_id) logical_date, summary, validated_at"
            " from {} where run_id <> %s and logical_date <= %s order by run_id, validated_at desc) as runs"
            " order by logical_date desc, validated_at desc limit %s"
        ).format(audit.table("validation_runs")),
        (summary.get("run_id"), summary.get("logical_date"), limit),
    ).fetchall()


def previous(conn, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded summary of the validation before ``summary``'s run, or None."""
    found = _earlier(conn, summary, 1)
    return found[0][1] if found else None


def latest(conn, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded summary of the validation validated last before ``summary``'s run, whatever its day: what on-call
    last heard of when an older day runs again (user trial: a rerun of 02-11 after 02-12 was compared with 02-10's
    run, and paged 02-12's quarantine again)."""
    if not audit.exists(conn, "validation_runs"):
        return None
    found = conn.execute(
        sql.SQL("select summary from {} where run_id <> %s order by validated_at desc limit 1").format(
            audit.table("validation_runs")
        ),
        (summary.get("run_id"),),
    ).fetchone()
    return found[0] if found else None


def annotate(conn, summary: dict[str, Any]) -> None:
    """Add ``failing_since`` and ``runs_failing`` to each of ``summary["root_causes"]`` (in place)."""
    earlier = _earlier(conn, summary, LOOKBACK_RUNS)
    for cause in summary.get("root_causes") or []:
        key = _key(cause["model"], cause["expectation"], cause["column"], cause.get("description"))
        since, runs = summary.get("logical_date"), 1
        for day, recorded in earlier:
            checked = {s.get("suite") for s in recorded.get("suites") or []}
            if cause["model"] not in checked:
                continue  # that run did not check this table (a single cleared task): no verdict either way
            if key not in _failed_checks(recorded):
                break
            since, runs = day.isoformat(), runs + 1
        cause["failing_since"], cause["runs_failing"] = since, runs


def suite_seconds(conn, on_delta: Collection[str] = ()) -> dict[str, float]:
    """Each suite's seconds in the newest recorded validation that ran it (of the last ``SECONDS_RUNS``): what
    validate balances its streams on (checks/gx.py). ``on_delta``: the suites this validation checks on their delta
    (an incremental model's rows of the run), which prefer seconds taken on a delta; every other suite takes only
    seconds taken on a whole table: a delta's seconds would cost the events' suite of a full refresh at a few days'
    share of its table (review). Empty before the first record."""
    if not audit.exists(conn, "validation_runs"):
        return {}
    return dict(
        conn.execute(
            sql.SQL(
                "select distinct on (name) name, seconds from ("
                " select suite->>'suite' as name, (suite->>'seconds')::float8 as seconds, runs.validated_at,"
                " suite->'on_delta' = 'true'::jsonb as was_delta"
                " from (select summary, validated_at from {} order by validated_at desc limit %(runs)s) as runs"
                " cross join lateral jsonb_array_elements(" + audit.json_array("runs.summary->'suites'") + ") as suite"
                " where jsonb_typeof(suite->'seconds') = 'number') as taken"
                " where not coalesce(was_delta, false) or name = any(%(on_delta)s)"
                " order by name, coalesce(was_delta, false) = (name = any(%(on_delta)s)) desc, validated_at desc"
            ).format(audit.table("validation_runs")),
            {"runs": SECONDS_RUNS, "on_delta": list(on_delta)},
        ).fetchall()
    )
