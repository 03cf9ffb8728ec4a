"""Validation in two passes (checks/gx.py) reports what one detailed pass reports, without its scans.

Pass 1 runs every suite in BASIC with no unexpected values (GX then asks for them with ``LIMIT 0``, which
PostgreSQL does not execute); pass 2 asks for detail (unexpected values, sample keys) only of what failed.
The reference is GX run once per suite in the detailed format: every expectation must agree on success, and
every failure must carry the same unexpected count and sample keys. The cost is counted in SQL statements
sent to PostgreSQL (every SQLAlchemy engine, GX's included), not timed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import helpers
import known_data
import psycopg
import pytest
import sqlalchemy as sa
from helpers import query_checks
from psycopg import sql

from greenery import audit, locks, warehouse
from greenery.checks import docs_pages, history, paths, query_rows, streams, suites, summary
from greenery.checks import gx as validation
from greenery.checks.query_rows import QUERY
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
DEFECTIVE = {"stg_postgres__order_items", "stg_postgres__orders", "int_user_product_sessions"}


def _build(url: str, defects=(), raw_defects=()) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        known_data.load(conn)
        for defect in raw_defects:
            assert conn.execute(defect).rowcount >= 1, defect
        build.build_all(conn, MODELS, render.Interval.for_day(dt.date(2021, 2, 12)))
        for defect in defects:
            assert conn.execute(defect).rowcount >= 1, defect


class Statements(list):
    """Every SQL statement any SQLAlchemy engine (GX's) sends, with the value of its LIMIT (None without one); in
    ``sent``, every statement any psycopg cursor sends (GX's through SQLAlchemy, and the validation's own)."""

    def __init__(self) -> None:
        super().__init__()
        # The server processes (connections) that ran a check: GX's existence probe of each table (``select 1 from t
        # limit 1``) runs on every connection whose data source has the table, and every one has every table.
        self.backends: set[int] = set()
        self.sent: list[str] = []
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._record)
        execute = self._execute = psycopg.Cursor.execute
        sent = self.sent

        def recorded(cursor, query, *args, **kwargs):
            sent.append(query if isinstance(query, str | bytes) else query.as_string(cursor))
            return execute(cursor, query, *args, **kwargs)

        psycopg.Cursor.execute = recorded

    def _record(self, conn, cursor, statement, parameters, *_) -> None:
        text = " ".join(statement.split())
        match = re.search(r"\bLIMIT (?:%\((\w+)\)s|(\d+))", text, re.IGNORECASE)
        limit = None
        if match:
            limit = int(parameters[match.group(1)]) if match.group(1) else int(match.group(2))
        self.append((text, limit))
        if not re.match(r"SELECT 1 FROM \S+ LIMIT", text, re.IGNORECASE):
            self.backends.add(cursor.connection.info.backend_pid)

    def close(self) -> None:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self._record)
        psycopg.Cursor.execute = self._execute

    def detail_queries(self) -> list[str]:
        """Queries that fetch offending rows or values: a LIMIT above 0 on a filter. (GX's existence probe of
        each table, ``select 1 from t limit 1``, has no filter.)"""
        return [text for text, limit in self if limit and re.search(r"\bwhere\b", text, re.IGNORECASE)]

    def runs_of(self, query: str, table: str) -> int:
        """How many statements sent execute ``query``, an unexpected_rows_query, its {batch} substituted as GX does
        (the table's name quoted or not); a comment that quotes it does not count."""
        name = r"\.".join(rf'"?{re.escape(part)}"?' for part in table.split("."))
        batch = rf"\(SELECT \* FROM {name} WHERE true\) AS subselect"
        parts = (re.escape(re.sub(r"\s+", " ", part)) for part in query.split("{batch}"))
        pattern = re.compile(batch.join(parts), re.IGNORECASE)
        sent = (" ".join(re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL).split()) for text in self.sent)
        return sum(1 for text in sent if pattern.search(text))


@pytest.fixture
def statements():
    recorded = Statements()
    yield recorded
    recorded.close()


def _validate(tmp_path, url: str, run_name: str = "passes", connections: int = 2, suites=SUITES) -> dict:
    """As the validate task runs it: on two connections by default (GREENERY_VALIDATION_CONNECTIONS)."""
    return validation.validate(url, MODELS, suites, gx_dir=tmp_path / "gx", run_name=run_name, connections=connections)


@dataclass
class Validation:
    """One validation run by a module fixture, and what was seen while it ran (read by several tests: a
    validation costs seconds of CPU, and each test here looks at a different side of the same run)."""

    result: dict
    statements: Statements
    folder: Path  # the validation's gx_dir is folder / "gx"
    lock_holders: list | None = None  # (holders, exclusive lock granted?) at GX's first statement
    connections_left: int | None = None  # other sessions on the database once validate returned
    secret: str | None = None  # the password the URL carried


def _publish_lock_holders(url: str, seen: list, *_) -> None:
    """At GX's first statement: who holds the publish lock, and could a publish (exclusive) take it?"""
    if seen:
        return
    with psycopg.connect(url, autocommit=True) as other:
        holders = other.execute(
            "select mode, granted from pg_locks where locktype = 'advisory' and database = "
            "(select oid from pg_database where datname = current_database()) "
            "and ((classid::bigint << 32) | objid::bigint) = %s",
            (locks.PUBLISH_LOCK_KEY,),
        ).fetchall()
        exclusive = other.execute("select pg_try_advisory_lock(%s)", (locks.PUBLISH_LOCK_KEY,)).fetchone()[0]
    seen.append((holders, exclusive))


def _other_sessions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
        ).fetchone()[0]


