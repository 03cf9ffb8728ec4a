"""The bad-input catalog (README): each bad input through the whole DAG, against real PostgreSQL.

Every case starts from the real Greenery data, published once (the run of 2021-02-12) so there is
something to protect, then plants one defect in raw and runs the DAG for 2021-02-12 again.
Outcomes:
- quarantine: the bad rows go to quarantine.<model>, the rest is published, Slack is told (run green);
- block: nothing is published (marts byte-identical to before), Slack says why, the run is red.
"""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
from helpers import duplicate_keys, table_hash

from greenery import wap
from greenery.dev import local_airflow
from greenery.project import models
from greenery.sources import load as raw

pytestmark = [pytest.mark.db, pytest.mark.integration]

DAY = dt.date(2021, 2, 12)
MODELS = models.discover()
MARTS = [m.relation for m in MODELS.values() if m.layer == "marts"]
ORDER = "8329a65b-7ddf-4250-aeee-bd625f8a401a"  # delivered, no promo, several order lines
OTHER_ORDER = "f3ab84e6-dec5-43b4-9aa7-45b9988bff58"
PRODUCT = "fb0e8be7-5ac4-4a76-a1fa-2cc4bf0b2d80"  # one of ORDER's lines
PAGE_VIEW = "0007a1f6-0123-4ab3-bac3-6dfefa832975"

# case -> (defect SQL on raw, model, rule, key that must leave the marts)
QUARANTINE = {
    "null primary key": (
        f"update raw.orders set order_id = null where order_id = '{OTHER_ORDER}'",
        "stg_postgres__orders",
        "null_key",
        None,
    ),
    "orphan order -> user": (
        f"update raw.orders set user_id = '00000000-0000-4000-8000-000000000000' where order_id = '{ORDER}'",
        "stg_postgres__orders",
        "orphan_user",
        ("marts.fact_orders", "order_id", ORDER),
    ),
    "orphan item -> product": (
        f"update raw.order_items set product_id = '00000000-0000-4000-8000-000000000000' "
        f"where order_id = '{ORDER}' and product_id = '{PRODUCT}'",
        "stg_postgres__order_items",
        "orphan_product",
        ("marts.fact_order_items", "product_id", "00000000-0000-4000-8000-000000000000"),
    ),
    "orphan event -> order": (
        f"update raw.events set order_id = '00000000-0000-4000-8000-000000000000' "
        f"where order_id = '{ORDER}' and event_type = 'checkout'",
        "stg_postgres__events",
        "orphan_order",
        None,
    ),
    "negative price": (
        f"update raw.products set price = -1 where product_id = '{PRODUCT}'",
        "stg_postgres__products",
        "negative_price",
        ("marts.dim_products", "product_id", PRODUCT),
    ),
    "negative quantity": (
        f"update raw.order_items set quantity = -2 where order_id = '{ORDER}' and product_id = '{PRODUCT}'",
        "stg_postgres__order_items",
        "invalid_quantity",
        None,
    ),
    "order_total not matching its parts": (
        f"update raw.orders set order_total = order_total + 1 where order_id = '{ORDER}'",
        "stg_postgres__orders",
        "total_mismatch",
        ("marts.fact_orders", "order_id", ORDER),
    ),
    "delivered before created": (
        f"update raw.orders set delivered_at = created_at - interval '1 day' where order_id = '{ORDER}'",
        "stg_postgres__orders",
        "delivered_before_created",
        ("marts.fact_orders", "order_id", ORDER),
    ),
    "unknown event_type": (
        f"update raw.events set event_type = 'wishlist' where event_id = '{PAGE_VIEW}'",
        "stg_postgres__events",
        "invalid_event_type",
        None,
    ),
    "unknown order status": (
        f"update raw.orders set status = 'lost' where order_id = '{ORDER}'",
        "stg_postgres__orders",
        "invalid_status",
        ("marts.fact_orders", "order_id", ORDER),
    ),
    "malformed UUID": (
        f"update raw.orders set order_id = 'not-a-uuid' where order_id = '{OTHER_ORDER}'",
        "stg_postgres__orders",
        "malformed_uuid",
        ("marts.fact_orders", "order_id", "not-a-uuid"),
    ),
    "duplicate events": (
        f"insert into raw.events select * from raw.events where event_id = '{PAGE_VIEW}'",
        "stg_postgres__events",
        "duplicate_event",
        None,
    ),
    "timestamps in the future": (
        f"update raw.events set created_at = '2099-01-01T00:00:00Z' where event_id = '{PAGE_VIEW}'",
        "stg_postgres__events",
        "future_timestamp",
        None,
    ),
}

