"""Task ``check_source_freshness``: raw must hold data for the run's day, else alert and stop before building."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from airflow.sdk.exceptions import AirflowFailException

from greenery import audit, config, links, runtime, warehouse
from greenery.alerts import messages
from greenery.project import models
from greenery.project.render import CLOCK_SKEW, Interval
from greenery.sources import fingerprint, freshness
from greenery.tasks.failures import PagedFailure
from greenery.tasks.paging import MAYBE_SENT, SENT, page

log = logging.getLogger(__name__)


class BeforeStartDateError(AirflowFailException):
    """The run's day is before the configured start date: building it would build on no data."""


class DayNotOverError(AirflowFailException):
    """The run's day has not ended: its daily marts would publish part of the day as the whole day."""


# How far before its day's end a run may start: the scheduler starts a day's run at its end, by its own clock, and
# the worker's may be a little behind.
DAY_END_TOLERANCE = dt.timedelta(minutes=5)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DaysNeverBuiltError(AirflowFailException):
    """Raw holds events that no published run covered and that start before this run's incremental window."""


def check_no_skipped_days(conn, interval: Interval, found: Mapping[str, models.Model] | None = None) -> None:
    """An incremental run recomputes its day minus the lookback; events older than that, after what the newest
    published run saw, would never be built (days skipped: the DAG does not catch up after a long pause)."""
    covered = audit.newest_published_coverage(conn, CLOCK_SKEW)
    if covered is None:  # nothing published yet: the first run builds everything
        return
    covered = covered.astimezone(dt.UTC)
    found = found or models.discover()
    lookback = min(m.lookback_days for m in found.values() if m.materialized == "incremental")
    since = interval.start - dt.timedelta(days=lookback)
    raw_schema = config.get().raw_schema  # the table it counted, as named (review: always said raw.events)
    missed = freshness.rows_created_between(conn, "events", covered, since, raw_schema)
    if missed:
        first, last = covered.date(), interval.day - dt.timedelta(days=1)
        raise DaysNeverBuiltError(
            f"{raw_schema}.events has {missed} rows created between {covered:%Y-%m-%d %H:%M} UTC (what the published"
            f" runs built: the newest clock + 1 h, or the end of its day) and {since:%Y-%m-%d} (where this run's window"
            f" starts: {interval.day} minus {lookback}"
            " days): no run would ever build them. Days were skipped (the DAG does not catch up) or their runs"
            " failed. Nothing was built. Run those days first, oldest first: `airflow backfill create --dag-id"
            f" {config.DAG_ID} --from-date {first}T00:00Z --to-date {last}T00:00Z --max-active-runs 1"
            " --reprocess-behavior failed`"
            " (it also reruns their red runs), then clear this run; with the `greenery` command, one command does"
            f" both: `greenery run --date {first} --end-date {interval.day}`; in the UI, trigger each day with its"
            " date, oldest first, one once the one before has ended. Or trigger this day with the Param"
            f" full_refresh (`greenery run --date {interval.day} --full-refresh`): it builds every event, but the"
            " skipped days keep no rows in the daily tables."
        )


def _accept_a_day_without_rows(problems: list[freshness.SourceProblem]) -> list[freshness.SourceProblem]:
    """A full_refresh builds a day raw holds no rows of when raw holds later ones (the source check's ``gap``): a day
    deleted on purpose (re-trial: it could never run again, its daily marts keeping the deleted rows). A day after
    raw's last rows is data not loaded yet (or a mistyped date): refused as without the Param, as is what raw lacks
    otherwise."""
    gaps = [p for p in problems if p.problem == "stale" and p.gap]
    for p in gaps:
        log.warning("full_refresh: building the day as raw holds it (raw holds later rows of the table): %s", p.detail)
    return [p for p in problems if p not in gaps]


