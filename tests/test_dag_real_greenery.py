"""The whole DAG through Airflow (dag.test) on the real Greenery data, in a fresh PostgreSQL.

The two days are run once for the module (``real_run``) and the tests only read the result; the test that
runs the DAG again does it in a copy of that database, so nothing depends on the order of the tests.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit

import psycopg
import pytest
from helpers import asset_events, duplicate_keys, hashes, run_day_without_airflow, table_hash

from greenery.dev import local_airflow
from greenery.project import models
from greenery.sources import load as raw

pytestmark = [pytest.mark.db, pytest.mark.integration]

DAYS = (dt.date(2021, 2, 11), dt.date(2021, 2, 12))


@dataclass(frozen=True)
class RealRun:
    url: str
    states: dict[str, str]  # task states of the second day's run
    incremental: set[str]  # the tasks of the second day's run that merged a delta
    started: tuple[dt.datetime, dt.datetime, dt.datetime]  # the second day's run: before, its start date, after
    logical_date: dt.datetime  # the second day's run's, as stored
    assets: set[str]  # the assets the second day's run emitted an event for
    slack_requests: int  # what both runs sent to Slack (on-call's webhook)


def _incremental_tasks(dag_run) -> set[str]:
    return {
        ti.task_id
        for ti in dag_run.get_task_instances()
        if isinstance(built := ti.xcom_pull(task_ids=ti.task_id), dict) and built.get("incremental")
    }


@pytest.fixture(scope="module")
def real_run(airflow_dag, module_warehouse_url, real_greenery, module_slack_alerts_webhook) -> RealRun:
    """The two days run into the module's database. What the run says is copied now: a later dag.test for the
    same day replaces this DagRun in Airflow's database. No connection stays open: a test may copy the database."""
    with psycopg.connect(module_warehouse_url, autocommit=True) as conn:
        raw.load_dir(conn, real_greenery)
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    for day in DAYS:
        before = dt.datetime.now(dt.UTC)
        dag_run = local_airflow.run_day(day, dag=airflow_dag)
        assert dag_run.state == "success", local_airflow.failed_tasks(dag_run)
    after = dt.datetime.now(dt.UTC)
    with create_session() as session:
        stored = session.query(DagRun).filter(DagRun.run_id == dag_run.run_id).one()
        started, logical_date = (before, stored.start_date, after), stored.logical_date
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    slack = len(module_slack_alerts_webhook.requests)
    return RealRun(
        module_warehouse_url, states, _incremental_tasks(dag_run), started, logical_date, asset_events(dag_run), slack
    )


@pytest.fixture
def real_conn(real_run):
    with psycopg.connect(real_run.url, autocommit=True) as conn:
        yield conn


def test_clean_data_takes_the_success_path_sends_nothing_and_emits_the_marts_assets(real_run):
    s = real_run.states
    assert (s["validate"], s["publish"], s["alert_slack"], s["state_of_the_data"]) == (
        "success",
        "success",
        "skipped",  # nothing to alert
        "skipped",  # the stakeholders' note is off
    )
    assert real_run.slack_requests == 0
    assert real_run.assets == {m.relation for m in models.discover().values() if m.layer == "marts"}


def test_the_second_days_validation_balanced_its_streams_on_the_first_days_seconds(real_conn):
    """The validate task passes each suite's seconds in the recorded validations on (checks/history.suite_seconds):
    the first day's had none before it; the second day's incremental suites, checked on their delta, take the first
    day's whole-table seconds, and are recorded as checked on their delta."""
    from greenery.checks import streams

    recorded = real_conn.execute(
        "select logical_date, summary->>'streams_balanced_on', jsonb_array_length(summary->'suites'),"
        " (select count(*) from jsonb_array_elements(summary->'suites') as s"
        "  where jsonb_typeof(s->'seconds') = 'number')"
        " from greenery_audit.validation_runs order by validated_at"
    ).fetchall()
    suites = len(models.discover())
    on_delta = real_conn.execute(
        "select s->>'suite' from greenery_audit.validation_runs, jsonb_array_elements(summary->'suites') as s"
        " where logical_date = %s and s->'on_delta' = 'true'::jsonb",
        (DAYS[1],),
    ).fetchall()
    incremental = {m.name for m in models.discover().values() if m.materialized == "incremental"}
    assert {name for (name,) in on_delta} == incremental
    assert recorded == [
        (DAYS[0], streams.BY_TABLE_SIZES, suites, suites),
        (DAYS[1], streams.BY_SECONDS_BEFORE, suites, suites),
    ], recorded