# case -> (defect SQL on raw, failing task, words the alert must contain)
BLOCK = {
    "duplicate primary key": (
        f"insert into raw.orders select * from raw.orders where order_id = '{ORDER}'",
        "quality_gate",
        ["stg_postgres__orders", "expect_column_values_to_be_unique", ORDER, "not published", "2021-02-12"],
    ),
    "empty raw table": ("delete from raw.order_items", "check_source_freshness", ["order_items", "empty"]),
    "raw table missing": ("drop table raw.promos", "check_source_freshness", ["promos", "missing"]),
    "column missing or renamed": (
        "alter table raw.products rename column name to product_name",
        "check_source_freshness",
        ["products", "lacks column", "name"],
    ),
    "column of the wrong type": (
        "alter table raw.order_items alter column quantity type text; "
        f"update raw.order_items set quantity = 'two' where order_id = '{ORDER}' and product_id = '{PRODUCT}'",
        "stg_postgres__order_items",
        ["stg_postgres__order_items", "stg_postgres__order_items.sql", "invalid input syntax for type integer"],
    ),
}


@pytest.fixture
def published(warehouse_url, real_greenery, slack_alerts_webhook):
    """Real data in raw, published once as the run of 2021-02-12 (built and published without Airflow)."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        raw.load_dir(conn, real_greenery)
        baseline = wap.Build("baseline", DAY)
        wap.prepare(conn, baseline)
        wap.build_models(conn, MODELS, baseline)
        wap.publish(conn, MODELS, baseline)
        hashes = {r: table_hash(conn, r) for r in MARTS}
        yield conn, hashes


def _run(airflow_dag, day=DAY):
    dag_run = local_airflow.run_day(day, dag=airflow_dag)
    return dag_run, {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def _alerts(slack_server) -> str:
    return json.dumps([r.body for r in slack_server.webhook_posts()])


@pytest.mark.parametrize("case", list(QUARANTINE))
def test_quarantined_rows_stay_out_of_the_marts(case, airflow_dag, published, slack_server):
    conn, _ = published
    defect, model, rule, gone = QUARANTINE[case]
    conn.execute(defect)
    dag_run, states = _run(airflow_dag)
    assert dag_run.state == "success", states
    assert states["publish"] == "success" and states["alert_slack"] == "success"
    rules = dict(
        conn.execute(
            f"select rule, count(*) from quarantine.{model} where logical_date = %s group by rule", (DAY,)
        ).fetchall()
    )
    assert rules.get(rule, 0) >= 1, rules
    assert conn.execute(f"select bool_and(run_id = %s) from quarantine.{model}", (dag_run.run_id,)).fetchone()[0]
    if gone:
        relation, column, key = gone
        assert conn.execute(f"select count(*) from {relation} where {column} = %s", (key,)).fetchone()[0] == 0
    for m in MODELS.values():
        assert duplicate_keys(conn, m.relation, m.unique_key) == 0, m.relation
    text = _alerts(slack_server)
    assert "Quarantined" in text and model in text


def test_duplicate_events_are_deduplicated_and_the_marts_equal_the_clean_ones(airflow_dag, published):
    conn, clean = published
    conn.execute(QUARANTINE["duplicate events"][0])
    dag_run, states = _run(airflow_dag)
    assert dag_run.state == "success", states
    assert {r: table_hash(conn, r) for r in MARTS} == clean


@pytest.mark.parametrize("case", list(BLOCK))
def test_blocking_inputs_leave_the_published_marts_untouched(case, airflow_dag, published, slack_server):
    conn, before = published
    defect, failing_task, words = BLOCK[case]
    conn.execute(defect)
    dag_run, states = _run(airflow_dag)
    assert dag_run.state == "failed", states
    assert states[failing_task] == "failed", states
    assert (
        states.get("publish") != "success"
        or not conn.execute(
            "select count(*) from greenery_audit.publish_log where run_id = %s", (dag_run.run_id,)
        ).fetchone()[0]
    )
    assert {r: table_hash(conn, r) for r in MARTS} == before
    text = _alerts(slack_server)
    for word in words:
        assert word in text, (word, text[:2000])


def test_a_day_without_data_alerts_instead_of_building_empty_partitions(airflow_dag, published, slack_server):
    conn, before = published
    dag_run, states = _run(airflow_dag, dt.date(2021, 2, 20))
    assert dag_run.state == "failed" and states["check_source_freshness"] == "failed"
    assert states["prepare_build"] == "upstream_failed"
    assert {r: table_hash(conn, r) for r in MARTS} == before
    n = conn.execute("select count(*) from marts.metrics_daily where as_of_date = '2021-02-20'").fetchone()[0]
    assert n == 0
    text = _alerts(slack_server)
    assert "stale" in text and "events" in text and "nothing built" in text
