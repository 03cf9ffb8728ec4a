"""Tasks after publish: route on failures, the on-call alert, the stakeholders' note, and the gate."""

from __future__ import annotations

import logging
from typing import Any

from psycopg import sql

from greenery import config, warehouse
from greenery.alerts import delivery, messages
from greenery.project import models as model_files
from greenery.tasks.paging import PagedFailure
from greenery.tasks.publish import not_published_status

log = logging.getLogger(__name__)

ALERT_TASK_ID = "alert_slack"
SUCCESS_TASK_ID = "all_checks_passed"


def choose_branch(summary: dict[str, Any]) -> str:
    return ALERT_TASK_ID if summary["failures"] or summary.get("quarantined") else SUCCESS_TASK_ID


def send_alert(summary: dict[str, Any], published: dict[str, Any] | None = None) -> None:
    """Page on-call; raises when Slack does not accept the message, so the task retries and then fails."""
    # publish returns nothing when it was skipped (a critical check failed): say what readers still see.
    published = published or not_published_status()
    summary = {**summary, **{k: v for k, v in published.items() if k in ("published", "serving_run")}}
    payload = messages.build_alert(summary, log_url=summary.get("log_url"), docs_url=summary.get("data_docs_url"))
    settings = config.get()
    delivery.send(payload, settings.alert_conn_id, channel=settings.alert_channel)
    log.info("alert sent through %s: %d failing checks", settings.alert_conn_id, len(summary["failures"]))


def send_state_of_the_data(summary: dict[str, Any]) -> bool:
    """The optional daily message for stakeholders; off unless GREENERY_SUMMARY_CONN_ID is set."""
    settings = config.get()
    if not settings.summary_conn_id:
        log.info("state-of-the-data message is off (set GREENERY_SUMMARY_CONN_ID to enable)")
        return False
    marts = [m for m in model_files.discover().values() if m.layer == "marts"]
    with warehouse.connect() as conn:
        rows = {
            m.relation: conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(m.layer, m.name))
            ).fetchone()[0]
            for m in marts
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
        "quarantined": summary.get("quarantined") or {},
    }
    delivery.send(messages.build_summary_message(stats), settings.summary_conn_id, channel=settings.summary_channel)
    return True


class ChecksFailed(PagedFailure):
    """Critical expectations failed; the alert task paged on-call with them."""


def gate(summary: dict[str, Any]) -> None:
    """Fail the run when a critical expectation failed, after the alert went out."""
    if summary["blocking"]:
        worst = [f"{f['table']}: {f['expectation']}" for f in summary["failures"] if f["severity"] == "critical"]
        raise ChecksFailed(f"{summary['failed_critical']} critical expectation(s) failed: {'; '.join(worst[:10])}")
