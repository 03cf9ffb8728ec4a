"""Broken extracts the row rules cannot tell from bad rows: a source mostly quarantined, a key repeated in raw where a
copy was quarantined. Both block the publish (the staging suites' checks on the run's quarantine) and change nothing,
`quarantine.*` included. The DAG's task bodies without Airflow (build, the validate task's own code, publish), from
the published real day."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from helpers import hashes, run_day_through_the_tasks

pytestmark = [pytest.mark.db, pytest.mark.stack]

DAY = dt.date(2021, 2, 12)
ORDER = "8329a65b-7ddf-4250-aeee-bd625f8a401a"
BUYER = "b3367c91-53bd-4aac-ab6d-0a596fe382c2"
QUARANTINE_TABLES = "select format('%I.%I', schemaname, tablename) from pg_tables where schemaname = 'quarantine'"


def _published_state(conn) -> dict[str, str]:
    quarantine = [r[0] for r in conn.execute(QUARANTINE_TABLES).fetchall()]
    return {**hashes(conn), **hashes(conn, quarantine)}


def _critical(summary: dict) -> list[tuple[str, list[str]]]:
    return [
        (cause["table"], [key["key"] for key in cause["keys"]])
        for cause in summary["root_causes"]
        if cause["severity"] == "critical"
    ]


@pytest.mark.parametrize(
    "change, table, said",
    [
        # Review: every order quarantined (invalid_status), every check passed on empty tables, and the order marts
        # were published empty behind a 🟡 "rows quarantined".
        ("update raw.orders set status = 'complete'", "staging.stg_postgres__orders", "361 of 361 rows quarantined"),
        (
            "update raw.events set event_type = 'pageview' where event_type = 'page_view'",
            "staging.stg_postgres__events",
            "1871 of 3553 rows quarantined (invalid_event_type 1871)",
        ),
        # User trial: every event of the run's day renamed was a minority of the window's days (46 of 180), and
        # published behind a 🟡: the run's day is counted on its own too.
        (
            "update raw.events set event_type = 'shipment_sent'"
            " where created_at >= '2021-02-12T00:00:00Z' and created_at < '2021-02-13T00:00:00Z'",
            "staging.stg_postgres__events",
            "46 of 46 rows of 2021-02-12 quarantined (invalid_event_type 46)",
        ),
        # User re-trial: every event of an earlier day of the window (1,429 of its 3,553 events) went out behind a 🟡.
        (
            "update raw.events set event_type = 'shipment_sent'"
            " where created_at >= '2021-02-10T00:00:00Z' and created_at < '2021-02-11T00:00:00Z'",
            "staging.stg_postgres__events",
            "1429 of 1429 rows of 2021-02-10 quarantined (invalid_event_type 1429)",
        ),
        # Review: a status renamed from one day on is a minority of a month's orders (the whole-table count), and
        # that day's order marts went out empty behind a 🟡: each day of the orders is counted on its own too.
        (
            "update raw.orders set status = 'complete' where order_id in (select order_id from raw.orders"
            " where created_at >= '2021-02-11T00:00:00Z' order by created_at desc limit 100)",
            "staging.stg_postgres__orders",
            "100 of 184 rows of 2021-02-11 quarantined (invalid_status 100)",
        ),
    ],
    ids=[
        "every order",
        "most events of the window",
        "every event of the day",
        "every event of an earlier day",
        "most orders of a day",
    ],
)
def test_a_source_mostly_quarantined_blocks_the_publish_and_changes_nothing(change, table, said, published_url):
    with psycopg.connect(published_url, autocommit=True) as conn:
        before = _published_state(conn)
        conn.execute(change)
    outcome, summary = run_day_through_the_tasks(published_url, "broken-extract", DAY)
    assert outcome == "blocked", (outcome, summary and summary["failures"])
    causes = dict(_critical(summary))
    assert any(key.startswith(said) for key in causes[table]), causes
    with psycopg.connect(published_url, autocommit=True) as conn:
        assert _published_state(conn) == before


def test_a_few_rows_quarantined_are_still_published_without_them(published_url):
    """The other side of the rule: 12 orders breaking a rule (at least 10, fewer than kept) are bad rows."""
    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute(
            "update raw.orders set status = 'complete'"
            " where order_id in (select order_id from raw.orders order by order_id limit 12)"
        )
    outcome, summary = run_day_through_the_tasks(published_url, "bad-rows", DAY)
    assert outcome == "published" and not _critical(summary), summary["failures"]
    assert summary["quarantined"]["stg_postgres__orders"] == 12


@pytest.mark.parametrize(
    "table, key, second_copy, said",
    [
        ("orders", ORDER, "order_total = order_total + 5", "total_mismatch"),  # the copies disagree on the amount
        ("orders", ORDER, "status = 'bogus'", "invalid_status"),
        ("users", BUYER, "created_at = '2100-01-01T00:00:00Z'", "future_timestamp"),
        ("order_items", ORDER, "quantity = -1", "invalid_quantity"),
        # Review: a copy whose id is the same UUID spelled otherwise (capitals, braces) was compared as text, missed.
        ("orders", ORDER, "order_id = upper(order_id), order_total = order_total + 100", "malformed_uuid"),
        ("users", BUYER, "user_id = '{' || user_id || '}'", "malformed_uuid"),
    ],
    ids=["order, amounts", "order, status", "user", "order line", "order, its id in capitals", "user, its id braced"],
)
def test_a_key_repeated_in_raw_blocks_when_a_copy_breaks_a_row_rule(table, key, second_copy, said, published_url):
    """Review: the copy breaking a rule was quarantined, the other published, green; the duplicate never reported."""
    column = {"orders": "order_id", "users": "user_id", "order_items": "order_id"}[table]
    with psycopg.connect(published_url, autocommit=True) as conn:
        before = _published_state(conn)
        conn.execute(f"create temp table copy as select * from raw.{table} where {column} = %s limit 1", (key,))
        conn.execute(f"update copy set {second_copy}")
        conn.execute(f"insert into raw.{table} select * from copy")
    outcome, summary = run_day_through_the_tasks(published_url, "repeated-key", DAY)
    assert outcome == "blocked", (outcome, summary and summary["failures"])
    keys = dict(_critical(summary))[f"staging.stg_postgres__{table}"]
    assert any(f"{column}={key}" in k and "kept=1, quarantined=1" in k and said in k for k in keys), keys
    with psycopg.connect(published_url, autocommit=True) as conn:
        assert _published_state(conn) == before


@pytest.mark.parametrize("dated", ["2099-01-01T00:00:00Z", "1900-01-01T00:00:00Z"], ids=["future", "far past"])
def test_events_quarantined_again_by_every_run_do_not_block_a_quiet_window(published_url, dated):
    """Second review: an incremental run reads every event dated after its window again (no upper bound) and
    quarantines it again (future_timestamp), so 60 events dated 2099 were counted against a quiet window's 46 kept
    events, and the run was blocked as a broken extract. The events' count is of the window's days. Events before
    valid_since likewise, since incremental runs read them too (this stop's review: placeholder dates)."""
    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute(
            "insert into raw.events select gen_random_uuid()::text, session_id, user_id, page_url,"
            " %s, event_type, order_id, product_id from raw.events"
            " where event_type = 'page_view' order by event_id limit 60",
            (dated,),
        )
    outcome, summary = run_day_through_the_tasks(published_url, "quiet-window", dt.date(2021, 2, 15))
    assert outcome == "published", _critical(summary or {"root_causes": []})
    assert summary["quarantined"]["stg_postgres__events"] == 60


def test_a_model_rebuilt_alone_is_checked_by_the_suites_that_read_it_not_only_its_own(published_url):
    """Diff review: a cleared dim_users (a deploy dropping users) was checked by its own suite only; fact_orders'
    check that every order's user is in dim_users never ran, and publish put out the new dim_users beside orders of
    users it no longer held, green. Validate runs every suite that reads a model the run built."""
    from greenery import wap
    from greenery.project import models
    from greenery.tasks import validate as validate_task

    found = models.discover()
    pushed = {}
    ti = type("TaskInstance", (), {"xcom_push": lambda self, key, value: pushed.update({key: value})})()
    context = {"run_id": "dim-users-alone", "logical_date": dt.datetime(2021, 2, 12, tzinfo=dt.UTC), "ti": ti}
    context["params"] = {"full_refresh": False}
    with psycopg.connect(published_url, autocommit=True) as conn:
        build = wap.Build("dim-users-alone", DAY)
        wap.prepare(conn, build)
        wap.build_models(conn, found, build, only=["dim_users"])
        conn.execute(f"delete from {build.schema('marts')}.dim_users where user_id = %s", (BUYER,))
    with pytest.raises(validate_task.ChecksFailed):
        validate_task.run(context)
    summary = pushed[validate_task.SUMMARY_KEY]
    checked = {suite["suite"] for suite in summary["suites"]}
    assert {"dim_users", "fact_orders", "fact_user_orders"} <= checked and "stg_postgres__events" not in checked
    assert any(cause["table"] == "marts.fact_orders" for cause in summary["root_causes"]), summary["root_causes"]
