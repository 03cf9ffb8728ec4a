"""Every way a run fails pages on-call exactly once, with the cause: through the whole DAG (dag.test), real
PostgreSQL, and a real local HTTP server standing in for Slack. And no run or command reports success
for a day it did not build."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from greenery import warehouse
from greenery.dev import local_airflow

pytestmark = [pytest.mark.db, pytest.mark.integration]

DAY = dt.date(2021, 2, 12)


@pytest.fixture
def paged(slack_alerts_webhook):
    return slack_alerts_webhook


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def run_leaving_readers_as_they_were(published_url: str, dag):
    """The day's run through Airflow; what readers see must be byte-identical after it."""
    from helpers import hashes

    with psycopg.connect(published_url, autocommit=True) as conn:
        before = hashes(conn)
        dag_run = local_airflow.run_day(DAY, dag=dag)
        assert hashes(conn) == before
    return dag_run


def tries(dag_run, task_id: str) -> int:
    [ti] = [ti for ti in dag_run.get_task_instances() if ti.task_id == task_id]
    return ti.try_number


def alerts(slack_server) -> list[str]:
    return [json.dumps(r.body) for r in slack_server.webhook_posts()]


def test_positive_control_a_model_failure_pages_once(airflow_dag, published_url, paged, monkeypatch):
    """The same harness sees a page when there is one: a model that fails pages with its file and error. (Raw can no
    longer make staging's cast fail: the source check refuses what it would fail on; the model's SQL breaks here.)"""
    import dataclasses

    from greenery.tasks import build as build_task

    build_model = build_task.build_model

    def with_a_broken_line(conn, model, *args, **kwargs):  # a division by zero, as a mistyped edit would make
        if model.name == "stg_postgres__order_items":
            model = dataclasses.replace(model, template=model.template.replace("quantity::integer", "1 / 0"))
        return build_model(conn, model, *args, **kwargs)

    monkeypatch.setattr(build_task, "build_model", with_a_broken_line)
    dag_run = local_airflow.run_day(DAY, dag=airflow_dag)
    assert dag_run.state == "failed" and states(dag_run)["stg_postgres__order_items"] == "failed"
    [alert] = alerts(paged)
    assert "stg_postgres__order_items.sql" in alert and "division by zero" in alert


def test_a_bad_setting_on_the_workers_fails_the_first_task_at_once_and_pages_once(
    airflow_dag, published_url, paged, monkeypatch
):
    """Review: a bad setting was an import error (no run, nobody paged), or a task's error retried for nothing. The
    DAG loads (tests/test_dag_integrity.py); in the run, the first task fails on the setting without retrying and
    pages once, naming it and what to do; nothing is built or published."""
    from helpers import hashes

    with psycopg.connect(published_url, autocommit=True) as conn:
        before = hashes(conn)
        monkeypatch.setenv("GREENERY_RETRIES", "x")  # as the workers' environment holds it
        dag_run = local_airflow.run_day(DAY, dag=airflow_dag)
        monkeypatch.delenv("GREENERY_RETRIES")
        assert hashes(conn) == before
    s = states(dag_run)
    assert dag_run.state == "failed" and s["check_source_freshness"] == "failed", s
    assert tries(dag_run, "check_source_freshness") == 1
    [alert] = alerts(paged)
    assert "bad setting: GREENERY_RETRIES='x': expected a whole number" in alert, alert
    assert "then clear the run" in alert and "check_source_freshness" in alert


@pytest.mark.parametrize(
    "connection, cause",
    [
        # Nothing listens on port 9 of loopback (discard): the server is down.
        ({"conn_type": "postgres", "host": "127.0.0.1", "port": 9, "login": "etl", "schema": "greenery"}, "refused"),
        # A rotated password shows up as an unknown login on the embedded server (it trusts the socket).
        (None, 'role \\"rotated_user\\" does not exist'),
    ],
    ids=["warehouse down", "bad credentials"],
)
def test_an_unreachable_warehouse_pages_once_with_the_cause(
    connection, cause, airflow_dag, pg_admin_url, paged, monkeypatch
):
    """Finding 3: check_source_freshness raised before its own alert and the callback skipped that task."""
    if connection is None:
        conn = json.loads(warehouse.connection_json(pg_admin_url))
        connection = {**conn, "login": "rotated_user", "password": "old-secret"}
    monkeypatch.setenv(warehouse.conn_env_var(), json.dumps(connection))
    dag_run = local_airflow.run_day(DAY, dag=airflow_dag)
    s = states(dag_run)
    assert dag_run.state == "failed" and s["check_source_freshness"] == "failed", s
    assert s["prepare_build"] == "upstream_failed"
    [alert] = alerts(paged)  # exactly one page
    assert "check_source_freshness" in alert and "cannot connect to the warehouse" in alert and cause in alert
    assert "old-secret" not in alert


