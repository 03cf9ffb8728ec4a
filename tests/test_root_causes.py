"""Root-cause grouping of validation failures (fast tier: the real model graph, hand-made failures)."""

from __future__ import annotations

from greenery.checks import root_causes
from greenery.project import models

MODELS = models.discover()
DUP = "8329a65b-7ddf-4250-aeee-bd625f8a401a"


def failure(suite, expectation="expect_column_values_to_be_unique", column="order_id", keys=(DUP, DUP), **kw):
    return {
        "suite": suite,
        "table": f"_build_20210212_e6acb071__x.{suite}",
        "column": column,
        "expectation": expectation,
        "severity": kw.pop("severity", "critical"),
        "observed_value": None,
        "unexpected_count": len(keys),
        "sample_keys": list(keys),
        **kw,
    }


def test_a_duplicate_propagated_through_refs_is_one_root_named_by_its_published_and_raw_tables():
    failures = [failure("fact_orders"), failure("int_orders"), failure("stg_postgres__orders")]
    [root] = root_causes.group(failures, MODELS)
    assert root["table"] == "staging.stg_postgres__orders" and root["sources"] == ["raw.orders"]
    assert root["also_fails_in"] == ["intermediate.int_orders", "marts.fact_orders"]
    assert root["keys"] == [{"key": DUP, "count": 2}]


def test_unrelated_failures_stay_apart():
    failures = [
        failure("stg_postgres__orders"),
        failure("fact_orders", keys=("another-key",)),  # same check, other keys: another problem
        failure("stg_postgres__users", column="user_id", keys=("u1", "u1")),  # not downstream of orders
        failure("fact_orders", expectation="expect_column_values_to_not_be_null", keys=()),
    ]
    roots = root_causes.group(failures, MODELS)
    assert [(r["table"], r["expectation"], r["also_fails_in"]) for r in roots] == [
        ("staging.stg_postgres__users", "expect_column_values_to_be_unique", []),
        ("staging.stg_postgres__orders", "expect_column_values_to_be_unique", []),
        ("marts.fact_orders", "expect_column_values_to_be_unique", []),
        ("marts.fact_orders", "expect_column_values_to_not_be_null", []),
    ]


def test_a_mart_root_names_the_raw_tables_it_derives_from():
    [root] = root_causes.group([failure("fact_user_orders", column="user_id", keys=())], MODELS)
    assert root["table"] == "marts.fact_user_orders"
    assert "raw.orders" in root["sources"] and "raw.users" in root["sources"]


def test_a_warning_root_with_a_critical_repeat_downstream_is_critical():
    failures = [failure("stg_postgres__orders", severity="warning"), failure("fact_orders")]
    [root] = root_causes.group(failures, MODELS)
    assert root["severity"] == "critical" and root["also_fails_in"] == ["marts.fact_orders"]


def test_a_duplicated_order_carried_into_its_snapshot_is_the_same_root():
    """The snapshot's primary-key and one-current-version queries report the duplicated order as rows:
    on-call reads one problem, not three."""
    step = f"order_id={DUP}, valid_from=2021-02-13T00:00:00+00:00, copies=2"
    failures = [
        failure("snap_orders", "unexpected_rows_expectation", None, keys=(step,)),
        failure("snap_orders", "unexpected_rows_expectation", None, keys=(f"order_id={DUP}, current_versions=2",)),
        failure("fact_orders"),
        failure("int_orders"),
        failure("stg_postgres__orders"),
    ]
    [root] = root_causes.group(failures, MODELS)
    assert (
        root["table"] == "staging.stg_postgres__orders" and root["expectation"] == "expect_column_values_to_be_unique"
    )
    assert sorted(root["also_fails_in"]) == ["intermediate.int_orders", "marts.fact_orders", "snapshots.snap_orders"]


