"""The "Data quality" view: its FastAPI app on real PostgreSQL, its discovery as an Airflow plugin, and
the page served by a real ``airflow api-server`` (and rendered by headless Chromium).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlencode, urljoin, urlsplit

import browser
import psycopg
import pytest
from browser import PLUGINS_DIR, http_get
from PIL import Image
from stalling_warehouse import STALLS, stalling_warehouse

from greenery import audit, wap
from greenery.checks.docs_pages import DocsPage
from greenery.ui import app as quality_view
from greenery.ui import data_docs, report

# One screenshot is kept for people to look at (the test's own copy goes away with its tmp_path).
SCREENSHOT = Path(os.environ.get("GREENERY_SCREENSHOT") or Path(tempfile.gettempdir()) / "data-quality.png")

OLD_RUN = "scheduled__2024-03-01T00:00:00+00:00"
NEW_RUN = "scheduled__2024-03-02T00:00:00+00:00"
NASTY_KEY = "<script>alert('x')</script>"


# ---------------------------------------------------------------------------------------------------
# Fixtures: validation results as the DAG records them, and a Data Docs folder
# ---------------------------------------------------------------------------------------------------


def _suite(name: str, table: str, evaluated: int, critical: int = 0, warning: int = 0) -> dict:
    return {
        "suite": name,
        "table": table,
        "evaluated": evaluated,
        "failed_critical": critical,
        "failed_warning": warning,
    }


def _summary(run_id: str, day: str, suites: list[dict], failures: list[dict], quarantined: dict) -> dict:
    critical = sum(s["failed_critical"] for s in suites)
    return {
        "dag_id": "greenery_daily",
        "run_id": run_id,
        "logical_date": day,
        "evaluated": sum(s["evaluated"] for s in suites),
        "failed_critical": critical,
        "failed_warning": sum(s["failed_warning"] for s in suites),
        "blocking": critical > 0,
        "suites": suites,
        "failures": failures,
        "failures_total": len(failures),
        "quarantined": quarantined,
        "log_url": "javascript:alert(1)",  # never becomes a link
        "seconds": 1.5,
    }


def clean_summary() -> dict:
    suites = [
        _suite("stg_postgres__orders", "staging.stg_postgres__orders", 9),
        _suite("fact_orders", "marts.fact_orders", 12),
        _suite("metrics_daily", "marts.metrics_daily", 6),
    ]
    return _summary(OLD_RUN, "2024-03-01", suites, [], {})


def failing_summary() -> dict:
    build = wap.Build(NEW_RUN, dt.date(2024, 3, 2))
    orders = f"{build.schema('staging')}.stg_postgres__orders"
    facts = f"{build.schema('marts')}.fact_orders"
    suites = [
        _suite("stg_postgres__orders", orders, 9, critical=1),
        _suite("fact_orders", facts, 12, warning=1),
        # a partial rerun: metrics_daily was not re-validated in this run
    ]
    failures = [
        {
            "suite": "stg_postgres__orders",
            "table": orders,
            "column": "order_total",
            "expectation": "expect_column_values_to_be_between",
            "severity": "critical",
            "description": "Order totals are never negative",
            "observed_value": None,
            "unexpected_count": 2,
            "sample_keys": ["8c1a6f0e-0000-4000-8000-00000000beef", NASTY_KEY],
            "error": None,
        },
        {
            "suite": "fact_orders",
            "table": facts,
            "column": "shipping_service",
            "expectation": "expect_column_distinct_values_to_be_in_set",
            "severity": "warning",
            "description": None,
            "observed_value": ["dhl", "fedex", "pigeon"],
            "unexpected_count": 1,
            "sample_keys": ["0f3b2c1d-aaaa-4bbb-8ccc-000000000001"],
            "error": None,
        },
    ]
    quarantined = {"stg_postgres__orders": 3, "stg_postgres__products": 1}
    summary = _summary(NEW_RUN, "2024-03-02", suites, failures, quarantined)
    # Which rule the rows broke (stop 73's trial: counted by table only); a rule's text is data, escaped.
    # Shorter names with fewer rows: jsonb keeps keys shortest first, the page most rows first (review).
    summary["quarantined_rules"] = {
        "stg_postgres__orders": {"<b>x</b>": 1, "future_timestamp": 2},
        "stg_postgres__products": {"non_finite_number": 1, "bad": "1; drop"},
        "stg_postgres__users": ["not", "a", "mapping"],
    }
    # An info result (checks/summary.py: listed, never alerting), as the anomaly checks give with little history.
    summary["notes"] = [
        {
            "suite": "int_source_volumes_daily",
            "table": f"{build.schema('intermediate')}.int_source_volumes_daily",
            "column": None,
            "expectation": "unexpected_rows_expectation",
            "severity": "info",
            "description": f"volume anomalies: fewer than 7 days of history <b>{NASTY_KEY}</b>",
            "observed_value": 1,
            "unexpected_count": 1,
            "sample_keys": ["orders: 2 days of history before 2024-03-02; the anomaly checks need 7"],
            "error": None,
        }
    ]
    return summary


def record_two_runs(url: str) -> None:
    """The clean run of 2024-03-01 (published), then the run of 2024-03-02 (critical failure, not published)."""
    with psycopg.connect(url) as conn:
        audit.record_validation(conn, clean_summary(), published=True)
        conn.execute(
            "insert into greenery_audit.publish_log values (%s, %s, now() - interval '1 day', %s)",
            (OLD_RUN, dt.date(2024, 3, 1), ["staging.stg_postgres__orders", "marts.fact_orders"]),
        )
        conn.execute("update greenery_audit.validation_runs set validated_at = now() - interval '1 day'")
        conn.commit()
        audit.record_validation(conn, failing_summary(), published=False)


ORDERS_PAGE = (
    f"validations/stg_postgres__orders/{NEW_RUN}/20240302T010203.000000Z/greenery_warehouse-stg_postgres__orders.html"
)
RUN_PAGE = f"validations/fact_orders/{NEW_RUN}/20240302T010203.000000Z/run.html"


def store_pages(url: str, run_id: str, pages: dict[str, str]) -> None:
    """Data Docs pages of one validation as the validate task stores them: {path below the Docs root: html}."""
    stored = [
        DocsPage(path, path.split("/")[1], run_id, path.split("/")[3], html, None) for path, html in pages.items()
    ]
    with psycopg.connect(url) as conn:
        audit.ensure(conn)
        audit.record_data_docs(conn, os.urandom(8).hex(), run_id, stored)


@pytest.fixture
def stored_docs(warehouse_url, tmp_path, monkeypatch) -> Path:
    """Data Docs pages in the warehouse, and a secret in the api-server's working directory, never to be served."""
    store_pages(
        warehouse_url,
        NEW_RUN,
        {
            ORDERS_PAGE: "<html><head><title>t</title></head><body>orders result page</body></html>",
            RUN_PAGE: "<html><body>validation result page</body></html>",
        },
    )
    (tmp_path / "secret.txt").write_text("TOP-SECRET-CONFIG")
    (tmp_path / "index.html").write_text("TOP-SECRET-CONFIG index")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def flat(html: str) -> str:
    """The page with whitespace runs collapsed and without the line-break hints inside long names."""
    return " ".join(html.replace("<wbr>", "").split())