def test_a_warehouse_gone_mid_run_pages_once_not_once_per_task_it_fails(airflow_dag, published_url, paged, monkeypatch):
    """Review: the warehouse gone after prepare_build, the four model tasks without an upstream model failed, and each
    paged: four pages for one cause. The first to fail pages; the others' records say nothing of a page of theirs."""
    from greenery.tasks import build

    prepared = build.prepare
    down = {"conn_type": "postgres", "host": "127.0.0.1", "port": 9, "login": "etl", "schema": "greenery"}

    def prepare_then_lose_the_warehouse(context):
        done = prepared(context)
        monkeypatch.setenv(warehouse.conn_env_var(), json.dumps(down))
        return done

    monkeypatch.setattr(build, "prepare", prepare_then_lose_the_warehouse)
    monkeypatch.setenv("GREENERY_RETRIES", "0")
    dag_run = local_airflow.run_day(DAY, dag=airflow_dag)
    failed = sorted(t for t, state in states(dag_run).items() if state == "failed")
    assert dag_run.state == "failed" and len(failed) >= 2, failed  # several tasks meet the same cause
    [alert] = alerts(paged)
    assert "cannot connect to the warehouse" in alert and "refused" in alert
    assert sum(f"task {t} failed" in alert for t in failed) == 1, alert  # the first to fail names itself


@pytest.mark.timeout(600)
def test_a_warehouse_gone_mid_run_under_the_scheduler_pages_once_for_the_tasks_failing_side_by_side(
    published_url, pg_admin_url, paged, tmp_path, monkeypatch
):
    """The same outage under a real scheduler, whose LocalExecutor runs the four model tasks without an upstream
    model side by side: they fail within a second of each other, each claims the page, one pages (four before).
    The warehouse stops taking connections while prepare_build waits for the publish lock, held here: that task's
    own connection is up already, every later one is refused."""
    from airflow_api import DAG_ID, finished, task_states, trigger, unpause

    from greenery import locks
    from greenery.dev import local_ui

    monkeypatch.setenv("GREENERY_RETRIES", "0")  # a connection error is retried otherwise, a minute apart
    database = psycopg.conninfo.conninfo_to_dict(published_url)["dbname"]
    waiting = "select count(*) from pg_stat_activity where datname = %s and wait_event_type = 'Lock'"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        ui = local_ui.start(tmp_path / "airflow", port=local_ui.free_port(), components=local_ui.COMPONENTS[:3])
        try:
            ui.wait_ready(timeout=180)
            ui.wait_for_dag(DAG_ID, timeout=180)
            unpause(ui)
            with psycopg.connect(published_url) as holder:
                locks.exclusive(holder)
                run_id = trigger(ui, DAY.isoformat())
                deadline = time.monotonic() + 300
                while not admin.execute(waiting, (database,)).fetchone()[0]:  # prepare_build, at its lock
                    assert time.monotonic() < deadline, ui.diagnostics()
                    time.sleep(0.2)
                admin.execute(f'alter database "{database}" with allow_connections false')
            assert finished(ui, run_id) == "failed"
            failed = sorted(t for t, state in task_states(ui, run_id).items() if state == "failed")
        finally:
            admin.execute(f'alter database "{database}" with allow_connections true')
            ui.stop()
    assert len(failed) >= 2 and "prepare_build" not in failed, failed
    [alert] = alerts(paged)
    assert "cannot connect to the warehouse" in alert and sum(f"task {t} failed" in alert for t in failed) == 1, alert