def test_a_query_check_naming_another_key_or_column_is_another_problem():
    failures = [
        failure("stg_postgres__orders"),
        failure("snap_orders", "unexpected_rows_expectation", None, keys=("order_id=another-order, copies=2",)),
        failure("fact_orders", "unexpected_rows_expectation", None, keys=(f"promo_id={DUP}",)),  # other column
        failure("int_orders", "unexpected_rows_expectation", None, keys=(f"order_id={DUP}-2",)),  # a longer value
        failure("stg_postgres__users", "unexpected_rows_expectation", None, keys=(f"order_id={DUP}",)),  # upstream
    ]
    roots = root_causes.group(failures, MODELS)
    assert [(r["table"], r["also_fails_in"]) for r in roots] == [
        ("staging.stg_postgres__users", []),
        ("staging.stg_postgres__orders", []),
        ("snapshots.snap_orders", []),
        ("intermediate.int_orders", []),
        ("marts.fact_orders", []),
    ]


def test_a_failure_downstream_of_a_critical_root_says_it_may_follow_from_it():
    """Review: one duplicated user also failed a reconciliation check of marts.repurchase_indicators, an entry of its
    own naming the mart's other raw sources and owner, under "fix the source rows named above". It stays an entry
    (an independent problem downstream must not be hidden) and says which failing table above it reads."""
    failures = [
        failure("stg_postgres__users", column="user_id", keys=("u1", "u1")),
        failure("repurchase_indicators", "unexpected_rows_expectation", None, keys=("indicator=sessions",)),
        failure("fact_orders", severity="warning", column="order_total", keys=()),  # the mart reads it: a warning
    ]
    roots = {r["table"]: r for r in root_causes.group(failures, MODELS)}
    assert roots["marts.repurchase_indicators"]["downstream_of"] == ["staging.stg_postgres__users"]
    assert roots["staging.stg_postgres__users"]["downstream_of"] == []
    assert roots["marts.fact_orders"]["downstream_of"] == ["staging.stg_postgres__users"]  # a warning may follow too


def test_a_failure_whose_every_row_names_another_key_of_the_upstream_column_does_not_follow_from_it():
    """User trial: an order's lines quarantined for their product's price (fact_orders' warning, its rows by order)
    read "reads staging.stg_postgres__orders, failing above: it may follow from that; fix that first", the duplicated
    order being another one. Rows that name the duplicated order, a sample of more rows, or rows of another kind
    (keyed by something else) may still follow."""
    lines = "unexpected_rows_expectation"

    def roots(*rows: str, **kw) -> dict[str, dict]:
        failures = [failure("stg_postgres__orders"), failure("fact_orders", lines, None, keys=rows, severity="warning")]
        failures[1].update(kw)
        return {r["table"]: r for r in root_causes.group(failures, MODELS)}

    def downstream(*rows: str, **kw) -> list[str]:
        return roots(*rows, **kw)["marts.fact_orders"]["downstream_of"]

    other = "order_id=o2, product_id=p1, rule=orphan_product"
    assert downstream(other) == []
    assert downstream(other, unexpected_count=9) == ["staging.stg_postgres__orders"]  # 8 rows not in the sample
    assert downstream("product_id=p1, rule=orphan_product") == ["staging.stg_postgres__orders"]  # not by order
    # A row naming the duplicated order is the same problem: folded into it, as before.
    folded = roots(other, f"order_id={DUP}, product_id=p1, rule=orphan_product")
    assert list(folded) == ["staging.stg_postgres__orders"]
    assert folded["staging.stg_postgres__orders"]["also_fails_in"] == ["marts.fact_orders"]


def test_a_column_contract_failure_says_which_columns_differ_and_to_fix_the_model_or_suite_not_the_data():
    """Review (a newcomer's suite without a column of the model): validate said "Fix the source rows named above" and
    showed the table's nine columns; GX's own detail of which differ was dropped."""
    from greenery.checks import summary

    result = {
        "success": False,
        "expectation_config": {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": ["promo_id", "orders"], "exact_match": True},
            "severity": "critical",
            "description": "the mart's columns are its contract",
        },
        "result": {
            "observed_value": ["buyer_count", "orders", "promo_id"],
            "details": {"mismatched": {"unexpected": ["buyer_count"], "missing": []}},
        },
        "exception_info": {"raised_exception": False},
    }
    found = summary.summarize({"fact_promo_usage": [result]}, lambda name: f"marts.{name}")
    [cause] = found["failures"]
    assert cause["observed_value"] == "columns the suite does not list: buyer_count"
    assert root_causes.what_to_fix([cause]) == (
        "The tables' columns differ from their suites' column sets (the contract): fix the model or the suite"
    )
    assert root_causes.what_to_fix([cause, failure("stg_postgres__orders")]).startswith("Fix the source rows")


