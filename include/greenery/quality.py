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


def full_refresh(context: Any) -> bool:
    """The run's ``full_refresh`` Param: rebuild incremental models from all history."""
    return bool((context.get("params") or {}).get("full_refresh", False))


def run_build(context: Any):
    """The run's build schemas (write-audit-publish), named after its day and run id."""
    from greenery import wap

    return wap.Build(context["run_id"], interval_from_context(context).day)


def check_source_freshness(context: Any) -> dict[str, Any]:
    """Stop the run, with its own alert, when raw has no data for the day (nothing gets built)."""
    from greenery import freshness, warehouse

    interval = interval_from_context(context)
    with warehouse.connect() as conn:
        problems = freshness.check(conn, interval)
    if not problems:
        log.info("raw data is fresh for %s", interval.day)
        return {"fresh": True, "problems": []}
    for p in problems:
        log.error("source %s %s: %s", p.table, p.problem, p.detail)
    sent = _page(
        "build_source_alert",
        dag_id=context["dag"].dag_id,
        logical_date=interval.day.isoformat(),
        run_id=context["run_id"],
        problems=freshness.as_dicts(problems),
        log_url=_log_url(context),
    )
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(
        f"source data not ready for {interval.day} (alert {'sent' if sent else 'NOT sent'}): "
        + "; ".join(p.detail for p in problems)
    )


def prepare_build(context: Any) -> dict[str, Any]:
    from greenery import wap, warehouse

    build = run_build(context)
    with warehouse.connect() as conn:
        wap.prepare(conn, build)
    log.info("build schemas ready: %s", ", ".join(build.schema_of.values()))
    return {"build": build.key}


def quarantined_counts(conn, day) -> dict[str, int]:
    from psycopg import sql

    from greenery import build, models, wap

    counts = {}
    for name, model in models.discover().items():
        if not model.config.get("quarantine") or not wap.table_exists(conn, build.QUARANTINE_SCHEMA, name):
            continue
        query = sql.SQL("select count(*) from {} where logical_date = %s").format(
            sql.Identifier(build.QUARANTINE_SCHEMA, name)
        )
        n = conn.execute(query, (day,)).fetchone()[0]
        if n:
            counts[name] = n
    return counts


def run_validation(context: Any) -> dict[str, Any]:
    from greenery import build, models, validation, wap, warehouse

    found = models.discover()
    suites = validation.load_suites(found)
    missing = sorted(set(found) - set(suites))
    if missing:
        raise validation.SuiteDefinitionError(f"models without a suite in include/expectations: {missing}")
    interval = interval_from_context(context)
    this_run = run_build(context)
    with warehouse.connect() as conn:
        # A cleared single task rebuilds only some models: validate what this run built.
        built = wap.built_models(conn, found, this_run)
        relation = build.resolver(conn, found, this_run.schema_of)
        deltas = {name: wap.built_delta(conn, found[name], this_run) for name in built}
        tables = {name: deltas.get(name) or relation(name) for name in found}
        quarantined = quarantined_counts(conn, interval.day)
    if not built:
        raise RuntimeError(f"run {context['run_id']} has no built tables in {this_run.key}__*: clear the whole run")
    summary = validation.validate(
        warehouse.sqlalchemy_url(settings.WAREHOUSE_CONN_ID),
        found,
        {name: suites[name] for name in built},
        gx_dir=gx_dir(),
        relation=tables.__getitem__,
        run_name=context["run_id"],
    )
    total_failures = len(summary["failures"])
    summary["failures"] = summary["failures"][:MAX_FAILURES_IN_SUMMARY]  # XCom stays small
    summary.update(
        dag_id=context["dag"].dag_id,
        run_id=context["run_id"],
        logical_date=interval.day.isoformat(),
        failures_total=total_failures,
        quarantined=quarantined,
        log_url=_log_url(context),
        data_docs_url=data_docs_url(summary.get("data_docs_path")),
    )
    log_summary(summary)
    return summary


def publish(summary: dict[str, Any], context: Any) -> dict[str, Any]:
    """Publish the run's tables unless a critical check failed; then drop earlier runs' build schemas.

    When blocked the task is *skipped*, so Airflow emits no asset event for marts that did not change.
    """
    from greenery import models, wap, warehouse

    build = run_build(context)
    with warehouse.connect() as conn:
        if summary["blocking"]:
            wap.record_validation(conn, summary, published=False)
            status = not_published_status(conn)
            log.warning(
                "NOT published: %d critical failures; still serving %s",
                summary["failed_critical"],
                status["serving_run"],
            )
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"not published: still serving the run of {status['serving_run']}")
        tables = wap.publish(conn, models.discover(), build)
        wap.record_validation(conn, summary, published=True)
        dropped = wap.drop_other_builds(conn, keep=build)
    log.info("published %s; dropped %d old build schemas", ", ".join(tables), len(dropped))
    return {"published": True, "serving_run": summary["logical_date"], "tables": tables}


def not_published_status(conn=None) -> dict[str, Any]:
    from greenery import wap, warehouse

    if conn is None:
        with warehouse.connect() as own:
            return not_published_status(own)
    last = wap.last_published(conn)
    return {"published": False, "serving_run": last["logical_date"] if last else None, "tables": []}


def _log_url(context: Any) -> str | None:
    return getattr(context.get("ti"), "log_url", None)


def _page(builder: str, **kwargs: Any) -> bool:
    """Best effort: send an alert built by slack_alert.<builder>; never raise (the caller fails anyway)."""
    from greenery import slack_alert

    try:
        payload = getattr(slack_alert, builder)(**kwargs)
        slack_alert.send(payload, alert_conn_id(), channel=os.environ.get("GREENERY_ALERT_CHANNEL") or None)
        return True
    except Exception as exc:
        log.error("could not page on-call: %s", exc)
        return False


def alert_conn_id() -> str:
    return os.environ.get("GREENERY_ALERT_CONN_ID", "slack_alerts")


def on_task_failure(context: Any) -> None:
    """Task failure callback: page on-call with the error (SQL failures name the model file)."""
    ti = context.get("ti")
    task_id = getattr(ti, "task_id", "?")
    if task_id in ("alert_slack", "quality_gate", "check_source_freshness"):
        return  # these page (or fail because paging failed) on their own
    interval = interval_from_context(context)
    _page(
        "build_task_failure_alert",
        dag_id=context["dag"].dag_id,
        task_id=task_id,
        logical_date=interval.day.isoformat(),
        run_id=context["run_id"],
        error=str(context.get("exception") or "unknown error"),
        log_url=_log_url(context),
    )


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
    return ALERT_TASK_ID if summary["failures"] or summary.get("quarantined") else SUCCESS_TASK_ID


def send_alert(summary: dict[str, Any], published: dict[str, Any] | None = None) -> None:
    """Page on-call; raises when Slack does not accept the message, so the task retries and then fails."""
    from greenery import slack_alert

    # publish returns nothing when it was skipped (a critical check failed): say what readers still see.
    published = published or not_published_status()
    summary = {**summary, **{k: v for k, v in published.items() if k in ("published", "serving_run")}}
    payload = slack_alert.build_alert(summary, log_url=summary.get("log_url"), docs_url=summary.get("data_docs_url"))
    conn_id = alert_conn_id()
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
        "quarantined": summary.get("quarantined") or {},
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
