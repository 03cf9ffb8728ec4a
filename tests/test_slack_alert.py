"""Slack alert payloads and their delivery through real Airflow connections to a local fake Slack."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from slack_server import API_TOKEN, WEBHOOK_PATH, WEBHOOK_SECRET, conn_env_var

from greenery.alerts import messages
from greenery.alerts.delivery import SlackDeliveryError, send
from greenery.alerts.digest_message import build_summary_message
from greenery.alerts.messages import build_alert

LOG_URL = "http://localhost:8080/dags/greenery_daily/runs/scheduled__2021-02-12T00:00:00+00:00/tasks/validate?try=1"
DOCS_URL = "file:///opt/airflow/gx/uncommitted/data_docs/local_site/index.html"
CLEAR_CMD = "airflow tasks clear greenery_daily -s 2021-02-12 -e 2021-02-12 -y"

ORDERS_UNIQUE = {
    "suite": "stg_postgres__orders",
    "table": "staging.stg_postgres__orders",
    "column": "order_id",
    "expectation": "expect_column_values_to_be_unique",
    "severity": "critical",
    "description": "order_id is the primary key",
    "observed_value": None,
    "unexpected_count": 2,
    "sample_keys": ["8329a65b-6b6f-4a38-9ab6-b0a2a9b0b8c1", "8329a65b-6b6f-4a38-9ab6-b0a2a9b0b8c1"],
    "error": None,
}
PROMO_WARNING = {
    "suite": "stg_postgres__promos",
    "table": "staging.stg_postgres__promos",
    "column": "discount",
    "expectation": "expect_column_values_to_be_between",
    "severity": "warning",
    "description": None,
    "observed_value": None,
    "unexpected_count": 1,
    "sample_keys": [],
    "error": None,
}
ROWCOUNT_WARNING = {
    "suite": "fact_orders",
    "table": "marts.fact_orders",
    "column": None,
    "expectation": "expect_table_row_count_to_be_between",
    "severity": "warning",
    "description": "daily volume within the usual range",
    "observed_value": 12,
    "unexpected_count": None,
    "sample_keys": [],
    "error": None,
}
SUMMARY = {
    "dag_id": "greenery_daily",
    "run_id": "scheduled__2021-02-12T00:00:00+00:00",
    "logical_date": "2021-02-12",
    "evaluated": 240,
    "failed_critical": 1,
    "failed_warning": 2,
    "blocking": True,
    "suites": [
        {
            "suite": "stg_postgres__orders",
            "table": "staging.stg_postgres__orders",
            "evaluated": 14,
            "failed_critical": 1,
            "failed_warning": 0,
        },
        {
            "suite": "stg_postgres__promos",
            "table": "staging.stg_postgres__promos",
            "evaluated": 6,
            "failed_critical": 0,
            "failed_warning": 1,
        },
        {
            "suite": "fact_orders",
            "table": "marts.fact_orders",
            "evaluated": 9,
            "failed_critical": 0,
            "failed_warning": 1,
        },
        {"suite": "dim_users", "table": "marts.dim_users", "evaluated": 11, "failed_critical": 0, "failed_warning": 0},
    ],
    # warnings first on purpose: the alert must put critical failures first
    "failures": [PROMO_WARNING, ROWCOUNT_WARNING, ORDERS_UNIQUE],
    "data_docs_url": DOCS_URL,
}


def summary(**changes):
    s = copy.deepcopy(SUMMARY)
    s.update(changes)
    return s


def failure(i: int, severity: str = "critical") -> dict:
    return {**ORDERS_UNIQUE, "column": f"col_{i}", "severity": severity, "sample_keys": [f"key-{i}"]}


def texts(payload: dict) -> list[str]:
    """Every text a reader can see: the fallback text and all block texts."""
    out = [payload["text"]]
    for block in payload["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [
            e["text"]["text"] if isinstance(e["text"], dict) else e["text"]
            for e in block.get("elements", [])
            if "text" in e
        ]
        out += [f["text"] for f in block.get("fields", [])]
    return out


def visible(payload: dict) -> str:
    return "\n".join(texts(payload))


def failure_blocks(payload: dict) -> list[dict]:
    return [b for b in payload["blocks"] if b.get("block_id", "").startswith("cause-")]


def buttons(payload: dict) -> dict[str, str]:
    return {e["action_id"]: e["url"] for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"]}


@pytest.fixture(scope="module", autouse=True)
def _warm_imports():
    """Airflow's SDK costs ~3 s to import once per process; keep it out of the per-test timings."""
    import airflow.providers.slack.hooks.slack
    import airflow.providers.slack.hooks.slack_webhook
    import airflow.sdk  # noqa: F401


@pytest.fixture
def webhook_conn(slack_alerts_webhook):
    return "slack_alerts"


@pytest.fixture
def api_conn(slack_server, monkeypatch):
    monkeypatch.setenv(conn_env_var("slack_api"), slack_server.api_conn_json())
    return "slack_api"


# --- payload content ---------------------------------------------------------------------------------------