def _sessions_left(url: str, grace_s: float = 5) -> int:
    """Other sessions still on the database after ``grace_s``: a backend leaves pg_stat_activity a moment after its
    client closed the connection (CI saw one listed right after the close, under load); a connection really kept,
    or a query still running, stays listed."""
    deadline = time.monotonic() + grace_s
    while (left := _other_sessions(url)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture(scope="module")
def clean(module_warehouse_url, tmp_path_factory) -> Validation:
    """The known data built, validated as the task does (two connections), with a password in the URL; the
    statements every engine sent and the publish lock's holders at GX's first statement recorded."""
    _build(module_warehouse_url)
    url = sa.engine.make_url(warehouse.sqlalchemy_url())
    # A server that trusts local connections (the embedded one) ignores a password: give it one to look for.
    secret = url.password or "s3cret-Pa55word"
    url = url.set(password=secret).render_as_string(hide_password=False)
    folder, statements, holders = tmp_path_factory.mktemp("clean"), Statements(), []
    look = functools.partial(_publish_lock_holders, module_warehouse_url, holders)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", look)
    try:
        result = _validate(folder, url)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", look)
        statements.close()
    return Validation(result, statements, folder, holders, _sessions_left(module_warehouse_url), secret)


@pytest.fixture(scope="module")
def defective(clean, module_warehouse_url, tmp_path_factory) -> Validation:
    """After ``clean``, the same tables with DEFECTS planted, validated on two connections as "first-run"."""
    with psycopg.connect(module_warehouse_url, autocommit=True) as conn:
        for defect in DEFECTS:
            assert conn.execute(defect).rowcount >= 1, defect
    folder, statements = tmp_path_factory.mktemp("defective"), Statements()
    try:
        result = _validate(folder, warehouse.sqlalchemy_url(), "first-run")
    finally:
        statements.close()
    return Validation(result, statements, folder)


def _one_detailed_pass(tmp_path) -> dict[str, list[dict]]:
    """The reference: each suite once, everything in the format pass 2 uses for map expectations."""
    context = validation._context(tmp_path / "reference")
    out = {}
    with validation._sources(context, validation._connect_args(warehouse.sqlalchemy_url()), [{}]) as [(source, _)]:
        for name, suite_file in SUITES.items():
            _, planned = validation._planned(
                {name: suite_file},
                lambda n: MODELS[n].relation,
                {**suites.run_variables(MODELS), "published": lambda n: MODELS[n].relation},
            )
            suite = planned[name]
            schema, _, table = MODELS[name].relation.partition(".")
            batch = source.add_table_asset(name=name, table_name=table, schema_name=schema)
            batch = batch.add_batch_definition_whole_table("whole_table").get_batch()
            result = batch.validate(suite, result_format=validation._detail_format(MODELS[name]))
            out[name] = [r.to_json_dict() for r in result.results]
    return out


def _key(failure: dict) -> tuple:
    return (failure["table"], failure["expectation"], failure["column"], failure["description"])


def test_a_clean_run_asks_no_detail_and_runs_each_query_check_once(clean):
    result, statements = clean.result, clean.statements
    assert result["failures"] == [] and result["evaluated"] == sum(len(s.expectations) for s in SUITES.values())
    assert len(statements.backends) == 2, "the suites' checks ran on both connections"
    # Pass 1 does ask GX for unexpected values, with LIMIT 0: planned, never executed by PostgreSQL.
    assert any(limit == 0 and "unexpected_values" in text for text, limit in statements)
    assert statements.detail_queries() == [], "nothing failed: no query may fetch offending rows"
    # GX's UnexpectedRowsExpectation runs its query twice (counted, then fetched): each query runs once, its rows
    # kept in a temporary table of the stream's session (checks/query_rows.py), which GX counts and fetches.
    queries = [(query, MODELS[name]) for name, _, query in query_checks(SUITES)]
    assert queries and {q: statements.runs_of(q, m.relation) for q, m in queries} == {q: 1 for q, _ in queries}
    kept = [text for text, _ in statements if re.search(r"\bfrom pg_temp\.greenery_rows_\d+\b", text)]
    assert len(kept) == 2 * len(queries), "GX counted and fetched each query's kept rows"


def test_failures_carry_the_detail_of_one_detailed_pass_and_only_they_cost_detail_queries(
    defective, tmp_path, statements
):
    result = defective.result
    detail = defective.statements.detail_queries()
    reference = _one_detailed_pass(tmp_path)
    reference_detail = statements.detail_queries()

    # The reference's results through the same summary: unexpected_rows ones carry a count, no rows (SUMMARY).
    expected = {_key(f): f for f in summary.summarize(reference, lambda n: MODELS[n].relation)["failures"]}
    got = {_key(f): f for f in result["failures"]}
    assert len(got) == len(result["failures"]) and len(expected) == len(got)
    assert set(got) == set(expected), "both ways fail the same expectations"
    assert {f["suite"] for f in result["failures"]} == DEFECTIVE
    for key, failure in got.items():
        assert failure["error"] is None and failure["sample_keys"], key
        assert failure["unexpected_count"] == expected[key]["unexpected_count"] >= 1, key
        assert failure["observed_value"] == expected[key]["observed_value"], key
        if failure["expectation"] != summary.UNEXPECTED_ROWS:
            assert failure["sample_keys"] == expected[key]["sample_keys"], key

    quantity = next(f for f in result["failures"] if f["column"] == "quantity")
    assert quantity["unexpected_count"] == 2 and len(quantity["sample_keys"]) == 2
    assert all(re.match(r"order_id=\S+, product_id=\S+", k) for k in quantity["sample_keys"])
    queries = {f["suite"]: f for f in result["failures"] if f["expectation"] == summary.UNEXPECTED_ROWS}
    user = queries["stg_postgres__orders"]
    assert len(user["sample_keys"]) == 1
    assert re.fullmatch(r"order_id=[0-9a-f-]{36}, user_id=no-such-user", user["sample_keys"][0]), user
    # A compound key's check is a query too: its row is the duplicated key and how many copies it has.
    key = queries["int_user_product_sessions"]
    assert key["description"].startswith("(session_id, product_id) is the primary key") and key["unexpected_count"] == 1
    assert re.fullmatch(r"session_id=[0-9a-f-]{36}, product_id=[0-9a-f-]{36}, copies=2", key["sample_keys"][0]), key

    # Detail queries touch only the failed tables; the one-pass reference scans every table for them.
    failed_tables = {MODELS[n].relation for n in DEFECTIVE}
    assert detail and all(any(t in q for t in failed_tables) for q in detail), detail
    assert len(reference_detail) > 5 * len(detail)


def test_results_are_stored_under_the_file_ids_and_rendered_for_this_run(defective, tmp_path):
    # Two streams (the fixture's run), then three: every suite's result is stored whichever connection ran it.
    folders = {"first-run": defective.folder, "second-run": tmp_path / "second-run"}
    _validate(folders["second-run"], warehouse.sqlalchemy_url(), "second-run", connections=3)
    for run_name, folder in folders.items():
        stored = sorted(paths.validation_results_dir(folder / "gx").rglob("*.json"))
        assert len(stored) == len(SUITES)
        for path in stored:
            data = json.loads(path.read_text())
            suite = SUITES[data["suite_name"]]
            # GX may store them in another order than the suite's.
            assert sorted(r["expectation_config"]["id"] for r in data["results"]) == sorted(
                e["id"] for e in suite.expectations
            )
            # Pass 1's stored results carry counts (Data Docs show them) but no row values.
            for r in data["results"]:
                assert not r["result"].get("partial_unexpected_list"), (path, r["expectation_config"]["type"])
        # The pages the task stores in the warehouse: one per suite, of this run only, each with its result.
        pages = docs_pages.collect(folder / "gx")
        assert sorted(p.suite for p in pages) == sorted(SUITES)
        assert {p.run_name for p in pages} == {run_name} and all(p.path.startswith("validations/") for p in pages)
        assert all(p.result and json.loads(p.result)["suite_name"] == p.suite for p in pages)
        assert all(run_name in p.html and "<html" in p.html.lower() for p in pages)
    # GX's index re-reads every result in the folder (slower each run): it is not built, and a used folder
    # is refused, so a validation's pages are its own.
    assert not paths.data_docs_index(defective.folder / "gx").exists()
    # Only what the view serves is rendered: GX's suite pages would be thrown away (about 0.8 s per validation).
    site = paths.data_docs_index(defective.folder / "gx").parent
    assert sorted(p.name for p in site.iterdir() if p.is_dir() and p.name != "static") == ["validations"]
    with pytest.raises(ValueError, match=r"defective\d*/gx: not empty"):
        _validate(defective.folder, warehouse.sqlalchemy_url(), "third-run")


def test_a_failure_whose_rows_cannot_be_read_says_why_and_still_blocks(defective, tmp_path):
    """Review: when pass 2 could not read a failure's rows (its query failed), the failure went out with no keys and
    not a word why. Here the order lines' key names a column the table does not have (as a model whose unique_key
    was renamed without its table): GX fails each detail query, and pass 1's findings stand."""
    broken = dataclasses.replace(
        MODELS["stg_postgres__order_items"],
        config={**MODELS["stg_postgres__order_items"].config, "unique_key": ["no_such_column"]},
    )
    found = {**MODELS, "stg_postgres__order_items": broken}
    suite = {"stg_postgres__order_items": SUITES["stg_postgres__order_items"]}
    result = validation.validate(warehouse.sqlalchemy_url(), found, suite, gx_dir=tmp_path / "gx", build_docs=False)
    [quantity] = [f for f in result["failures"] if f["column"] == "quantity"]
    assert result["blocking"] and quantity["severity"] == "critical" and quantity["unexpected_count"] == 2
    assert quantity["sample_keys"] == [] and quantity["error"] is None
    assert "no_such_column" in quantity["detail_error"], quantity


def test_numeric_sample_values_reach_gx_as_the_floats_it_makes_of_them_without_its_stack_walk(
    clean, module_warehouse_url, tmp_path, monkeypatch
):
    """GX turns each Decimal it serializes into a float with a walk of the whole call stack (inspect.stack() in
    great_expectations.util.convert_decimal_to_float), 9-18 ms a value: pass 2's sample values of a failure on a
    numeric column cost seconds (800 values: 11.0 CPU-s for the real data's validation against 3.5). GX's
    connections load numeric as float: the floats GX made of the Decimals, and no walk. A NaN among the values
    broke GX's sort of them as Decimals (no sample keys); a value beyond a float's range is inf, as before."""
    import decimal

    import great_expectations.util as gx_util

    conversions = []
    convert = gx_util.convert_decimal_to_float
    monkeypatch.setattr(gx_util, "convert_decimal_to_float", lambda d: conversions.append(d) or convert(d))
    # Positive control: GX still sends a Decimal it serializes through the function watched here.
    assert gx_util.convert_to_json_serializable(decimal.Decimal("1.5")) == 1.5
    assert conversions == [decimal.Decimal("1.5")]
    conversions.clear()
    with psycopg.connect(module_warehouse_url, autocommit=True) as conn:
        conn.execute("drop schema if exists numeric_probe cascade")
        conn.execute("create schema numeric_probe")
        conn.execute("create table numeric_probe.orders as select * from staging.stg_postgres__orders")
        conn.execute("alter table numeric_probe.orders alter column order_cost type numeric")
        planted = conn.execute(
            "update numeric_probe.orders set order_cost = case when order_id = (select min(order_id) from"
            " numeric_probe.orders) then 'NaN' else -order_cost - 0.37 end where ctid in"
            " (select ctid from numeric_probe.orders order by order_id limit 4) returning order_id, order_cost"
        ).fetchall()
        # Beyond a float's range (the checks' own SQL refuses such a value in a double precision comparison, but a
        # query check may return one): inf, as float() of the Decimal was; psycopg's FloatLoader raises.
        conn.adapters.register_loader("numeric", validation._NumericAsFloat)
        edges = conn.execute("select 1e400::numeric, -1e400::numeric, 'NaN'::numeric, 12.37::numeric").fetchone()
        assert edges[:2] == (float("inf"), float("-inf")) and edges[2] != edges[2] and edges[3] == 12.37
    try:
        name = "stg_postgres__orders"
        result = validation.validate(
            warehouse.sqlalchemy_url(),
            MODELS,
            {name: SUITES[name]},
            gx_dir=tmp_path / "gx",
            relation=lambda n: "numeric_probe.orders" if n == name else MODELS[n].relation,
            refs=lambda n: MODELS[n].relation,
            build_docs=False,
        )
    finally:
        with psycopg.connect(module_warehouse_url, autocommit=True) as conn:
            conn.execute("drop schema numeric_probe cascade")
    assert conversions == []
    [cost] = [f for f in result["failures"] if f["column"] == "order_cost"]
    assert cost["unexpected_count"] == len(planted) == 4 and cost["detail_error"] is None
    shown = {k.split(", ")[0]: k.split(", ")[1] for k in cost["sample_keys"]}
    # GX writes NaN as null, as it did the Decimal's.
    assert shown == {f"order_id={o}": f"order_cost={None if c.is_nan() else float(c)}" for o, c in planted}, shown


def _cut_validation_connections(url: str) -> None:
    """A failover or a network cut: every other session ends but the one holding the publish lock."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
            " and pid not in (select pid from pg_locks where locktype = 'advisory')"
        )


def test_a_connection_lost_between_the_passes_leaves_the_failures_with_the_reason(
    defective, module_warehouse_url, tmp_path, monkeypatch
):
    """A failover or a network cut between a suite's pass 1 and its pass 2: every detail query of pass 2 fails. The
    failures went out with no keys and not a word why; now each says why it names no rows. (The session holding the
    publish lock is spared: cut too, the validation fails, not trusting its results: test_write_audit_publish.) One
    suite per validation, on one connection: a cut during another suite's pass 1 is another case (its checks'
    errors)."""
    details = validation._details

    def cut_first(*args, **kwargs):
        _cut_validation_connections(module_warehouse_url)
        return details(*args, **kwargs)

    monkeypatch.setattr(validation, "_details", cut_first)
    failures = []
    for name in sorted(DEFECTIVE):
        result = _validate(tmp_path / name, warehouse.sqlalchemy_url(), "cut", 1, suites={name: SUITES[name]})
        assert result["blocking"], name
        failures += result["failures"]
    assert {f["suite"] for f in failures} == DEFECTIVE
    assert {f["expectation"] for f in failures} > {summary.UNEXPECTED_ROWS}, "map and query checks alike"
    for failure in failures:
        assert failure["sample_keys"] == [] and failure["detail_error"], failure
        assert "terminat" in failure["detail_error"] or "closed" in failure["detail_error"], failure


def _query_suite(name: str, queries: dict[str, str]) -> suites.SuiteFile:
    """A suite of ``name``'s table whose expectations are ``queries`` (description -> unexpected_rows_query)."""
    expectations = [
        {"type": summary.UNEXPECTED_ROWS, "id": str(uuid.uuid4()), "kwargs": {"unexpected_rows_query": q},
         "description": d, "severity": "critical", "meta": {}}
        for d, q in queries.items()
    ]  # fmt: skip
    data = {"name": name, "id": str(uuid.uuid4()), "expectations": expectations, "meta": {}, "notes": None}
    return suites.SuiteFile(name, Path(f"{name}.json"), data)


