"""The bodies of the DAG's data-quality tasks: validate, branch, alert, notify, gate.

They take Airflow's task context and plain JSON summaries, so the DAG file stays a thin wiring of
``@task`` functions and these can be tested without a scheduler.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from greenery import settings
from greenery.operators import interval_from_context

log = logging.getLogger(__name__)

ALERT_TASK_ID = "alert_slack"
SUCCESS_TASK_ID = "all_checks_passed"
MAX_FAILURES_IN_SUMMARY = 100


def gx_dir() -> Path:
    """Where the GX project (results store, Data Docs) lives; a folder the Airflow workers share."""
    default = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "greenery" / "gx"
    return Path(os.environ.get("GREENERY_GX_DIR", default))


def data_docs_url(index: str | None) -> str | None:
    if not index:
        return None
    base = os.environ.get("GREENERY_DATA_DOCS_BASE_URL")
    return f"{base.rstrip('/')}/index.html" if base else Path(index).as_uri()


def run_validation(context: Any) -> dict[str, Any]:
    from greenery import models, validation, warehouse

    found = models.discover()
    suites = validation.load_suites(found)
    missing = sorted(set(found) - set(suites))
    if missing:
        raise validation.SuiteDefinitionError(f"models without a suite in include/expectations: {missing}")
    interval = interval_from_context(context)
    summary = validation.validate(
        warehouse.sqlalchemy_url(settings.WAREHOUSE_CONN_ID),
        found,
        suites,
        gx_dir=gx_dir(),
        run_name=context["run_id"],
    )
    total_failures = len(summary["failures"])
    summary["failures"] = summary["failures"][:MAX_FAILURES_IN_SUMMARY]  # XCom stays small
    summary.update(
        dag_id=context["dag"].dag_id,
        run_id=context["run_id"],
        logical_date=interval.day.isoformat(),
        failures_total=total_failures,
        log_url=getattr(context.get("ti"), "log_url", None),
        data_docs_url=data_docs_url(summary.get("data_docs_path")),
    )
    log_summary(summary)
    return summary


def log_summary(summary: dict[str, Any]) -> None:
    log.info(
        "validation: %d expectations, %d critical failures, %d warnings in %.1fs",
        summary["evaluated"],
        summary["failed_critical"],
        summary["failed_warning"],
        summary.get("seconds", 0),
    )
    for suite in summary["suites"]:
        log.info(
            "  %-45s evaluated %3d  critical %2d  warning %2d",
            suite["table"],
            suite["evaluated"],
            suite["failed_critical"],
            suite["failed_warning"],
        )
    for f in summary["failures"]:
        log.warning(
            "FAILED [%s] %s %s%s: observed=%s unexpected=%s sample=%s%s",
            f["severity"],
            f["table"],
            f["expectation"],
            f" ({f['column']})" if f["column"] else "",
            f["observed_value"],
            f["unexpected_count"],
            f["sample_keys"],
            f" error={f['error']}" if f["error"] else "",
        )


def choose_branch(summary: dict[str, Any]) -> str:
    return ALERT_TASK_ID if summary["failures"] else SUCCESS_TASK_ID


def send_alert(summary: dict[str, Any]) -> None:
    """Page on-call; raises when Slack does not accept the message, so the task retries and then fails."""
    from greenery import slack_alert

    payload = slack_alert.build_alert(summary, log_url=summary.get("log_url"), docs_url=summary.get("data_docs_url"))
    conn_id = os.environ.get("GREENERY_ALERT_CONN_ID", "slack_alerts")
    slack_alert.send(payload, conn_id, channel=os.environ.get("GREENERY_ALERT_CHANNEL") or None)
    log.info("alert sent through %s: %d failing checks", conn_id, len(summary["failures"]))


def send_state_of_the_data(summary: dict[str, Any]) -> bool:
    """The optional daily message for stakeholders; off unless GREENERY_SUMMARY_CONN_ID is set."""
    conn_id = os.environ.get("GREENERY_SUMMARY_CONN_ID")
    if not conn_id:
        log.info("state-of-the-data message is off (set GREENERY_SUMMARY_CONN_ID to enable)")
        return False
    from greenery import slack_alert, warehouse

    with warehouse.connect() as conn:
        rows = {
            f"marts.{table}": conn.execute(f"select count(*) from marts.{table}").fetchone()[0]
            for table in _mart_tables()
        }
        found = conn.execute(
            "select repeat_rate from marts.metrics_daily where as_of_date = %s", (summary["logical_date"],)
        ).fetchone()
    stats = {
        "dag_id": summary["dag_id"],
        "logical_date": summary["logical_date"],
        "rows": rows,
        "checks_passed": summary["evaluated"] - summary["failed_critical"] - summary["failed_warning"],
        "checks_evaluated": summary["evaluated"],
        "repeat_rate": float(found[0]) if found and found[0] is not None else None,
    }
    slack_alert.send(
        slack_alert.build_summary_message(stats), conn_id, channel=os.environ.get("GREENERY_SUMMARY_CHANNEL") or None
    )
    return True


def _mart_tables() -> list[str]:
    from greenery import models

    return [m.name for m in models.discover().values() if m.layer == "marts"]


def gate(summary: dict[str, Any]) -> None:
    """Fail the run when a critical expectation failed, after the alert went out."""
    from airflow.sdk.exceptions import AirflowFailException

    if summary["blocking"]:
        worst = [f"{f['table']}: {f['expectation']}" for f in summary["failures"] if f["severity"] == "critical"]
        raise AirflowFailException(
            f"{summary['failed_critical']} critical expectation(s) failed: {'; '.join(worst[:10])}"
        )