def test_blocking_alert_names_the_failure_and_is_delivered_through_the_webhook(slack_server, webhook_conn):
    payload = build_alert(SUMMARY, log_url=LOG_URL, docs_url=None)

    header = payload["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "🔴 greenery_daily: data checks failed"
    body = visible(payload)
    for expected in (
        "greenery_daily",
        "2021-02-12",
        "scheduled__2021-02-12T00:00:00+00:00",
        "*Checks evaluated:* 240 · *failed critical:* 1 · *failed warning:* 2",
        "`staging.stg_postgres__orders`",
        "`expect_column_values_to_be_unique` on `order_id` — order_id is the primary key",
        "unexpected: *2*",
        "keys: `8329a65b-6b6f-4a38-9ab6-b0a2a9b0b8c1` ×2",  # each key once, with how often it was seen
        "Fix the source rows named above, then clear the whole run",
    ):
        assert expected in body, expected
    # Links that open are buttons (http only: a file:// Data Docs path is no link at all).
    assert buttons(payload) == {"open-log": LOG_URL}
    assert "unexpected: *1*" in body  # the promo warning
    assert "observed: `12`" in body  # the row count warning

    # critical first, then the warnings in their original order
    failures = failure_blocks(payload)
    assert [b["text"]["text"].split("\n")[0][:1] for b in failures] == ["🔴", "🟡", "🟡"]
    assert "order_id" in failures[0]["text"]["text"]
    assert "discount" in failures[1]["text"]["text"]
    assert "expect_column_values_to_be_unique" in payload["text"]
    assert "… and" not in body

    send(payload, webhook_conn)

    [request] = slack_server.requests
    assert request.path.endswith(WEBHOOK_SECRET)
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.body == payload  # the real JSON payload, blocks included, as Slack would get it


def test_warning_only_alert_uses_the_warning_header():
    payload = build_alert(
        summary(blocking=False, failed_critical=0, failures=[PROMO_WARNING, ROWCOUNT_WARNING]),
        log_url=None,
        docs_url=None,
    )
    assert payload["blocks"][0]["text"]["text"] == "🟡 greenery_daily: data check warnings"
    # The notification's text: counts a phone shows read as a sentence ("0 warning of 240" read as a typo).
    assert payload["text"].startswith("🟡 greenery_daily: data check warnings — 0 critical and 2 warning failures of")
    assert "🔴" not in visible(payload)
    assert "Task log" not in visible(payload)  # no log link when none is given


@pytest.mark.parametrize(
    "changes, header",
    [
        ({}, "🔴 greenery_daily: data checks failed"),
        (
            {"blocking": False, "failed_critical": 0, "failures": [], "failed_warning": 0, "quarantined": {"m": 3}},
            "🟡 greenery_daily: 3 rows quarantined",
        ),
        (
            {"blocking": False, "failed_critical": 0, "failures": [], "failed_warning": 0, "quarantined": {"m": 1}},
            "🟡 greenery_daily: 1 row quarantined",
        ),
        (
            {"blocking": False, "failed_critical": 0, "failed_warning": 1, "quarantined": {"m": 2, "n": 1}},
            "🟡 greenery_daily: data check warnings and 3 rows quarantined",
        ),
        (
            {"blocking": False, "failed_critical": 0, "failures": [], "failed_warning": 0, "quarantined": {}},
            "🟢 greenery_daily: all data checks passed",
        ),
    ],
    ids=["critical", "quarantine only", "one row quarantined", "warnings and quarantine", "nothing"],
)
def test_the_header_names_the_worst_thing_in_the_alert(changes, header):
    """Finding 7: an alert that only reported quarantined rows was headed "all data checks passed"."""
    base = summary()
    if "failures" not in changes and changes:
        changes = {**changes, "failures": [{**f, "severity": "warning"} for f in base["failures"]]}
    payload = build_alert({**base, **changes}, log_url=None, docs_url=None)
    assert payload["blocks"][0]["text"]["text"] == header


def test_links_only_when_given_and_docs_argument_wins():
    payload = build_alert(summary(data_docs_url=None), log_url=None, docs_url="https://docs.example.com/gx/index.html")
    assert buttons(payload) == {"open-docs": "https://docs.example.com/gx/index.html"}

    payload = build_alert(summary(data_docs_url=None), log_url=None, docs_url=None)
    assert buttons(payload) == {}
    assert "clear the whole run" in visible(payload)  # what to do is always there


def test_every_link_of_the_run_is_a_button_and_the_run_is_linked_in_the_advice():
    base = "http://airflow.internal:29180"
    links = {
        "run": f"{base}/dags/greenery_daily/runs/manual__x",
        "log": f"{base}/dags/greenery_daily/runs/manual__x/tasks/validate",
        "quality": f"{base}/data-quality/?run_id=manual__x",
        "docs": f"{base}/data-quality/docs/",
        "other": "javascript:alert(1)",
    }
    payload = build_alert(summary(links=links, data_docs_url=None))
    assert buttons(payload) == {f"open-{k}": v for k, v in links.items() if k != "other"}
    assert f"<{links['run']}|the run> → *Clear* (shift+C) → *Clear existing tasks*" in visible(payload)
    assert "javascript" not in json.dumps(payload)


def test_many_failures_fit_slack_limits_with_an_and_more_line():
    failures = [failure(i, "warning") for i in range(150)] + [failure(i) for i in range(150, 200)]
    payload = build_alert(
        summary(failures=failures, failed_critical=50, failed_warning=150), log_url=LOG_URL, docs_url=DOCS_URL
    )

    blocks = payload["blocks"]
    assert len(blocks) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")
    assert len(blocks[0]["text"]["text"]) <= 150
    assert len(payload["text"]) <= 3000
    shown = failure_blocks(payload)
    assert 30 <= len(shown) < 200
    # the 50 critical ones come first
    assert all(b["text"]["text"].startswith("🔴") for b in shown)
    more = re.findall(
        r"… and (\d+) more root causes, left out to fit Slack \(see the Data quality view\)", visible(payload)
    )
    assert more == [str(200 - len(shown))]
    # the links and the rerun instructions survive the cut
    assert blocks[-1]["type"] == "actions" and "clear the whole run" in blocks[-2]["text"]["text"]
    assert len({b.get("block_id") for b in blocks if "block_id" in b}) == len([b for b in blocks if "block_id" in b])


@pytest.mark.parametrize("n", [10, 45])
def test_a_large_incident_fits_slacks_total_text_limit_and_counts_every_root_cause(n):
    """Review: 10 root causes with compound sample keys made 12k characters of blocks, 45 made 49k; Slack refuses
    about 13k (msg_blocks_too_long) and then nobody is paged. The last causes' detail is left out, counted, with a
    link to the Data quality view."""
    quality = "http://airflow.example/data-quality/runs/scheduled__2021-02-12"
    keys = [{"key": f"{i}|" + "order-8329a65b-6b6f-4a38|" * 6, "count": 2} for i in range(7)]
    also = [f"marts.t{j}_{'x' * 60}" for j in range(10)]
    cause = {**ORDERS_UNIQUE, "description": "d" * 300, "sources": ["raw.orders"], "keys": keys, "also_fails_in": also}
    causes = [{**cause, "column": f"col_{i}"} for i in range(n)]
    payload = build_alert(summary(root_causes=causes, links={"quality": quality}), log_url=LOG_URL, docs_url=None)

    assert len("".join(texts(payload)[1:])) <= 12_000  # every text of the blocks, the fallback text aside
    assert len(json.dumps(payload["blocks"], ensure_ascii=False)) < 13_000  # and with the blocks' structure
    shown = failure_blocks(payload)
    [more] = re.findall(r"… and (\d+) more root causes, left out to fit Slack \(see the <([^|]+)\|", visible(payload))
    assert len(shown) + int(more[0]) == n and more[1] == quality and len(shown) >= 3
    assert f"*root causes:* {n}" in visible(payload)
    assert payload["blocks"][-1]["type"] == "actions" and "next-steps" in [b.get("block_id") for b in payload["blocks"]]


def test_huge_values_are_cut_to_slack_limits_without_breaking_escapes():
    long_error = "bad & worse <> " * 2000
    f = {**ORDERS_UNIQUE, "error": long_error, "description": "d" * 5000, "sample_keys": [f"k{i}" for i in range(50)]}
    payload = build_alert(summary(dag_id="greenery_" + "x" * 300, failures=[f] * 3), log_url=None, docs_url=None)

    assert len(payload["blocks"][0]["text"]["text"]) <= 150
    assert len(payload["text"]) <= 3000
    for block in failure_blocks(payload):
        text = block["text"]["text"]
        assert len(text) <= 3000
        assert "&amp; worse &lt;&gt;" in text
        assert not re.search(r"&(?!amp;|lt;|gt;)", text), "an escape was cut in half"
        assert text.count("```") % 2 == 0
        assert "`k4`" in text and "`k5`" not in text and "(+45 more)" in text  # at most 5 sample keys


def test_values_are_escaped_for_mrkdwn():
    f = {**ORDERS_UNIQUE, "description": "<!channel> a < b & c > d", "sample_keys": ["<@U123>"]}
    body = visible(build_alert(summary(failures=[f]), log_url=None, docs_url=None))
    assert "&lt;!channel&gt; a &lt; b &amp; c &gt; d" in body
    assert "`&lt;@U123&gt;`" in body
    assert "<!channel>" not in body and "<@U123>" not in body


def test_the_source_alert_says_which_run_readers_still_see_or_that_none_was_ever_published():
    """User trial: a warehouse that never published was told "still serving the previous run"."""

    def said(serving) -> str:
        problems = [{"table": "raw.addresses", "problem": "missing", "detail": "raw.addresses does not exist"}]
        alert = messages.build_source_alert(
            dag_id="greenery_daily",
            logical_date="2021-02-12",
            run_id="r",
            problems=problems,
            log_url=None,
            serving=serving,
        )
        return visible(alert)

    assert "Published marts are untouched (still serving the run of 2021-02-11)." in said({"serving_run": "2021-02-11"})
    never = said({"serving_run": None})
    assert "Nothing was ever published to this warehouse" in never and "untouched" not in never
    assert "Published marts are untouched (still serving the previous run)." in said(None)  # not known: as before


def test_the_source_alert_asks_for_a_load_only_where_a_load_is_the_fix():
    """User trial: a column renamed upstream was paged "Load the source", and the load then refused the table: a load
    brings rows and tables, not a column's name or type, nor a grant."""
    from greenery.sources.freshness import SourceProblem, first_step

    def step(*kinds: str) -> str:
        problems = [SourceProblem(f"t{i}", kind, "detail") for i, kind in enumerate(kinds)]
        alert = messages.build_source_alert(
            dag_id="greenery_daily",
            logical_date="2021-02-12",
            run_id="r",
            problems=[vars(p) for p in problems],
            log_url=None,
            first_step=first_step(problems),
        )
        return visible(alert).split("*What to do*")[1]

    for late in (["stale"], ["missing", "empty"]):
        assert step(*late).strip().startswith("Load the source, then clear the whole run")
    for unloadable in (["columns"], ["unreadable"], ["columns", "unreadable"]):
        said = step(*unloadable)
        assert "Fix the raw tables as the lines above say, then clear" in said and "load" not in said.lower(), said
    assert "Fix the raw tables as the lines above say, load the source, then clear" in step("columns", "stale")


def test_every_alert_escapes_its_fallback_text_too():
    """Slack reads a message's top-level text as mrkdwn too (it is what notifications show): the source alert and the
    task-failure page put error text there unescaped, so `<!channel>` in an exception pinged everyone."""
    hostile = "<!channel> <https://evil.example|click> & more"
    payloads = [
        messages.build_source_alert(
            dag_id="greenery_daily",
            logical_date="2021-02-12",
            run_id="r",
            problems=[{"table": "raw.events", "problem": "stale", "detail": hostile}],
            log_url=None,
        ),
        messages.build_task_failure_alert(
            dag_id="greenery_daily",
            task_id="publish",
            logical_date="2021-02-12",
            run_id="r",
            error=hostile,
            log_url=None,
        ),
        build_alert(summary(failures=[{**ORDERS_UNIQUE, "description": hostile}]), log_url=None, docs_url=None),
    ]
    for payload in payloads:
        assert "<!channel>" not in payload["text"] and "<https://evil" not in payload["text"], payload["text"]
    for payload in payloads[:2]:  # both carry the error itself
        assert "&lt;!channel&gt;" in payload["text"] and "&amp; more" in payload["text"]


def test_bidi_controls_from_the_data_are_shown_escaped_not_obeyed():
    """Review: a right-to-left override in a sample key reached Slack as is: the key showed reversed, and on-call
    read another key than the data holds. Every bidi control from the data is shown as its escape."""
    controls = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"
    key = "order-\u202e1234-5678"  # shows as "order-8765-4321" when obeyed
    f = {**ORDERS_UNIQUE, "sample_keys": [key], "description": "x" + controls}
    payloads = [
        build_alert(summary(dag_id="greenery\u202edaily", failures=[f]), log_url=None, docs_url=None),
        messages.build_source_alert(
            dag_id="greenery\u2067daily",
            logical_date="2021-02-12",
            run_id="r",
            problems=[{"table": "raw.events", "problem": "stale", "detail": key}],
            log_url=None,
        ),
        messages.build_task_failure_alert(
            dag_id="greenery_daily", task_id="publish", logical_date="2021-02-12", run_id="r", error=key, log_url=None
        ),
    ]
    for payload in payloads:
        shown = json.dumps(payload, ensure_ascii=False)
        assert not set(controls) & set(shown), [hex(ord(c)) for c in set(controls) & set(shown)]
        assert "order-\\\\u202e1234-5678" in shown  # the escape, in JSON
    assert "`order-\\u202e1234-5678`" in visible(payloads[0])
    assert "x\\u202a\\u202b" in visible(payloads[0]) and payloads[0]["blocks"][0]["text"]["text"].startswith(
        "🔴 greenery\\u202edaily"
    )


def test_credentials_in_error_messages_are_redacted():
    error = (
        "connection to server failed: postgresql://etl:s3cret@db:5432/x; also posting to "
        "https://hooks.slack.com/services/T0001/B0001/AbCdEfGhIjKlMnOpQrStUvWx with xoxb-1234-5678-abcdefSECRET "
        "and host=db password=hunter2 user=etl"
    )
    f = {**ORDERS_UNIQUE, "error": error, "description": "see https://admin:pa55word@grafana.example.com/d/1"}
    payload = build_alert(summary(failures=[f]), log_url=None, docs_url=None)
    raw = json.dumps(payload, ensure_ascii=False)

    for secret in ("s3cret", "AbCdEfGhIjKlMnOpQrStUvWx", "T0001/B0001", "abcdefSECRET", "hunter2", "pa55word"):
        assert secret not in raw, secret
    body = visible(payload)
    assert "postgresql://***@db:5432/x" in body  # still says where it failed
    assert "hooks.slack.com/services/***" in body
    assert "could not be evaluated" in body


def test_a_failure_whose_rows_could_not_be_read_says_why_in_the_alert_and_the_red_task():
    """Review: pass 2 could not read a failure's rows (its query failed, the connection was lost) and the page
    showed the count with no keys and not a word why."""
    from greenery.tasks.validate import verdict

    reason = "OperationalError: consuming input failed: server closed the connection unexpectedly"
    f = {**ORDERS_UNIQUE, "sample_keys": [], "detail_error": reason}
    body = visible(build_alert(summary(failures=[f]), log_url=None, docs_url=None))
    assert f"unexpected: *2* · keys could not be read: `{reason}`" in body
    cause = {**f, "sources": ["raw.orders"], "keys": [], "also_fails_in": []}
    [_, line, _] = verdict({"root_causes": [cause]}).splitlines()
    assert line == (
        "- staging.stg_postgres__orders (from raw.orders): expect_column_values_to_be_unique(order_id): keys could not"
        f" be read: {reason}"
    )


def test_publish_status_and_quarantine_counts_appear():
    payload = build_alert(
        summary(
            published=False,
            serving_run="2021-02-11",
            quarantined={"stg_postgres__orders": 1, "stg_postgres__events": 1234},
        ),
        log_url=None,
        docs_url=None,
    )
    body = visible(payload)
    assert "Marts not published; still serving the run of 2021-02-11" in body
    assert "*Quarantined rows* (1,235): `stg_postgres__orders`: 1, `stg_postgres__events`: 1,234" in body
    assert "still serving the run of 2021-02-11" in payload["text"]
    # With the rules the rows broke (stop 73's trial: counted by table only), most rows first, four at most.
    # In the order jsonb gives them back (shortest key first), shown most rows first (review).
    rules = {"stg_postgres__events": {f"rule_{n}": 1229 + n for n in range(6)}, "stg_postgres__orders": {"`x`": 1}}
    quarantined = {"stg_postgres__orders": 1, "stg_postgres__events": 1234}
    body = visible(build_alert(summary(quarantined=quarantined, quarantined_rules=rules)))
    assert (
        "`stg_postgres__orders`: 1 (`'x'` 1), `stg_postgres__events`: 1,234 (`rule_5` 1,234, `rule_4` 1,233,"
        " `rule_3` 1,232, `rule_2` 1,231, … 2 more)"
    ) in body, body

    body = visible(build_alert(summary(published=False, serving_run=None), log_url=None, docs_url=None))
    assert "Marts not published; nothing published yet" in body
    assert "Quarantined" not in body

    body = visible(build_alert(summary(quarantined={}), log_url=None, docs_url=None))
    assert "not published" not in body and "Quarantined" not in body

    # Warnings only, and nothing published (publish marked success by hand): the next step says so (review: it said
    # "Nothing blocks: the marts were published" under "Marts not published").
    warned = summary(blocking=False, failed_critical=0, failures=[PROMO_WARNING], published=False, serving_run="x")
    body = visible(build_alert(warned, log_url=None, docs_url=None))
    assert "Marts not published; still serving the run of x" in body and "the marts were published" not in body
    assert "Nothing blocks, yet this run published nothing" in body and "clear the whole run" in body
    body = visible(build_alert({**warned, "published": True}, log_url=None, docs_url=None))
    assert "Nothing blocks: the marts were published." in body


def test_summary_message_reports_rows_checks_and_repeat_rate():
    stats = {
        "dag_id": "greenery_daily",
        "logical_date": "2021-02-12",
        "rows": {"marts.fact_orders": 361, "marts.dim_users": 130, "marts.fact_page_views": 20001},
        "checks_passed": 240,
        "checks_evaluated": 240,
        "repeat_rate": 0.7984,
        "quarantined": {"stg_postgres__orders": 2},
    }
    payload = build_summary_message(stats)
    assert payload["blocks"][0]["type"] == "header"
    assert payload["blocks"][0]["text"]["text"] == "📊 greenery_daily: state of the data, 2021-02-12"
    body = visible(payload)
    assert "✅ *Data checks:* 240/240 passed" in body
    assert "*Repeat rate:* 79.8%" in body
    rows = body[body.index("*Tables*") :]
    assert rows.index("`marts.dim_users`: 130 rows") < rows.index("`marts.fact_orders`: 361 rows")
    assert "`marts.fact_page_views`: 20,001 rows" in body
    assert "`stg_postgres__orders`: 2" in body
    assert "240/240 checks passed, 3 tables refreshed" in payload["text"]
    assert len(payload["blocks"]) <= 50

    payload = build_summary_message({**stats, "repeat_rate": None, "checks_passed": 238, "quarantined": None})
    body = visible(payload)
    assert "⚠️ *Data checks:* 238/240 passed" in body
    assert "*Repeat rate:* n/a" in body
    assert "Quarantined" not in body


def test_module_import_is_light():
    code = (
        "import sys, greenery.alerts.messages, greenery.alerts.delivery; "
        "print(sorted(m for m in ('airflow', 'slack_sdk', 'great_expectations') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- delivery ----------------------------------------------------------------------------------------------


def test_api_token_connection_posts_to_the_channel(slack_server, api_conn):
    payload = build_alert(SUMMARY, log_url=LOG_URL, docs_url=None)
    send(payload, api_conn, channel="#data-oncall")

    [call] = slack_server.api_calls("chat.postMessage")
    assert call.headers["Authorization"] == f"Bearer {API_TOKEN}"
    assert call.body["channel"] == "#data-oncall"
    assert call.body["text"] == payload["text"]
    assert call.body["blocks"] == payload["blocks"]


def test_api_token_connection_without_channel_is_a_clear_error(slack_server, api_conn):
    with pytest.raises(SlackDeliveryError, match=r"channel is required") as err:
        send({"text": "hi"}, api_conn)
    assert err.value.conn_id == "slack_api"
    assert slack_server.requests == []


def test_webhook_500_raises_promptly_without_retrying_or_leaking_the_url(slack_server, webhook_conn):
    slack_server.respond(500, times=5)
    started = time.monotonic()
    with pytest.raises(SlackDeliveryError) as err:
        send({"text": "hi"}, webhook_conn)
    assert time.monotonic() - started < 2
    assert err.value.status == 500
    message = str(err.value)
    assert "'slack_alerts'" in message and "HTTP 500" in message and "internal_error" in message
    assert WEBHOOK_SECRET not in message and slack_server.webhook_url not in message
    assert len(slack_server.requests) == 1  # slack_sdk did not retry: the Airflow task owns retries


def test_webhook_429_is_not_retried_by_the_client(slack_server, webhook_conn):
    slack_server.respond(429, headers={"Retry-After": "1"}, times=5)
    started = time.monotonic()
    with pytest.raises(SlackDeliveryError, match="HTTP 429") as err:
        send({"text": "hi"}, webhook_conn)
    assert time.monotonic() - started < 1
    assert err.value.status == 429
    assert len(slack_server.requests) == 1


@pytest.mark.parametrize("kind", ["webhook", "api"])
def test_dropped_connection_is_not_retried_by_the_client(slack_server, webhook_conn, api_conn, kind):
    # slack_sdk's default ConnectionErrorRetryHandler would send this request twice
    slack_server.respond(drop=True, times=5)
    conn_id, channel = (webhook_conn, None) if kind == "webhook" else (api_conn, "#data-oncall")
    with pytest.raises(SlackDeliveryError, match="RemoteDisconnected") as err:
        send({"text": "hi"}, conn_id, channel=channel)
    assert err.value.status is None
    assert len(slack_server.requests) == 1


def test_secret_of_the_connection_is_scrubbed_from_the_payload(slack_server, webhook_conn):
    # a local webhook URL is not recognisable as a Slack webhook by pattern; send() still removes it
    f = {**ORDERS_UNIQUE, "error": f"could not reach {slack_server.webhook_url}"}
    send(build_alert(summary(failures=[f]), log_url=None, docs_url=None), webhook_conn)
    [request] = slack_server.requests
    assert WEBHOOK_SECRET not in request.raw.decode()
    assert "could not reach ***" in request.raw.decode()


def test_api_500_and_not_ok_answers_raise(slack_server, api_conn):
    slack_server.respond(500, "upstream exploded", times=3)
    started = time.monotonic()
    with pytest.raises(SlackDeliveryError) as err:
        send({"text": "hi"}, api_conn, channel="#data-oncall")
    assert time.monotonic() - started < 2
    assert err.value.status == 500 and err.value.retryable  # Slack failing: worth another try
    assert "HTTP 500" in str(err.value) and "upstream exploded" in str(err.value)
    assert API_TOKEN not in str(err.value)
    assert len(slack_server.requests) == 1

    slack_server.reset()
    slack_server.respond(200, {"ok": False, "error": "channel_not_found"})
    with pytest.raises(SlackDeliveryError, match="channel_not_found") as err:
        send({"text": "hi"}, api_conn, channel="#nope")
    # Review: configuration errors were retried, delaying the red by the retries' backoff for nothing.
    assert err.value.status == 200 and err.value.retryable is False
    for status, retryable in ((403, False), (404, False), (429, True), (503, True)):
        slack_server.reset()
        slack_server.respond(status, "refused")
        with pytest.raises(SlackDeliveryError) as err:
            send({"text": "hi"}, api_conn, channel="#data-oncall")
        assert (err.value.status, err.value.retryable) == (status, retryable)
    with pytest.raises(SlackDeliveryError, match="a channel is required") as err:
        send({"text": "hi"}, api_conn)
    assert err.value.retryable is False


@pytest.mark.parametrize("kind", ["webhook", "api"])
def test_unreachable_slack_raises(slack_server, monkeypatch, kind):
    if kind == "webhook":
        monkeypatch.setenv(conn_env_var("slack_alerts"), slack_server.webhook_conn_json(slack_server.unreachable_url()))
        conn_id, channel = "slack_alerts", None
    else:
        base = slack_server.unreachable_url("/api/")
        monkeypatch.setenv(conn_env_var("slack_api"), slack_server.api_conn_json(base_url=base))
        conn_id, channel = "slack_api", "#data-oncall"
    started = time.monotonic()
    with pytest.raises(SlackDeliveryError) as err:
        send({"text": "hi"}, conn_id, channel=channel)
    assert time.monotonic() - started < 2
    message = str(err.value)
    assert f"{conn_id!r}" in message and "refused" in message.lower()
    assert err.value.status is None
    assert WEBHOOK_SECRET not in message and API_TOKEN not in message
    assert slack_server.requests == []


def test_unknown_connection_and_wrong_conn_type_raise(monkeypatch):
    monkeypatch.delenv(conn_env_var("slack_missing"), raising=False)
    with pytest.raises(SlackDeliveryError, match="'slack_missing' is not defined") as missing:
        send({"text": "hi"}, "slack_missing")
    assert missing.value.retryable is False  # a configuration error: alert_slack fails without retrying
    # Set, with a brace missing (user trial: it was "not defined" too, as if unset): what Airflow could not parse,
    # without the webhook's secret path.
    monkeypatch.setenv(conn_env_var("slack_broken"), '{"conn_type": "slackwebhook", "password": "' + WEBHOOK_SECRET)
    with pytest.raises(
        SlackDeliveryError, match="AIRFLOW_CONN_SLACK_BROKEN is set, but Airflow could not parse"
    ) as bad:
        send({"text": "hi"}, "slack_broken")
    assert (
        bad.value.retryable is False
        and "JSONDecodeError" in str(bad.value)
        and "conn_type slackwebhook, the webhook URL as its password" in str(bad.value)
    )
    assert WEBHOOK_SECRET not in str(bad.value), str(bad.value)
    monkeypatch.setenv(conn_env_var("slack_http"), json.dumps({"conn_type": "http", "host": "example.com"}))
    with pytest.raises(SlackDeliveryError, match="unsupported conn_type") as wrong:
        send({"text": "hi"}, "slack_http")
    assert wrong.value.retryable is False


# --- what Slack answers that is not "sent": its Web API's errors in a 200, a webhook's redirect or foreign page ---


@pytest.fixture
def page_via(slack_server, monkeypatch):
    """``page_via(kind)``: paging.page, as the failure callbacks call it, with the on-call connection (slack_alerts)
    an API-token ("api") or webhook ("webhook") connection to the fake Slack; returns the waits page() asked for
    between tries (recorded, not slept)."""
    from greenery.tasks import paging

    def use(kind: str) -> list[float]:
        conn = slack_server.api_conn_json() if kind == "api" else slack_server.webhook_conn_json()
        monkeypatch.setenv(conn_env_var("slack_alerts"), conn)
        monkeypatch.setenv("GREENERY_ALERT_CHANNEL", "#data-oncall")
        waits: list[float] = []
        monkeypatch.setattr(paging, "time", types.SimpleNamespace(monotonic=paging.time.monotonic, sleep=waits.append))
        return waits

    return use


@pytest.mark.parametrize(
    ("error", "outcome", "posts", "retryable", "maybe_posted"),
    [
        ("ratelimited", "sent", 2, True, False),
        ("rate_limited", "sent", 2, True, False),
        ("service_unavailable", "sent", 2, True, False),
        ("request_timeout", "sent", 2, True, False),
        ("internal_error", "may have been posted", 1, True, True),
        ("fatal_error", "may have been posted", 1, True, True),
        ("channel_not_found", "not sent", 1, False, False),  # a configuration error: not tried again
    ],
)
def test_slacks_own_errors_in_a_200_answer_are_told_apart_by_their_code(
    slack_server, api_conn, page_via, error, outcome, posts, retryable, maybe_posted
):
    """Review: the Web API answers its errors with HTTP 200 and {"ok": false, "error": code}, and every such answer
    counted as a configuration error: an internal_error or a rate limit paged nobody, and alert_slack failed at once
    saying to correct the connection. Transient codes are tried again; after internal_error and fatal_error Slack
    says the message may have been posted all the same, so it is not posted twice unseen."""
    from greenery.tasks import paging

    slack_server.respond(200, {"ok": False, "error": error})
    with pytest.raises(SlackDeliveryError, match=rf"HTTP 200, response body: .*{error}") as err:
        send({"text": "disk full"}, api_conn, channel="#data-oncall")
    assert (err.value.status, err.value.retryable, err.value.maybe_delivered) == (200, retryable, maybe_posted)
    assert err.value.api_error == error
    assert ("may have been posted all the same" in str(err.value)) == maybe_posted

    slack_server.reset()
    waits = page_via("api")
    slack_server.respond(200, {"ok": False, "error": error})
    assert paging.page({"text": "disk full"}) == outcome
    calls = slack_server.api_calls("chat.postMessage")
    assert len(calls) == posts == len(slack_server.requests)
    assert all(c.body == {"channel": "#data-oncall", "text": "disk full"} for c in calls)
    assert waits == [1.0] * (posts - 1)  # the first backoff, once: the second try was posted


@pytest.mark.parametrize("kind", ["webhook", "api"])
@pytest.mark.parametrize(
    "answer",
    [
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"ok": tr',
        b"HTTP/1.1 2",
    ],
    ids=["its body cut short", "its status line garbled"],
)
def test_a_page_whose_answer_is_cut_short_is_posted_once_and_said_to_be_maybe_posted(
    slack_server, page_via, kind, answer
):
    """Review: Slack read the whole post, then its answer was cut short (IncompleteRead) or garbled (BadStatusLine);
    the page counted as never sent, was posted again twice, and page() still said "not sent"."""
    from greenery.tasks import paging

    waits = page_via(kind)
    slack_server.respond(raw=answer, times=3)
    assert paging.page({"text": "disk full"}) == paging.MAYBE_SENT
    assert len(slack_server.requests) == 1 and waits == []


def test_a_transient_api_error_waits_as_long_as_slack_asked(slack_server, page_via):
    from greenery.tasks import paging

    waits = page_via("api")
    slack_server.respond(200, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "3"})
    assert paging.page({"text": "disk full"}) == paging.SENT
    assert waits == [3.0] and len(slack_server.api_calls("chat.postMessage")) == 2


@pytest.mark.parametrize(("status", "elsewhere"), [(301, False), (302, False), (303, False), (302, True)])
def test_a_webhook_redirect_is_refused_not_followed_as_a_get_without_the_message(
    slack_server, webhook_conn, page_via, status, elsewhere
):
    """Review: urllib followed a 301/302/303 with a GET without the body and reported the page as sent (the fake
    logged POST /services/... then GET /landing). Slack's webhooks never redirect: it is an error naming the status
    and where it pointed (the webhook URL itself masked), and not tried again."""
    from greenery.tasks import paging

    location = slack_server.webhook_url.replace("http://", "https://") if elsewhere else "/landing"
    slack_server.respond(status, "moved", headers={"Location": location})
    with pytest.raises(SlackDeliveryError) as err:
        send({"text": "disk full"}, webhook_conn)
    message = str(err.value)
    assert f"HTTP {status}, a redirect to " in message and "not followed" in message
    assert ("redirect to /landing," in message) == (not elsewhere)
    assert WEBHOOK_SECRET not in message and slack_server.webhook_url not in message
    assert (err.value.status, err.value.retryable, err.value.maybe_delivered) == (status, False, False)
    assert [(r.method, r.path) for r in slack_server.requests] == [("POST", WEBHOOK_PATH)]

    slack_server.reset()
    waits = page_via("webhook")
    slack_server.respond(status, "moved", headers={"Location": location})
    assert paging.page({"text": "disk full"}) == paging.NOT_SENT
    assert [(r.method, r.path) for r in slack_server.requests] == [("POST", WEBHOOK_PATH)] and waits == []


@pytest.mark.parametrize(
    "answer",
    [
        "<html>\n<head><title>Sign in \u2013 corp proxy</title></head>\n<body>\u202e" + "x" * 400 + "</body></html>",
        "",
        "okay",
        '{"ok": false, "error": "invalid_workflow_input"}',
    ],
    ids=["proxy login page", "empty", "not exactly ok", "a workflow trigger's refusal"],
)
def test_a_webhook_answer_that_is_not_slacks_ok_is_not_sent(slack_server, webhook_conn, page_via, answer):
    """Review: a 200 whose body was a proxy's HTML login page counted as sent, and the alert was recorded for
    suppression: the same warnings were held back for a day without ever having reached Slack. A webhook delivers
    with 200 and exactly ``ok``; anything else names the status and the start of what answered, escaped and cut
    (it is untrusted: a line break or a direction control of it stays out of the message)."""
    from greenery.tasks import paging

    slack_server.respond(200, answer)
    with pytest.raises(SlackDeliveryError, match=r"HTTP 200 without Slack's answer 'ok'") as err:
        send({"text": "disk full"}, webhook_conn)
    assert (err.value.status, err.value.retryable, err.value.maybe_delivered) == (200, False, False)
    message = str(err.value)
    assert "\n" not in message and "\u202e" not in message and len(err.value.body) <= 200
    if answer.startswith("<html>"):
        assert "<html>\\n<head><title>Sign in \u2013 corp proxy</title></head>\\n<body>\\u202exxx" in message
        assert err.value.body.endswith("x…") and message.endswith(err.value.body)
    assert len(slack_server.requests) == 1

    slack_server.reset()
    waits = page_via("webhook")
    slack_server.respond(200, answer)
    assert paging.page({"text": "disk full"}) == paging.NOT_SENT
    assert len(slack_server.requests) == 1 and waits == []


@pytest.mark.parametrize("answer", ["ok\n", '{"ok": true}'], ids=["ok and a line break", "a workflow trigger's"])
def test_slacks_ok_is_sent(slack_server, webhook_conn, answer):
    """The check is on what Slack says, not on its whitespace; a workflow trigger URL answers in JSON (review)."""
    slack_server.respond(200, answer)
    assert send({"text": "disk full"}, webhook_conn) is None
    assert len(slack_server.requests) == 1


@pytest.mark.parametrize(
    ("error", "step", "retryable", "maybe_posted"),
    [
        ("ratelimited", "files.getUploadURLExternal", True, False),
        ("internal_error", "files.getUploadURLExternal", True, False),  # nothing shared yet: tried again
        ("internal_error", "files.completeUploadExternal", True, True),  # sharing it: it may be in the channel
        ("channel_not_found", "files.completeUploadExternal", False, False),
    ],
)
def test_an_image_upload_tells_slacks_errors_apart_the_same_way(
    slack_server, api_conn, error, step, retryable, maybe_posted
):
    """The digest's chart goes through the same Web API: a transient error code in a 200 is worth the task's retry,
    and an internal_error is a maybe-posted chart only in the step that shares it."""
    from greenery.alerts.delivery import upload_image

    if step == "files.completeUploadExternal":
        slack_server.respond(200, times=2)  # the upload URL, then the bytes: the defaults
    slack_server.respond(200, {"ok": False, "error": error})
    with pytest.raises(SlackDeliveryError, match=error) as err:
        upload_image(b"\x89PNG", api_conn, "C0FAKE", filename="c.png", title="chart", alt_text="a chart")
    assert slack_server.last.api_method == step
    assert (err.value.retryable, err.value.maybe_delivered) == (retryable, maybe_posted)
    assert err.value.api_error == error


@pytest.mark.db
@pytest.mark.parametrize(
    ("kind", "answer", "raised"),
    [
        ("api", {"ok": False, "error": "service_unavailable"}, "SlackDeliveryError"),
        ("api", {"ok": False, "error": "internal_error"}, "MaybePosted"),
        ("webhook", "<html>proxy login</html>", "AirflowFailException"),
        ("api", {"ok": False, "error": "msg_blocks_too_long"}, "AirflowFailException"),
    ],
)
def test_alert_slack_retries_what_a_retry_can_fix_and_remembers_only_what_was_sent(
    slack_server, warehouse_url, monkeypatch, kind, answer, raised
):
    """alert_slack's delivery (notify.deliver): a transient Slack error goes to Airflow's retries as is (review: it
    failed at once, "retrying cannot fix this: correct the connection"); after an internal_error the task says the
    alert may have been posted; a page that was not Slack's answer fails it without being recorded for suppression,
    so the next try sends the same warning instead of holding it back as a repeat."""
    from airflow.sdk.exceptions import AirflowSkipException

    from greenery import audit, warehouse
    from greenery.tasks import notify

    conn = slack_server.api_conn_json() if kind == "api" else slack_server.webhook_conn_json()
    monkeypatch.setenv(conn_env_var("slack_alerts"), conn)
    monkeypatch.setenv("GREENERY_ALERT_CHANNEL", "#data-oncall")
    monkeypatch.setenv("GREENERY_ALERT_SUPPRESS_HOURS", "24")
    warned = summary(blocking=False, failed_critical=0, failures=[PROMO_WARNING], root_causes=[PROMO_WARNING])
    with warehouse.connect() as conn:  # yesterday's run found it too: a repeat, to hold back once it was sent
        audit.record_validation(conn, {**warned, "run_id": "yesterday", "logical_date": "2021-02-11"}, published=True)
    slack_server.respond(200, answer)
    with pytest.raises(Exception) as err:
        notify.deliver(warned, {"published": True})
    assert type(err.value).__name__ == raised, err.value
    assert ("retrying cannot fix this" in str(err.value)) == (kind == "webhook")  # only the proxy page is a setup error
    # Review: Slack refusing the alert's content said to correct the connection.
    refused_content = "Slack refused the alert's content, not the connection" in str(err.value)
    assert refused_content == ("msg_blocks_too_long" in str(answer)), err.value
    notify.deliver(warned, {"published": True})  # not held back: the first was not recorded as sent
    with pytest.raises(AirflowSkipException, match="already sent"):  # this one was: the same attempt's retry skips
        notify.deliver(warned, {"published": True})
    with pytest.raises(AirflowSkipException, match="suppressed"):  # and another attempt's repeat is held back
        notify.deliver(warned, {"published": True}, attempt=1)
    assert len(slack_server.requests) == 2


def test_a_duplicated_compound_key_is_shown_whole_with_its_copies():
    """The primary-key query of a three-column key reports each duplicated key with its count; on-call must read
    all of it (the count last), not a cut ``cop…``. The key is formatted by the summary, as a real run does."""
    from helpers import duplicated_compound_key

    key = duplicated_compound_key()
    assert key.endswith(", copies=2") and len(key) > 150
    f = {**ORDERS_UNIQUE, "expectation": "unexpected_rows_expectation", "column": None, "sample_keys": [key]}
    body = visible(build_alert(summary(failures=[f]), log_url=None, docs_url=None))
    assert f"`{key}`" in body


@pytest.mark.parametrize("rerun", [None, "greenery run --date 2021-02-12 --end-date 2021-02-14"])
@pytest.mark.parametrize("published", [False, True])
def test_a_task_failure_page_says_whether_the_run_published_and_what_to_clear(published, rerun):
    """Before publish, nothing of the run was published: clear the whole run. After it (the digest, the alert),
    the marts are the run's: clear that task (a whole-run clear would publish and send the digest again). A run of
    `greenery run` (its ``rerun`` command in the links) gives that command first: its UI may not be running (user
    trial: the page said only to clear the run in the UI); after publish, running the day again would publish again."""
    from greenery import links as links_module
    from greenery.alerts import messages

    with contextlib.ExitStack() as stack:
        if rerun:
            stack.enter_context(links_module.rerun_with(rerun))
        links = links_module.for_run("r1", "state_of_the_data")
    assert ("rerun" in links) == bool(rerun) and "rerun" not in links_module.for_run("r1")  # only while it runs
    with links_module.rerun_with("greenery demo"), links_module.rerun_with("greenery run --date 2021-02-12"):
        assert links_module.for_run("r1")["rerun"] == "greenery demo"  # the outer command's: the demo's own database
    payload = messages.build_task_failure_alert(
        dag_id="greenery_daily",
        task_id="state_of_the_data",
        logical_date="2021-02-12",
        run_id="r1",
        error="EmailDeliveryError: 535",
        log_url="http://localhost:8080/log",
        links=links,
        published=published,
    )
    text = json.dumps(payload["blocks"], ensure_ascii=False)
    assert ("The marts were published by this run." in text) == published
    assert ("Nothing was published by this run" in text) == (not published)
    assert ("clear `state_of_the_data` (with its downstream tasks, the Clear dialog's default)" in text) == published
    assert ("then in `greenery ui` (the command's Airflow), clear `state_of_the_data`" in text) == bool(
        published and rerun
    )
    assert ("*Clear existing tasks*" in text) == (not published)
    again = (
        f"then run the day again: `{rerun}` (or <{links['run']}|the run> → *Clear* (shift+C) → *Clear existing tasks*)."
    )
    assert (again in text) == bool(rerun and not published)
    assert ("clear the whole run" in text) == (not published and not rerun)


def test_the_red_tasks_message_says_when_it_lists_only_part_of_the_problems():
    """Review: validate's message (the task's error, its recorded failure, the CLI's cause) listed 5 of 8 critical
    root causes and 3 of each one's keys, and read as complete."""
    from greenery.tasks.validate import verdict

    def cause(n: int, keys: list[tuple[str, int]], unexpected: int) -> dict:
        return {
            "severity": "critical",
            "table": f"staging.t{n}",
            "sources": [],
            "expectation": "expect_column_values_to_be_unique",
            "column": "id",
            "also_fails_in": [],
            "keys": [{"key": k, "count": c} for k, c in keys],
            "unexpected_count": unexpected,
        }

    causes = [cause(0, [("a", 2)], 2), cause(1, [("b", 1), ("c", 1), ("d", 1), ("e", 1)], 40)]
    causes += [cause(n, [("k", 1)], 1) for n in range(2, 8)]
    lines = verdict({"root_causes": causes}).splitlines()
    assert lines[0] == "8 critical problem(s) in the data; nothing was published:"
    assert lines[1] == "- staging.t0: expect_column_values_to_be_unique(id): a x2"  # all of it: nothing more
    assert lines[2] == "- staging.t1: expect_column_values_to_be_unique(id): b, c, d (and 37 more rows)"
    assert lines[6] == "- and 3 more: the task log (FAILED lines) and the Data quality view list all"
    assert len(lines) == 8


def test_the_red_tasks_message_gives_the_command_that_runs_the_day_again_when_a_command_runs_it():
    """User trial: `greenery run`'s terminal printed validate's "clear the whole run (Grid → this run → Clear run)"
    while its page gave the command; no UI need be running. The command's message gives the command, Airflow's the
    Clear; alert_slack's refusal after failed checks likewise."""
    from greenery import links
    from greenery.tasks import notify
    from greenery.tasks.validate import verdict

    causes = {
        "root_causes": [{**ORDERS_UNIQUE, "keys": [{"key": "o1", "count": 2}], "sources": [], "also_fails_in": []}]
    }
    assert verdict(causes).endswith(
        "then clear the whole run (Grid → this run → Clear, shift+C → Clear existing tasks)."
    )
    assert notify._resend({"blocking": True}) == "clear validate with its downstream tasks"
    with links.rerun_with("greenery run --date 2021-02-12"):
        assert verdict(causes).endswith("then run the day again with `greenery run --date 2021-02-12`.")
        assert notify._resend({"blocking": True}) == "run the day again with `greenery run --date 2021-02-12`"
        assert notify._resend({"blocking": False}) == "clear alert_slack alone"  # a new run would hold it back
    assert "Grid" in verdict(causes)  # the command's setting ends with it


def test_a_key_with_a_newline_stays_on_its_causes_line_of_the_red_tasks_message():
    """User trial: a duplicated promo_id holding a newline printed the rest of the key as lines of their own under
    `greenery run`'s cause (the terminal, the Grid and the recorded failure show validate's message)."""
    from greenery.tasks.validate import verdict

    key = "x`\n```\nforged & <script> \u202eRTL"
    cause = {**ORDERS_UNIQUE, "keys": [{"key": key, "count": 2}], "sources": [], "also_fails_in": []}
    lines = verdict({"root_causes": [cause]}).splitlines()
    assert len(lines) == 3, lines  # the count, the cause, what to do
    assert lines[1].endswith("x`\\n```\\nforged & <script> \\u202eRTL x2"), lines[1]


def test_a_check_that_could_not_be_evaluated_is_the_pipelines_to_fix_not_the_datas():
    """Review: a critical check whose query failed (a column renamed in its model, a broken suite query) paged as bad
    data: "Fix the source rows named above". When every blocking cause is such a check, the alert and the red task
    say the model or suite is at fault; beside real bad rows, they ask for both."""
    from greenery.tasks.validate import verdict

    broken = {**ORDERS_UNIQUE, "sample_keys": [], "error": 'column "order_id" does not exist'}
    only_broken = visible(build_alert(summary(failures=[broken, PROMO_WARNING])))
    assert "could not be evaluated (their query failed): fix their model or suite, not the data" in only_broken
    assert "Fix the source rows" not in only_broken and 'column "order_id" does not exist' in only_broken
    mixed = visible(build_alert(summary(failures=[broken, failure(2)], failed_critical=2)))
    assert "Fix the source rows named above and the model or suite of each check that could not be evaluated" in mixed
    clean = visible(build_alert(summary()))
    assert "Fix the source rows named above, then clear the whole run" in clean and "could not" not in clean

    def cause(error: str | None) -> dict:
        keys = [] if error else [{"key": "k", "count": 2}]
        return {
            "severity": "critical",
            "table": "staging.t",
            "sources": ["raw.t"],
            "expectation": "expect_column_values_to_be_unique",
            "column": "id",
            "also_fails_in": [],
            "keys": keys,
            "unexpected_count": None if error else 2,
            "error": error,
        }

    lines = verdict({"root_causes": [cause('column "id" does not exist\n  LINE 1: ...')]}).splitlines()
    assert lines[0] == "1 critical check(s) could not be evaluated; nothing was published:"
    assert lines[1] == (
        '- staging.t (from raw.t): expect_column_values_to_be_unique(id): could not be evaluated: column "id" does'
        " not exist LINE 1: ..."
    )
    assert lines[-1].startswith(
        "The checks above could not be evaluated (their query failed): fix their model or suite, not the data, then"
    )
    # Developer's trial: three query checks on the table, and the message did not say which one could not run.
    query = {
        **cause("boom"),
        "expectation": "unexpected_rows_expectation",
        "column": None,
        "description": "x matches y",
    }
    [_, line, _] = verdict({"root_causes": [query]}).splitlines()
    assert line == "- staging.t (from raw.t): unexpected_rows_expectation (x matches y): could not be evaluated: boom"
    lines = verdict({"root_causes": [cause(None), cause("boom")]}).splitlines()
    assert lines[0] == "2 critical problem(s) in the data; nothing was published:"
    # One wording for the red task and the alert (checks/root_causes.what_to_fix).
    assert lines[-1].startswith("Fix the source rows named above and the model or suite of each check that could not")
    assert lines[-1].split(", then")[0] in mixed


@pytest.mark.parametrize(
    ("status", "answer", "content"),
    [(400, "invalid_payload", True), (400, "no_text", True), (404, "no_service", False), (403, "invalid_token", False)],
)
def test_a_webhook_refusing_the_message_itself_is_told_from_a_wrong_connection(
    slack_server, webhook_conn, status, answer, content
):
    """Review: Slack refusing what was sent (a webhook's 400 invalid_payload) read as the connection's fault."""
    slack_server.respond(status, answer)
    with pytest.raises(SlackDeliveryError) as err:
        send({"text": "hi"}, webhook_conn)
    assert (err.value.content_refused, err.value.retryable) == (content, False)


def test_a_root_cause_downstream_of_a_critical_one_says_it_may_follow_from_it():
    """Review: a duplicated user's second entry (a mart's reconciliation check) read as a problem of its own, under
    "fix the source rows named above"; the alert and the red task say which failing table above it reads."""
    from greenery.tasks.validate import verdict

    upstream = {
        "severity": "critical",
        "table": "staging.stg_postgres__users",
        "sources": ["raw.users"],
        "expectation": "expect_column_values_to_be_unique",
        "column": "user_id",
        "also_fails_in": [],
        "keys": [{"key": "u1", "count": 2}],
        "unexpected_count": 2,
        "downstream_of": [],
    }
    mart = {
        **upstream,
        "table": "marts.repurchase_indicators",
        "expectation": "unexpected_rows_expectation",
        "column": None,
        "keys": [{"key": "indicator=sessions", "count": 1}],
        "downstream_of": ["staging.stg_postgres__users"],
    }
    body = visible(build_alert(summary(root_causes=[upstream, mart]), log_url=None, docs_url=None))
    assert body.count("failing above") == 1
    assert "reads `staging.stg_postgres__users`, failing above: it may follow from that; fix that first" in body
    lines = verdict({"root_causes": [upstream, mart]}).splitlines()
    assert lines[2].endswith("; reads staging.stg_postgres__users, failing above: it may follow from that")


def test_the_overview_counts_the_critical_root_causes_among_them_as_the_red_task_does():
    """User trial: Slack said "failed critical: 3 · root causes: 2" where the red task and `greenery run` said "1
    critical problem(s)": the checks count every table a problem shows in, root causes fold them, and one of the two
    was a warning. The overview says how many root causes are critical when not all are."""
    from greenery.tasks.validate import verdict

    critical = {
        "severity": "critical",
        "table": "staging.stg_postgres__orders",
        "sources": ["raw.orders"],
        "expectation": "expect_column_values_to_be_unique",
        "column": "order_id",
        "also_fails_in": ["marts.fact_orders"],
        "keys": [{"key": "o1", "count": 2}],
        "unexpected_count": 2,
        "downstream_of": [],
    }
    warning = {**critical, "severity": "warning", "table": "staging.stg_postgres__promos", "column": "discount"}
    body = visible(build_alert(summary(root_causes=[critical, warning]), log_url=None, docs_url=None))
    assert "*root causes:* 2 (1 critical)" in body
    assert verdict({"root_causes": [critical, warning]}).startswith("1 critical problem(s) in the data")
    body = visible(
        build_alert(summary(root_causes=[critical, {**critical, "column": "x"}]), log_url=None, docs_url=None)
    )
    assert re.search(r"\*root causes:\* 2(?! \()", body), body


def test_a_warning_that_says_what_to_run_is_shown_whole_and_quarantine_says_to_run_the_rows_days_again():
    """User trial: the lost-history warning's instruction, written into its key, was cut at 160 characters ("restore
    raw and run the…"); and a 🟡 with rows quarantined said "the next run checks again", which left the rows' day's
    daily marts without them once the source was fixed (a later run does not rebuild an earlier day's daily marts).
    The first key of a cause is shown up to 600 characters (the others as before); the advice names the days."""
    said = (
        "lost_history=orders on 2021-02-11: 3 rows the published marts hold are gone from raw; if the extract lost"
        " them, restore raw and run the day again: greenery run --date 2021-02-11 --end-date 2021-02-12"
    )
    other = "x" * 300
    warning = {
        "severity": "warning",
        "table": "intermediate.int_source_volumes_daily",
        "sources": [],
        "expectation": "unexpected_rows_expectation",
        "column": None,
        "also_fails_in": [],
        "keys": [{"key": said, "count": 1}, {"key": other, "count": 1}],
        "unexpected_count": 2,
        "description": "raw changed since a run read it: rows created on a day before the run's day arrived late",
    }
    green = {"blocking": False, "failed_critical": 0, "failed_warning": 2, "published": True}
    body = visible(
        build_alert(summary(root_causes=[warning], quarantined={"stg_postgres__orders": 6}, **green), log_url=None)
    )
    assert f"`{said}`" in body and f"`{other[:159]}…`" in body
    assert "then run again, oldest first, the days from the first the quarantined rows (or the orders" in body
    assert "A raw-changed warning repeats until the days it names run again." in body
    body = visible(build_alert(summary(root_causes=[warning], **green), log_url=None))
    assert "Fix the source when it matters; the next run checks again. A raw-changed warning repeats" in body
    # Review: said beside every warning; another check's warning does not repeat for that reason.
    email = {**warning, "description": "email looks like an email", "table": "staging.stg_postgres__users"}
    body = visible(build_alert(summary(root_causes=[email], **green), log_url=None))
    assert "the next run checks again." in body and "raw-changed" not in body
    from greenery import config
    from greenery.alerts import messages

    suite = json.loads((Path(config.get().expectations_dir) / "int_source_volumes_daily.json").read_text())
    assert any(str(e.get("description")).startswith(messages.RAW_CHANGED) for e in suite["expectations"])


def test_a_data_docs_address_with_a_login_gives_a_button_without_it(monkeypatch):
    """Review: GREENERY_DATA_DOCS_BASE_URL=https://user:password@... went into every alert's Data Docs button, in the
    channel (text links were redacted, buttons not). The button opens the address without them: the browser asks."""
    from greenery import links

    monkeypatch.setenv("GREENERY_DATA_DOCS_BASE_URL", "https://gx:S3cretDocs@docs.example.com/gx")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://ops.example.com:8443/airflow/")
    payload = build_alert(summary(links=links.for_run("scheduled__2021-02-12T00:00:00+00:00", "validate")))
    assert "S3cretDocs" not in json.dumps(payload) and "gx:" not in json.dumps(payload)
    assert buttons(payload)["open-docs"].startswith("https://docs.example.com/gx/")
    assert buttons(payload)["open-run"].startswith("https://ops.example.com:8443/airflow/")


def test_three_backticks_in_a_description_do_not_break_the_errors_code_block():
    """Review: a suite's description holding ``` opened a code block that the error's own fence then closed."""
    cause = {**ORDERS_UNIQUE, "description": "compares ```raw``` with `staging", "error": 'column "foo" does not exist'}
    cause.update(sources=[], keys=[], also_fails_in=[])
    [block] = failure_blocks(build_alert(summary(root_causes=[cause])))
    assert block["text"]["text"].count("```") == 2, block["text"]["text"]  # the error's fence, opened and closed


def test_another_key_duplicated_the_same_number_of_times_is_news():
    """Review: yesterday order A twice, today order B twice (2 failing rows each): the sample was taken for partial
    (one key for two rows), its keys left out of the signature, and today's warning held back as unchanged."""
    from greenery.alerts import suppression

    def warned(key: str) -> dict:
        cause = {**ORDERS_UNIQUE, "severity": "warning", "keys": [{"key": key, "count": 2}], "unexpected_count": 2}
        return {"blocking": False, "root_causes": [cause], "quarantined": {}}

    yesterday, today = warned("order-A"), warned("order-B")
    assert suppression.signatures(yesterday) != suppression.signatures(today)
    assert not suppression.held_back(today, set(suppression.signatures(yesterday)), yesterday)
    assert suppression.held_back(warned("order-A"), set(suppression.signatures(yesterday)), yesterday)  # the control


def test_a_raw_changed_warning_is_the_same_warning_whatever_day_ran():
    """Re-trial: its key's command ends on the run's own day ("--end-date <run date>"), so the same warning was news
    to every run of another day, paged each time (and would page every day). Its day and counts still tell."""
    from greenery.alerts import suppression

    def warned(run_date: str, rows_now: int = 0) -> dict:
        key = (
            f"raw_changed=orders on 2021-02-10: run it and the days after it again, oldest first: greenery run --date"
            f" 2021-02-10 --end-date {run_date} (or ...); {rows_now} rows in raw now, 177 when a run last read that day"
        )
        cause = {**ORDERS_UNIQUE, "severity": "warning", "keys": [{"key": key, "count": 1}], "unexpected_count": 1}
        return {"blocking": False, "root_causes": [cause], "quarantined": {}}

    yesterday = warned("2021-02-12")
    assert suppression.held_back(warned("2021-02-13"), set(suppression.signatures(yesterday)), yesterday)
    assert not suppression.held_back(warned("2021-02-13", 5), set(suppression.signatures(yesterday)), yesterday)


def test_a_task_stopped_by_the_user_is_recorded_as_such():
    """Review: Ctrl-C or SIGTERM in a task of `greenery run` was recorded, and shown by the view, as
    "KeyboardInterrupt: -"."""
    from greenery.tasks.paging import describe

    assert describe(KeyboardInterrupt()).startswith("stopped while it ran: `greenery run` was interrupted (Ctrl-C)")
    # User trial: the Data quality view's "Why" read "PagedFailure: source data not ready ...": our own failures say
    # what happened in their message; others keep their type.
    from greenery.tasks.failures import PagedFailure, Refused

    said = "source data not ready for 2021-02-12: raw.promos does not exist (on-call paged)"
    assert describe(PagedFailure(said)) == said and describe(Refused("no result", next_step="x")) == "no result"
    assert describe(ValueError("x")) == "ValueError: x"


def test_a_run_with_nothing_to_page_says_when_no_page_could_go_and_fails_on_a_connection_set_but_not_defined(
    slack_server, monkeypatch
):
    """User trial: GREENERY_ALERT_CONN_ID misspelt surfaced only on the day a page was needed, and that page went
    nowhere. alert_slack with nothing to page checks the route: a connection set but not defined fails it (red every
    day, naming it); the default connection not defined (a setup without Slack) and `none` (on purpose) skip, the
    first saying that pages go nowhere. Nothing is posted either way."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
    from fake_task_instance import FakeTaskInstance

    from greenery.tasks import notify

    clean = summary(failures=[], root_causes=[], quarantined={}, blocking=False, failed_critical=0, failed_warning=0)

    def alert_slack() -> None:
        ti = FakeTaskInstance({("validate", "summary"): clean}, clean["run_id"], {"validate": "success"})
        notify.send_alert({"ti": ti, "run_id": clean["run_id"]})

    nothing = "nothing to alert: every check passed and no row was quarantined"
    monkeypatch.delenv(conn_env_var("slack_alerts"), raising=False)
    monkeypatch.delenv("GREENERY_ALERT_CONN_ID", raising=False)
    with pytest.raises(AirflowSkipException) as skipped:
        alert_slack()
    assert (
        str(skipped.value)
        == f"{nothing} (Slack connection 'slack_alerts' is not defined: pages go nowhere; see the README's Slack setup)"
    )
    monkeypatch.setenv(conn_env_var("slack_alerts"), '{"conn_type": "slackwebhook", "password": "https://x"')
    with pytest.raises(
        AirflowFailException, match=r"^GREENERY_ALERT_CONN_ID='slack_alerts': AIRFLOW_CONN_SLACK_ALERTS is"
    ):
        alert_slack()  # review: the default connection set but unparsable is no setup without Slack
    monkeypatch.setenv(
        conn_env_var("slack_alerts"), '{"conn_type": "slackwebhook", "password": ""}'
    )  # Compose's, unset
    with pytest.raises(AirflowSkipException, match="has no webhook URL or token: pages go nowhere"):
        alert_slack()
    monkeypatch.setenv(conn_env_var("slack_alerts"), slack_server.webhook_conn_json())
    with pytest.raises(AirflowSkipException) as skipped:
        alert_slack()
    assert str(skipped.value) == nothing  # the control: a route, nothing said about it
    monkeypatch.setenv("GREENERY_ALERT_CONN_ID", "slak_alerts")
    with pytest.raises(AirflowFailException) as failed:
        alert_slack()
    assert str(failed.value).startswith(
        "GREENERY_ALERT_CONN_ID='slak_alerts': Slack connection 'slak_alerts' is not defined: no page can reach"
        " on-call, on any run"
    ), failed.value
    warned = {**clean, "failures": [failure(1, "warning")], "failed_warning": 1}
    ti = FakeTaskInstance({("validate", "summary"): warned}, clean["run_id"], {"validate": "success"})
    with pytest.raises(AirflowFailException, match="no page can reach on-call"):  # trial: not only with nothing to say
        notify.send_alert({"ti": ti, "run_id": clean["run_id"]})  # (a suppressed warning passed green before)
    monkeypatch.setenv(conn_env_var("slak_alerts"), "{not json")
    with pytest.raises(AirflowFailException, match="AIRFLOW_CONN_SLAK_ALERTS is set, but Airflow could not parse it"):
        alert_slack()
    # Review: an API-token connection without a channel, or a connection of another type, passed this check and
    # failed the first page due (a refusal no retry fixes); the default connection too: it is set up, wrongly.
    for conn_id in ("slak_alerts", "slack_alerts"):
        monkeypatch.setenv("GREENERY_ALERT_CONN_ID", conn_id)
        monkeypatch.setenv(conn_env_var(conn_id), slack_server.api_conn_json())
        with pytest.raises(AirflowFailException) as failed:
            alert_slack()
        assert str(failed.value).startswith(
            f"GREENERY_ALERT_CONN_ID={conn_id!r}: Slack connection {conn_id!r} is an API-token connection, which needs"
            " a channel (GREENERY_ALERT_CHANNEL unset): no page can reach on-call"
        ), failed.value
        monkeypatch.setenv("GREENERY_ALERT_CHANNEL", "#on-call")
        with pytest.raises(AirflowSkipException) as skipped:
            alert_slack()
        assert str(skipped.value) == nothing  # the control: with its channel
        monkeypatch.delenv("GREENERY_ALERT_CHANNEL")
        monkeypatch.setenv(conn_env_var(conn_id), json.dumps({"conn_type": "http", "password": "https://x"}))
        with pytest.raises(AirflowFailException, match=f"{conn_id}' has conn_type 'http': use 'slackwebhook'"):
            alert_slack()
    monkeypatch.setenv("GREENERY_ALERT_CONN_ID", "none")
    with pytest.raises(AirflowSkipException) as skipped:
        alert_slack()
    assert str(skipped.value) == nothing
    assert slack_server.requests == []


def test_without_slack_a_published_runs_warnings_and_quarantine_skip_the_alert_and_failed_checks_still_fail_it(
    slack_server, monkeypatch
):
    """User trial: with no Slack set up (the default connection not defined, or `none`), every day with a warning or
    a quarantined row failed alert_slack and `greenery run` stopped its range there, though the day published (the
    catalog: "stays green"). Skipped, saying what was not alerted and why; failed critical checks still fail it."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
    from fake_task_instance import FakeTaskInstance

    from greenery.tasks import notify

    warned = summary(
        failures=[PROMO_WARNING],
        quarantined={"stg_postgres__orders": 3},
        blocking=False,
        failed_critical=0,
        failed_warning=1,
    )

    def alert_slack(validated: dict, publish: str = "success") -> None:
        states = {"validate": "success" if not validated["blocking"] else "failed", "publish": publish}
        ti = FakeTaskInstance(
            {("validate", "summary"): validated, ("publish", "return_value"): {"published": True}},
            validated["run_id"],
            states,
        )
        notify.send_alert({"ti": ti, "run_id": validated["run_id"]})

    monkeypatch.delenv(conn_env_var("slack_alerts"), raising=False)
    monkeypatch.delenv("GREENERY_ALERT_CONN_ID", raising=False)
    with pytest.raises(AirflowSkipException) as skipped:
        alert_slack(warned)
    assert str(skipped.value) == (
        "not alerted: 1 warning, 3 rows quarantined in a run that published (Slack connection 'slack_alerts' is not"
        " defined: pages go nowhere; see the README's Slack setup)"
    )
    with pytest.raises(AirflowFailException, match="is not defined: on-call was not paged"):
        alert_slack(SUMMARY, publish="skipped")  # failed checks: a page that could not go is a failure
    monkeypatch.setenv("GREENERY_ALERT_CONN_ID", "none")
    with pytest.raises(
        AirflowSkipException, match=r"rows quarantined in a run that published \(GREENERY_ALERT_CONN_ID"
    ):
        alert_slack(warned)
    monkeypatch.delenv("GREENERY_ALERT_CONN_ID")
    monkeypatch.setenv(conn_env_var("slack_alerts"), slack_server.webhook_conn_json())
    alert_slack(warned)  # the control: with Slack, it is sent
    assert len(slack_server.webhook_posts()) == 1


@pytest.mark.parametrize(
    ("conn_id", "conn", "said"),
    [
        ("slack_alerts", '{"conn_type": "slackwebhook", "password": ""}', "has no webhook URL or token"),
        ("none", None, "Slack is off (GREENERY_ALERT_CONN_ID=none)"),
        ("slack_alerts", '{"conn_type": "slackwebhook"', "conn_type slackwebhook, the webhook URL as its password"),
    ],
    ids=["no URL", "none", "unparsable"],
)
def test_a_connection_that_cannot_carry_a_message_is_refused_at_once_saying_why(
    monkeypatch, slack_server, conn_id, conn, said
):
    """User trial: Compose's connection without SLACK_WEBHOOK_URL was retried for over four minutes (the provider's
    "does not contain password" taken for a transient error); `none` read as a misspelt connection; the unparsable
    variable's hint came out as '"password": "***"' in Airflow's masked log. Refused at once, saying why."""
    if conn is not None:
        monkeypatch.setenv(conn_env_var(conn_id), conn)
    with pytest.raises(SlackDeliveryError) as refused:
        send({"text": "x"}, conn_id)
    assert said in str(refused.value) and not refused.value.retryable, refused.value
    assert 'password"' not in str(refused.value) and slack_server.requests == []


def test_the_red_validates_message_names_a_key_only_a_downstream_table_has():
    """Review (on-call loop): a key only fact_orders' join repeated, beside raw's duplicate, was folded into the
    duplicate's entry, and validate's message named only the duplicate ("fix the source rows"). It names both
    (test_root_causes: the entries, the alert and the backfill's signatures)."""
    from greenery.checks import root_causes
    from greenery.project import models
    from greenery.tasks import validate

    def failure(suite: str, keys: tuple[str, ...]) -> dict:
        return {
            "suite": suite,
            "table": f"_build_x__y.{suite}",
            "column": "order_id",
            "severity": "critical",
            "expectation": "expect_column_values_to_be_unique",
            "unexpected_count": len(keys),
            "sample_keys": list(keys),
        }

    failures = [failure("stg_postgres__orders", ("A", "A")), failure("fact_orders", ("A", "A", "B", "B"))]
    summary = {
        "run_id": "r",
        "logical_date": "2021-02-12",
        "failures": failures,
        "blocking": True,
        "root_causes": root_causes.group(failures, models.discover()),
    }
    said = validate.verdict(summary)
    assert "staging.stg_postgres__orders" in said and "A x2" in said, said
    assert "marts.fact_orders" in said and "B x2" in said, said