def test_a_query_whose_rows_cannot_be_kept_runs_as_gx_runs_it_with_the_same_findings(
    clean, module_warehouse_url, tmp_path, statements
):
    """A query check's rows are kept in a temporary table (checks/query_rows.py) only when the table holds what GX
    would have read: two columns of one name or a column of type record (PostgreSQL refuses such a table), or a
    join (GX renders {batch} unaliased then), and the query runs as GX runs it, twice, its findings the same."""
    where = "where subselect.status = 'delivered' and '{tag}' = '{tag}'"
    queries = {
        "kept": f"select subselect.order_id from {{batch}} {where.format(tag='kept')}",
        "twice a name": f"select subselect.order_id, subselect.order_id from {{batch}} {where.format(tag='dup')}",
        "a record": "select subselect.order_id, (subselect.order_id, subselect.status) as pair from {batch} "
        + where.format(tag="record"),
        "a join": "select o.order_id from {batch} as o left join {{ ref('stg_postgres__users') }} as u"
        " on u.user_id = o.user_id where o.status = 'delivered' and 'join' = 'join'",
    }
    said = _Said()
    logging.getLogger(query_rows.__name__).addHandler(said)
    try:
        result = validation.validate(
            warehouse.sqlalchemy_url(),
            MODELS,
            {"stg_postgres__orders": _query_suite("stg_postgres__orders", queries)},
            gx_dir=tmp_path / "gx",
            build_docs=False,
        )
    finally:
        logging.getLogger(query_rows.__name__).removeHandler(said)
    with psycopg.connect(module_warehouse_url) as conn:
        delivered = {
            o for (o,) in conn.execute("select order_id from staging.stg_postgres__orders where status = 'delivered'")
        }
    assert len(delivered) >= 2
    found = {f["description"]: f for f in result["failures"]}
    assert set(found) == set(queries) and all(f["error"] is None for f in found.values())
    for description, failure in found.items():
        assert failure["unexpected_count"] == len(delivered), description
        keys = {k.split(", ")[0].removeprefix("order_id=") for k in failure["sample_keys"]}  # one column: its value
        assert keys and keys <= delivered, (description, failure["sample_keys"])
    sent = [" ".join(re.sub(r"/\*.*?\*/", "", t, flags=re.DOTALL).split()) for t in statements.sent]
    runs = {tag: sum(f"'{tag}' = '{tag}'" in text for text in sent) for tag in ("kept", "dup", "record", "join")}
    # Kept: its one run, pass 2 reads the kept rows too. Not kept: the refused table, then GX's two runs in pass 1 and
    # two in pass 2 (which fetches a failure's rows). A join: GX's four, nothing tried.
    assert runs == {"kept": 1, "dup": 5, "record": 5, "join": 4}, runs
    assert sum("its rows not kept" in line for line in said.lines) == 2, said.lines
    assert any('column "order_id" specified more than once' in line for line in said.lines), said.lines


