"""greenery_daily: raw Greenery tables -> staging -> intermediate -> marts, every day."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Asset, Param, TaskGroup, TriggerRule, task
from airflow.timetables.interval import CronDataIntervalTimetable

from greenery import config
from greenery.project import models as model_files
from greenery.tasks.operator import SqlModelOperator

DOC_MD = """
# greenery_daily

**Purpose.** Turns the raw Greenery shop tables into the analytics marts that stakeholders read
(`marts.dim_users`, `marts.fact_orders`, `marts.metrics_daily`, ...), one run per day.

**Inputs.** Schema `raw` (users, addresses, orders, order_items, products, promos, events) in the
warehouse reached through the Airflow connection `greenery_warehouse`.

**Outputs.** Schemas `staging`, `intermediate`, `marts`. Current-state tables (users, orders,
products) are rebuilt from all raw data. Event-history tables are *incremental*: a run recomputes the
rows from its day minus a lookback (3 days, for late events) and merges them, so its cost follows the
day's data. The daily tables (`fact_product_sessions_daily`, `metrics_daily`) get only the run's day,
overwritten, from raw rows created before the end of that day.

**Graph.** One task per file of `include/sql/<layer>/`, task id = file name; the edges come from the
`ref()` calls inside the SQL, so a new model file wires itself in.

**Checks.** `validate` runs one Great Expectations suite per model (`include/expectations/`) inside
PostgreSQL and builds the Data Docs. Any failure routes to `alert_slack` (connection `slack_alerts`),
else to `all_checks_passed`; `quality_gate` then fails the run if a *critical* expectation failed, so
warnings alert but stay green.

**Triage.**
- Red `quality_gate`: read the Slack alert or the `validate` log (failing table, expectation, observed
  value, sample keys) and the Data Docs. Fix the source rows, then clear the run from `staging` on.
- Red `alert_slack`: Slack refused or was unreachable after retries; its log has the HTTP status. The
  run's checks are still in the `validate` log.
- A model task failed: its log names the SQL file, the line and the PostgreSQL error. Fix the data or
  the SQL, then *Clear* the task: every model replaces its table (or its day) in one transaction, so a
  rerun is always safe.
- Events older than the lookback changed or were deleted in raw, or a model's logic changed: trigger
  the DAG with the Param `full_refresh` ticked (rebuilds the incremental tables from all history; a
  changed column list is detected and rebuilt whole without it).
- Cannot connect: check the `greenery_warehouse` connection (Admin -> Connections).
- Backfill: `airflow dags backfill greenery_daily --start-date 2021-02-10 --end-date 2021-02-12`;
  runs are serialized (`max_active_runs=1`) because every run rewrites the current-state tables.
"""

SETTINGS = config.get()
MODELS = model_files.discover()


def _page_on_failure(context) -> None:
    from greenery.tasks import paging  # the database and Slack code: not at parse time

    paging.on_task_failure(context)


with DAG(
    dag_id=config.DAG_ID,
    description="Greenery raw data to validated analytics marts",
    # A run covers one UTC day [D, D+1) and starts once it is over; its logical date is D (manual runs: the
    # day picked). Airflow 3's plain "@daily" would give the run at D+1 00:00 the logical date D+1.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    # No start_date: Airflow creates no task for a run before a DAG's start_date and calls it a success.
    # The earliest day is GREENERY_START_DATE, enforced by check_source_freshness (red and paged).
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-engineering",
        "retries": SETTINGS.retries,
        "retry_delay": SETTINGS.retry_delay,
        "execution_timeout": SETTINGS.task_timeout,
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=10),
        "on_failure_callback": _page_on_failure,
    },
    tags=["greenery", "marts", "daily"],
    params={
        "full_refresh": Param(
            False,
            type="boolean",
            title="Full refresh",
            description="Rebuild the incremental (event history) tables from all raw data instead of "
            "recomputing the last days only. Use after changing a model or correcting old raw rows.",
        )
    },
    doc_md=DOC_MD,
) as dag:
    # prefix_group_id=False keeps task id = model file name, as the models are addressed everywhere.
    groups = {layer: TaskGroup(group_id=layer, prefix_group_id=False) for layer in config.LAYERS}
    tasks = {
        name: SqlModelOperator(
            task_id=name,
            model=model,
            models=MODELS,
            conn_id=SETTINGS.warehouse_conn_id,
            task_group=groups[model.layer],
        )
        for name, model in MODELS.items()
    }
    for name, model in MODELS.items():
        for upstream in model.refs:
            tasks[upstream] >> tasks[name]

    # Task bodies live in greenery.tasks; they are imported when the task runs (they need psycopg, GX, Slack).

    @task(task_id="check_source_freshness", retries=0)
    def check_source_freshness(**context) -> dict:
        """Raw must hold data for the run's day; otherwise alert and stop before building anything."""
        from greenery.tasks import freshness

        return freshness.check(context)

    @task(task_id="prepare_build")
    def prepare_build(**context) -> dict:
        """Fresh run-private build schemas (write-audit-publish), registered with the run's clock."""
        from greenery.tasks import build

        return build.prepare(context)

    @task(task_id="validate", retries=1)
    def validate(**context) -> dict:
        """Run every suite of include/expectations in PostgreSQL; return the summary."""
        from greenery.tasks import validate

        return validate.run(context)

    # Downstream DAGs can be scheduled on a mart; an event is emitted only when the marts are published.
    MART_ASSETS = [
        Asset(name=model.relation, uri=f"{SETTINGS.asset_uri_prefix}/{name}", group="greenery")
        for name, model in MODELS.items()
        if model.layer == "marts"
    ]

    @task(task_id="publish", outlets=MART_ASSETS)
    def publish(summary: dict, **context) -> dict:
        """Atomically swap the run's tables into staging/intermediate/marts; skipped when a critical check failed."""
        from greenery.tasks import publish

        return publish.run(summary, context)

    @task.branch(task_id="route_on_failures", trigger_rule=TriggerRule.NONE_FAILED)
    def route_on_failures(summary: dict, published: dict | None) -> str:
        from greenery.tasks import notify

        return notify.choose_branch(summary)

    @task(
        task_id="alert_slack",
        retries=SETTINGS.alert_retries,
        retry_delay=SETTINGS.alert_retry_delay,
        retry_exponential_backoff=True,
        # publish is skipped when a critical check failed: that is exactly when the alert must go out.
        trigger_rule=TriggerRule.NONE_FAILED,
    )
    def alert_slack(summary: dict, published: dict | None) -> None:
        """Page on-call in Slack (connection slack_alerts); fails loudly when Slack does not take it."""
        from greenery.tasks import notify

        notify.send_alert(summary, published)

    @task(task_id="all_checks_passed")
    def all_checks_passed(summary: dict) -> bool:
        """Success path: optionally tell stakeholders the state of the data."""
        from greenery.tasks import notify

        return notify.send_state_of_the_data(summary)

    @task(task_id="quality_gate", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, retries=0)
    def quality_gate(summary: dict) -> None:
        """Ends the run red when a critical expectation failed (after the alert), green otherwise."""
        from greenery.tasks import notify

        notify.gate(summary)

    summary = validate()
    first = check_source_freshness() >> prepare_build()
    first >> [tasks[name] for name, model in MODELS.items() if not model.refs]
    list(tasks.values()) >> summary
    published = publish(summary)
    branch = route_on_failures(summary, published)
    branch >> [alert_slack(summary, published), all_checks_passed(summary)] >> quality_gate(summary)