def client(require_auth: bool = False):
    """The app mounted as the API server mounts it."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    root = FastAPI()
    root.mount("/data-quality", quality_view.create_app(require_auth=require_auth))
    return TestClient(root)


# ---------------------------------------------------------------------------------------------------
# 1. The app over HTTP, on real PostgreSQL
# ---------------------------------------------------------------------------------------------------


@pytest.mark.db
@pytest.mark.integration
def test_page_shows_latest_run_tables_failures_and_quarantine(warehouse_url, stored_docs):
    record_two_runs(warehouse_url)
    response = client().get("/data-quality/")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = flat(response.text)
    # the latest run, not published, and what readers still see
    assert NEW_RUN in page and "2024-03-02" in page
    assert "Not published." in page and "1 critical check failed" in page
    assert "Readers are still served the run of <strong>2024-03-01</strong>" in page
    # one row per table, shown under the reader schema even though the run validated build schemas
    for table in ("staging.stg_postgres__orders", "marts.fact_orders", "marts.metrics_daily"):
        assert f"><bdi>{table}</bdi></span>" in page
    assert "run of 2024-03-01 (not re-checked since)" in page  # metrics_daily: only in the older run
    assert '<span class="badge failed">failed</span>' in page
    assert '<span class="badge warning">warning</span>' in page
    assert '<span class="badge passed">passed</span>' in page
    # failing checks with their details
    assert "expect_column_values_to_be_between" in page and "order_total" in page
    assert "Order totals are never negative" in page
    assert "8c1a6f0e-0000-4000-8000-00000000beef" in page
    assert "expect_column_distinct_values_to_be_in_set" in page and "pigeon" in page
    # values are escaped; a javascript: log URL is not linked
    assert NASTY_KEY not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "javascript:" not in page
    # the stylesheet is a static file of the app, and the page allows no script at all
    assert '<link rel="stylesheet" href="static/style.css">' in page
    css = client().get("/data-quality/static/style.css")
    assert css.status_code == 200 and 'font:14px/1.45 -apple-system, BlinkMacSystemFont, "Segoe UI"' in css.text
    assert "script-src" not in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]
    # the run's info results are listed, escaped, and counted as nothing else
    assert "For information" in page and "volume anomalies: fewer than 7 days of history" in page
    assert "intermediate.int_source_volumes_daily" in page and "<b>" not in page
    assert "orders: 2 days of history before 2024-03-02; the anomaly checks need 7" in page
    # quarantine, Data Docs link, history
    assert "stg_postgres__products" in page and "rows quarantined" in page
    rules = '<span class="mono"><bdi>future_timestamp</bdi></span> 2, <span class="mono"><bdi>&lt;b&gt;x&lt;/b&gt;'
    assert rules in page and '<span class="mono"><bdi>non_finite_number</bdi></span> 1' in page
    assert "<bdi>bad</bdi></span> 0" in page and "drop" not in page  # a malformed record shows nothing of it
    assert 'href="docs/"' in page
    assert page.count(OLD_RUN) >= 1 and "Recent runs" in page


@pytest.mark.db
@pytest.mark.integration
def test_latest_json_has_each_tables_latest_result(warehouse_url, stored_docs):
    record_two_runs(warehouse_url)
    response = client().get("/data-quality/api/latest")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dag_id"] == "greenery_daily"
    latest = body["latest_run"]
    assert latest["run_id"] == NEW_RUN and latest["logical_date"] == "2024-03-02"
    assert latest["published"] is False and latest["failed_critical"] == 1 and latest["failed_warning"] == 1
    assert dt.datetime.fromisoformat(latest["validated_at"]).utcoffset() == dt.timedelta(0)
    assert body["serving"]["run_id"] == OLD_RUN and body["serving"]["logical_date"] == "2024-03-01"
    assert body["quarantined"] == {"stg_postgres__orders": 3, "stg_postgres__products": 1}
    assert re.fullmatch(r"https?://[^/]+(/.*)?/data-quality/docs/index\.html", body["data_docs"])  # absolute
    tables = {t["table"]: t for t in body["tables"]}
    assert set(tables) == {"staging.stg_postgres__orders", "marts.fact_orders", "marts.metrics_daily"}
    orders = tables["staging.stg_postgres__orders"]
    assert (orders["status"], orders["run_id"], orders["evaluated"], orders["failed_critical"]) == (
        "failed",
        NEW_RUN,
        9,
        1,
    )
    assert orders["validated_table"].startswith("_build_20240302_")
    [failure] = orders["failures"]
    assert failure["expectation"] == "expect_column_values_to_be_between"
    assert failure["sample_keys"] == ["8c1a6f0e-0000-4000-8000-00000000beef", NASTY_KEY]
    assert tables["marts.fact_orders"]["status"] == "warning"
    metrics = tables["marts.metrics_daily"]
    assert (metrics["status"], metrics["run_id"], metrics["failures"]) == ("passed", OLD_RUN, [])
    assert [t["status"] for t in body["tables"]] == ["failed", "warning", "passed"]
    [note] = body["notes"]
    assert note["severity"] == "info" and note["table"] == "intermediate.int_source_volumes_daily"


@pytest.mark.db
@pytest.mark.integration
def test_data_docs_are_served_and_nothing_outside_them(warehouse_url, stored_docs):
    app = client()
    # GX's index needs scripts: the app lists the validation pages itself, with links that work from both URLs
    index = app.get("/data-quality/docs/")
    assert index.status_code == 200 and "GX Data Docs index" not in index.text
    assert app.get("/data-quality/docs/index.html").text == index.text
    quoted_run = NEW_RUN.replace(":", "%3A").replace("+", "%2B")
    href = (
        f"validations/stg_postgres__orders/{quoted_run}/20240302T010203.000000Z/"
        "greenery_warehouse-stg_postgres__orders.html"
    )
    assert f'<a class="mono" href="{href}"><bdi>stg_postgres__orders</bdi></a>' in index.text
    assert f'Run <span class="mono"><bdi>{NEW_RUN}</bdi></span>' in index.text
    assert "2024-03-02 01:02:03 UTC" in index.text
    result = app.get(f"/data-quality/docs/{href}")
    assert result.status_code == 200 and "orders result page" in result.text
    # our stylesheet, first in the head, and GX's markup as it was
    assert result.text.startswith("<html><head><style>") and "</style><title>t</title></head>" in result.text
    page = app.get(f"/data-quality/docs/validations/fact_orders/{quoted_run}/20240302T010203.000000Z/run.html")
    assert page.status_code == 200 and "validation result page" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert app.get("/data-quality/docs/validations/missing.html").status_code == 404
    attacks = [
        "/data-quality/docs/../../etc/passwd",  # the client normalizes this one itself
        "/data-quality/docs/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/data-quality/docs/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/data-quality/docs/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/data-quality/docs/../secret.txt",
        "/data-quality/docs/%2e%2e/secret.txt",
        "/data-quality/docs/%252e%252e/secret.txt",
        "/data-quality/docs/..%5c..%5csecret.txt",
        "/data-quality/docs//etc/passwd",
        "/data-quality/docs/%2Fetc%2Fpasswd",
        "/data-quality/docs/secret.txt",  # in the working directory of the server
        "/data-quality/docs/validations/",
        "/data-quality/docs/validations/%00.html",
        f"/data-quality/docs//{href}",
        f"/data-quality/docs/{href.upper()}",
    ]
    for url in attacks:
        response = app.get(url)
        assert response.status_code in (400, 404), (url, response.status_code)
        assert "root:" not in response.text and "TOP-SECRET-CONFIG" not in response.text, url
    # A page is looked up by its exact path: nothing else names it, nor anything else.
    with psycopg.connect(warehouse_url) as conn:
        assert data_docs.page(conn, ORDERS_PAGE) is not None
        for path in (
            "../secret.txt",
            "/etc/passwd",
            "a\x00b",
            "",
            "validations",
            f"./{ORDERS_PAGE}",
            ORDERS_PAGE + "/",
        ):
            assert data_docs.page(conn, path) is None, path


def dead_links(app, pages: list[str]) -> dict[str, list[tuple[str, int]]]:
    """Each page's links (href and src of any element) to a URL of the app that does not answer 200."""

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.found += [v for k, v in attrs if k in ("href", "src") and v and not v.startswith("#")]

    origin = urlsplit(str(app.base_url)).netloc
    dead: dict[str, list[tuple[str, int]]] = {}
    for page in pages:
        response = app.get(page)
        assert response.status_code == 200, (page, response.status_code)
        links = Links()
        links.feed(response.text)
        for link in links.found:
            target = urljoin(f"{app.base_url}{page}", link).split("#")[0]
            if urlsplit(target).netloc == origin and (status := app.get(target).status_code) != 200:
                dead.setdefault(page, []).append((link, status))
    return dead


# GX's markup for the suite's page and its favicon, as GX 1.x writes them into each validation page (the pages
# of a real validation: tests/test_hostile_values.py).
GX_HEADER = (
    '<html><head><link rel="shortcut icon" href="../../../static/images/favicon.ico" type="image/x-icon"/></head>'
    '<body><a href="../../../../index.html">Home</a> <span class="h6" >Expectation Suite:</span> '
    '<a href="../../../../expectations/fact_orders.html" >fact_orders</a> result</body></html>'
)


@pytest.mark.db
@pytest.mark.integration
def test_no_served_docs_page_links_to_a_page_that_does_not_exist(warehouse_url, stored_docs):
    """Review: every stored page linked to GX's page of its suite (``docs/expectations/<suite>.html``), which is not
    built (checks/gx.py): 404. The suite's name stays, unlinked; the favicon link of GX's unkept static folder goes."""
    page = f"validations/fact_orders/{OLD_RUN}/20240301T010203.000000Z/run.html"
    store_pages(warehouse_url, OLD_RUN, {page: GX_HEADER})  # stored before the fix: served without them too
    app = client()
    pages = ["/data-quality/docs/", f"/data-quality/docs/{data_docs.href(page)}"]
    pages += [f"/data-quality/docs/{data_docs.href(p)}" for p in (ORDERS_PAGE, RUN_PAGE)]
    assert dead_links(app, pages) == {}
    served = app.get(pages[1]).text
    assert "expectations/" not in served and "favicon" not in served
    assert '<span class="h6" >Expectation Suite:</span> <a>fact_orders</a> result' in served
    assert '<a href="../../../../index.html">Home</a>' in served  # the index is served: its link stays


