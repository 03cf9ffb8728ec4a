"""What the Data quality view shows, read from the warehouse's audit tables.

It reads what the DAG's publish task records (``greenery_audit.validation_runs`` and ``publish_log``, see
:mod:`greenery.audit`). A table's row is its latest validation: usually the latest run's, but a run whose
validate task was cleared alone re-checks only the models it rebuilt, so other tables show the run that
last checked them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from greenery import audit, config, warehouse
from greenery.ui import recorded

log = logging.getLogger(__name__)

HISTORY_LIMIT = 10
# Reading the audit tables is cheap; never hold one of the API server's threads for long.
STATEMENT_TIMEOUT_MS = 15_000
CONNECT_TIMEOUT_S = 5
ANSWER_WITHIN_S = 20  # the whole read, on this side: more than one statement's timeout


class UnknownRunError(LookupError):
    """The page was asked about a run that recorded no validation."""


class WarehouseError(RuntimeError):
    """The warehouse could not be reached or read; the message is safe to show to a UI user."""


def _runs_table() -> sql.Identifier:
    return sql.Identifier(audit.SCHEMA, "validation_runs")


def _utc(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def _day(value: dt.date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, dt.date) else value


def table_status(failed_critical: int, failed_warning: int) -> str:
    return "failed" if failed_critical else "warning" if failed_warning else "passed"


def recent_runs(conn, limit: int = HISTORY_LIMIT, up_to: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The last ``limit`` validations (by ``up_to`` when given), newest first, with their totals, not failures."""
    rows = conn.execute(
        sql.SQL(
            "select run_id, logical_date, validated_at, published,"
            " summary->'evaluated', summary->'failed_critical', summary->'failed_warning',"
            " summary->'failures_total', summary->'quarantined', summary->'dag_id', summary->'log_url'"
            " from {} where validated_at <= coalesce(%s::timestamptz, 'infinity') order by validated_at desc limit %s"
        ).format(_runs_table()),
        (up_to, limit),
    ).fetchall()
    runs = []
    for row in rows:
        run_id, day, at, published, evaluated, critical, warning, total, quarantined, dag, url = row
        runs.append(
            {
                "run_id": run_id,
                "logical_date": _day(day),
                "validated_at": _utc(at),
                "published": published,
                "dag_id": dag if isinstance(dag, str) else config.DAG_ID,
                "evaluated": recorded.count(evaluated),
                "failed_critical": recorded.count(critical),
                "failed_warning": recorded.count(warning),
                "failures_total": recorded.count(total) if total is not None else None,
                "quarantined": {str(k): recorded.count(v) for k, v in (quarantined or {}).items()}
                if isinstance(quarantined, dict)
                else {},
                "log_url": url if isinstance(url, str) else None,
            }
        )
    return runs