def test_a_day_before_the_start_date_fails_and_pages_instead_of_succeeding_empty(
    airflow_dag, published_url, paged, monkeypatch
):
    """Finding 2: a run before the DAG's start date ran no task and ended "success". And the setting moves
    the earliest day: with GREENERY_START_DATE earlier, the same day gets past that check (read when the task
    runs) and fails only because the data has no events that day."""
    dag_run = local_airflow.run_day(dt.date(2021, 1, 12), dag=airflow_dag)
    s = states(dag_run)
    assert dag_run.state == "failed" and s["check_source_freshness"] == "failed", s
    [alert] = alerts(paged)
    assert "2021-01-12 is before the pipeline" in alert and "GREENERY_START_DATE" in alert

    monkeypatch.setenv("GREENERY_START_DATE", "2021-01-01")
    dag_run = local_airflow.run_day(dt.date(2021, 1, 12), dag=airflow_dag)
    assert dag_run.state == "failed" and states(dag_run)["check_source_freshness"] == "failed"
    [_, alert] = alerts(paged)
    assert "raw.events has no rows created in [2021-01-12" in alert and "before the pipeline" not in alert
    # Review: "there are none" read as an empty table.
    assert "none was created before then: its oldest row was created 2021-02-10" in alert, alert


def test_a_day_not_over_fails_and_pages_instead_of_publishing_part_of_it(airflow_dag, published_url, paged):
    """Review: a run of today (a manual trigger's logical date defaults to now) passed the source check with the
    day's first rows and published its daily marts from part of the day, green, "as of the end of" it."""
    with psycopg.connect(published_url, autocommit=True) as conn:
        published = conn.execute("select count(*) from greenery_audit.publish_log").fetchone()[0]
        # The day's first rows: an event and an order a minute old, which pass the source check on their own.
        for table, key in (("events", "event_id"), ("orders", "order_id")):
            columns = [c.name for c in conn.execute(f"select * from raw.{table} limit 0").description]
            picked = ", ".join(
                {key: "gen_random_uuid()::text", "created_at": "now() - interval '1 minute'"}.get(c, c) for c in columns
            )
            conn.execute(f"insert into raw.{table} select {picked} from raw.{table} limit 1")
    dag_run = local_airflow.run_day(dt.datetime.now(dt.UTC).date(), dag=airflow_dag)
    s = states(dag_run)
    assert dag_run.state == "failed" and s["check_source_freshness"] == "failed", s
    assert s["publish"] == "upstream_failed", s
    [alert] = alerts(paged)
    assert "is not over until" in alert and "nothing built" in alert
    # User trial: "Fix the cause, then clear the whole run", which fails again before midnight.
    assert "What to do*\\nNothing to fix: clear the whole run after " in alert and "Fix the cause" not in alert, alert
    with psycopg.connect(published_url) as conn:
        assert conn.execute("select count(*) from greenery_audit.publish_log").fetchone()[0] == published