def _serving(conn) -> dict[str, str | None]:
    """The run readers still see, for the source alert: {"serving_run": day or None}, or {} when it cannot be read
    (user trial: a warehouse that never published was told "still serving the previous run")."""
    try:
        return {"serving_run": (audit.last_published(conn) or {}).get("logical_date")}
    except psycopg.Error as exc:  # a role that may not read greenery_audit: the alert goes out without it
        log.warning("which run readers see could not be read: %s", exc)
        return {}


def check(context: Any) -> dict[str, Any]:
    interval = runtime.interval(context)
    start = config.get().start_date
    found = models.discover()  # a broken model file left the DAG without model tasks: fail here, naming it
    if interval.day < start:
        raise BeforeStartDateError(
            f"{interval.day} is before the pipeline's start date {start} (GREENERY_START_DATE): nothing built."
            " Set GREENERY_START_DATE to that day or earlier to backfill older history."
        )
    if (now := _now()) < interval.end - DAY_END_TOLERANCE:
        # Review: a run of today (a manual trigger's logical date defaults to now) published the day's first hours
        # as the whole day, green, labelled "as of the end of" it in the digest and `greenery answers`.
        not_over = DayNotOverError(
            f"{interval.day} is not over until {interval.end:%Y-%m-%d %H:%M} UTC (now {now:%H:%M} UTC): its daily"
            " marts would hold part of the day as the whole day; nothing built. Run it after that, or pick an"
            " earlier day (a manual run's logical date is the day it builds)."
        )
        # User trial: its page said "Fix the cause, then clear the whole run", which fails again before midnight.
        not_over.next_step = (
            f"Nothing to fix: clear the whole run after {interval.end:%Y-%m-%d %H:%M} UTC, or trigger an earlier day."
        )
        raise not_over
    with warehouse.connect() as conn:
        built = found["int_daily_marts_built"].relation if "int_daily_marts_built" in found else None
        # Raw's fingerprint before the check, which prepare_build registers for validate and publish to compare: raw
        # changed from here on (during the check, or before prepare_build) is refused as raw changed during the run
        # (review: the day's events deleted between this task and prepare_build published the day empty, green).
        # Not in one snapshot with the check: a load's table swap committed meanwhile showed a snapshot the new
        # table without its rows, "raw.events has no rows" (diff review).
        try:
            raw = fingerprint.fingerprint(conn)
        except (
            psycopg.Error
        ) as exc:  # a table the role cannot read: the check names it (prepare_build then takes its own)
            log.warning("raw could not be fingerprinted before the check: %s", exc)
            raw = None
        problems = freshness.check(conn, interval, built=built)
        if runtime.full_refresh(context):
            problems = _accept_a_day_without_rows(problems)
        elif not problems:
            check_no_skipped_days(conn, interval, found)
        serving = _serving(conn) if problems else None
    if not problems:
        log.info("raw data is fresh for %s", interval.day)
        return {"fresh": True, "problems": [], fingerprint.AS_CHECKED: raw}
    for p in problems:
        log.error("source %s %s: %s", p.table, p.problem, p.detail)
    sent = page(
        messages.build_source_alert(
            dag_id=runtime.dag_id(context),
            logical_date=interval.day.isoformat(),
            run_id=context["run_id"],
            problems=freshness.as_dicts(problems),
            first_step=freshness.first_step(problems),
            log_url=runtime.log_url(context),
            links=links.for_run(context["run_id"], runtime.task_id(context)),
            serving=serving,
        )
    )
    reason = f"source data not ready for {interval.day}: " + "; ".join(p.detail for p in problems)
    if sent == SENT:
        raise PagedFailure(f"{reason} (on-call paged)")
    if sent == MAYBE_SENT:
        # Review: this raised "could NOT be sent" and the failure callback paged a second time.
        raise PagedFailure(
            f"{reason} (the source alert went to Slack and was not confirmed, so it may have been posted: look for it"
            " in the alert channel; not sent again, it could page on-call twice)"
        )
    # Not paged: let the failure callback try once more with the generic alert.
    raise freshness.SourceNotReadyError(f"{reason} (the source alert could NOT be sent)")
