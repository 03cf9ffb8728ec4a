"""greenery_daily: raw Greenery tables -> staging -> intermediate -> marts, every day."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, Param, TaskGroup, TriggerRule, task
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule

from greenery import config
from greenery.errors import RetryCannotFix
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
day's data. The daily tables (`metrics_daily`, `fact_funnel_daily`, `fact_product_funnel_daily`,
`fact_product_sessions_daily`) get only the run's day, overwritten, from raw rows created before the end of that day.

**Graph.** One task per file of `include/sql/<layer>/`, task id = file name; the edges come from the
`ref()` calls inside the SQL, so a new model file wires itself in.

**Checks.** `validate` runs one Great Expectations suite per model (`include/expectations/`) inside
PostgreSQL on what this run built, and builds the Data Docs. A *critical* failure makes `validate` red,
named for what failed (its message lists the root causes and what to do): nothing is published.
`alert_slack` then pages (connection `slack_alerts`) with the root causes, their owners and links;
warnings and quarantined rows page too, but the marts are published and the run stays green.

**Triage.**
- Red `validate`: its message (and the alert, and the *Data quality* view) names the failing table, its
  raw source, the check and the keys. Fix the source rows, then **clear the whole run** (Grid → the run →
  Clear, shift+C → Clear existing tasks, not only the failed ones): every model rebuilds from raw, is checked again
  and published if the checks pass.
  Clearing `validate` with its downstream tasks re-checks the same build and publishes it if the checks
  pass: useful after fixing an expectation; refused (with this advice) when raw changed since the build,
  because its tables would mix old and new data.
- Red `check_source_freshness`: raw is missing, empty, stale for the day, without a column or of another type, or
  not readable by the run's role (or the warehouse cannot be reached: check the `greenery_warehouse` connection).
  Load it (or grant what its message names), then clear the run. A day before GREENERY_START_DATE or not over yet
  (UTC) is refused: set the start date back, or wait for the day to end. Or days were skipped for longer than the
  incremental lookback (a paused DAG does not catch up): its log gives the gap and the backfill command
  (`--reprocess-behavior failed`); run the missed days first, or trigger the day with the Param `full_refresh`
  (at another time than its run's 00:00: one run per logical date; any time builds that UTC day: the trigger form
  reads it in the UI's time zone, the browser's unless UTC is picked in the user menu).
- A red model task: its log names the SQL file, the line and the PostgreSQL error. After fixing the SQL, clear
  the task with its downstream tasks (every model replaces its table or its day in one transaction, so a rerun is
  always safe); after fixing the data in raw, clear the whole run: a partial clear is refused by `validate`, since
  the source check has not seen the new raw and the other models were built from the old.
- Red `publish`: a view on a mart, a build that lost a table, a model never built (its task marked
  success or skipped), a model built again after the validation that passed (a task cleared without its
  downstream tasks, or `validate` marked success by hand), or rows a run started later published after this
  run's clock (overlapping runs); its message says which. Clear the run (or `validate` with its downstream tasks).
  Or sessions held a published table past GREENERY_PUBLISH_LOCK_WAIT_SECONDS (an idle BI tool or psql in an
  open transaction): the message names each (pid, application, its query); end them, then clear `publish`.
- Red `alert_slack`: Slack refused or was unreachable after retries (its log has the HTTP status; a configuration
  error, such as a misspelt GREENERY_ALERT_CONN_ID, fails at once and on every run), or an earlier task failed and
  its own page did not go ("on-call was NOT paged"), or `publish` was marked skipped by hand. The checks are in the
  *Data quality* view. Fix the connection, then clear `alert_slack` alone after passing checks, or `validate` with
  its downstream tasks after failed ones (its message says which).
- Red `state_of_the_data`: the stakeholders' digest (Slack note, chart, email) did not all go out; its
  message names each part and the reason (e.g. the SMTP server refused the login). The marts are
  published. Fix the connection, then clear the task: it sends only the parts that did not go out. Or, digest
  on or off, this attempt published nothing (`publish` marked success by hand): clear the whole run.
- Rows quarantined (a 🟡 alert; `quarantine.<model>` holds them with their rule): fix the source when it matters,
  then run again, oldest first, the days from the first the rows were created on to the latest (a backfill with
  `--reprocess-behavior completed`): a later run rebuilds the tables, not earlier days' daily marts.
- Raw rows changed since a run read them (a warning of `int_source_volumes_daily` names the day D: rows older
  than the lookback, or rows that reached or left raw after D's own run built its daily marts): run D and every
  day after it again, oldest first (a backfill with `--reprocess-behavior completed`); each day stays named until it
  has run again. A model's logic changed: trigger the DAG with the Param `full_refresh` ticked.
- Red `check_source_freshness` naming a model file (and no model tasks in the Grid): a model file is broken
  (a `ref()` naming no model, a bad `config()`, a name that is not lowercase); fix it, then clear the run.
- Backfill one run at a time (a backfill has its own limit, 10 runs by default, not the DAG's
  `max_active_runs=1`; every run rewrites the current-state tables):
  `airflow backfill create --dag-id greenery_daily --from-date 2021-02-10T00:00Z --to-date 2021-02-12T00:00Z
  --max-active-runs 1`
  (the dates at UTC midnight: a bare date is read in Airflow's `default_timezone`, and a day would be left out)
  (`--reprocess-behavior completed` to run days that have a run again; refused on `greenery ui`'s SQLite metadata,
  where Airflow cannot make one safely: GREENERY_ALLOW_BACKFILLS; there, pause greenery_daily, then
  `greenery run --date 2021-02-10 --end-date 2021-02-12`, or, in the Grid, clear each day's run, oldest first, one
  once the one before has ended: cleared together, the scheduler picks them in any order)
"""

