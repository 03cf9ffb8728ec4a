"""Task ``check_source_freshness``: raw must hold data for the run's day, else alert and stop before building."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from greenery import config, links, runtime, warehouse
from greenery.alerts import messages
from greenery.sources import freshness
from greenery.tasks.failures import PagedFailure
from greenery.tasks.paging import page

log = logging.getLogger(__name__)


class BeforeStartDateError(AirflowFailException):
    """The run's day is before the configured start date: building it would build on no data."""


def check(context: Any) -> dict[str, Any]:
    interval = runtime.interval(context)
    start = config.get().start_date
    if interval.day < start:
        raise BeforeStartDateError(
            f"{interval.day} is before the pipeline's start date {start} (GREENERY_START_DATE): nothing built."
            " Set GREENERY_START_DATE to that day or earlier to backfill older history."
        )
    with warehouse.connect() as conn:
        problems = freshness.check(conn, interval)
    if not problems:
        log.info("raw data is fresh for %s", interval.day)
        return {"fresh": True, "problems": []}
    for p in problems:
        log.error("source %s %s: %s", p.table, p.problem, p.detail)
    sent = page(
        messages.build_source_alert(
            dag_id=runtime.dag_id(context),
            logical_date=interval.day.isoformat(),
            run_id=context["run_id"],
            problems=freshness.as_dicts(problems),
            log_url=runtime.log_url(context),
            links=links.for_run(context["run_id"], runtime.task_id(context)),
        )
    )
    reason = f"source data not ready for {interval.day}: " + "; ".join(p.detail for p in problems)
    if sent:
        raise PagedFailure(f"{reason} (on-call paged)")
    # Not paged: let the failure callback try once more with the generic alert.
    raise freshness.SourceNotReadyError(f"{reason} (the source alert could NOT be sent)")