@pytest.mark.db
@pytest.mark.integration
def test_the_jsons_data_docs_links_are_absolute_and_answer(warehouse_url, stored_docs, monkeypatch):
    """Review: the JSON's links were relative (``docs/index.html``): against the JSON's own URL they named
    ``/data-quality/api/docs/...``, 404. They start at the deployment's base URL, as every other link does."""
    from greenery import links

    base = "http://airflow.example.test:8793/airflow"  # [api] base_url, under a path
    monkeypatch.setattr(links, "base_url", lambda: base)
    record_two_runs(warehouse_url)
    app = client()
    body = app.get("/data-quality/api/latest").json()
    assert body["data_docs"] == f"{base}/data-quality/docs/index.html"
    tables = {t["suite"]: t["data_docs"] for t in body["tables"]}
    assert tables == {
        "stg_postgres__orders": f"{base}/data-quality/docs/{data_docs.href(ORDERS_PAGE)}",
        "fact_orders": f"{base}/data-quality/docs/{data_docs.href(RUN_PAGE)}",
        "metrics_daily": None,  # no page stored for its run
    }
    for url in [body["data_docs"], *filter(None, tables.values())]:  # each is a page the app serves
        assert app.get(url.removeprefix(base)).status_code == 200, url
    # the page's own links stay relative to it: they work under whatever path the API server answers
    page = app.get("/data-quality/").text
    assert 'href="docs/"' in page and f'href="docs/{data_docs.href(ORDERS_PAGE)}"' in page
    assert f"{base}/data-quality/docs" not in page


@pytest.mark.db
@pytest.mark.integration
def test_data_docs_links_follow_greenery_data_docs_base_url(warehouse_url, stored_docs, monkeypatch):
    """Review: .env.example says GREENERY_DATA_DOCS_BASE_URL decides where "the alerts' and the view's Data Docs
    links start"; the view ignored it. The page's and the JSON's links start there, as the alerts' do."""
    from greenery import links

    # With a login (review: the view's links and JSON carried it to every reader; the browser asks for it instead).
    monkeypatch.setenv("GREENERY_DATA_DOCS_BASE_URL", "https://gx:S3cretDocs@docs.example.test/greenery/")
    record_two_runs(warehouse_url)
    orders = f"https://docs.example.test/greenery/{data_docs.href(ORDERS_PAGE)}"
    page = client().get("/data-quality/").text
    assert "S3cretDocs" not in page and "S3cretDocs" not in client().get("/data-quality/api/latest").text
    assert page.count('<a href="https://docs.example.test/greenery/" target="_top">') == 2  # header and card
    assert f'<a href="{orders}" target="_top">result page</a>' in page
    assert 'href="docs/' not in page
    body = client().get("/data-quality/api/latest").json()
    assert body["data_docs"] == "https://docs.example.test/greenery/index.html"
    assert {t["suite"]: t["data_docs"] for t in body["tables"]}["stg_postgres__orders"] == orders
    assert links.for_run(NEW_RUN)["docs"] == "https://docs.example.test/greenery/"  # where the alerts' start


@pytest.mark.db
@pytest.mark.integration
def test_credentials_in_recorded_errors_are_masked_on_the_page_and_in_the_json(warehouse_url, stored_docs):
    """Review: a password put in a misspelt setting was echoed by the error every task failed with; Slack masked
    it, the view showed it (and the JSON) to every reader of the DAG's runs. Masked when recorded and when shown
    (a record kept before this change included); where it failed stays readable."""
    record_two_runs(warehouse_url)
    failed = "scheduled__2024-03-03T00:00:00+00:00"
    said = "bad setting: GREENERY_WAREHOUSE_PASSWORD='Hunter2': no such setting; "
    with psycopg.connect(warehouse_url) as conn:
        audit.record_task_failure(conn, failed, "prepare_build", dt.date(2024, 3, 3), said + "PGPASSWORD=pg-Secret")
        conn.execute(  # as an older version recorded it, unmasked
            "insert into greenery_audit.task_failures (run_id, task_id, logical_date, failed_at, error)"
            " values (%s, 'load', '2024-03-03', now(), %s)",
            (failed, 'connecting to postgresql://etl:Old-Secret@db:5432/x with {"api_token": "tok-Secret"}'),
        )
        summary = failing_summary()
        summary["failures"][0] |= {"error": "secret_key=gx-Secret", "detail_error": "password='pw-Secret'"}
        cause = {"keys": [], "sources": [], "also_fails_in": [], "runs_failing": 1, "owner": None}
        summary["root_causes"] = [{**summary["failures"][0], **cause}]
        audit.record_validation(conn, summary, published=False)
        stored = " ".join(e for (e,) in conn.execute("select error from greenery_audit.task_failures"))
        stored += conn.execute("select string_agg(summary::text, ' ') from greenery_audit.validation_runs").fetchone()[
            0
        ]
    assert "Hunter2" not in stored and "pg-Secret" not in stored and "PGPASSWORD=***" in stored
    assert "gx-Secret" not in stored and "pw-Secret" not in stored and "secret_key=***" in stored  # checks' errors
    for run in (failed, NEW_RUN):
        page = client().get("/data-quality/", params={"run_id": run}).text
        body = client().get("/data-quality/api/latest", params={"run_id": run}).text
        for secret in ("Hunter2", "pg-Secret", "Old-Secret", "tok-Secret", "gx-Secret", "pw-Secret"):
            assert secret not in page and secret not in body, (run, secret)
    page = flat(client().get("/data-quality/", params={"run_id": failed}).text)
    assert "GREENERY_WAREHOUSE_PASSWORD=&#39;***&#39;: no such setting" in page and "postgresql://***@db:5432/x" in page
    assert "secret_key=***" in flat(client().get("/data-quality/", params={"run_id": NEW_RUN}).text)


@pytest.mark.db
@pytest.mark.integration
def test_docs_404_before_they_are_built(warehouse_url):
    record_two_runs(warehouse_url)
    app = client()
    response = app.get("/data-quality/docs/index.html")
    assert response.status_code == 404 and "not been built yet" in response.json()["detail"]
    page = app.get("/data-quality/")
    assert page.status_code == 200 and "The Data Docs have not been built yet" in page.text
    assert 'href="docs/"' not in page.text
    assert app.get("/data-quality/api/latest").json()["data_docs"] is None


@pytest.mark.db
@pytest.mark.integration
def test_empty_state_before_any_validation(warehouse_url, stored_docs):
    app = client()
    page = app.get("/data-quality/")
    assert page.status_code == 200
    assert "No validation has run yet" in page.text
    body = app.get("/data-quality/api/latest").json()
    assert body["latest_run"] is None and body["tables"] == [] and body["serving"] is None
    # the audit schema exists (a publish happened) but no validation was recorded yet
    with psycopg.connect(warehouse_url) as conn:
        audit.ensure(conn)
        conn.execute("insert into greenery_audit.publish_log values ('first', '2024-03-01', now(), '{}')")
    page = app.get("/data-quality/")
    assert page.status_code == 200 and "No validation has run yet" in page.text
    assert "The marts currently hold the run of 2024-03-01" in page.text


@pytest.mark.db
@pytest.mark.integration
def test_a_run_whose_tables_a_later_publish_replaced_says_so_and_links_into_this_deployment(
    warehouse_url, stored_docs, monkeypatch
):
    """Review: the page of an older published run (the link of every alert and digest about it) said "readers see
    this run" after a later run had published; and its task log link was the URL stored when it validated (another
    host or port after `greenery ui --port`, or a new base URL), not one built from this deployment's."""
    from greenery import links

    monkeypatch.setattr(links, "base_url", lambda: "http://airflow.example.test:8793")  # [api] base_url
    with psycopg.connect(warehouse_url) as conn:
        audit.record_validation(conn, {**clean_summary(), "log_url": "http://old-host:8080/x"}, published=True)
        conn.execute("insert into greenery_audit.publish_log values (%s, '2024-03-02', now(), '{}')", (NEW_RUN,))
    page = client().get("/data-quality/", params={"run_id": OLD_RUN}).text
    assert "readers see this run" not in page
    assert "readers now see a later publish, the run of <strong>2024-03-02</strong>" in page
    assert "old-host" not in page
    run = quote(OLD_RUN, safe="")
    assert f'href="http://airflow.example.test:8793/dags/greenery_daily/runs/{run}/tasks/validate"' in page
    # The JSON too (it gave the stored URL): the task log and the run's page, from this deployment's base URL.
    latest = client().get("/data-quality/api/latest", params={"run_id": OLD_RUN}).json()["latest_run"]
    here = f"http://airflow.example.test:8793/dags/greenery_daily/runs/{run}"
    assert (latest["log_url"], latest["run_url"]) == (f"{here}/tasks/validate", here), latest


@pytest.mark.db
@pytest.mark.integration
def test_a_run_asked_for_by_name_shows_its_own_results_not_a_later_runs(warehouse_url, stored_docs):
    """Review: the page of the clean, published run of 2024-03-01 (its alerts and digest link there) listed the
    critical failure and the failed table of the run of 2024-03-02, validated later, and that run in its recent
    runs."""
    record_two_runs(warehouse_url)
    page = flat(client().get("/data-quality/", params={"run_id": OLD_RUN}).text)
    assert "No failing checks" in page
    assert "expect_column_values_to_be_between" not in page and "not re-checked since" not in page
    newest = flat(client().get("/data-quality/").text)  # the latest run's page still lists them
    assert "expect_column_values_to_be_between" in newest
    # Its recent runs end with it, and say a later one exists (review: they listed the run after it).
    recent = page[page.index("Recent runs") :]
    assert "Recent runs up to this one" in recent and OLD_RUN in recent and NEW_RUN not in recent
    assert '1 later run not listed: <a href="./">the latest run\'s page</a>' in recent
    assert "later run" not in newest and NEW_RUN in newest[newest.index("Recent runs") :]
    # Each listed run links to its own page, which lists the runs before it (review: past the ten shown, and the
    # Data Docs index's 30, an older run's page could be reached only by typing its id into the URL).
    old_page = f'<a href="?{urlencode({"run_id": OLD_RUN})}">'
    assert old_page in newest[newest.index("Recent runs") :], newest
    assert (
        client().get(f"/data-quality/{old_page[9:-2]}").text
        == client().get("/data-quality/", params={"run_id": OLD_RUN}).text
    )