def _query_check(suite, description, keys=(), error=None):
    """A query check's failure (no column), as the summary gives it."""
    found = failure(suite, expectation="unexpected_rows_expectation", column=None, keys=keys, description=description)
    return {**found, "error": error} if error else found


def test_a_check_that_could_not_run_and_another_ones_rows_are_two_causes():
    """Review: a query check that errored in staging swallowed a downstream reconciliation's 40 rows (one cause, "fix
    the model or suite, not the data"), and a warning's rows swallowed a critical check that errored (its error shown
    nowhere): both are query checks (no column), and a check without rows 'overlapped' any other."""
    errored = _query_check(
        "stg_postgres__orders", "every order's promo exists", error='column "promo_id" does not exist'
    )
    rows = _query_check("fact_orders", "order_total = order_cost + shipping_cost - discount", keys=("order_id=o1",))
    causes = root_causes.group([errored, rows], MODELS)
    assert [(c["table"], bool(c.get("error"))) for c in causes] == [
        ("staging.stg_postgres__orders", True),
        ("marts.fact_orders", False),
    ]
    warned = {
        **_query_check("stg_postgres__orders", "no order leaves raw", keys=("order_id=o2",)),
        "severity": "warning",
    }
    broken = _query_check(
        "fact_orders", "every order's user is in dim_users", error='relation "dim_userz" does not exist'
    )
    causes = root_causes.group([warned, broken], MODELS)
    assert sorted((c["table"], c["severity"], bool(c.get("error"))) for c in causes) == [
        ("marts.fact_orders", "critical", True),
        ("staging.stg_postgres__orders", "warning", False),
    ]
    # Two different query checks with rows are two problems; one check failing in two models with the same rows, one.
    other = _query_check("fact_orders", "every order's user is in dim_users", keys=("order_id=o1",))
    assert len(root_causes.group([rows, other], MODELS)) == 2
    same = _query_check("int_orders", "order_total = order_cost + shipping_cost - discount", keys=("order_id=o1",))
    assert len(root_causes.group([rows, same], MODELS)) == 1


def test_a_check_that_could_not_run_counts_one_severity_up_not_as_a_pass():
    """Review: a note whose query failed was counted as passed (the digest's "checks passed") and listed by its
    description only; a note that ran and found too little history stays a note. Developer's trial: a warning whose
    column was misspelt published every day behind a 🟡, checking nothing: it blocks, as a critical check does."""
    from greenery.checks import summary

    def note(raised: bool, severity: str = "info") -> dict:
        return {
            "success": False,
            "expectation_config": {
                "type": "unexpected_rows_expectation",
                "kwargs": {"unexpected_rows_query": "select 1"},
                "severity": severity,
                "description": "too little history for the anomaly checks",
            },
            "result": {} if raised else {"observed_value": 1, "details": {"unexpected_rows": [{"days": 3}]}},
            "exception_info": {
                "raised_exception": raised,
                "exception_message": 'column "nope" does not exist' if raised else None,
            },
        }

    found = summary.summarize({"int_source_volumes_daily": [note(raised=True), note(raised=False)]}, "x.{}".format)
    [errored] = found["failures"]
    assert errored["severity"] == "warning" and "nope" in errored["error"]
    assert found["failed_warning"] == 1 and not found["blocking"]
    assert [n["severity"] for n in found["notes"]] == ["info"]
    warned = summary.summarize({"int_orders": [note(raised=False, severity="warning")]}, "x.{}".format)
    assert warned["failed_warning"] == 1 and not warned["blocking"]  # a warning that ran stays one
    broken = summary.summarize({"int_orders": [note(raised=True, severity="warning")]}, "x.{}".format)
    [errored] = broken["failures"]
    assert errored["severity"] == "critical" and broken["failed_critical"] == 1 and broken["blocking"]
    # Review: a warning the database could not answer this time (a statement timeout) is no broken suite.
    timed_out = note(raised=True, severity="warning")
    timed_out["exception_info"]["exception_message"] = (
        "(psycopg.errors.QueryCanceled) canceling statement due to statement timeout"
    )
    weather = summary.summarize({"int_orders": [timed_out]}, "x.{}".format)
    assert [f["severity"] for f in weather["failures"]] == ["warning"] and not weather["blocking"]