def test_the_cli_refuses_a_day_before_the_start_date(published_url, tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow")}
    done = subprocess.run(
        [sys.executable, "-m", "greenery.cli", "run", "--date", "2021-01-12"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "2021-01-12 is before the pipeline's start date 2021-02-10" in done.stderr
    # raw's first orders are on 2021-02-10: no advice to move the setting to a day that has none (user trial)
    assert "raw has no orders before 2021-02-10: there is no day 2021-01-12 to run." in done.stderr
    assert "GREENERY_START_DATE=" not in done.stderr
    assert "success" not in done.stdout and "Traceback" not in done.stderr


def _statements_left(url: str, *besides: int, wait_s: float = 10) -> list[tuple]:
    """The statements other sessions still run in the database after up to ``wait_s`` seconds."""
    with psycopg.connect(url, autocommit=True) as watch:
        deadline = time.monotonic() + wait_s
        while True:
            left = watch.execute(
                "select pid, left(query, 80) from pg_stat_activity where datname = current_database()"
                " and state <> 'idle' and pid <> pg_backend_pid() and pid <> all(%s)",
                (list(besides),),
            ).fetchall()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)


def test_a_task_killed_by_its_timeout_pages_once(airflow_dag, published_url, paged, monkeypatch):
    """An Airflow-level failure (execution_timeout) reaches the failure callback and pages, once: after its last
    try (review: the test ran with retries off, so a page per try would have passed)."""
    monkeypatch.setenv("GREENERY_TASK_TIMEOUT_MINUTES", "0.05")  # 3 s
    monkeypatch.setenv("GREENERY_RETRIES", "1")
    dag = (
        local_airflow.load_dag()
    )  # parsed again (airflow_dag migrated the metadata DB): settings are read at parse time
    with psycopg.connect(published_url, autocommit=True) as blocker:
        blocker.execute("begin")
        # The published event history: only stg_postgres__events reads it (its incremental branch).
        blocker.execute("lock table staging.stg_postgres__events in access exclusive mode")
        released = threading.Timer(60, blocker.cancel)  # never leave the test hanging
        released.start()
        try:
            dag_run = local_airflow.run_day(DAY, dag=dag)
            # Review: each timed-out try's statement ran on in the server, waiting behind this lock with the publish
            # lock held (a publish would have waited for it): the server ends it once its client has gone.
            left = _statements_left(published_url, blocker.info.backend_pid)
        finally:
            released.cancel()
            blocker.execute("rollback")
    assert left == [], left
    s = states(dag_run)
    assert dag_run.state == "failed" and s["stg_postgres__events"] == "failed", s
    [events] = [ti for ti in dag_run.get_task_instances() if ti.task_id == "stg_postgres__events"]
    assert events.try_number == 2  # timed out twice
    [alert] = alerts(paged)
    assert "stg_postgres__events" in alert and "Timeout" in alert


def test_a_publish_refused_by_a_readers_view_pages_once_and_changes_nothing(airflow_dag, published_url, paged):
    """README (Views on marts, Every other failure pages once): a view on a mart that publish swaps makes the
    publish fail; the run is red, the marts as they were, and the failure callback pages once with the cause:
    the run's quarantined row is not alerted beside it (as "published")."""
    from helpers import OTHER_ORDER, hashes

    from greenery.project import models
    from greenery.ui.report import report

    marts = [m.relation for m in models.discover().values() if m.layer == "marts"]
    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute("create view public.orders_report as select order_id, order_total from marts.fact_orders")
        conn.execute("update raw.products set inventory = inventory + 1")  # so that a publish would change a mart
        conn.execute("update raw.orders set order_id = null where order_id = %s", (OTHER_ORDER,))  # quarantined
        before = hashes(conn, marts)
        dag_run = local_airflow.run_day(DAY, dag=airflow_dag)
        s = states(dag_run)
        assert dag_run.state == "failed" and s["validate"] == "success" and s["publish"] == "failed", s
        assert hashes(conn, marts) == before
        assert conn.execute("select count(*) from public.orders_report").fetchone()[0] > 0
        # Its checks are on record, not published, once (its tries included), and the Data quality view shows them
        # with its quarantined row, which alert_slack's skip says the view lists (review: "not validated").
        recorded = "select published, summary->'quarantined' from greenery_audit.validation_runs where run_id = %s"
        [(published, quarantined)] = conn.execute(recorded, (dag_run.run_id,)).fetchall()
        assert published is False and quarantined, quarantined
        shown = report(conn, run_id=dag_run.run_id)["latest_run"]
        assert shown["validated"] is not False and shown["published"] is False, shown
    assert s["alert_slack"] == "skipped", s
    [alert] = alerts(paged)
    assert "publish" in alert and "cannot drop table" in alert and "orders_report" in alert
    # Review: retried with backoff (the page minutes late), and PostgreSQL's hint said to drop it with CASCADE.
    assert tries(dag_run, "publish") == 1 and "CASCADE" not in alert and "Have the view it names dropped" in alert


@pytest.mark.parametrize("error", ["lock wait", "refusal", "view on a mart", "other"])
def test_a_failed_publish_records_its_checks_once_and_fails_at_once_unless_a_retry_may_help(
    published_url, monkeypatch, error
):
    """A lock wait that ran out, a refusal and a reader's view on a mart (review: retried with backoff, the same view
    met by each try) fail publish without retries (AirflowFailException: the page comes now); any other error is
    raised as it is, for Airflow's retries. Each try records the run's checks as not published, once for the
    validation, its retries included."""
    from airflow.sdk.exceptions import AirflowFailException

    from greenery import lock_waits, wap
    from greenery.tasks import publish

    raised = {
        "lock wait": lock_waits.LockWaitRanOut("publish gave up after 3 tries"),
        "refusal": wap.PublishError("run 'r' was never prepared"),
        "view on a mart": psycopg.errors.DependentObjectsStillExist("view orders_report depends on table fact_orders"),
        "other": psycopg.OperationalError("server closed the connection unexpectedly"),
    }[error]

    def failing(*_, **__):
        raise raised

    monkeypatch.setattr(wap, "publish", failing)
    run_id = f"publish-{error.replace(' ', '-')}"
    summary = {"run_id": run_id, "logical_date": DAY.isoformat(), "blocking": False, "validation_id": "v1"}
    context = {"run_id": run_id, "logical_date": dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC)}
    for _ in range(2):  # a try, and its retry
        with pytest.raises(AirflowFailException if error != "other" else type(raised), match=str(raised)) as failed:
            publish.run(summary, context)
        assert failed.value.__cause__ is (raised if error != "other" else None)
    with psycopg.connect(published_url) as conn:
        recorded = "select published from greenery_audit.validation_runs where run_id = %s"
        assert conn.execute(recorded, (run_id,)).fetchall() == [(False,)]


def test_a_publish_refused_for_an_unchecked_build_pages_its_own_step(airflow_dag, published_url, paged, monkeypatch):
    """Review: publish's refusals carry their step (next_step), which the task lost wrapping them: the page of an
    unchecked build said "Fix the cause, then clear the whole run" beside "clear validate with its downstream
    tasks"."""
    from greenery import publish_checks

    monkeypatch.setattr(publish_checks, "unvalidated", lambda conn, build, names: ["fact_orders"])
    dag_run = run_leaving_readers_as_they_were(published_url, airflow_dag)
    assert states(dag_run)["publish"] == "failed" and tries(dag_run, "publish") == 1
    [alert] = alerts(paged)
    assert "no validation that passed checked its build of fact_orders" in alert
    # Run as `greenery run` runs a day: its command (in the UI: "Clear validate with its downstream tasks, ...").
    assert "What to do*\\nRun the day again with `greenery run --date 2021-02-12`." in alert, alert
    assert "Fix the cause" not in alert


def test_a_model_task_skipped_fails_the_run_at_publish_and_pages_once(airflow_dag, published_url, paged, monkeypatch):
    """Review: a model task marked *skipped* in the UI skipped validate and publish (their trigger rule), and the run
    ended green having built, checked and published nothing, with no page. Now validate checks what was built,
    publish refuses the incomplete build naming the model, nothing changes and on-call is paged once."""
    from airflow.sdk.exceptions import AirflowSkipException

    from greenery.tasks import build

    real = build.build_one

    def skipped_by_hand(context, model, models, conn_id):
        if model.name == "stg_postgres__orders":
            raise AirflowSkipException("marked skipped in the UI")
        return real(context, model, models, conn_id)

    monkeypatch.setattr(build, "build_one", skipped_by_hand)
    dag_run = run_leaving_readers_as_they_were(published_url, airflow_dag)
    s = states(dag_run)
    assert s["stg_postgres__orders"] == "skipped" and s["fact_orders"] == "skipped", s
    assert dag_run.state == "failed" and s["validate"] == "success" and s["publish"] == "failed", s
    assert tries(dag_run, "publish") == 1  # a refusal is not retried: the page is not held back by the backoff
    [alert] = alerts(paged)
    assert "publish" in alert and "did not build stg_postgres__orders" in alert and "skipped" in alert


def test_publish_skipped_by_hand_after_passing_checks_fails_the_run_and_pages_once(
    airflow_dag, published_url, paged, monkeypatch
):
    """Review: publish marked skipped by hand (it skips itself only on failed checks, which fail validate first) left
    a green run that published nothing, and alert_slack said "nothing to alert". Now alert_slack fails and pages."""
    from airflow.sdk.exceptions import AirflowSkipException

    from greenery.tasks import publish

    def skipped_by_hand(summary, context):
        raise AirflowSkipException("marked skipped in the UI")

    monkeypatch.setattr(publish, "run", skipped_by_hand)
    dag_run = run_leaving_readers_as_they_were(published_url, airflow_dag)
    s = states(dag_run)
    assert s["validate"] == "success" and s["publish"] == "skipped" and s["alert_slack"] == "failed", s
    assert dag_run.state == "failed"
    [alert] = alerts(paged)
    assert "alert_slack" in alert and "publish was skipped without publishing" in alert


def test_a_validate_that_left_no_result_fails_publish_at_once_and_pages_once(
    airflow_dag, published_url, paged, monkeypatch
):
    """Review: validate marked success by hand left no result, and publish failed three tries with "TypeError:
    'NoneType' object is not subscriptable", which is what paged. Now it fails at once, saying what to do."""

    from greenery.tasks import validate

    monkeypatch.setattr(validate, "run", lambda context: None)  # a success with no result, as when marked by hand
    dag_run = run_leaving_readers_as_they_were(published_url, airflow_dag)
    s = states(dag_run)
    assert dag_run.state == "failed" and s["validate"] == "success" and s["publish"] == "failed", s
    assert tries(dag_run, "publish") == 1  # not retried: nothing would change
    [alert] = alerts(paged)
    assert "validate left no result in this run" in alert and "TypeError" not in alert
    # User trial: the message said to clear validate with its downstream tasks, its page to clear the whole run.
    assert "What to do*\\nClear validate with its downstream tasks: it checks" in alert and "whole run" not in alert


def test_a_publish_that_died_after_its_commit_is_retried_to_success_and_pages_nobody(
    airflow_dag, published_url, paged, monkeypatch
):
    """README (Write-audit-publish): a publish try killed between its commit and reporting success is retried;
    the retry found nothing left to publish and failed, so the run was red and on-call paged for marts that
    were published, and neither the digest nor the marts' Asset events followed. Now the retry succeeds and
    nothing is published or recorded twice."""
    from helpers import asset_events

    from greenery.project import models
    from greenery.tasks import publish

    class DiesAfterTheCommit:
        """publish's logger: its "published ..." line, written after the commit, fails the first try."""

        def __init__(self, log):
            self.log, self.tries = log, 0

        def __getattr__(self, name):
            return getattr(self.log, name)

        def info(self, message, *args):
            if message.startswith("published"):
                self.tries += 1
                if self.tries == 1:
                    raise RuntimeError("killed after the commit")
            self.log.info(message, *args)

    dying = DiesAfterTheCommit(publish.log)
    monkeypatch.setattr(publish, "log", dying)
    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute("update raw.products set inventory = inventory + 1")  # so that the publish changes a mart
        dag_run = local_airflow.run_day(DAY, dag=airflow_dag)
        published = conn.execute(
            "select tables from greenery_audit.publish_log where run_id = %s", (dag_run.run_id,)
        ).fetchall()
        validations = conn.execute(
            "select published from greenery_audit.validation_runs where run_id = %s", (dag_run.run_id,)
        ).fetchall()
    s = states(dag_run)
    assert dag_run.state == "success" and s["publish"] == "success" and dying.tries == 1, s
    assert tries(dag_run, "publish") == 2  # the positive control: the first try did fail
    assert len(published) == 1 and validations == [(True,)]  # published and recorded once
    marts = {m.relation for m in models.discover().values() if m.layer == "marts"}
    assert asset_events(dag_run) == marts and set(published[0][0]) >= marts
    assert s["state_of_the_data"] in ("success", "skipped") and alerts(paged) == []


def test_days_skipped_past_the_lookback_stop_the_run_instead_of_never_being_built(airflow_dag, published_url, paged):
    """Review: after a pause longer than the incremental lookback (the DAG does not catch up), the next run's window
    started after what the last published run saw: the events in between were never built, and the run was green.
    Now check_source_freshness stops it, pages once with the gap and the two ways out; full_refresh is one."""
    from helpers import hashes

    with psycopg.connect(published_url, autocommit=True) as conn:
        # The last publish saw raw as of 2021-02-08 00:05; an event of the 8th came after it.
        conn.execute("update greenery_audit.builds set run_time = '2021-02-08 00:05+00'")
        conn.execute(
            "insert into raw.events select gen_random_uuid()::text, session_id, user_id, page_url,"
            " '2021-02-08 12:00+00', event_type, order_id, product_id from raw.events limit 1"
        )
        before = hashes(conn)
        dag_run = local_airflow.run_day(DAY, dag=airflow_dag)
        s = states(dag_run)
        assert dag_run.state == "failed" and s["check_source_freshness"] == "failed", s
        assert s["prepare_build"] == "upstream_failed" and hashes(conn) == before
    [alert] = alerts(paged)
    assert "raw.events has 1 rows created between 2021-02-08 01:05 UTC" in alert and "2021-02-09" in alert, alert
    assert (
        "airflow backfill create --dag-id greenery_daily --from-date 2021-02-08T00:00Z --to-date 2021-02-11T00:00Z"
    ) in alert
    assert "--reprocess-behavior failed" in alert and "full_refresh" in alert
    assert "`greenery run --date 2021-02-08 --end-date 2021-02-12`" in alert  # review: the CLI's own way
    # The other way out: a run with the Param full_refresh builds every event, so the check lets it through (the
    # task itself, as the DAG calls it; a whole full-refresh run is test_dag_real_greenery's).
    from greenery.tasks import freshness

    logical = dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC)
    refresh = {"logical_date": logical, "run_id": "manual__refresh", "params": {"full_refresh": True}}
    checked = freshness.check(refresh)
    assert (checked["fresh"], checked["problems"], sorted(checked["raw_fingerprint"])[:2]) == (
        True,
        [],
        ["addresses", "events"],
    )
    with pytest.raises(freshness.DaysNeverBuiltError):
        freshness.check({**refresh, "params": {"full_refresh": False}})