def latest_per_table(conn, as_of: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every suite's latest result (from the newest run that validated it, by ``as_of`` when given), with that
    run's failures of it."""
    query = sql.SQL(
        "with latest as ("
        " select distinct on (s.value->>'suite')"
        " r.run_id, r.logical_date, r.validated_at, r.published, s.value as suite"
        " from {runs} r cross join lateral jsonb_array_elements(" + audit.json_array("r.summary->'suites'") + ") s"
        " where jsonb_typeof(s.value) = 'object' and s.value->>'suite' is not null"
        " and (%(as_of)s::timestamptz is null or r.validated_at <= %(as_of)s)"
        " order by s.value->>'suite', r.validated_at desc)"
        " select l.run_id, l.logical_date, l.validated_at, l.published, l.suite,"
        " coalesce((select jsonb_agg(f.value order by f.n) from {runs} r2 cross join lateral jsonb_array_elements("
        + audit.json_array("r2.summary->'failures'")
        + ") with ordinality f(value, n)"
        " where r2.run_id = l.run_id and r2.validated_at = l.validated_at"
        " and f.value->>'suite' = l.suite->>'suite'), '[]'::jsonb)"
        " from latest l"
    ).format(runs=_runs_table())
    tables = []
    for run_id, day, at, published, suite, failures in conn.execute(query, {"as_of": as_of}).fetchall():
        critical, warning = recorded.count(suite.get("failed_critical")), recorded.count(suite.get("failed_warning"))
        tables.append(
            {
                "suite": suite.get("suite"),
                "table": recorded.display_table(suite.get("table")),
                "validated_table": suite.get("table"),
                "evaluated": recorded.count(suite.get("evaluated")),
                "failed_critical": critical,
                "failed_warning": warning,
                "status": table_status(critical, warning),
                "run_id": run_id,
                "logical_date": _day(day),
                "validated_at": _utc(at),
                "published": published,
                "failures": [recorded.failure(f) for f in failures if isinstance(f, dict)],
            }
        )
    rank = {"failed": 0, "warning": 1, "passed": 2}
    tables.sort(key=lambda t: (rank[t["status"]], t["table"] or "", t["suite"] or ""))
    return tables


def run_record(conn, run_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the run as recent_runs lists it, its whole summary) of the latest validation of ``run_id``."""
    row = conn.execute(
        sql.SQL(
            "select run_id, logical_date, validated_at, published, summary from {}"
            " where run_id = %s order by validated_at desc limit 1"
        ).format(_runs_table()),
        (run_id,),
    ).fetchone()
    if row is None:
        return None
    _, day, at, published, summary = row
    run = {
        "run_id": run_id,
        "logical_date": _day(day),
        "validated_at": _utc(at),
        "validated": True,
        "published": published,
        "dag_id": summary.get("dag_id") if isinstance(summary.get("dag_id"), str) else config.DAG_ID,
        "evaluated": recorded.count(summary.get("evaluated")),
        "failed_critical": recorded.count(summary.get("failed_critical")),
        "failed_warning": recorded.count(summary.get("failed_warning")),
        "failures_total": recorded.count(summary.get("failures_total")),
        "quarantined": {str(k): recorded.count(v) for k, v in (summary.get("quarantined") or {}).items()},
        "quarantined_rules": summary.get("quarantined_rules"),  # as recorded: ui/render.py reads it
        "log_url": summary.get("log_url") if isinstance(summary.get("log_url"), str) else None,
    }
    return run, summary


# The DAG's tasks downstream of validate (tests/test_dag_integrity.py checks the list): one of them failing in a
# later attempt of a validated run (a digest cleared alone) leaves that run's checks as they were.
AFTER_VALIDATE = ("publish", "alert_slack", "state_of_the_data")


def failed_since(conn, validation: dict[str, Any] | None, only_run: str | None = None) -> dict[str, Any] | None:
    """The newest task failure recorded after ``validation`` (the latest, as :func:`recent_runs` lists it; any
    failure before the first validation) of a run attempt that has no validation: its run failed before its checks,
    and is newer news than the validation, and red. With ``first_at``, that run's first failure among them. A failure
    of an attempt that was validated, of a run validated by a later attempt, or of a task after validate in a run that
    was validated, is on that run's own page (second review: a digest failing in a later clear of the validated run,
    or another run's digest failing after the latest validation in a backfill, showed a checked and published run as
    "not validated"). ``only_run``: that run's failures only. None when there is none."""
    if not audit.exists(conn, "task_failures"):
        return None
    audit.ensure(conn)  # as audit.task_failures: an older warehouse's table gets clear_number
    validated = sql.SQL("")
    if audit.exists(conn, "validation_runs"):
        attempt = "case when jsonb_typeof(v.summary -> 'clear_number') = 'number' then v.summary ->> 'clear_number' end"
        validated = sql.SQL(
            " and not exists (select from {} as v where v.run_id = f.run_id and (f.task_id = any(%(after_checks)s)"
            f" or coalesce(({attempt})::numeric, 0) >= coalesce(f.clear_number, 0)))"
        ).format(audit.table("validation_runs"))
    row = conn.execute(
        sql.SQL(
            "select run_id, task_id, logical_date, failed_at, min(failed_at) over (partition by run_id) from {} as f"
            " where failed_at > coalesce(%(after)s::timestamptz, '-infinity'){}"
            " and (%(run)s::text is null or run_id = %(run)s) order by failed_at desc limit 1"
        ).format(audit.table("task_failures"), validated),
        {
            "after": validation["validated_at"] if validation else None,
            "after_checks": list(AFTER_VALIDATE),
            "run": only_run,
        },
    ).fetchone()
    if row is None:
        return None
    run_id, task_id, day, at, first_at = row
    return {"run_id": run_id, "task_id": task_id, "logical_date": day, "failed_at": at, "first_at": first_at}