def test_a_root_whose_rows_could_not_be_read_carries_why():
    reason = "OperationalError: the connection is closed"
    [root] = root_causes.group([failure("stg_postgres__orders", keys=(), detail_error=reason)], MODELS)
    assert root["keys"] == [] and root["detail_error"] == reason


def test_a_key_repeated_by_a_models_join_is_told_to_fix_the_model_not_only_the_source():
    """Developer's trial: a mart's union repeated promo keys; staging passed every check, and the page said "Fix the
    source rows named above", which were right. A staging key repeated is raw's; a mart's with nothing failing
    upstream is likely its own SQL."""
    mart = {**failure("fact_orders", keys=("order_id=o1",)), "expectation": "expect_column_values_to_be_unique"}
    staged = {
        **failure("stg_postgres__orders", keys=("order_id=o1",)),
        "expectation": "expect_column_values_to_be_unique",
    }
    assert root_causes.what_to_fix(root_causes.group([mart], MODELS)).startswith(
        "Fix the model of each table named above (its key repeats where the tables it reads pass their checks"
    )
    assert root_causes.what_to_fix(root_causes.group([staged], MODELS)) == "Fix the source rows named above"
    both = root_causes.group([staged, mart], MODELS)  # the mart's follows from staging's: raw first
    assert root_causes.what_to_fix(both) == "Fix the source rows named above"


def test_a_new_key_failing_downstream_only_is_news_to_the_repeat_check_not_a_repeat_of_the_upstream_entry():
    """Review (on-call paths): not_null(order_id) failing on key A in staging and on A and B in int_orders is one entry
    (A's), whose signature was yesterday's staging-only one: the alert was held back as a repeat, B unheard of. The
    signature holds what each table downstream found; the same findings again are a repeat (the control)."""
    from greenery.alerts import suppression

    def signatures(*found: list[str]) -> list[str]:
        failures = [
            failure(suite, "expect_column_values_to_not_be_null", keys=tuple(keys), severity="warning")
            for suite, keys in zip(("stg_postgres__orders", "int_orders"), found, strict=False)
        ]
        return suppression.signatures({"root_causes": root_causes.group(failures, MODELS)})

    yesterday = signatures(["A"])
    today = signatures(["A"], ["A", "B"])  # B, int_orders' own: an entry of its own (the next test)
    assert len(today) == 2 and not set(today) <= set(yesterday)
    assert signatures(["A"], ["A", "B"]) == today  # the same again: a repeat
    [today] = signatures(["A"], ["A"])  # A alone downstream: one entry, folded
    assert today not in yesterday  # what int_orders found is in its signature
    [root] = root_causes.group([failure("int_orders", keys=("A",)), failure("fact_orders", keys=("A",))], MODELS)
    found = [{"table": "marts.fact_orders", "unexpected_count": 1, "keys": [{"key": "A", "count": 1}]}]
    assert root["also_found"] == found  # the published table, not the build's

    # Diff review: a sample of 5 of more rows (9) is whichever rows the database returned first, which changes from
    # run to run: it does not change the signature (the root's own sample is signed by the same rule).
    def sampled(keys: tuple[str, ...]) -> list[str]:
        failures = [
            failure("stg_postgres__orders", "expect_column_values_to_not_be_null", keys=("A",), severity="warning"),
            failure("int_orders", "expect_column_values_to_not_be_null", keys=keys, severity="warning"),
        ]
        failures[1]["unexpected_count"] = 9
        return suppression.signatures({"root_causes": root_causes.group(failures, MODELS)})

    assert sampled(("A", "B", "C", "D", "E")) == sampled(("A", "C", "D", "E", "F"))


