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
from helpers import OTHER_ORDER, duplicate_keys, hashes

from greenery.dev import local_airflow
from greenery.project import models

pytestmark = [pytest.mark.db, pytest.mark.integration]

DAY = dt.date(2021, 2, 12)
MODELS = models.discover()
MARTS = [m.relation for m in MODELS.values() if m.layer == "marts"]
ORDER = "8329a65b-7ddf-4250-aeee-bd625f8a401a"  # delivered, no promo, several order lines
PRODUCT = "fb0e8be7-5ac4-4a76-a1fa-2cc4bf0b2d80"  # one of ORDER's lines
PAGE_VIEW = "0007a1f6-0123-4ab3-bac3-6dfefa832975"

# The whole DAG for a few quarantine cases; tests/test_quarantine_rules.py checks every rule at the build level.
# case -> (defect SQL on raw, model, rule, key that must leave the marts)
QUARANTINE = {
    "null primary key": (
        f"update raw.orders set order_id = null where order_id = '{OTHER_ORDER}'",
        "stg_postgres__orders",
        "null_key",
        None,
    ),
    "NaN price": (
        f"update raw.products set price = 'NaN' where product_id = '{PRODUCT}'",
        "stg_postgres__products",
        "non_finite_number",
        ("marts.dim_products", "product_id", PRODUCT),
    ),
    "delivered in 2100": (
        f"update raw.orders set delivered_at = '2100-01-01T00:00:00Z' where order_id = '{ORDER}'",
        "stg_postgres__orders",
        "future_timestamp",
        ("marts.fact_orders", "order_id", ORDER),
    ),
}
DUPLICATE_EVENTS = f"insert into raw.events select * from raw.events where event_id = '{PAGE_VIEW}'"

# case -> (defect SQL on raw, failing task, words the alert must contain)
BLOCK = {
    "duplicate primary key": (
        # A NaN price too, so that the blocked run has rows to quarantine: they must not be published either.
        f"insert into raw.orders select * from raw.orders where order_id = '{ORDER}';"
        f" update raw.products set price = 'NaN' where product_id = '{PRODUCT}'",
        "validate",
        ["stg_postgres__orders", "expect_column_values_to_be_unique", ORDER, "not published", "2021-02-12"],
    ),
    "empty raw table": (
        "delete from raw.order_items",
        "check_source_freshness",
        ["order_items", "empty", "What to do*\\nLoad the source, then"],
    ),
    "raw table missing": ("drop table raw.promos", "check_source_freshness", ["promos", "missing"]),
    "column missing or renamed": (
        "alter table raw.products rename column name to product_name",
        "check_source_freshness",
        [
            "products",
            "lacks column(s) name; it has product_name, which the pipeline does not read (renamed?): rename it back"
            ' (alter table \\"raw\\".\\"products\\" rename column \\"product_name\\" to \\"name\\")',
            "What to do*\\nFix the raw tables as the lines above say, then",
        ],
    ),
    "column of the wrong type": (
        "alter table raw.order_items alter column quantity type text; "
        f"update raw.order_items set quantity = 'two' where order_id = '{ORDER}' and product_id = '{PRODUCT}'",
        "check_source_freshness",
        ["order_items", "quantity is text (expected integer)"],
    ),
}


def published_hashes(conn) -> dict[str, str]:
    """The marts and the quarantine tables: what readers see."""
    held = conn.execute("select table_name from information_schema.tables where table_schema = 'quarantine'")
    return hashes(conn, MARTS + [f"quarantine.{n}" for (n,) in held.fetchall()])


@pytest.fixture
def published(published_url, slack_alerts_webhook):
    """Real data in raw, published once as the run of 2021-02-12 (a copy of the session's template)."""
    with psycopg.connect(published_url, autocommit=True) as conn:
        yield conn, published_hashes(conn)