def test_an_old_days_run_with_a_late_clock_does_not_hide_the_days_never_built(published_url):
    """Review of this stop: the check took the newest published clock as what was built. A run of an old day
    whose clock is later (cleared after raw changed, or triggered by hand days later) built the events up to that
    clock, but the daily tables of its day only: the days between kept no daily rows, and the next run passed.
    What a run built ends with its day."""
    from greenery.project.render import Interval
    from greenery.tasks import freshness

    with psycopg.connect(published_url, autocommit=True) as conn:
        # The newest publish is the 9th's, run days later: its clock is long after its day.
        conn.execute("update greenery_audit.publish_log set logical_date = '2021-02-09'")
        conn.execute("update greenery_audit.builds set logical_date = '2021-02-09', run_time = now()")
        with pytest.raises(freshness.DaysNeverBuiltError, match="rows created between 2021-02-10 00:00 UTC") as told:
            freshness.check_no_skipped_days(conn, Interval.for_day(dt.date(2021, 2, 14)))
        # User trial: it said `greenery run --full-refresh`, which the CLI refuses without --date.
        assert "Param full_refresh (`greenery run --date 2021-02-14 --full-refresh`)" in str(told.value)
        freshness.check_no_skipped_days(conn, Interval.for_day(dt.date(2021, 2, 13)))  # its window reaches the 10th


