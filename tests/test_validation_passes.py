"""Two-pass validation (validation.run_suite) reports what one SUMMARY pass reports, with fewer queries.

The reference is GX's own Validator run once over the whole suite in SUMMARY: every expectation must
agree on success, and every one that failed must carry the same result (observed value, unexpected
count, sample keys). The cost is counted in SQL statements sent to PostgreSQL, not timed.
"""

from __future__ import annotations

import collections
import datetime as dt

import known_data
import psycopg
import pytest

from greenery import warehouse
from greenery.checks import gx as validation
from greenery.checks import paths, suites, summary
from greenery.materialize import build
from greenery.project import models, render

pytestmark = pytest.mark.db

MODELS = models.discover()
SUITES = suites.load_suites(MODELS)

# Planted after the build, in the tables the suites check: map, pair, compound-key and query failures.
DEFECTS = (
    "update staging.stg_postgres__order_items set quantity = -1 "
    "where ctid in (select ctid from staging.stg_postgres__order_items limit 2)",
    "update staging.stg_postgres__orders set user_id = 'no-such-user' "
    "where ctid in (select ctid from staging.stg_postgres__orders limit 1)",
    "update staging.stg_postgres__orders set delivered_at = created_at - interval '1 hour' "
    "where ctid in (select ctid from staging.stg_postgres__orders where delivered_at is not null limit 1)",
    "insert into intermediate.int_user_product_sessions select * from intermediate.int_user_product_sessions limit 1",
)
SUITE_ORDER: dict[str, list] = {}  # filled by _both_ways: each suite's expectations as written
DEFECTIVE = {"stg_postgres__order_items", "stg_postgres__orders", "int_user_product_sessions"}


def _build(url: str, defects=()) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        known_data.load(conn)
        build.build_all(conn, MODELS, render.Interval.for_day(dt.date(2021, 2, 12)))
        for defect in defects:
            assert conn.execute(defect).rowcount >= 1, defect


@pytest.fixture
def statements():
    """Counts the SQL statements every SQLAlchemy engine (GX's included) sends, under the current label."""
    import sqlalchemy as sa

    counts: collections.Counter = collections.Counter()
    label: list = [None]

    def count(*_):
        if label[0] is not None:
            counts[label[0]] += 1

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    yield counts, label
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)


def _both_ways(statements) -> dict[str, tuple]:
    """Each suite run two-pass and, for reference, in one SUMMARY pass: {suite: (two_pass, one_pass)}."""
    from great_expectations.validator.v1_validator import Validator

    _, label = statements
    source = validation._runner(warehouse.sqlalchemy_url())
    out = {}
    try:
        for name, suite_file in SUITES.items():
            suite = validation._suite(name, suite_file, lambda n: MODELS[n].relation)
            SUITE_ORDER[name] = suite.expectation_configurations
            schema, _, table = MODELS[name].relation.partition(".")
            batch = source.add_table_asset(name=name, table_name=table, schema_name=schema)
            batch = batch.add_batch_definition_whole_table("whole_table")
            detailed = validation._detailed_format(MODELS[name])
            label[0] = (name, "two")
            two = validation.run_suite(batch, suite, detailed)
            label[0] = (name, "one")
            one = Validator(batch_definition=batch, result_format=detailed).validate_expectation_suite(suite)
            label[0] = None
            out[name] = (two, one)
    finally:
        source.get_engine().dispose()
    return out


def _assert_same_verdicts(name, two, one) -> None:
    # GX's Validator may return results in another order than the suite's; run_suite keeps the suite's.
    reference = {r.expectation_config.id: r for r in one.results}
    assert [r.expectation_config.id for r in two.results] == [c.id for c in SUITE_ORDER[name]]
    assert set(reference) == {r.expectation_config.id for r in two.results}
    for a in two.results:
        b = reference[a.expectation_config.id]
        assert (a.expectation_config.type, a.expectation_config.kwargs) == (
            b.expectation_config.type,
            b.expectation_config.kwargs,
        )
        assert a.success == b.success, (name, b.expectation_config.type, b.expectation_config.kwargs)
        if not b.success:
            assert a.result == b.result, (name, b.expectation_config.type)
            assert summary._error(a) == summary._error(b)
    assert two.success == one.success
    assert two.statistics == one.statistics


def test_clean_suites_agree_with_one_summary_pass_and_cost_fewer_queries(warehouse_url, statements):
    _build(warehouse_url)
    runs = _both_ways(statements)
    for name, (two, one) in runs.items():
        _assert_same_verdicts(name, two, one)
    counts = statements[0]
    two_total = sum(counts[(n, "two")] for n in SUITES)
    one_total = sum(counts[(n, "one")] for n in SUITES)
    # Measured with GX 1.24: 190 against 430 statements on this data.
    assert two_total < 0.7 * one_total, (two_total, one_total)
    for name in SUITES:
        assert counts[(name, "two")] <= counts[(name, "one")], name


def test_failures_carry_the_same_detail_as_one_summary_pass(warehouse_url, statements):
    _build(warehouse_url, DEFECTS)
    runs = _both_ways(statements)
    failed = {name for name, (two, _) in runs.items() if not two.success}
    assert failed >= DEFECTIVE
    for name, (two, one) in runs.items():
        _assert_same_verdicts(name, two, one)
    items = runs["stg_postgres__order_items"][0]
    negative = next(
        r for r in items.results if r.expectation_config.kwargs.get("column") == "quantity" and not r.success
    )
    assert negative.result["unexpected_count"] == 2
    assert len(negative.result["partial_unexpected_index_list"]) == 2, "sample keys from the second pass"
    # An unexpected_rows_expectation comes back under its own type, with the count of its query's rows.
    orders = runs["stg_postgres__orders"][0]
    query = [r for r in orders.results if r.expectation_config.type == validation.UNEXPECTED_ROWS and not r.success]
    assert query and all(r.result["observed_value"] >= 1 for r in query)


def test_a_failing_suite_reports_sample_keys_through_validate(warehouse_url, tmp_path):
    _build(warehouse_url, DEFECTS)
    summary = validation.validate(
        warehouse.sqlalchemy_url(), MODELS, SUITES, gx_dir=tmp_path / "gx", run_name="two-pass", build_docs=True
    )
    assert summary["blocking"]
    assert {f["table"] for f in summary["failures"]} >= {MODELS[n].relation for n in DEFECTIVE}
    assert all(f["sample_keys"] for f in summary["failures"] if f["severity"] == "critical"), summary["failures"]
    assert summary["evaluated"] == sum(len(s.expectations) for s in SUITES.values())
    # The stored results are the two-pass ones, one per suite, rendered in the Data Docs.
    stored = list((tmp_path / "gx" / "gx" / "uncommitted" / "validations").rglob("*.json"))
    assert len(stored) == len(SUITES)
    assert "two-pass" in paths.data_docs_index(tmp_path / "gx").read_text()