def test_a_backfills_critical_root_cause_signs_without_its_downstream_findings_which_differ_by_day():
    """CI: with the downstream findings in the signature, the README's backfill paged the same duplicated order once
    per day (its daily tables' counts differ by day). A backfill's repeat of a critical root cause is compared on the
    root alone; a warning's repeat keeps them (a new key downstream is news)."""
    from greenery.alerts import suppression

    def summary(downstream_rows: int) -> dict:
        failures = [failure("stg_postgres__orders"), {**failure("int_orders"), "unexpected_count": downstream_rows}]
        return {"root_causes": root_causes.group(failures, MODELS)}

    assert suppression.critical_signatures(summary(2)) == suppression.critical_signatures(summary(7))
    assert suppression.signatures(summary(2)) != suppression.signatures(summary(7))
    # What the first day's alert is recorded with holds what the next day compares (alerts_sent: containment).
    assert set(suppression.critical_signatures(summary(7))) <= set(suppression.recorded(summary(2)))


def test_a_key_only_a_downstream_table_has_is_its_own_root_cause_named_in_the_alert_and_news_to_a_backfill():
    """Review (on-call loop): raw duplicates order A (staging and fact_orders fail on it) and fact_orders' join also
    repeats order B. Folded into staging's entry, B was named nowhere (the alert said "keys: A x2"), the next step
    was "fix the source rows" (B's are right) and a backfill held the day back as a repeat of A's page. Folded only
    when the downstream table's keys are all the upstream's, or the upstream's sample is a part of its rows."""
    from greenery.alerts import messages, suppression

    def summary(failures: list[dict], run_id: str) -> dict:
        causes = root_causes.group(failures, MODELS)
        links = {"run": "http://x/dags/d/runs/r", "quality": "http://x/data-quality/?run_id=r"}
        return {
            "dag_id": "greenery_daily",
            "run_id": run_id,
            "logical_date": "2021-02-12",
            "evaluated": 300,
            "failed_critical": len(failures),
            "failed_warning": 0,
            "blocking": True,
            "root_causes": causes,
            "failures": failures,
            "published": False,
            "serving_run": "2021-02-10",
            "links": links,
        }

    day1 = summary([failure("stg_postgres__orders", keys=("A", "A")), failure("fact_orders", keys=("A", "A"))], "b1")
    assert [c["table"] for c in day1["root_causes"]] == ["staging.stg_postgres__orders"]  # the control: folded
    day2 = summary(
        [failure("stg_postgres__orders", keys=("A", "A")), failure("fact_orders", keys=("A", "A", "B", "B"))], "b2"
    )
    staging, mart = day2["root_causes"]
    assert (staging["table"], staging["keys"], staging["also_fails_in"]) == (
        "staging.stg_postgres__orders",
        [{"key": "A", "count": 2}],
        ["marts.fact_orders"],  # A there is the duplicate's
    )
    assert (mart["table"], mart["keys"], mart["unexpected_count"], mart["downstream_of"]) == (
        "marts.fact_orders",
        [{"key": "B", "count": 2}],  # its own only (diff review: with A, its signature moved with A's days)
        2,
        [],  # not "it may follow from that": B does not
    )
    assert "`B`" in str(messages.build_alert(day2))  # validate's verdict writes the same entries (no Airflow here)
    assert not set(suppression.critical_signatures(day2)) <= set(suppression.recorded(day1))  # a backfill pages it
    # The next day the mart's window no longer holds A: B's entry is the same, a repeat a backfill holds back.
    day3 = summary([failure("stg_postgres__orders", keys=("A", "A")), failure("fact_orders", keys=("B", "B"))], "b3")
    assert set(suppression.critical_signatures(day3)) <= set(suppression.recorded(day2))

    # Staging's sample a part of its rows (2 of 40): B may be one of the others, and is folded as before.
    partial = failure("stg_postgres__orders", keys=("A", "A"))
    [root] = root_causes.group([{**partial, "unexpected_count": 40}, failure("fact_orders", keys=("A", "B"))], MODELS)
    assert root["also_fails_in"] == ["marts.fact_orders"]