def test_the_days_never_built_name_the_configured_raw_schema(published_url, monkeypatch):
    """Review: the stop said raw.events whatever GREENERY_RAW_SCHEMA named."""
    from greenery.project.render import Interval
    from greenery.tasks import freshness

    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute("update greenery_audit.publish_log set logical_date = '2021-02-09'")  # as the test above
        conn.execute("update greenery_audit.builds set logical_date = '2021-02-09', run_time = now()")
        conn.execute("alter schema raw rename to landing")
        monkeypatch.setenv("GREENERY_RAW_SCHEMA", "landing")
        with pytest.raises(freshness.DaysNeverBuiltError, match=r"^landing\.events has \d+ rows created between"):
            freshness.check_no_skipped_days(conn, Interval.for_day(dt.date(2021, 2, 14)))


def test_a_source_alert_that_went_out_unanswered_is_not_paged_again_nor_said_unsent(published_url, paged):
    """Review: Slack hung up on the source alert (raw has no data on 2021-02-13); page() said "not sent", the task
    raised "(the source alert could NOT be sent)" and its failure callback paged a second time. A post that went
    out unanswered may have been posted: the task fails without a second page and says to look in the channel."""
    from greenery.tasks import freshness, paging

    logical = dt.datetime.combine(dt.date(2021, 2, 13), dt.time(), tzinfo=dt.UTC)
    context = {"logical_date": logical, "run_id": "manual__dropped", "params": {}}
    paged.respond(200, drop=True)
    with pytest.raises(Exception, match="may have been posted: look for it in the alert channel") as failed:
        freshness.check(context)
    assert "could NOT be sent" not in str(failed.value)
    paging.on_task_failure({**context, "exception": failed.value})
    [alert] = alerts(paged)
    assert "source data not ready for 2021-02-13" in alert, alert