@pytest.mark.db
@pytest.mark.integration
def test_a_run_that_failed_before_validate_has_a_page_with_its_failed_tasks(warehouse_url, stored_docs):
    """Review: every alert carries a Data quality button; for a run that failed before validate (a source check,
    a model's SQL, the warehouse) it opened a 404: no validation recorded. It shows the run's failed tasks."""
    record_two_runs(warehouse_url)
    failed = "scheduled__2024-03-03T00:00:00+00:00"
    with psycopg.connect(warehouse_url) as conn:
        audit.record_task_failure(
            conn, failed, "check_source_freshness", dt.date(2024, 3, 3), "raw.events is <b>stale</b>"
        )
    response = client().get("/data-quality/", params={"run_id": failed})
    assert response.status_code == 200, response.text
    page = flat(response.text)
    assert "The run was not validated" in page and "check_source_freshness" in page
    # No checks ran: nothing to group or count (review of this change: "Root causes · run of None", "No failing
    # checks in this run"); its day is the one its failure recorded.
    assert "Root causes" not in page and "Quarantined rows" not in page and "None" not in page
    assert '<div class="k">Logical date</div><div class="v">2024-03-03</div>' in page
    assert "raw.events is &lt;b&gt;stale&lt;/b&gt;" in page  # escaped
    # User trial: a 5,000-character key from raw filled the page (Slack shows 600): 1,500, the rest folded.
    with psycopg.connect(warehouse_url) as conn:
        long = "duplicate promo <img src=x onerror=alert(1)>" + "Z" * 5000
        audit.record_task_failure(conn, failed, "validate", dt.date(2024, 3, 3), long)
    page = flat(client().get("/data-quality/", params={"run_id": failed}).text)
    shown = "duplicate promo &lt;img src=x onerror=alert(1)&gt;" + "Z" * (1500 - 44) + "</bdi>…</pre>"
    assert shown in page and "<summary>the whole message (5,044 characters)</summary>" in page
    assert page.count("Z" * 5000) == 1  # once, inside the folded part
    assert f"runs/{quote(failed, safe='')}/tasks/check_source_freshness" in page  # its failed task's log
    assert "open the run</a> → Clear, shift+C → Clear existing tasks)" in page  # Airflow 3.3's words (user trial)
    as_json = client().get("/data-quality/api/latest", params={"run_id": failed})
    assert as_json.status_code == 200 and as_json.json()["task_failures"][0]["logical_date"] == "2024-03-03"
    assert client().get("/data-quality/", params={"run_id": "never-ran"}).status_code == 404
    # A browser (an alert's button for a run that recorded nothing yet) gets a page saying so, not JSON (review).
    page = client().get("/data-quality/", params={"run_id": "<never-ran>"}, headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html"), page.text
    assert "no validation or task failure recorded for run &#39;&lt;never-ran&gt;&#39;" in page.text, page.text
    assert "sign in" not in page.text and "The latest run's data quality" in page.text


@pytest.mark.db
@pytest.mark.integration
def test_a_run_that_failed_before_validate_shows_no_later_runs_results(warehouse_url, stored_docs):
    """Review: the page of a run whose source check failed (its alert's link) listed, as its "earlier runs", the
    failures of a run validated after it. Its tables are as of its first failure (README: "as of this run's
    validation")."""
    failed = "scheduled__2024-03-02T00:00:00+00:00__source_check"
    with psycopg.connect(warehouse_url) as conn:
        audit.record_validation(conn, clean_summary(), published=True)
        conn.execute("update greenery_audit.validation_runs set validated_at = now() - interval '2 days'")
        audit.record_task_failure(conn, failed, "check_source_freshness", dt.date(2024, 3, 2), "raw.events is stale")
        conn.execute("update greenery_audit.task_failures set failed_at = now() - interval '1 day'")
        [(failed_at,)] = conn.execute("select failed_at from greenery_audit.task_failures").fetchall()
        conn.commit()
        audit.record_validation(conn, failing_summary(), published=False)  # validated after the failure
    page = flat(client().get("/data-quality/", params={"run_id": failed}).text)
    assert "The run was not validated" in page
    # Its recent runs are those validated before its failure; the one after it is counted, not listed.
    assert "Recent runs before this one</h2> <p>1 later run not listed" in page and f'title="{NEW_RUN}"' not in page
    assert "expect_column_values_to_be_between" not in page and "pigeon" not in page and "No failing checks" in page
    assert '<span class="badge failed">failed</span>' not in page
    with psycopg.connect(warehouse_url) as conn:  # published before it failed: still served
        conn.execute(
            "insert into greenery_audit.publish_log values (%s, '2024-03-01', now() - interval '2 days', '{}')",
            (OLD_RUN,),
        )
    before = flat(client().get("/data-quality/", params={"run_id": failed}).text)
    assert "Readers are still served the run of <strong>2024-03-01</strong>" in before
    with psycopg.connect(warehouse_url) as conn:  # review: a publish after its failure read as "still served"
        conn.execute("insert into greenery_audit.publish_log values ('later', '2024-03-05', now(), '{}')")
    later = flat(client().get("/data-quality/", params={"run_id": failed}).text)
    assert "Readers now see a later publish, the run of <strong>2024-03-05</strong>" in later
    assert page.count("run of 2024-03-01 (not re-checked since)") == 3  # every table: the earlier run's result
    body = client().get("/data-quality/api/latest", params={"run_id": failed}).json()
    assert {t["run_id"] for t in body["tables"]} == {OLD_RUN}
    assert dt.datetime.fromisoformat(body["tables_as_of"]) == failed_at
    # the latest page still shows the later run's results
    assert "expect_column_values_to_be_between" in flat(client().get("/data-quality/").text)


def record_clean_published_run(url: str, clear_number: int | None = None) -> None:
    """The clean run of 2024-03-01, validated and published a day ago (by its attempt ``clear_number``)."""
    with psycopg.connect(url) as conn:
        audit.record_validation(conn, {**clean_summary(), "clear_number": clear_number}, published=True)
        conn.execute("update greenery_audit.validation_runs set validated_at = now() - interval '1 day'")
        conn.execute(
            "insert into greenery_audit.publish_log values (%s, '2024-03-01', now() - interval '1 day', '{}')",
            (OLD_RUN,),
        )


@pytest.mark.db
@pytest.mark.integration
def test_the_latest_page_shows_a_run_that_failed_after_the_latest_validation(warehouse_url, stored_docs, monkeypatch):
    """Review: a run that failed before validate (its source check, a model, the warehouse, a killed task) records
    a task failure and no validation, so the latest page and /api/latest kept showing the older validated run:
    "Published. Every check passed; readers see this run." and no failed task, while the newest run was red."""
    from greenery import links

    monkeypatch.setattr(links, "base_url", lambda: "http://airflow.example.test:8793")  # [api] base_url
    record_clean_published_run(warehouse_url, clear_number=0)
    failed = "scheduled__2024-03-02T00:00:00+00:00"
    with psycopg.connect(warehouse_url) as conn:
        # The validated run's own attempt failing after its validation is on its page (the digest after publish).
        audit.record_task_failure(conn, OLD_RUN, "state_of_the_data", dt.date(2024, 3, 1), "smtp down", 0)
    page = flat(client().get("/data-quality/").text)
    assert "Every check passed" in page and "The newest run failed" not in page and "smtp down" in page
    with psycopg.connect(warehouse_url) as conn:
        audit.record_task_failure(
            conn, failed, "check_source_freshness", dt.date(2024, 3, 2), "raw.events <b>stale</b>"
        )
    response = client().get("/data-quality/")
    assert response.status_code == 200, response.text
    page = flat(response.text)
    assert "Every check passed" not in page and "readers see this run" not in page
    assert "The run was not validated" in page and f'title="{failed}"' in page
    assert '<div class="k">Logical date</div><div class="v">2024-03-02</div>' in page
    assert "check_source_freshness" in page and "raw.events &lt;b&gt;stale&lt;/b&gt;" in page  # why, escaped
    assert "Readers are still served the run of <strong>2024-03-01</strong>" in page
    # It names the validation it is newer than, with links to both runs' pages from this deployment's base URL.
    assert "The newest run failed." in page and "that of the run of 2024-03-01" in page
    here = "http://airflow.example.test:8793"
    assert f'<a href="{here}/data-quality/?run_id={quote(OLD_RUN, safe="")}">its results</a>' in page
    assert f'<a href="{here}/data-quality/?run_id={quote(failed, safe="")}">This run' in page
    assert f'href="{here}/dags/greenery_daily/runs/{quote(failed, safe="")}/tasks/check_source_freshness"' in page
    # Each table: the earlier run's result; its history still lists that run, and no later run.
    assert page.count("run of 2024-03-01 (not re-checked since)") == 3 and "not listed" not in page
    assert OLD_RUN in page[page.index("Recent runs") :]
    body = client().get("/data-quality/api/latest").json()
    run = body["latest_run"]
    assert (run["run_id"], run["validated"], run["published"]) == (failed, False, False), run
    assert run["log_url"].endswith("/tasks/check_source_freshness")
    assert [(f["task_id"], f["error"]) for f in body["task_failures"]] == [
        ("check_source_freshness", "raw.events <b>stale</b>")
    ]
    previous = body["previous_validation"]
    assert (previous["run_id"], previous["published"]) == (OLD_RUN, True), previous
    assert previous["quality_url"] == f"{here}/data-quality/?run_id={quote(OLD_RUN, safe='')}"
    assert {t["run_id"] for t in body["tables"]} == {OLD_RUN}
    # The run's own page is unchanged; so is the validated run's.
    assert "The newest run failed" not in client().get("/data-quality/", params={"run_id": failed}).text
    assert "Every check passed" in client().get("/data-quality/", params={"run_id": OLD_RUN}).text


@pytest.mark.db
@pytest.mark.integration
def test_a_later_clear_of_the_validated_run_that_failed_is_the_latest_page(warehouse_url, stored_docs):
    """A rerun of a validated day is a new attempt (Airflow's clear_number): failing before validate, it is red."""
    record_clean_published_run(warehouse_url, clear_number=0)
    with psycopg.connect(warehouse_url) as conn:
        audit.record_task_failure(conn, OLD_RUN, "prepare_build", dt.date(2024, 3, 1), "warehouse restarting", 1)
    page = flat(client().get("/data-quality/").text)
    assert "Every check passed" not in page and "The run was not validated" in page and "prepare_build" in page
    assert "The newest run failed." in page
    body = client().get("/data-quality/api/latest").json()
    assert (body["latest_run"]["run_id"], body["latest_run"]["validated"]) == (OLD_RUN, False)
    assert [f["task_id"] for f in body["task_failures"]] == ["prepare_build"]


@pytest.mark.db
@pytest.mark.integration
def test_failures_after_their_runs_validation_leave_the_latest_page_green(warehouse_url, stored_docs):
    """Second review: a failure of a validated run's later clear (its digest cleared alone, failing again) and, in a
    backfill, another run's digest failing after the latest validation each showed a checked and published run as
    "not validated". Only a run attempt without a validation failed before its checks."""
    record_clean_published_run(warehouse_url, clear_number=0)
    other = "backfill__2024-02-29T00:00:00+00:00"
    with psycopg.connect(warehouse_url) as conn:
        audit.record_validation(conn, {**clean_summary(), "run_id": other, "clear_number": 0}, published=True)
        conn.execute(
            "update greenery_audit.validation_runs set validated_at = now() - interval '2 days' where run_id = %s",
            (other,),
        )
        audit.record_task_failure(conn, OLD_RUN, "state_of_the_data", dt.date(2024, 3, 1), "smtp down", 1)
        audit.record_task_failure(conn, other, "state_of_the_data", dt.date(2024, 2, 29), "smtp down", 0)
    page = flat(client().get("/data-quality/").text)
    assert "Every check passed" in page and "The newest run failed" not in page and "not validated" not in page
    # Its failed digest: clear that task, not the whole run, which would publish and send the digest again (review).
    assert "The marts were published by this run: after fixing the cause, clear the failed task (with its" in page
    assert "clear the whole run" not in page
    body = client().get("/data-quality/api/latest").json()
    assert (body["latest_run"]["run_id"], body["latest_run"]["validated"]) == (OLD_RUN, True)
    # A later attempt that validates ends a red clear: the clear that failed before validate is no longer news.
    with psycopg.connect(warehouse_url) as conn:
        audit.record_task_failure(conn, OLD_RUN, "prepare_build", dt.date(2024, 3, 1), "warehouse restarting", 2)
    assert client().get("/data-quality/api/latest").json()["latest_run"]["validated"] is False
    with psycopg.connect(warehouse_url) as conn:
        audit.record_validation(conn, {**clean_summary(), "clear_number": 3}, published=True)
        latest = "where summary ->> 'clear_number' = '3'"
        conn.execute(f"update greenery_audit.validation_runs set validated_at = now() - interval '1 hour' {latest}")
    assert client().get("/data-quality/api/latest").json()["latest_run"]["validated"] is True


@pytest.mark.db
@pytest.mark.integration
def test_a_runs_own_page_says_when_a_clear_of_it_failed_before_its_checks(warehouse_url, stored_docs):
    """Review: the alert of a clear that failed before validate links to the run's own page, which showed the earlier
    attempt's validation as the run's ("Every check passed") with nothing to say it was not this attempt's."""
    record_clean_published_run(warehouse_url, clear_number=0)
    own = f"/data-quality/?run_id={quote(OLD_RUN)}"
    with psycopg.connect(warehouse_url) as conn:  # the digest cleared alone, failing: the checks stand
        audit.record_task_failure(conn, OLD_RUN, "state_of_the_data", dt.date(2024, 3, 1), "smtp down", 1)
    assert "cleared and failed" not in flat(client().get(own).text)
    assert client().get(f"/data-quality/api/latest?run_id={quote(OLD_RUN)}").json()["cleared_and_failed"] is None
    with psycopg.connect(warehouse_url) as conn:
        audit.record_task_failure(conn, OLD_RUN, "prepare_build", dt.date(2024, 3, 1), "warehouse <restarting>", 2)
    page = flat(client().get(own).text)
    assert "The run was cleared and failed again." in page and "prepare_build" in page, page
    assert "warehouse &lt;restarting&gt;" in page and "<restarting>" not in page  # its error, escaped
    body = client().get(f"/data-quality/api/latest?run_id={quote(OLD_RUN)}").json()
    assert body["cleared_and_failed"]["task_id"] == "prepare_build" and body["latest_run"]["run_id"] == OLD_RUN


@pytest.mark.db
@pytest.mark.integration
def test_a_failure_before_the_latest_validation_leaves_the_latest_page_as_it_was(warehouse_url, stored_docs):
    """The control: a run that failed before the latest validation was recorded is not the newest news."""
    record_clean_published_run(warehouse_url)
    with psycopg.connect(warehouse_url) as conn:
        audit.record_task_failure(conn, "older", "check_source_freshness", dt.date(2024, 2, 29), "raw.events stale")
        conn.execute("update greenery_audit.task_failures set failed_at = now() - interval '2 days'")
    page = flat(client().get("/data-quality/").text)
    assert "Published.</strong> Every check passed; readers see this run." in page
    assert "The newest run failed" not in page and "check_source_freshness" not in page
    body = client().get("/data-quality/api/latest").json()
    assert body["latest_run"]["run_id"] == OLD_RUN and body["latest_run"]["validated"] is True
    assert body["task_failures"] == [] and body.get("previous_validation") is None


@pytest.mark.db
@pytest.mark.integration
def test_clean_latest_run_is_shown_as_published(warehouse_url, stored_docs):
    with psycopg.connect(warehouse_url) as conn:
        audit.record_validation(conn, clean_summary(), published=True)
    page = client().get("/data-quality/").text
    assert "Every check passed; readers see this run." in page and "No failing checks." in page
    assert "No rows were quarantined." in page
    assert "For information" not in page  # no info result in this run


@pytest.mark.db
@pytest.mark.integration
def test_a_published_run_with_rows_quarantined_and_no_warning_says_so_not_with_warnings(warehouse_url, stored_docs):
    """User trial: "Published with warnings ... review the checks below" over no warning and two rows quarantined."""
    with psycopg.connect(warehouse_url) as conn:
        audit.record_validation(conn, {**clean_summary(), "quarantined": {"stg_postgres__events": 2}}, published=True)
    page = client().get("/data-quality/").text
    assert "<strong>Published with rows quarantined.</strong>" in page and "review the quarantine below" in page
    assert "with warnings" not in page


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_unreachable_warehouse_is_a_503_with_a_message(monkeypatch):
    port = _closed_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_GREENERY_WAREHOUSE",
        json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "x", "schema": "x"}),
    )
    app = client()
    started = time.monotonic()
    page = app.get("/data-quality/")
    assert time.monotonic() - started < 10
    assert page.status_code == 503
    assert "The warehouse cannot be reached" in page.text
    assert "greenery_warehouse" in page.text and str(port) in page.text
    assert "Traceback" not in page.text
    api = app.get("/data-quality/api/latest")
    assert api.status_code == 503
    assert api.json()["error"] == "warehouse_unavailable" and str(port) in api.json()["detail"]


