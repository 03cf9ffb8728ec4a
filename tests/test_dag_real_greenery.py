"""The whole DAG through Airflow (dag.test) on the real Greenery data, in a fresh PostgreSQL.

The two days are run once for the module (``real_run``) and the tests only read the result; a test that
runs the DAG again takes a run of its own (``own_real_run``), so nothing depends on the order of the tests.
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal

import psycopg
import pytest
from helpers import duplicate_keys, table_hash

from greenery.dev import local_airflow
from greenery.project import models
from greenery.sources import load as raw

pytestmark = [pytest.mark.db, pytest.mark.integration]


def _run_two_days(conn, airflow_dag, real_greenery):
    raw.load_dir(conn, real_greenery)
    for day in (dt.date(2021, 2, 11), dt.date(2021, 2, 12)):
        dag_run = local_airflow.run_day(day, dag=airflow_dag)
        assert dag_run.state == "success", local_airflow.failed_tasks(dag_run)
    return dag_run


@pytest.fixture(scope="module")
def real_run(airflow_dag, module_warehouse_url, real_greenery):
    """(connection, task states of the second day's run), shared by the module's read-only tests.

    The states are copied now: a later dag.test for the same day replaces this DagRun in Airflow's database.
    """
    with psycopg.connect(module_warehouse_url, autocommit=True) as conn:
        dag_run = _run_two_days(conn, airflow_dag, real_greenery)
        yield conn, {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


@pytest.fixture
def own_real_run(airflow_dag, warehouse_url, real_greenery):
    """The two days in a database of the test's own, for a test that changes what it finds."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        yield conn, _run_two_days(conn, airflow_dag, real_greenery)


def test_repeat_rate_on_the_real_data_is_99_of_124(real_run):
    conn, _ = real_run
    buyers, repeat = conn.execute(
        "select count(*), count(*) filter (where is_repeat_buyer) from marts.fact_user_orders"
    ).fetchone()
    assert (buyers, repeat) == (124, 99)
    assert round(Decimal(repeat) / buyers * 100, 1) == Decimal("79.8")
    as_of = conn.execute(
        "select buyers, repeat_buyers, repeat_rate from marts.metrics_daily where as_of_date = '2021-02-12'"
    ).fetchone()
    assert as_of == (124, 99, Decimal("0.7984"))


def test_every_model_task_ran_and_every_primary_key_is_unique(real_run):
    conn, states = real_run
    found = models.discover()
    assert all(states[name] == "success" for name in found), states
    for m in found.values():
        assert conn.execute(f"select count(*) from {m.relation}").fetchone()[0] > 0, m.relation
        assert duplicate_keys(conn, m.relation, m.table_key) == 0, m.relation


def test_daily_product_partitions_match_the_raw_events(real_run, real_greenery):
    conn, _ = real_run
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


def test_the_known_greenery_answers(real_run):
    conn, _ = real_run
    m = conn.execute(
        "select users, sessions, avg_orders_per_hour, avg_sessions_per_hour, avg_delivery_days "
        "from marts.metrics_daily where as_of_date = '2021-02-12'"
    ).fetchone()
    # The answers the analytics team published for this dataset with dbt.
    assert m[0] == 130 and m[1] == 578
    assert round(m[2], 2) == Decimal("7.52") and round(m[3], 2) == Decimal("16.33")
    assert round(m[4], 2) == Decimal("3.89")


def _incremental_tasks(dag_run) -> set[str]:
    return {
        ti.task_id
        for ti in dag_run.get_task_instances()
        if isinstance(built := ti.xcom_pull(task_ids=ti.task_id), dict) and built.get("incremental")
    }


def test_a_rerun_of_the_same_day_changes_nothing(own_real_run, airflow_dag):
    conn, second = own_real_run
    found = models.discover()
    incremental = {name for name, m in found.items() if m.materialized == "incremental"}
    # The second day's run found the first day's tables published: it merged deltas.
    assert _incremental_tasks(second) == incremental
    before = {m.relation: table_hash(conn, m.relation) for m in found.values()}
    dag_run = local_airflow.run_day(dt.date(2021, 2, 12), dag=airflow_dag)
    assert dag_run.state == "success"
    assert {m.relation: table_hash(conn, m.relation) for m in found.values()} == before
    # full_refresh (the trigger form's Param) rebuilds them whole, to the same tables.
    dag_run = local_airflow.run_day(dt.date(2021, 2, 12), conf={"full_refresh": True}, dag=airflow_dag)
    assert dag_run.state == "success"
    assert _incremental_tasks(dag_run) == set()
    assert {m.relation: table_hash(conn, m.relation) for m in found.values()} == before
