"""What a task needs to know about its run, read from Airflow's task context.

The day it builds, its run id and build schemas, its ``full_refresh`` Param and the link to its log.
Only plain values come out, so the task bodies can be tested with a dict for a context.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from greenery.project.render import Interval
from greenery.wap import Build


def interval(context: Any) -> Interval:
    """The run's day as a UTC [start, end) interval: the UTC day of its logical date.

    The DAG's timetable is CronDataIntervalTimetable("@daily"): a scheduled or backfill run's logical date is
    the start of the day it covers (the run starts once that day is over), and a manual run's is the
    day the user picked. A run without a logical date (asset-triggered, or through the REST API) builds the UTC day
    its data interval starts in, or the day before ``run_after`` when it has none. Always one whole day: the daily
    tables hold days, and publish merges the incremental tables from that day's window (an interval from 06:00 was
    built from D-3 06:00 but merged from D-3 00:00, deleting the six hours in between).
    """
    instant = context.get("logical_date") or context.get("data_interval_start")
    if instant is not None:
        return Interval.for_day(instant.astimezone(dt.UTC).date())
    return Interval.for_day(context["dag_run"].run_after.astimezone(dt.UTC).date() - dt.timedelta(days=1))


def build(context: Any) -> Build:
    """The run's build schemas (write-audit-publish), named after its day and run id."""
    return Build(context["run_id"], interval(context).day)


def full_refresh(context: Any) -> bool:
    """The run's ``full_refresh`` Param: rebuild incremental models from all history."""
    return bool((context.get("params") or {}).get("full_refresh", False))


def log_url(context: Any) -> str | None:
    return getattr(context.get("ti"), "log_url", None)


def task_id(context: Any) -> str:
    return getattr(context.get("ti"), "task_id", None) or "?"


def dag_id(context: Any) -> str:
    dag = context.get("dag")
    return getattr(dag, "dag_id", None) or "greenery_daily"


def clear_number(context: Any) -> int | None:
    """Which attempt of the run this is: Airflow counts the run's clears (None when the context has no run)."""
    return getattr(context.get("dag_run"), "clear_number", None)


def task_states(context: Any, task_ids: tuple[str, ...]) -> dict[str, str | None]:
    """This run's states of ``task_ids`` now (the Execution API's). XCom alone does not say a task ran in this
    attempt: a cleared run keeps what a task pushed before until that task starts again."""
    ti = context["ti"]
    return ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id], task_ids=list(task_ids)).get(ti.run_id, {})


def run_type(context: Any) -> str | None:
    """How the run was made: "scheduled", "manual", "backfill", ... (None when the context has no run)."""
    kind = getattr(context.get("dag_run"), "run_type", None)
    return None if kind is None else str(getattr(kind, "value", kind))