def test_a_warehouse_that_takes_the_connection_and_never_answers_is_a_503_within_seconds(monkeypatch):
    """Review: the view connected with no timeout of its own; a warehouse (or a proxy) that took the connection and
    never answered held the request, one of the API server's threads, for as long as it was up (over 40 s)."""
    monkeypatch.setattr(report, "CONNECT_TIMEOUT_S", 1)  # the bound is the view's own; 5 s by default
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel takes the connection; nothing ever reads or answers it
        port = silent.getsockname()[1]
        monkeypatch.setenv(
            "AIRFLOW_CONN_GREENERY_WAREHOUSE",
            json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "x", "schema": "x"}),
        )
        started = time.monotonic()
        page = client().get("/data-quality/")
        took = time.monotonic() - started
    assert page.status_code == 503 and "The warehouse cannot be reached" in page.text, page.text
    assert "timeout expired" in page.text and str(port) in page.text, page.text
    assert took < report.CONNECT_TIMEOUT_S + 5, took


@pytest.mark.db
@pytest.mark.parametrize("stall", STALLS)
def test_a_warehouse_that_stops_answering_once_connected_is_a_503_within_the_views_bound(
    stall, warehouse_url, monkeypatch
):
    """Diff review: the test above is stopped by libpq's connect timeout, so taking out the view's bound on the read
    (warehouse.answer_within) failed no test. Here the login goes through and the warehouse goes quiet after it."""
    record_two_runs(warehouse_url)
    monkeypatch.setattr(report, "ANSWER_WITHIN_S", 1)
    answered: list = []
    with stalling_warehouse(monkeypatch, warehouse_url, stall_on=STALLS[stall]):
        # In a thread: without the bound the request waits for good, beyond pytest-timeout's reach (a blocked recv);
        # the stand-in's sockets closed at the block's end then free it.
        asking = threading.Thread(target=lambda: answered.append(client().get("/data-quality/")), daemon=True)
        asking.start()
        asking.join(report.ANSWER_WITHIN_S + 10)
    assert answered, f"no answer in {report.ANSWER_WITHIN_S + 10} s: the view's read has no bound of its own"
    assert answered[0].status_code == 503 and "The warehouse cannot be reached" in answered[0].text, answered[0].text