def report(conn, history_limit: int = HISTORY_LIMIT, run_id: str | None = None) -> dict[str, Any]:
    """Everything the page and the JSON endpoint show; ``latest_run`` is None before the first validation or
    task failure.

    ``run_id`` picks the run the page is about (an alert links to its own run); default: the latest, which is
    the latest validation's run unless a task of another run (or a later attempt of it) failed after it: then
    that run, as a run that failed before validate. Its tables are each one's latest result as of
    ``tables_as_of``: the run's validation, or its first task failure for a run that failed before validate.
    """
    any_validation = audit.exists(conn, "validation_runs")
    # A run asked for by name gets its own history below (up to it): the latest runs are read only for the latest page.
    runs = recent_runs(conn, history_limit) if any_validation and run_id is None else []
    last = audit.last_published(conn)
    serving = None
    if last:
        serving = {**last, "published_at": _utc(last["published_at"])}
    latest = runs[0] if runs else None
    causes, notes = [], []  # the run's root causes and info results, when it was validated
    as_of = previous = cleared = None
    validated_attempt: tuple[Any, Any] = (None, None)  # the clear number and time of the run's validation shown
    if runs or run_id:
        picked = run_record(conn, run_id or latest["run_id"]) if any_validation else None
        if picked is not None:
            latest, causes, notes = picked[0], recorded.causes(picked[1]), recorded.notes(picked[1])
            validated_attempt = (picked[1].get("clear_number"), dt.datetime.fromisoformat(latest["validated_at"]))
            # A run asked for by name (an alert's link) is shown as it was: each table's latest result up to its
            # validation (review: a later run's failures were listed under an earlier, clean run).
            as_of = validated_attempt[1] if run_id else None
            # Its alert's link, after a clear that failed before validate: the validation shown is an earlier
            # attempt's, and the page says so (review: it read "Every check passed" under the clear's failure).
            if run_id and (later := failed_since(conn, latest, run_id)):
                cleared = {"task_id": later["task_id"], "failed_at": _utc(later["failed_at"])}
        elif run_id and (failed := audit.task_failures(conn, run_id)):
            # It failed before validate (source check, a model, the warehouse): its alert links here as well. Its
            # tables are as of its first failure, so a run validated after it never shows as one of its "earlier
            # runs" (review: a source check's alert listed a later run's failures).
            latest = not_validated(run_id, failed[0]["logical_date"])
            as_of = failed[0]["failed_at"]
        else:
            raise UnknownRunError(f"no validation or task failure recorded for run {run_id!r}")
    if run_id is None and (newer := failed_since(conn, latest)):
        # Review: a run that failed after the latest validation (a source check, a model, the warehouse, a killed
        # task) recorded no validation, so the latest page said the older run's "Every check passed; readers see
        # this run" while the newest run was red. Shown as a run that failed before validate, naming the validation.
        previous = {k: latest[k] for k in ("run_id", "logical_date", "validated_at", "published")} if latest else None
        latest, causes, notes = not_validated(newer["run_id"], newer["logical_date"]), [], []
        validated_attempt = (None, None)
        as_of = newer["first_at"]  # after the latest validation: every table's latest result, none later
    if serving and as_of is not None:  # a past run's page: readers may see a publish made after it (review)
        serving["after_this_run"] = last["published_at"] > as_of
    later_runs = 0
    if (
        as_of is not None and any_validation
    ):  # a past run's page: its history ends with it (review: it listed later ones)
        runs = recent_runs(conn, history_limit, up_to=as_of)
        later = sql.SQL("select count(distinct run_id) from {} where validated_at > %s").format(_runs_table())
        later_runs = conn.execute(later, (as_of,)).fetchone()[0]
    tables = latest_per_table(conn, as_of) if any_validation else []
    for table in tables:
        table["in_latest_run"] = latest is not None and table["run_id"] == latest["run_id"]
    failures = [f for t in tables for f in t["failures"]]
    failures.sort(key=lambda f: (f["severity"] != "critical", f["table"] or "", f["expectation"] or ""))
    return {
        "dag_id": latest["dag_id"] if latest else config.DAG_ID,
        "latest_run": latest,
        "serving": serving,
        "tables": tables,
        "failures": failures,
        "root_causes": causes,
        "notes": notes,
        "task_failures": _task_failures(conn, latest["run_id"], validated_attempt) if latest else [],
        "quarantined": latest["quarantined"] if latest else {},
        "history": runs,
        "later_runs": later_runs,  # validated after the run the page is about (none on the latest run's page)
        # The latest validation, when the latest page is about a run that failed after it (else None).
        "previous_validation": previous,
        # A run's own page: the failure of a later attempt (a clear) before validate, after the validation shown.
        "cleared_and_failed": cleared,
        "tables_as_of": _utc(as_of),
    }