def test_repeat_rate_on_the_real_data_is_99_of_124(real_conn):
    conn = real_conn
    buyers, repeat = conn.execute(
        "select count(*), count(*) filter (where is_repeat_buyer) from marts.fact_user_orders"
    ).fetchone()
    assert (buyers, repeat) == (124, 99)
    assert round(Decimal(repeat) / buyers * 100, 1) == Decimal("79.8")
    as_of = conn.execute(
        "select buyers, repeat_buyers, repeat_rate from marts.metrics_daily where as_of_date = '2021-02-12'"
    ).fetchone()
    assert as_of == (124, 99, Decimal("0.7984"))


def test_every_model_task_ran_and_every_primary_key_is_unique(real_run, real_conn):
    conn, states = real_conn, real_run.states
    found = models.discover()
    assert all(states[name] == "success" for name in found), states
    for m in found.values():
        assert conn.execute(f"select count(*) from {m.relation}").fetchone()[0] > 0, m.relation
        assert duplicate_keys(conn, m.relation, m.table_key) == 0, m.relation


def test_daily_product_partitions_match_the_raw_events(real_conn, real_greenery):
    conn = real_conn
    page_views: dict[str, int] = {}
    with (real_greenery / "events.csv").open(newline="") as handle:
        for event in csv.DictReader(handle):
            if event["event_type"] == "page_view":
                day = event["created_at"][:10]
                page_views[day] = page_views.get(day, 0) + 1
    built = dict(
        conn.execute(
            "select date::text, sum(page_views)::int from marts.fact_product_sessions_daily group by date"
        ).fetchall()
    )
    # Only the runs' days are written; 2021-02-12 had shipping events only, so it has no product rows.
    assert built == {"2021-02-11": page_views["2021-02-11"]}
    assert "2021-02-12" not in page_views


def test_the_known_greenery_answers(real_conn):
    conn = real_conn
    m = conn.execute(
        "select users, sessions, avg_orders_per_hour, avg_sessions_per_hour, avg_delivery_days "
        "from marts.metrics_daily where as_of_date = '2021-02-12'"
    ).fetchone()
    # The answers the analytics team published for this dataset with dbt.
    assert m[0] == 130 and m[1] == 578
    assert round(m[2], 2) == Decimal("7.52") and round(m[3], 2) == Decimal("16.33")
    assert round(m[4], 2) == Decimal("3.89")


def test_a_run_has_a_realistic_duration_and_its_own_logical_date(real_run):
    """Issue 16 (the runs of `greenery run`, local_airflow.run_day): dag.test records the logical date as the
    run's start (a run of years in the UI), and takes the logical date 00:00 that the UI's trigger form uses
    (409 on a second run of the day)."""
    before, start_date, after = real_run.started
    assert before - dt.timedelta(seconds=5) <= start_date <= after
    assert real_run.logical_date.date() == DAYS[-1] and real_run.logical_date.time() != dt.time()


def test_the_days_through_airflow_equal_the_days_run_one_by_one_without_it(real_run, pg_admin_url, real_greenery):
    """What `airflow dags backfill` does with max_active_runs=1 (the days in order, here through dag.test)
    publishes what the library's own build and publish of the same days, in the same order, publish (the
    orders' history records the order in which runs observed raw)."""
    from greenery import warehouse

    with psycopg.connect(real_run.url) as conn:
        through_airflow = hashes(conn)
    other = warehouse.create_database(pg_admin_url, f"{urlsplit(real_run.url).path.lstrip('/')}_one_by_one")
    with psycopg.connect(other, autocommit=True) as conn:
        raw.load_dir(conn, real_greenery)
        for day in DAYS:
            run_day_without_airflow(conn, day)
        assert hashes(conn) == through_airflow