def _keeper_suite(queries: list[dict]) -> dict:
    return {
        "name": "stg_postgres__orders",
        "expectations": [{"type": summary.UNEXPECTED_ROWS, "kwargs": q} for q in queries],
    }


def test_rows_are_not_kept_for_a_narrowed_batch_nor_a_query_that_is_not_one(clean, module_warehouse_url):
    """A row_condition narrows GX's {batch} (kept, the whole table was read: a "not in {batch}" check found less);
    a trailing line comment or a second statement GX refuses (its count wraps the query) are not run as a table's."""
    queries = [
        {QUERY: "select subselect.order_id from {batch}", "row_condition": 'col("status")=="delivered"',
         "condition_parser": "great_expectations"},
        {QUERY: "select subselect.order_id from {batch} where false -- no rows"},
        {QUERY: "select subselect.order_id from {batch} where false; select 1"},
        {QUERY: "select subselect.order_id from {batch} where false"},  # the control: kept
    ]  # fmt: skip
    with psycopg.connect(module_warehouse_url, autocommit=True) as conn:
        keeper = query_rows.Keeper(conn, lambda: False)
        out = keeper.suite(_keeper_suite(queries), "staging.stg_postgres__orders")
        kept = [e["kwargs"][QUERY].startswith("select * from pg_temp.") for e in out["expectations"]]
        assert kept == [False, False, False, True] and keeper.kept == 1
        keeper.forget()
        assert conn.execute("select count(*) from pg_class where relpersistence = 't'").fetchone()[0] == 0