def _run(airflow_dag, day=DAY):
    dag_run = local_airflow.run_day(day, dag=airflow_dag)
    return dag_run, {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def _alerts(slack_server) -> str:
    return json.dumps([r.body for r in slack_server.webhook_posts()])


@pytest.fixture(scope="module")
def quarantine_run(airflow_dag, module_published_url, module_slack_alerts_webhook):
    """Every quarantine case planted at once (distinct rows), then one run: (conn, dag_run, states, Slack posts).

    One run serves the cases: each quarantines its own rows, and the run must still publish the rest.
    """
    with psycopg.connect(module_published_url, autocommit=True) as conn:
        for defect, *_ in QUARANTINE.values():
            conn.execute(defect)
        dag_run, states = _run(airflow_dag)
        yield conn, dag_run, states, module_slack_alerts_webhook.webhook_posts()


@pytest.mark.parametrize("case", list(QUARANTINE))
def test_quarantined_rows_stay_out_of_the_marts(case, quarantine_run):
    conn, dag_run, states, posts = quarantine_run
    _, model, rule, gone = QUARANTINE[case]
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
        assert duplicate_keys(conn, m.relation, m.table_key) == 0, m.relation
    for relation in MARTS:
        for column, data_type in conn.execute(
            "select column_name, data_type from information_schema.columns"
            " where table_schema || '.' || table_name = %s",
            (relation,),
        ).fetchall():
            if data_type == "numeric":
                nan = conn.execute(f"select count(*) from {relation} where {column} in ('NaN', 'Infinity')")
                assert nan.fetchone()[0] == 0, (relation, column)
    [alert] = posts
    text = json.dumps(alert.body, ensure_ascii=False)
    assert "Quarantined" in text and model in text
    # Why, not only how many (stop 73's trial): each rule the model's rows broke, with its rows, as the table has it.
    assert f"`{rule}` {rules[rule]}" in text, text
    assert alert.body["blocks"][0]["text"]["text"].startswith("🟡")


def test_an_order_published_without_a_quarantined_line_is_named_with_the_lines_rule(quarantine_run):
    """User trial: a product's bad price quarantined it and its order lines; their orders were published with item
    counts short, and the one warning said "order_cost = sum of its lines (a price change ...)". A warning of
    fact_orders names each published order's quarantined lines, with their rules."""
    conn, _, _, posts = quarantine_run
    orders = [
        order_id
        for (order_id,) in conn.execute(
            "select distinct order_id from raw.order_items where product_id = %s and order_id <> %s", (PRODUCT, ORDER)
        ).fetchall()
    ]
    assert orders, "the product is on another order than ORDER (itself quarantined)"
    rules = conn.execute(
        "select distinct rule from quarantine.stg_postgres__order_items where order_id = any(%s)", (orders,)
    ).fetchall()
    [alert] = posts
    text = json.dumps(alert.body, ensure_ascii=False)
    assert "an order published with some of its lines quarantined in this run" in text, text
    assert [rule for (rule,) in rules] and all(f"product_id={PRODUCT}, rule={rule}" in text for (rule,) in rules), text
    assert any(f"order_id={order_id}, product_id={PRODUCT}" in text for order_id in orders), text


def test_duplicate_events_are_deduplicated_and_the_marts_equal_the_clean_ones(airflow_dag, published):
    conn, clean = published
    conn.execute(DUPLICATE_EVENTS)
    dag_run, states = _run(airflow_dag)
    assert dag_run.state == "success", states
    assert {r: h for r, h in published_hashes(conn).items() if r in MARTS} == {r: clean[r] for r in MARTS}


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
    assert published_hashes(conn) == before
    text = _alerts(slack_server)
    for word in words:
        assert word in text, (word, text[:2000])
    if failing_task == "check_source_freshness":  # the catalog's alert column: one 🟠 source alert, no 🔴 page too
        headers = [r.body["blocks"][0]["text"]["text"] for r in slack_server.webhook_posts()]
        assert headers == ["🟠 greenery_daily: source data not ready for 2021-02-12; nothing built"], headers
        assert "Published marts are untouched (still serving the run of 2021-02-12)." in text  # as publish_log says


def test_a_day_without_data_alerts_instead_of_building_empty_partitions(airflow_dag, published, slack_server):
    conn, before = published
    dag_run, states = _run(airflow_dag, dt.date(2021, 2, 20))
    assert dag_run.state == "failed" and states["check_source_freshness"] == "failed"
    assert states["prepare_build"] == "upstream_failed"
    assert published_hashes(conn) == before
    n = conn.execute("select count(*) from marts.metrics_daily where as_of_date = '2021-02-20'").fetchone()[0]
    assert n == 0
    text = _alerts(slack_server)
    assert "stale" in text and "events" in text and "nothing built" in text