# A bad setting does not stop the DAG loading (an import error runs nothing and pages nobody): its defaults stand in
# here, and each run's first task, reading the settings again, fails at once and pages with the setting's name.
SETTINGS, _ = config.get_lenient()
# Nor does a broken model file (a ref() naming no model, a bad config(), a file not in UTF-8): the DAG loads without
# model tasks, and each run's first task, discovering the models again, fails at once naming the file and pages
# (review: an import error). Any other error too: the first task meets it again, with its traceback, and pages.
try:
    MODELS = model_files.discover(SETTINGS.sql_dir)
except Exception:
    MODELS = {}


def _page_on_failure(context) -> None:
    from greenery.tasks import paging  # the database and Slack code: not at parse time

    paging.on_task_failure(context)


def _page_on_run_failure(context) -> None:
    from greenery.tasks import paging

    paging.on_run_failure(context)


# Airflow has no "all but" form (a cron timetable must allow "scheduled"); tests/test_dag_integrity.py compares this
# with Airflow's own list of kinds, so an upgrade that adds one is noticed.
ALL_RUN_TYPES_BUT_BACKFILL = ("scheduled", "manual", "operator_triggered", "asset_triggered", "asset_materialization")

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
    # Off where Airflow's metadata database is SQLite (dev/local_airflow.py: greenery ui's, greenery run's): Airflow
    # then refuses a backfill before it writes anything, where its clean-up of a half-made one deleted older runs.
    allowed_run_types=None if SETTINGS.allow_backfills else ALL_RUN_TYPES_BUT_BACKFILL,
    default_args={
        "owner": "data-engineering",
        "retries": SETTINGS.retries,
        "retry_delay": SETTINGS.retry_delay,
        "execution_timeout": SETTINGS.task_timeout,
        "retry_exponential_backoff": True,
        # Doubling stops at 10 minutes, or at the setting's first wait when longer (review: 3600 s waited 10 minutes).
        "max_retry_delay": max(dt.timedelta(minutes=10), SETTINGS.retry_delay),
        "on_failure_callback": _page_on_failure,
        # Ctrl-C stops a day of the CLI's run command: the task it lands in is not retried (greenery/dev/cli_runs.py).
        "retry_policy": ExceptionRetryPolicy(
            rules=[
                RetryRule(exception=KeyboardInterrupt, action=RetryAction.FAIL, reason="interrupted (Ctrl-C)"),
                RetryRule(exception=config.SettingError, action=RetryAction.FAIL, reason="a bad setting"),
                # A broken model file, a model's SQL error, a docs key naming no column, a warehouse too old or a grant
                # missing: a retry runs the same.
                RetryRule(exception=RetryCannotFix, action=RetryAction.FAIL, reason="a retry would meet it again"),
            ]
        ),
    },
    # A backstop for the tasks' own callbacks: Airflow runs none for a task killed (out of memory) or marked failed.
    on_failure_callback=_page_on_run_failure,
    tags=["greenery", "marts", "daily"],
    params={
        "full_refresh": Param(
            False,
            type="boolean",
            title="Full refresh",
            description="Rebuild the incremental (event history) tables from all raw data instead of "
            "recomputing the last days only. Use after changing a model. The daily marts of past days are not "
            "rebuilt: after correcting old raw rows, run those days again, oldest first. A day whose rows "
            "were deleted from raw on purpose (raw holds later ones) is built as raw holds it (its volume drop a "
            "warning once 7 days of history exist). A day that has a run: pick another time of it than 00:00 "
            "(any time builds that UTC day; a clear keeps the run's Params).",
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

    # none_failed, here and on publish: a model task marked *skipped* by hand skipped both, and the run ended green
    # having built, checked and published nothing (review); now publish runs and refuses the incomplete build.
    @task(task_id="validate", retries=0, trigger_rule=TriggerRule.NONE_FAILED)
    def validate(**context) -> dict:
        """Run every suite of include/expectations in PostgreSQL; fails, named for what failed, on a critical one."""
        from greenery.tasks import validate

        return validate.run(context)

    # Downstream DAGs can be scheduled on a mart; an event is emitted only when the marts are published.
    MART_ASSETS = [
        Asset(name=model.relation, uri=f"{SETTINGS.asset_uri_prefix}/{name}", group="greenery")
        for name, model in MODELS.items()
        if model.layer == "marts"
    ]

    @task(task_id="publish", outlets=MART_ASSETS, trigger_rule=TriggerRule.NONE_FAILED)
    def publish(summary: dict | None, **context) -> dict:
        """Atomically swap the run's tables into staging/intermediate/marts (only after validate passed)."""
        from greenery.tasks import publish

        return publish.run(summary, context)

    @task(
        task_id="alert_slack",
        retries=SETTINGS.alert_retries,
        retry_delay=SETTINGS.alert_retry_delay,
        retry_exponential_backoff=True,
        max_retry_delay=max(dt.timedelta(minutes=10), SETTINGS.alert_retry_delay),
        # After validate and publish, whatever their outcome: a failed check is exactly when to page.
        trigger_rule=TriggerRule.ALL_DONE,
    )
    def alert_slack(**context) -> None:
        """Page on-call (connection slack_alerts) about failed checks and quarantined rows; skipped otherwise."""
        from greenery.tasks import notify

        notify.send_alert(context)

    @task(task_id="state_of_the_data")
    def state_of_the_data(**context) -> None:
        """After a publish: the stakeholders' digest in Slack and/or by email with a 28-day chart (off by default)."""
        from greenery.tasks import digest

        digest.send(context)

    summary = validate()
    first = check_source_freshness() >> prepare_build()
    first >> [tasks[name] for name, model in MODELS.items() if not model.refs]
    (list(tasks.values()) or first) >> summary  # no model tasks (a broken model file): validate after the first
    published = publish(summary)
    [summary, published] >> alert_slack()
    published >> state_of_the_data()