def test_a_rerun_of_the_same_day_changes_nothing(real_run, database_copy, airflow_dag):
    found = models.discover()
    incremental = {name for name, m in found.items() if m.materialized == "incremental"}
    # The second day's run found the first day's tables published: it merged deltas.
    assert real_run.incremental == incremental
    with psycopg.connect(database_copy(real_run.url), autocommit=True) as conn:
        before = hashes(conn)

        def published(run_id: str) -> int:  # review: "changes nothing" must not be "did nothing"
            logged = "select cardinality(tables) from greenery_audit.publish_log where run_id = %s"
            return conn.execute(logged, (run_id,)).fetchone()[0]

        dag_run = local_airflow.run_day(dt.date(2021, 2, 12), dag=airflow_dag)
        assert dag_run.state == "success" and published(dag_run.run_id) == len(found)
        assert hashes(conn) == before
        # full_refresh (the trigger form's Param) rebuilds them whole, to the same tables.
        dag_run = local_airflow.run_day(dt.date(2021, 2, 12), conf={"full_refresh": True}, dag=airflow_dag)
        assert dag_run.state == "success" and published(dag_run.run_id) == len(found)
        assert _incremental_tasks(dag_run) == set()
        assert hashes(conn) == before
    # ... and that run only: Airflow merged its conf into the tasks' Param objects, and every later dag.test of the
    # session's DAG (this worker's other test files) ran with full_refresh (found by a test that needs it off).
    assert {task.params["full_refresh"] for task in airflow_dag.tasks} == {False}


def test_a_backfill_after_an_order_left_raw_keeps_the_history_and_publishes(real_run, database_copy, airflow_dag):
    """README (the snapshot): a run older than the snapshot's latest step keeps the history as it is. Review: after
    an order was deleted from raw, every rerun or backfill of an earlier day failed the snapshot's critical check
    "a current version is an order staging has" (the kept history against today's raw) and published nothing."""
    with psycopg.connect(database_copy(real_run.url), autocommit=True) as conn:
        snapshot_before = table_hash(conn, "snapshots.snap_orders")
        gone = conn.execute("select order_id from raw.orders order by order_id limit 1").fetchone()[0]
        conn.execute("delete from raw.orders where order_id = %s", (gone,))
        dag_run = local_airflow.run_day(DAYS[0], dag=airflow_dag)
        assert dag_run.state == "success", local_airflow.failed_tasks(dag_run)
        assert table_hash(conn, "snapshots.snap_orders") == snapshot_before  # kept, not re-stepped on old raw
        assert conn.execute("select count(*) from marts.fact_orders where order_id = %s", (gone,)).fetchone() == (0,)
        # Its validation says so, for the digest: the kept table is not among "the tables this run checked".
        kept = "select summary -> 'kept_unchecked' from greenery_audit.validation_runs where run_id = %s"
        assert conn.execute(kept, (dag_run.run_id,)).fetchone() == (["snap_orders"],)


def test_the_view_serves_each_runs_data_docs_from_the_warehouse_alone(real_run, real_conn, tmp_path, monkeypatch):
    """The api-server of another host: none of the files the validate task's worker wrote (another home, an
    empty working and temporary directory), only the warehouse. It shows every table's GX result page."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from greenery import links as deployment
    from greenery.checks import suites
    from greenery.ui import app as quality_view

    conn = real_conn
    assert real_run.states["validate"] == "success"
    stored = conn.execute(
        "select run_id, array_agg(suite order by suite) from greenery_audit.data_docs group by run_id order by 1"
    ).fetchall()
    expected = sorted(suites.load_suites(models.discover()))
    assert [suites_of for _, suites_of in stored] == [expected, expected], stored  # both days, every suite
    for name in ("HOME", "AIRFLOW_HOME", "TMPDIR"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.chdir(tmp_path / "HOME")
    root = FastAPI()
    root.mount("/data-quality", quality_view.create_app(require_auth=False))
    app = TestClient(root)
    latest = app.get("/data-quality/api/latest").json()
    docs = deployment.docs_url()  # absolute links, from the deployment's base URL
    assert latest["data_docs"] == f"{docs}index.html" and latest["latest_run"]["run_id"] == stored[-1][0]
    links = {t["suite"]: t["data_docs"] for t in latest["tables"]}
    assert sorted(links) == expected and all(link.startswith(docs) for link in links.values()), links
    for suite, link in links.items():
        page = app.get(f"/data-quality/docs/{link.removeprefix(docs)}")
        assert page.status_code == 200 and "Expectation Validation Result" in page.text, (suite, page.status_code)
    index = app.get("/data-quality/docs/")
    assert index.status_code == 200 and all(run_id in index.text for run_id, _ in stored)