def test_missing_connection_is_a_503_too(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_GREENERY_WAREHOUSE", raising=False)
    page = client().get("/data-quality/")
    assert page.status_code == 503 and "AIRFLOW_CONN_GREENERY_WAREHOUSE" in page.text


def test_requests_without_an_airflow_login_are_refused():
    app = client(require_auth=True)
    assert app.get("/data-quality/api/latest").status_code == 401
    assert app.get("/data-quality/docs/index.html").status_code == 401
    page = app.get("/data-quality/", headers={"Accept": "text/html"})
    assert page.status_code == 401 and "Sign in to Airflow" in page.text
    assert '<a href="../">Open Airflow</a>' in page.text  # relative: Airflow may live under a base path
    deep = app.get("/data-quality/docs/validations/run.html", headers={"Accept": "text/html"})
    assert deep.status_code == 401 and '<a href="../../../">Open Airflow</a>' in deep.text
    assert app.get("/data-quality/icon.svg").status_code == 200  # the nav icon is public


@pytest.mark.parametrize("allowed", [False, True], ids=["no read access", "read access"])
def test_a_signed_in_user_needs_read_access_to_the_dags_runs(allowed, monkeypatch):
    """Signed in is not enough (README: the view asks the auth manager for read access to greenery_daily's runs)."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    asked = []

    class AuthManager:
        def is_authorized_dag(self, *, method, access_entity, details, user):
            asked.append((method, access_entity.name, details.id, user))
            return allowed

    monkeypatch.setattr(airflow_app, "get_auth_manager", lambda: AuthManager())
    view = quality_view.create_app(require_auth=True)
    view.dependency_overrides[get_user] = lambda: "ana"  # signed in: Airflow's JWT check passed
    root = FastAPI()
    root.mount("/data-quality", view)
    app = TestClient(root)
    response = app.get("/data-quality/api/latest")
    page = app.get("/data-quality/", headers={"Accept": "text/html"})
    assert asked == [("GET", "RUN", "greenery_daily", "ana")] * 2
    if allowed:  # let through to the warehouse, which this test has none of
        assert response.status_code == 503 and page.status_code == 503
    else:
        assert response.status_code == 403
        assert response.json() == {"detail": "Forbidden: you may not read the runs of DAG greenery_daily"}
        assert page.status_code == 403 and "Not allowed" in page.text and "greenery_daily" in page.text


# ---------------------------------------------------------------------------------------------------
# 2. Airflow discovers the plugin
# ---------------------------------------------------------------------------------------------------

_DISCOVER = r"""
import json, sys
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
light = {m: m in sys.modules for m in ("fastapi", "greenery.quality_view", "great_expectations", "psycopg")}
from fastapi import FastAPI
apps, _ = plugins_manager.get_fastapi_plugins()
external_views, _ = plugins_manager._get_ui_plugins()
info = [p for p in plugins_manager.get_plugin_info() if p["name"] == "greenery_quality"]
print(json.dumps({
    "errors": errors, "light": light, "info": info, "external_views": external_views,
    "apps": [{"prefix": a["url_prefix"], "name": a["name"], "is_fastapi": isinstance(a["app"], FastAPI),
              "routes": sorted(getattr(r, "path", "") for r in a["app"].routes)} for a in apps],
}, default=str))
"""


@pytest.mark.stack
def test_airflow_discovers_the_plugin(tmp_path):
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    out = subprocess.run([sys.executable, "-c", _DISCOVER], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    # loading the plugins folder (every Airflow process does) imports neither the app nor the database code
    assert not any(found["light"].values()), found["light"]
    [app] = [a for a in found["apps"] if a["prefix"] == "/data-quality"]
    assert app["is_fastapi"] and app["name"] == "Greenery data quality"
    assert {"/", "/api/latest", "/docs/{path:path}", "/icon.svg"} <= set(app["routes"])
    [view] = [v for v in found["external_views"] if v.get("url_route") == "data-quality"]
    assert view["name"] == "Data quality" and view["destination"] == "nav"
    assert view["href"] == "data-quality/"  # relative to the UI's base URL
    [info] = found["info"]
    assert info["source"] == "$PLUGINS_FOLDER/greenery_quality_plugin.py"
    assert info["fastapi_apps"][0]["app"] == "fastapi.applications.FastAPI"


# ---------------------------------------------------------------------------------------------------
# 3. Through a real `airflow api-server`, and in a real browser
# ---------------------------------------------------------------------------------------------------


def _raw_get(port: int, path: str) -> tuple[int, str]:
    """A GET with the path sent exactly as given (no client-side normalization of `..`)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.mark.db
@pytest.mark.integration
def test_data_docs_need_the_airflow_login_with_the_celery_profiles_settings(
    warehouse_url, stored_docs, tmp_path, migrated_airflow_db
):
    """The real api-server with the compose file's celery-profile settings (executor, broker, auth manager):
    every Data Docs URL answers 401 without a login and 200 (404 for a missing page) with one."""
    import test_compose

    compose_env = test_compose.CELERY["airflow-apiserver"]["environment"]
    prefixes = ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__AUTH_MANAGER", "AIRFLOW__CELERY__")
    settings = {k: v for k, v in compose_env.items() if k.startswith(prefixes)}
    assert settings["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor" and "AIRFLOW__CELERY__BROKER_URL" in settings
    password = os.urandom(8).hex()
    urls = ["docs/", "docs/index.html", f"docs/{data_docs.href(ORDERS_PAGE)}", f"docs/{data_docs.href(RUN_PAGE)}"]
    with browser.api_server(tmp_path, migrated_airflow_db, users={"viewer": password}, settings=settings) as (base, _):
        for url in [*urls, "docs/validations/missing.html"]:
            status, text = http_get(f"{base}/data-quality/{url}")
            assert status == 401, (url, status)
            assert "result page" not in text and "stg_postgres__orders" not in text, url
        login = {"Authorization": f"Bearer {browser.login_token(base, 'viewer', password)}"}
        for url in urls:
            assert http_get(f"{base}/data-quality/{url}", headers=login)[0] == 200, url
        assert http_get(f"{base}/data-quality/docs/validations/missing.html", headers=login)[0] == 404


@pytest.fixture
def api_server(warehouse_url, stored_docs, tmp_path, migrated_airflow_db):
    with browser.api_server(tmp_path, migrated_airflow_db) as server:
        yield server


@pytest.mark.db
@pytest.mark.integration
@pytest.mark.timeout(240)
def test_through_the_real_api_server_and_chromium(api_server, warehouse_url, tmp_path):
    base, port = api_server
    record_two_runs(warehouse_url)

    status, page = http_get(f"{base}/data-quality/")
    assert status == 200, page
    page = flat(page)
    assert NEW_RUN in page and "Not published." in page and "expect_column_values_to_be_between" in page
    assert "marts.metrics_daily" in page and "8c1a6f0e-0000-4000-8000-00000000beef" in page
    status, body = http_get(f"{base}/data-quality/api/latest")
    assert status == 200 and json.loads(body)["latest_run"]["run_id"] == NEW_RUN
    status, docs = http_get(f"{base}/data-quality/docs/{data_docs.href(RUN_PAGE)}")
    assert status == 200 and "validation result page" in docs
    for path in ("/data-quality/docs/../../../../../../etc/passwd", "/data-quality/docs/%2e%2e/secret.txt"):
        status, text = _raw_get(port, path)
        assert status in (400, 404) and "root:" not in text and "TOP-SECRET" not in text, (path, status)

    # the UI learns about the nav entry and the app from the plugins endpoint
    status, body = http_get(f"{base}/api/v2/plugins")
    assert status == 200
    [plugin] = [p for p in json.loads(body)["plugins"] if p["name"] == "greenery_quality"]
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/data-quality"
    assert [v["url_route"] for v in plugin["external_views"]] == ["data-quality"]

    png = tmp_path / "data-quality.png"
    shot = browser.chromium(f"{base}/data-quality/", tmp_path / "chromium-profile", screenshot=png)
    assert png.is_file(), shot.stderr[-2000:]
    assert png.stat().st_size > 20_000
    with Image.open(png) as shot_image:
        image = shot_image.convert("RGB")
    width, height = image.size
    assert (width, height) == (1280, 900)
    samples = {image.getpixel((x, y)) for x in range(0, width, 40) for y in range(0, height, 30)}
    assert len(samples) >= 6, samples  # not a blank page: background, cards, text, red/amber/green badges
    dense = (image.getpixel((x, y)) for x in range(0, width, 3) for y in range(0, height, 3))
    assert any(r > 150 and g < 120 and b < 120 for r, g, b in dense), "no red badge/banner"
    shutil.copyfile(png, SCREENSHOT)


def test_only_http_links_and_paths_of_the_origin_become_links():
    from greenery.ui.render import _safe_url

    for good in ("https://airflow.example.com/dags/x/runs/y", "http://localhost:8080/x", "/dags/greenery_daily"):
        assert _safe_url(good) == good
    for bad in (
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:x",
        "//evil.example.com/x",
        "/\\evil.example.com/x",
        "https:evil",
        "relative/path",
        None,
        42,
    ):
        assert _safe_url(bad) is None, bad


def test_data_docs_pages_get_our_stylesheet_and_keep_their_markup():
    from greenery.ui.render import with_docs_style

    page = '<!DOCTYPE html><html><HEAD lang="en"><title>x</title></head><body><p>a &amp; b</p></body></html>'
    styled = with_docs_style(page)
    assert styled.startswith('<!DOCTYPE html><html><HEAD lang="en"><style>')
    assert styled.endswith("</style><title>x</title></head><body><p>a &amp; b</p></body></html>")
    assert with_docs_style("<p>no head</p>").endswith("</style><p>no head</p>")


def test_a_duplicated_compound_key_is_shown_whole_with_its_copies():
    """As in the Slack alert (tests/test_slack_alert.py): the whole key, its count last, in the root causes and
    in the failures of the view; a longer one is cut and keeps its whole text in a tooltip."""
    from helpers import duplicated_compound_key

    from greenery.checks.summary import SAMPLE_KEY_CHARS
    from greenery.ui.render import render_page

    key = duplicated_compound_key()
    longer = "x" * (SAMPLE_KEY_CHARS + 1)
    failure = dict.fromkeys(("column", "description", "error", "observed_value", "unexpected_count"))
    failure.update(table="t", suite="t", severity="critical", expectation="x", sample_keys=[key, longer])
    keys = [{"key": key, "count": 1}, {"key": longer, "count": 1}]
    cause = {**failure, "sources": [], "also_fails_in": [], "runs_failing": 1, "owner": None, "keys": keys}
    run = dict.fromkeys(("validated_at", "log_url", "failures_total"))
    run.update(run_id="r", logical_date="2021-02-12", published=False, dag_id="d", quarantined={})
    run.update(evaluated=1, failed_critical=1, failed_warning=0)
    page = render_page({"dag_id": "d", "latest_run": run, "tables": [], "failures": [failure], "root_causes": [cause]})
    assert page.count(f"><bdi>{key}</bdi></code>") == 2
    assert page.count(f'title="{longer}"') == 2 and f">{longer}<" not in page


@pytest.mark.parametrize(
    "recorded_as",
    [
        {"owner": None},  # before owners existed (git 43458f1): no key at all
        {"runs_failing": None, "failing_since": None},
        {"sources": None, "also_fails_in": None},
        {"keys": [{"key": "k"}]},  # a key without its count
        {"keys": [7]},
        {"runs_failing": "3"},
        {"table": None, "expectation": None, "severity": None},
    ],
    ids=["owner", "runs-failing", "sources", "key-count", "key-int", "runs-failing-str", "names"],
)
def test_a_root_cause_recorded_by_an_older_version_is_shown_not_a_500(recorded_as):
    """Review: the page read each recorded root cause as it was, and its template names every field: a run recorded
    before a field existed (a cause without ``owner``, as validate recorded them before owners) made the page a 500.
    Each field is filled in with its type: "—" for a missing owner, "this run" for a missing count."""
    from greenery.ui import recorded
    from greenery.ui.render import render_page

    cause = {"table": "marts.t", "suite": "t", "severity": "critical", "expectation": "x", "column": None}
    cause.update(sources=["raw.t"], also_fails_in=[], runs_failing=2, failing_since="2021-02-11", owner="@ana")
    cause.update(keys=[{"key": "k", "count": 2}], description=None, error=None, observed_value=None)
    cause.update(unexpected_count=2)
    for name, value in recorded_as.items():
        cause.pop(name) if value is None else cause.update({name: value})
    run = dict.fromkeys(("validated_at", "log_url", "failures_total"))
    run.update(run_id="r", logical_date="2021-02-12", published=False, dag_id="d", quarantined={})
    run.update(evaluated=1, failed_critical=1, failed_warning=0)
    data = {"dag_id": "d", "latest_run": run, "tables": [], "failures": []}
    causes = recorded.causes({"root_causes": [cause]})
    page = render_page({**data, "root_causes": causes})
    assert "<td>—</td>" in page if "owner" in recorded_as else "@ana" in page
    with pytest.raises(Exception):  # noqa: B017 - the positive control: the cause as recorded fails the page
        render_page({**data, "root_causes": [cause]})


def test_a_runs_own_page_links_the_json_of_that_run_not_the_latest():
    """Review: the JSON link of a run's page (``?run_id=X``) opened the latest run's JSON."""
    from urllib.parse import urlencode

    from greenery.ui.render import render_page

    run = dict.fromkeys(("validated_at", "log_url", "failures_total"))
    run_id = "manual__2021-02-12T00:00:00+00:00 &<x>"
    run.update(run_id=run_id, logical_date="2021-02-12", published=True, dag_id="d", quarantined={})
    run.update(evaluated=1, failed_critical=0, failed_warning=0)
    data = {"dag_id": "d", "latest_run": run, "tables": [], "failures": []}
    asked = render_page(data, run_id=run_id)
    assert f'href="api/latest?{urlencode({"run_id": run_id})}">JSON</a>' in asked  # "+" as %2B, "&" and "<" too
    assert 'href="api/latest">JSON</a>' in render_page(data)  # the latest page: the latest run's


def test_a_failure_whose_rows_could_not_be_read_says_why_in_place_of_its_keys():
    """Review: a failure whose detail query failed showed "—" for its keys, as if it had none (checks/gx.py)."""
    from greenery.ui.render import render_page

    failure = dict.fromkeys(("column", "description", "error", "observed_value"))
    reason = 'column "no_such<column>" does not exist'
    failure.update(table="t", suite="t", severity="critical", expectation="x", unexpected_count=2, sample_keys=[])
    failure.update(detail_error=reason)
    cause = {**failure, "sources": [], "also_fails_in": [], "runs_failing": 1, "owner": None, "keys": []}
    run = dict.fromkeys(("validated_at", "log_url", "failures_total"))
    run.update(run_id="r", logical_date="2021-02-12", published=False, dag_id="d", quarantined={})
    run.update(evaluated=1, failed_critical=1, failed_warning=0)
    page = render_page({"dag_id": "d", "latest_run": run, "tables": [], "failures": [failure], "root_causes": [cause]})
    shown = "keys could not be read: <bdi>column &#34;no_such&lt;column&gt;&#34; does not exist</bdi>"
    assert page.count(shown) == 2, page  # the root cause and the failure, escaped


def test_direction_controls_in_data_are_shown_escaped_and_each_value_isolated():
    """Review: an RLO in a sample key made the view show another key and flipped the rest of its line. Every
    direction control in a value is shown as its escape (``\\u202e``), in text and in tooltips, and each value is
    isolated (``<bdi>``): right-to-left text in one cannot reorder what follows it."""
    from greenery import bidi
    from greenery.checks.summary import SAMPLE_KEY_CHARS
    from greenery.ui.data_docs import ValidationRun
    from greenery.ui.render import render_docs_index, render_page

    controls = "".join(bidi.CONTROLS)
    assert {f"U+{ord(c):04X}" for c in controls} >= {"U+202A", "U+202E", "U+2066", "U+2069", "U+200E", "U+200F"}

    def hostile(name: str) -> str:
        return f"{name}\u202e{controls}gnp.exe"

    key = hostile("order")
    long_key = hostile("x" * SAMPLE_KEY_CHARS)  # cut, whole in its tooltip
    failure = {
        "suite": hostile("suite"),
        "table": hostile("staging.t"),
        "column": hostile("col"),
        "expectation": hostile("expect"),
        "severity": "critical",
        "description": hostile("desc"),
        "observed_value": hostile("seen"),
        "unexpected_count": 1,
        "sample_keys": [key, long_key],
        "error": hostile("err"),
    }
    keys = [{"key": key, "count": 2}]
    sources = [hostile("raw.a"), hostile("raw.b")]
    cause = {**failure, "sources": sources, "also_fails_in": sources, "runs_failing": 2, "keys": keys}
    cause.update(owner=hostile("owner"), failing_since="2024-03-01")
    run = {"run_id": hostile("manual__run"), "logical_date": "2024-03-02", "validated_at": None, "log_url": None}
    run.update(published=False, dag_id=hostile("dag"), quarantined={hostile("stg_model"): 1}, failures_total=1)
    run.update(evaluated=1, failed_critical=1, failed_warning=0)
    serving = {"run_id": hostile("manual__served"), "logical_date": "2024-03-01", "published_at": None}
    table = {"suite": failure["suite"], "table": failure["table"], "validated_table": hostile("_build.t")}
    table.update(status="failed", evaluated=1, failed_critical=1, failed_warning=0, run_id=run["run_id"])
    table.update(logical_date="2024-03-02", in_latest_run=True, failures=[failure])
    task = {"task_id": hostile("task"), "failed_at": None, "error": hostile("why")}
    data = {"dag_id": run["dag_id"], "latest_run": run, "serving": serving, "tables": [table], "failures": [failure]}
    data.update(root_causes=[cause], notes=[failure], task_failures=[task], quarantined=run["quarantined"])
    data.update(history=[run])
    page = render_page(data)
    index = render_docs_index(
        [ValidationRun(hostile("manual__run"), hostile("2024"), ((hostile("suite"), "validations/x.html"),))],
        app_root="../",
        docs_root="",
    )
    for html in (page, index):
        assert not set(controls) & set(html), sorted({f"U+{ord(c):04X}" for c in html if c in controls})
    visible = "\\u202e" + "".join(f"\\u{ord(c):04x}" for c in controls)
    # each value, as text of its own direction, controls visible
    assert f'<code class="key"><bdi>order{visible}gnp.exe</bdi> ×2</code>' in page  # root causes: count after
    assert f'<code class="key"><bdi>order{visible}gnp.exe</bdi></code>' in page  # failing checks
    assert f'title="{"x" * SAMPLE_KEY_CHARS}{visible}gnp.exe"' in page  # the long key's tooltip
    assert f"from <bdi>raw.a{visible}gnp.exe</bdi>, <bdi>raw.b{visible}gnp.exe</bdi>" in page
    for name in ("suite", "col", "desc", "err", "seen", "owner", "stg_model", "task", "why", "dag", "manual__run"):
        assert f"<bdi>{name}{visible}gnp.exe</bdi>" in page, name
    assert page.count("<bdi>") > 30
    assert f'Run <span class="mono"><bdi>manual__run{visible}gnp.exe</bdi></span>' in index
    assert f"<bdi>suite{visible}gnp.exe</bdi></a>" in index


def test_direction_controls_in_a_gx_page_are_shown_escaped():
    """Review: GX writes data values into its Data Docs as they are; an RLO in a sample key reversed it and the rest
    of its line in the served page. The view serves every control as its escape (GX's own markup has none)."""
    from greenery import bidi
    from greenery.ui.render import with_docs_style

    controls = "".join(bidi.CONTROLS)
    page = with_docs_style(f"<html><head><title>t</title></head><body><td>order\u202e{controls}gnp.exe</td></body>")
    assert not set(controls) & set(page)
    assert "<td>order\\u202e" + "".join(f"\\u{ord(c):04x}" for c in controls) + "gnp.exe</td>" in page
    assert page.index("<style") < page.index("<title>")  # our stylesheet still first in the head


@pytest.mark.db
@pytest.mark.integration
def test_a_bad_setting_the_view_does_not_read_does_not_take_it_down(warehouse_url, stored_docs, monkeypatch):
    """Review: GREENERY_RETRIES=x on the api-server made the page, the JSON and the Data Docs a bare 500."""
    record_two_runs(warehouse_url)
    monkeypatch.setenv("GREENERY_RETRIES", "x")
    app = client()
    page = app.get("/data-quality/")
    assert page.status_code == 200 and "orders" in page.text, page.text[:300]
    assert app.get("/data-quality/api/latest").json()["latest_run"]["run_id"] == NEW_RUN
    assert app.get("/data-quality/docs/").status_code == 200


@pytest.mark.db
@pytest.mark.integration
def test_a_failure_the_run_ran_again_after_is_marked_as_an_earlier_attempt(warehouse_url, stored_docs):
    """Review: a run's first attempt failed (prepare_build), a clear validated and published it; its page listed
    that failure as "Failed tasks of this run" under "Published" and said to clear the failed task. Each failure
    now names its attempt, and one the run ran again after says so; a failure of the latest attempt does not."""
    with psycopg.connect(warehouse_url) as conn:
        audit.record_task_failure(conn, OLD_RUN, "prepare_build", dt.date(2024, 3, 1), "warehouse gone", clear_number=0)
        conn.execute("update greenery_audit.task_failures set failed_at = now() - interval '2 days'")
    record_clean_published_run(warehouse_url, clear_number=1)
    page = flat(client().get("/data-quality/", params={"run_id": OLD_RUN}).text)
    assert '<tr class="earlier"><td class="mono"><bdi>prepare_build</bdi></td>' in page, page
    assert '<td>first run<div class="sub">the run ran again after it</div></td>' in page
    assert (
        "Each of these failed in an earlier attempt of the run" in page
        and "clear the failed task (with its" not in page
    )
    assert '<section class="card"> <h2>Failures of earlier attempts of this run</h2>' in page  # not a red card
    body = client().get("/data-quality/api/latest", params={"run_id": OLD_RUN}).json()
    assert [(f["attempt"], f["earlier_attempt"]) for f in body["task_failures"]] == [(0, True)]
    with psycopg.connect(warehouse_url) as conn:  # its digest failed in the latest attempt, after the publish
        audit.record_task_failure(conn, OLD_RUN, "state_of_the_data", dt.date(2024, 3, 1), "smtp gone", clear_number=1)
    page = flat(client().get("/data-quality/", params={"run_id": OLD_RUN}).text)
    assert '<tr><td class="mono"><bdi>state_of_the_data</bdi></td> <td>clear 1</td>' in page, page
    assert "clear the failed task (with its" in page and "Each of these failed in an earlier attempt" not in page
    assert '<section class="card error-card"> <h2>Failed tasks of this run</h2>' in page


@pytest.mark.db
@pytest.mark.integration
def test_a_publish_cleared_alone_after_its_failure_marks_that_failure_as_repaired(warehouse_url, stored_docs):
    """Review: clearing publish alone (as the card advises) records a new validation with validate's attempt, so the
    failure it repaired, of the same attempt, stayed red under the published run: a validation recorded after a
    failure means the run ran again after it."""
    with psycopg.connect(warehouse_url) as conn:
        audit.record_task_failure(conn, OLD_RUN, "publish", dt.date(2024, 3, 1), "lock wait ran out", clear_number=0)
        conn.execute("update greenery_audit.task_failures set failed_at = now() - interval '2 days'")
    record_clean_published_run(warehouse_url, clear_number=0)  # a day ago: after the failure
    body = client().get("/data-quality/api/latest", params={"run_id": OLD_RUN}).json()
    assert [(f["task_id"], f["attempt"], f["earlier_attempt"]) for f in body["task_failures"]] == [("publish", 0, True)]
    with psycopg.connect(warehouse_url) as conn:  # the same failure after the validation shown: not repaired
        conn.execute("update greenery_audit.task_failures set failed_at = now()")
    body = client().get("/data-quality/api/latest", params={"run_id": OLD_RUN}).json()
    assert [f["earlier_attempt"] for f in body["task_failures"]] == [False]


def test_an_empty_run_id_asks_for_the_latest_run_not_a_run_named_nothing(monkeypatch):
    """Review: ``?run_id=`` left empty (an edited bookmark, a link built from an empty id) read as a run named "",
    and the page and the JSON said that nothing had ever been validated."""
    import contextlib

    from greenery.ui.report import WarehouseError

    asked = []

    def report(conn, history_limit, run_id):
        asked.append(run_id)
        raise WarehouseError("stub: what was asked is all this test reads")

    monkeypatch.setattr(quality_view, "reading", lambda: contextlib.nullcontext(object()))
    monkeypatch.setattr(quality_view, "report", report)
    app = client()
    for path in ("/data-quality/?run_id=", "/data-quality/api/latest?run_id=%20", "/data-quality/?run_id=r1"):
        assert app.get(path).status_code == 503
    assert asked == [None, None, "r1"]  # the positive control: a run asked by name is asked by its name