def test_a_session_that_cannot_create_temporary_tables_tries_once_and_runs_the_queries_as_gx_does(
    clean, module_warehouse_url
):
    said = _Said()
    logging.getLogger(query_rows.__name__).addHandler(said)
    queries = [{QUERY: f"select subselect.order_id from {{batch}} where {n} = 0"} for n in range(3)]
    with psycopg.connect(module_warehouse_url, autocommit=True) as conn, helpers.roles(conn, "no_temp") as [role]:
        database = sql.Identifier(conn.info.dbname)
        conn.execute(sql.SQL("grant usage on schema staging to {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("grant select on all tables in schema staging to {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("revoke temporary on database {} from public").format(database))
        try:
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
            keeper = query_rows.Keeper(conn, lambda: False)
            first = keeper.suite(_keeper_suite(queries), "staging.stg_postgres__orders")
            again = keeper.suite(_keeper_suite(queries), "staging.stg_postgres__orders")
        finally:
            conn.execute("reset role")
            conn.execute(sql.SQL("grant temporary on database {} to public").format(database))
            logging.getLogger(query_rows.__name__).removeHandler(said)
    assert first == again == _keeper_suite(queries) and keeper.kept == 0
    assert f"role {role} has no TEMPORARY privilege on database" in keeper.refused
    assert len(said.lines) == 1 and "no temporary table on this connection" in said.lines[0], said.lines
    # A read-only session (a standby's) likewise.
    with psycopg.connect(module_warehouse_url, autocommit=True) as conn:
        conn.execute("set default_transaction_read_only = on")
        keeper = query_rows.Keeper(conn, lambda: False)
        assert keeper.suite(_keeper_suite(queries), "staging.stg_postgres__orders") == _keeper_suite(queries)
        assert keeper.refused and keeper.kept == 0


def test_a_query_refused_on_its_own_table_is_not_taken_for_a_session_without_temporary_tables(
    clean, module_warehouse_url
):
    """Review: "permission denied" for a table a query names is the error class of a missing TEMPORARY: the stream
    stopped keeping any suite's rows (every later query run twice), saying the role could not create them."""
    queries = [
        {QUERY: "select subselect.user_id from {batch} where subselect.user_id not in "
                "(select user_id from staging.stg_postgres__users)"},
        {QUERY: "select subselect.order_id from {batch} where false"},
    ]  # fmt: skip
    with psycopg.connect(module_warehouse_url, autocommit=True) as conn, helpers.roles(conn, "orders_only") as [role]:
        conn.execute(sql.SQL("grant usage on schema staging to {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("grant select on staging.stg_postgres__orders to {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        keeper = query_rows.Keeper(conn, lambda: False)
        out = keeper.suite(_keeper_suite(queries), "staging.stg_postgres__orders")
        keeper.forget()
        conn.execute("reset role")
    assert [e["kwargs"][QUERY].startswith("select * from pg_temp.") for e in out["expectations"]] == [False, True]
    assert keeper.refused is None


def test_a_connection_lost_mid_stream_leaves_the_next_suites_checks_failing_with_the_reason(
    defective, module_warehouse_url, tmp_path, monkeypatch
):
    """Review: after a cut, the next suite on the same stream raised while its rows were being kept (quoting its
    table asked the closed connection), and the whole validation with it. Its checks fail, each saying why."""
    details = validation._details
    cuts = []

    def cut_once(*args, **kwargs):
        if not cuts:
            cuts.append(1)
            _cut_validation_connections(module_warehouse_url)
        return details(*args, **kwargs)

    monkeypatch.setattr(validation, "_details", cut_once)
    two = {n: SUITES[n] for n in ("stg_postgres__order_items", "stg_postgres__orders")}
    result = _validate(tmp_path, warehouse.sqlalchemy_url(), "cut", 1, suites=two)
    assert cuts and result["blocking"]
    errored = {f["suite"] for f in result["failures"] if f["error"]}
    assert len(errored) == 1 and errored < set(two), result["failures"]
    # The connection closed by then (as SQLAlchemy closes one it finds cut): the suite is handed to GX as it was.
    conn = psycopg.connect(module_warehouse_url, autocommit=True)
    conn.close()
    keeper = query_rows.Keeper(conn, lambda: False)
    data = _keeper_suite([{QUERY: "select subselect.order_id from {batch} where false"}])
    assert keeper.suite(data, "staging.stg_postgres__orders") == data and keeper.kept == 0


class _Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_gx_runs_under_the_shared_publish_lock_and_leaves_no_connection(clean):
    assert clean.lock_holders == [([("ShareLock", True)], False)], "one session of ours holds it, GX's do not"
    assert clean.connections_left == 0, "GX's connection and the lock's are closed"


def test_each_suites_seconds_are_recorded_and_the_next_validation_balances_its_streams_on_them(
    clean, module_warehouse_url, tmp_path, monkeypatch
):
    """At scale 1000 the streams, balanced on table sizes, took 21 and 40 s; on each suite's seconds in the
    validation before, 32 and 33 s. The summary (recorded by publish) carries each suite's seconds; the newest
    record of each suite is what the validate task passes on."""
    took = {s["suite"]: s["seconds"] for s in clean.result["suites"]}
    assert set(took) == set(SUITES) and all(isinstance(v, float) and v >= 0 for v in took.values()), took
    assert clean.result["streams_balanced_on"] == streams.BY_TABLE_SIZES  # nothing before it

    def recorded(run_id: str, seconds: dict) -> dict:
        suites = [{"suite": name, "evaluated": 1, "seconds": value} for name, value in seconds.items()]
        return {"run_id": run_id, "logical_date": "2021-02-12", "suites": suites, "failures": []}

    with psycopg.connect(module_warehouse_url, autocommit=True) as conn:
        assert history.suite_seconds(conn) == {}  # no record yet: the task balances on table sizes
        audit.record_validation(conn, recorded("first", {"a": 1.0, "b": 2.0, "c": 3.0}), published=True)
        # A later run that validated two suites (its validate cleared after two model tasks), one without seconds
        # (a record written before suites had them).
        audit.record_validation(conn, recorded("second", {"a": 4.5, "b": None}), published=False)
        # A record whose suites are not a list (review: it failed every later validate) gives nothing.
        audit.record_validation(conn, {**recorded("odd", {}), "suites": {"a": 9.0}}, published=False)
        assert history.suite_seconds(conn) == {"a": 4.5, "b": 2.0, "c": 3.0}
        # A daily run checks "c" on its delta: its seconds serve a suite checked on a delta, never one checked whole
        # (review: a full refresh after daily runs split on a few days' share of the events' table).
        daily = recorded("daily", {"c": 0.5})
        daily["suites"][0]["on_delta"] = True
        audit.record_validation(conn, daily, published=True)
        assert history.suite_seconds(conn) == {"a": 4.5, "b": 2.0, "c": 3.0}
        assert history.suite_seconds(conn, on_delta={"c"}) == {"a": 4.5, "b": 2.0, "c": 0.5}
        # A suite on its delta with only whole-table seconds before (the first daily run after a full one) takes them.
        assert history.suite_seconds(conn, on_delta={"a"}) == {"a": 4.5, "b": 2.0, "c": 3.0}

    few = {name: SUITES[name] for name in ("stg_postgres__promos", "stg_postgres__products", "dim_products")}
    before = {"stg_postgres__promos": 7.0, "stg_postgres__products": 3.0, "dim_products": 5.0, "other": 1.0}
    balanced, took = [], []
    order, take = streams.order, streams.take
    monkeypatch.setattr(streams, "order", lambda costs: balanced.append(costs) or order(costs))

    def recorded_take(queue, stopped):
        for name in take(queue, stopped):
            took.append((threading.current_thread().name, name))
            yield name

    monkeypatch.setattr(streams, "take", recorded_take)
    result = validation.validate(
        warehouse.sqlalchemy_url(), MODELS, few, gx_dir=tmp_path / "gx", connections=2, seconds_before=before
    )
    assert balanced == [{name: before[name] for name in few}]
    assert result["streams_balanced_on"] == streams.BY_SECONDS_BEFORE and result["failures"] == []
    assert sorted(s["suite"] for s in result["suites"] if isinstance(s["seconds"], float)) == sorted(few)
    # The streams took from one queue, each suite once, in GX's stream threads.
    assert sorted(name for _, name in took) == sorted(few), took
    assert all(thread.startswith("gx-stream") for thread, _ in took), took


def test_no_file_under_the_gx_dir_holds_the_password(clean):
    assert clean.result["failures"] == []
    files = [p for p in (clean.folder / "gx").rglob("*") if p.is_file()]
    assert files and not [p for p in files if clean.secret.encode() in p.read_bytes()]


def test_gx_sessions_read_dates_in_utc_whatever_the_databases_zone(warehouse_url):
    """An incremental model's merged view compares its date column with the window's start in the session's zone
    (review: east of UTC a gone day stayed in it); GX's sessions, like the builds and publish, are in UTC."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(f"alter database {conn.info.dbname} set timezone = 'Asia/Tokyo'")
    with psycopg.connect(**validation._connect_args(warehouse.sqlalchemy_url())) as conn:
        assert conn.execute("show timezone").fetchone()[0] == "UTC"
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("show timezone").fetchone()[0] == "Asia/Tokyo"  # the control: the database's own


def test_every_event_of_a_session_of_two_users_fails_the_one_user_warning(warehouse_url, tmp_path):
    """The rule reads int_user_sessions.users instead of grouping every event again (the slowest query of a
    validation at scale 1000): it must flag the events that grouping the events themselves flags."""
    shared = known_data.S2  # U1's session: its second page view now names U2
    _build(
        warehouse_url,
        raw_defects=[f"update raw.events set user_id = '{known_data.U2}' where event_id = '{known_data.uid(6, 8)}'"],
    )
    # The events' suite alone: the rule is one of its expectations (every suite runs in the tests above).
    events = {"stg_postgres__events": SUITES["stg_postgres__events"]}
    result = _validate(tmp_path, warehouse.sqlalchemy_url(), suites=events)
    [failure] = [
        f for f in result["failures"] if f["table"] == "staging.stg_postgres__events" and "one user" in f["description"]
    ]
    with psycopg.connect(warehouse_url) as conn:
        grouped = conn.execute(
            "select event_id from staging.stg_postgres__events where session_id in (select session_id"
            " from staging.stg_postgres__events group by session_id having count(distinct user_id) > 1)"
        ).fetchall()
    assert failure["severity"] == "warning" and failure["unexpected_count"] == len(grouped) == 4
    assert {key.split(", ")[0] for key in failure["sample_keys"]} == {f"event_id={e}" for (e,) in grouped}
    assert all(f"session_id={shared}" in key for key in failure["sample_keys"])


@pytest.mark.timeout(150)  # the queries sleep 300 s: only cancelling them ends the test in time
def test_an_interrupted_validation_cancels_its_queries_and_closes_its_connections(
    warehouse_url, tmp_path, interrupt_main_thread
):
    """Airflow's execution timeout raises in the task's thread while both streams wait on PostgreSQL: the
    error propagates only once every stream's query is cancelled and every connection closed."""
    tables = {"stg_postgres__orders": "public.slow_a", "stg_postgres__users": "public.slow_b"}
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for table in tables.values():
            conn.execute(f"create table {table} as select 1 as x")
    query = "select * from {batch} where pg_sleep(300) is not null"
    sleepy = {name: _query_suite(name, {"sleeps": query}) for name in tables}

    def sleeping() -> int:
        with psycopg.connect(warehouse_url, autocommit=True) as watcher:
            return watcher.execute(
                "select count(*) from pg_stat_activity where state = 'active' and pid <> pg_backend_pid() "
                "and query like %s",
                ("%pg_sleep(300)%",),
            ).fetchone()[0]

    interrupt_main_thread(lambda: sleeping() == 2)
    with pytest.raises(interrupt_main_thread.exception):
        validation.validate(
            warehouse.sqlalchemy_url(),
            MODELS,
            sleepy,
            gx_dir=tmp_path / "gx",
            relation=tables.__getitem__,
            connections=2,
        )
    # A stream that kept its connection, or a query that ran on, would stay listed for the 300 s of its sleep.
    assert _sessions_left(warehouse_url) == 0, "no query still running, no connection left open"


def test_gx_connects_with_every_libpq_parameter_the_warehouse_connection_gives(clean, monkeypatch, tmp_path):
    """The model tasks connect through PostgresHook, which gives libpq every extra of the connection; GX got host,
    port, login, password, database and two extras (review: a connection URI naming its socket as ``?host=`` built
    the models, then validate failed on /var/run/postgresql; `sslrootcert`, `sslcert` and the like were dropped)."""
    given = sa.engine.make_url(warehouse.sqlalchemy_url())  # the test database, by its socket directory
    uri = f"postgresql://{given.username}@/{given.database}?" + urlencode(
        {"host": given.query["host"], "application_name": "greenery-probe", "connect_timeout": "7"}
    )
    monkeypatch.setenv(warehouse.conn_env_var(), uri)
    with warehouse.connect() as conn:  # as the model tasks connect
        assert conn.execute("show application_name").fetchone() == ("greenery-probe",)
    url = warehouse.sqlalchemy_url()
    args = validation._connect_args(url)
    assert (args["host"], args["connect_timeout"]) == (given.query["host"], "7"), args
    with psycopg.connect(**args) as conn:  # as GX's connections and the publish lock's are made
        assert conn.execute("show application_name").fetchone() == ("greenery-probe",)
    result = _validate(tmp_path, url, suites={"dim_products": SUITES["dim_products"]}, connections=1)
    assert result["evaluated"] > 0 and not result["failures"], result


def test_the_validation_streams_turn_a_roles_or_databases_idle_timeouts_off(warehouse_url, tmp_path, monkeypatch):
    """Diff review: only the lock session turned idle_session_timeout off; a stream idles while the others finish
    pass 1, then runs pass 2, and a role's or database's timeout could end it between the two, its rows lost."""
    import contextlib

    from psycopg import sql

    _build(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for setting in ("idle_session_timeout", "idle_in_transaction_session_timeout"):
            query = sql.SQL("alter database {} set {} = '1min'")
            conn.execute(query.format(sql.Identifier(conn.info.dbname), sql.Identifier(setting)))
    seen: list[tuple] = []
    sources = validation._sources

    @contextlib.contextmanager
    def watching(*args, **kwargs):
        with sources(*args, **kwargs) as made:
            for _, conn in made:
                settings = (
                    "select current_setting('idle_session_timeout'), current_setting('idle_in_transaction_session"
                )
                seen.append(conn.execute(settings + "_timeout')").fetchone())
            yield made

    monkeypatch.setattr(validation, "_sources", watching)
    two = {name: SUITES[name] for name in list(SUITES)[:2]}
    _validate(tmp_path, sa.engine.make_url(warehouse.sqlalchemy_url()).render_as_string(False), suites=two)
    assert seen == [("0", "0"), ("0", "0")], seen