def _task_failures(conn, run_id: str, validated: tuple[Any, dt.datetime | None]) -> list[dict[str, Any]]:
    """The run's task failures, each with its attempt (Airflow's clear number, 0 for the first) and whether the run
    ran again after it: a later attempt, or a later validation (a publish cleared alone records one: review)."""
    failures = audit.task_failures(conn, run_id)
    number, at = validated
    last = max([*(f["clear_number"] or 0 for f in failures), number if isinstance(number, int) else 0], default=0)
    return [
        {
            **f,
            "failed_at": _utc(f["failed_at"]),
            "logical_date": _day(f["logical_date"]),
            "error": recorded.redacted(f["error"]),
            "attempt": f["clear_number"] or 0,
            "earlier_attempt": (f["clear_number"] or 0) < last or (at is not None and f["failed_at"] < at),
        }
        for f in failures
    ]


def not_validated(run_id: str, day: dt.date) -> dict[str, Any]:
    """A run that recorded task failures and no validation, as the page shows it."""
    return {
        "run_id": run_id,
        "logical_date": _day(day),
        "validated_at": None,
        "validated": False,
        "published": False,
        "dag_id": config.DAG_ID,
        "evaluated": 0,
        "failed_critical": 0,
        "failed_warning": 0,
        "failures_total": 0,
        "quarantined": {},
        "log_url": None,
    }


@contextlib.contextmanager
def reading() -> Iterator[Any]:
    """A read-only transaction on the warehouse, through the Airflow connection, with a statement timeout.

    Raises :class:`WarehouseError` with a readable reason when the warehouse cannot be reached or read, or a setting
    the view reads is bad.
    """
    try:
        # Lenient: a bad setting the view does not read (GREENERY_RETRIES=x) must not take the page down (review: a
        # bare 500); the connection's name cannot be bad, only unset, and then it is the default.
        conn_id = config.get_lenient()[0].warehouse_conn_id
        # Bounded on this side too: a warehouse that took the connection and never answered held one of the API
        # server's threads for as long as it took the connection (review: over 40 s; minutes for a host gone).
        with (
            warehouse.connect(conn_id, connect_timeout=CONNECT_TIMEOUT_S, answer_within_s=ANSWER_WITHIN_S) as conn,
            warehouse.answer_within(conn, ANSWER_WITHIN_S, "the Data quality view"),
        ):
            conn.read_only = True
            with conn.transaction():
                conn.execute(sql.SQL("set local statement_timeout = {}").format(sql.Literal(STATEMENT_TIMEOUT_MS)))
                yield conn
    except warehouse.WarehouseUnavailableError as exc:
        raise WarehouseError(str(exc)) from exc
    except psycopg.OperationalError as exc:
        raise WarehouseError(f"the warehouse connection failed: {type(exc).__name__}: {exc}".strip()) from exc
    except config.SettingError as exc:  # one line naming the variable; escaped where it is shown
        raise WarehouseError(f"a GREENERY_* setting of the API server is bad: {exc}") from exc
    except psycopg.Error as exc:
        log.exception("reading the validation results failed")
        raise WarehouseError(f"reading the validation results failed: {type(exc).__name__}: {exc}".strip()) from exc


def read_report(history_limit: int = HISTORY_LIMIT, run_id: str | None = None) -> dict[str, Any]:
    """:func:`report` through the Airflow connection; raises :class:`WarehouseError` with a readable reason."""
    with reading() as conn:
        return report(conn, history_limit, run_id)
