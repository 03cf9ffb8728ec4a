"""Validation gates the run and pages Slack: the whole DAG through Airflow, real PostgreSQL, real GX,
and a real local HTTP server standing in for Slack."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
from helpers import asset_events

from greenery.dev import local_airflow
from greenery.sources import load as raw

pytestmark = [pytest.mark.db, pytest.mark.integration]

DAY = dt.date(2021, 2, 12)
DUPLICATED_ORDER = "8329a65b-7ddf-4250-aeee-bd625f8a401a"


@pytest.fixture
def loaded(warehouse_url, real_greenery, slack_alerts_webhook):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        raw.load_dir(conn, real_greenery)
        yield conn


def audit_failures(conn, run_id: str) -> list[dict]:
    from greenery import audit

    return audit.task_failures(conn, run_id)


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def alert_text(recorded) -> str:
    return json.dumps(recorded.body)


def test_a_duplicated_order_is_one_root_cause_the_red_task_says_so_and_on_call_is_paged(
    airflow_dag, loaded, slack_server
):
    loaded.execute("insert into raw.orders select * from raw.orders where order_id = %s", (DUPLICATED_ORDER,))
    dag_run = local_airflow.run_day(DAY, dag=airflow_dag)
    s = states(dag_run)
    assert dag_run.state == "failed"
    assert (s["validate"], s["publish"], s["alert_slack"]) == ("failed", "upstream_failed", "success")
    assert asset_events(dag_run) == set()
    [post] = slack_server.webhook_posts()
    text = alert_text(post)
    assert "not published" in text and str(DAY) in text and "greenery_daily" in text
    assert len(post.body["blocks"]) <= 50
    # Issue 16: one root entry for the duplicate, named by its published table and its raw source, the
    # downstream repeats folded into it, each key once with its count.
    # The snapshot's queries, which report the order as rows (`order_id=..., copies=2`), are folded in too.
    causes = [b["text"]["text"] for b in post.body["blocks"] if b.get("block_id", "").startswith("cause-")]
    [root] = causes
    assert "expect_column_values_to_be_unique" in root and "order_id" in root
    assert root.index("`staging.stg_postgres__orders`") < root.index("`raw.orders`")
    assert "also fails in `snapshots.snap_orders`, `intermediate.int_orders`, `marts.fact_orders`" in root
    assert root.count(DUPLICATED_ORDER) == 1 and f"`{DUPLICATED_ORDER}` ×2" in root
    assert "_build_" not in text  # tables by their published names, never the run's build schema
    assert "<!subteam^" in root  # the table's owner is mentioned
    buttons = {e["action_id"]: e["url"] for b in post.body["blocks"] if b["type"] == "actions" for e in b["elements"]}
    assert set(buttons) == {"open-run", "open-log", "open-quality", "open-docs"}
    assert all(url.startswith("http") for url in buttons.values())
    # User trial: without its try, an old alert's button opened the newest try's log after a clear.
    assert buttons["open-log"].endswith("/tasks/validate?try_number=1"), buttons["open-log"]
    # The red task tells the truth on its own: the same root cause and what to do.
    [failure] = [f for f in audit_failures(loaded, dag_run.run_id) if f["task_id"] == "validate"]
    assert "staging.stg_postgres__orders (from raw.orders)" in failure["error"]
    # Run as `greenery run` runs a day (local_airflow.run_day): its command, not the UI's Clear (tests/test_slack_alert)
    assert "then run the day again with `greenery run --date 2021-02-12`." in failure["error"]


def test_a_warning_only_failure_alerts_but_publishes_and_stays_green(airflow_dag, loaded, slack_server):
    user = loaded.execute("select user_id from raw.users order by user_id limit 1").fetchone()[0]
    loaded.execute("update raw.users set email = 'nobody-at-example' where user_id = %s", (user,))
    dag_run = local_airflow.run_day(DAY, dag=airflow_dag)
    s = states(dag_run)
    assert dag_run.state == "success", s
    assert (s["validate"], s["publish"], s["alert_slack"]) == ("success", "success", "success")
    [post] = slack_server.webhook_posts()
    text = alert_text(post)
    assert "warning" in text and "stg_postgres__users" in text and "email" in text and user in text
    assert "Marts published" in text
    published = loaded.execute("select email from marts.dim_users where user_id = %s", (user,)).fetchone()[0]
    assert published == "nobody-at-example"  # a warning does not hold the data back
