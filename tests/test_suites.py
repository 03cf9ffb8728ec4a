"""The Great Expectations suites of include/expectations: complete, passing on good data, biting on bad.

The files are GX's own serialized suites, with fixed ids: each round-trips through GX unchanged. Every
numeric column is held between finite bounds (NaN and +/-Infinity fail). Every suite is loaded *and run*
here: on the real Greenery data (no failure, no warning), on the hand-built data of known_data.py (no
failure), and on the real data with one defect per case, where the summary must name the table, the
expectation and the offending row. A defect goes into raw when staging lets it through (duplicate order,
unknown promo status); the others would be quarantined by staging, so they are
planted in the built table the suite checks.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
from pathlib import Path

import known_data
import psycopg
import pytest
from helpers import query_checks, repeated_expectations

from greenery import config, docs, warehouse
from greenery.checks import docs_pages, suites
from greenery.materialize import build
from greenery.project import models, render
from greenery.sources import load as raw


def validation():
    """greenery.checks.gx, imported by the first test that needs it: Great Expectations takes seconds to import,
    which the other fast-tier files, on the other pytest-xdist worker, need not pay for."""
    from greenery.checks import gx as module

    return module


def gx_suites():
    """greenery.checks.gx_suites (suite files as GX reads them), imported as late as :func:`validation`."""
    from greenery.checks import gx_suites as module

    return module


MODELS = models.discover()
SUITES = suites.load_suites(MODELS)
ANCESTORS = models.ancestors(MODELS)
DAYS = (dt.date(2021, 2, 11), dt.date(2021, 2, 12))

# Rows of the real data that the defects below tamper with.
ORDER = "8329a65b-7ddf-4250-aeee-bd625f8a401a"  # delivered, no promo, five order lines
ORDER_LINE_PRODUCT = "fb0e8be7-5ac4-4a76-a1fa-2cc4bf0b2d80"
PAGE_VIEW = "0007a1f6-0123-4ab3-bac3-6dfefa832975"
BUYER = "b3367c91-53bd-4aac-ab6d-0a596fe382c2"  # the user of ORDER


def _on_raw(statement: str) -> bool:
    return re.match(r"\s*(update|insert\s+into|delete\s+from)\s+raw\.", statement) is not None


def _build(url: str, load, defect: str | None = None, days=DAYS) -> None:
    """Load, build; a defect on raw.* goes in before the build, one on a built table after it.

    Staging quarantines rows that break row-level rules (tests/test_bad_input_catalog.py shows that), so
    to prove a suite bites, most defects are planted in the table the suite checks.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        load(conn)
        if defect and _on_raw(defect):
            assert conn.execute(defect).rowcount == 1, defect
        for day in days:
            build.build_all(conn, MODELS, render.Interval.for_day(day))
        if defect and not _on_raw(defect):
            assert conn.execute(defect).rowcount == 1, defect


def _validate(tmp_path: Path, build_docs: bool = True, suites=SUITES) -> dict:
    return validation().validate(
        warehouse.sqlalchemy_url(), MODELS, suites, gx_dir=tmp_path / "gx", build_docs=build_docs
    )


def _brief(failures: list[dict]) -> list[tuple]:
    return [(f["severity"], f["table"], f["expectation"], f["column"], f["description"], f["error"]) for f in failures]


def _assert_every_suite_ran(summary: dict, suites=SUITES) -> None:
    ran = {s["suite"]: s["evaluated"] for s in summary["suites"]}
    assert set(ran) == set(suites), "every suite asked for runs"
    assert ran == {name: len(suite.expectations) for name, suite in suites.items()}, "every expectation evaluated"
    assert summary["evaluated"] == sum(len(s.expectations) for s in suites.values())


# ---------------------------------------------------------------------------------------------- files

# What may follow {batch} in a query: the end of a clause, never an alias (GX adds "AS subselect").
BATCH_FOLLOWERS = {"", "where", "group", "having", "order", "limit", "union", "except", "intersect"}


def test_every_model_has_exactly_one_suite_file():
    files = {p.stem for p in Path(config.get().expectations_dir).glob("*.json")}
    assert files == set(MODELS)
    assert set(SUITES) == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_suite_checks_the_full_primary_key(name):
    key = MODELS[name].table_key
    assert key, f"{name} declares no config(unique_key=...)"
    exps = SUITES[name].expectations

    def unconditional(e):
        return "row_condition" not in e["kwargs"] and "mostly" not in e["kwargs"] and e["severity"] == "critical"

    if len(key) == 1:
        assert any(
            e["type"] == "expect_column_values_to_be_unique" and e["kwargs"]["column"] == key[0] and unconditional(e)
            for e in exps
        ), f"{name}: {key[0]} unique"
    else:
        # dbt_utils' unique_combination_of_columns, as a query: GX's expect_compound_columns_to_be_unique joins
        # the whole table to its grouped counts, about twice the database time of running this twice.
        columns = ", ".join(f"subselect.{column}" for column in key)
        query = f"select {columns}, count(*) as copies from {{batch}} group by {columns} having count(*) > 1"
        checks = [e for e in exps if e["type"] == "unexpected_rows_expectation" and unconditional(e)]
        assert any(e["kwargs"]["unexpected_rows_query"] == query for e in checks), f"{name}: {key} unique: {query!r}"
    not_null = {
        e["kwargs"]["column"] for e in exps if e["type"] == "expect_column_values_to_not_be_null" and unconditional(e)
    }
    assert set(key) <= not_null, f"{name}: every key column not null"


def test_every_expectation_has_a_severity_and_a_description():
    for name, suite in SUITES.items():
        for e in suite.expectations:
            assert e["severity"] in ("critical", "warning", "info"), (name, e)
            assert e.get("description"), (name, e["type"], e["kwargs"])


# How a mart's doc (include/sql/marts/_docs.yml, the analysts' contract) says a column can be NULL: "NULL when ...",
# "NULL without ...", "NULL until ...". A column whose doc says no such thing is promised never NULL.
NULL_WHEN = re.compile(r"\bNULL (?:when|without|until|unless|while|with)\b")


def _never_null_checked(expectations: list[dict]) -> set[str]:
    """The columns a critical not-null check holds on every row (no row_condition, no mostly)."""
    return {
        e["kwargs"]["column"]
        for e in expectations
        if e["type"] == "expect_column_values_to_not_be_null"
        and "row_condition" not in e["kwargs"]
        and "mostly" not in e["kwargs"]
        and e["severity"] == "critical"
    }


def test_a_mart_column_is_null_only_where_its_doc_says_so():
    """Review: GX's in_set, between and column-pair checks skip NULLs, and most mart columns had no not-null check,
    so a model bug that set marts.fact_orders.status or marts.metrics_daily.buyers to NULL passed its whole suite
    and was published. Every mart column is either documented as NULL in some case or checked never NULL, not both."""
    marts = {name: doc for name, doc in docs.load().items() if doc["layer"] == "marts"}
    assert set(marts) == {name for name, model in MODELS.items() if model.layer == "marts"}
    problems = []
    for name, doc in marts.items():
        checked = _never_null_checked(SUITES[name].expectations)
        for column, text in doc["columns"].items():
            says_null = NULL_WHEN.search(text) is not None
            if "NULL" in text and not says_null:
                problems.append(f"{name}.{column}: its doc mentions NULL without saying when ('NULL when ...')")
            elif not says_null and column not in checked:
                problems.append(f"{name}.{column}: documented never NULL, but no critical not-null check on every row")
            elif says_null and column in checked:
                problems.append(f"{name}.{column}: documented NULL in some case, but a critical check forbids NULL")
    assert problems == [], "\n".join(problems)


@pytest.mark.stack  # imports Great Expectations (6 s of CPU)
def test_marts_have_an_exact_column_contract():
    import great_expectations as gx

    for name, model in MODELS.items():
        if model.layer != "marts":
            continue
        contracts = [e for e in SUITES[name].expectations if e["type"] == "expect_table_columns_to_match_set"]
        # GX leaves exact_match out of the file when it is its default, True: ask GX.
        assert len(contracts) == 1, f"{name}: a mart's suite needs one expect_table_columns_to_match_set (README)"
        assert gx.expectations.ExpectTableColumnsToMatchSet(**contracts[0]["kwargs"]).exact_match is True, name
        assert set(model.unique_key) <= set(contracts[0]["kwargs"]["column_set"]), name


COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")


def test_every_column_a_suite_checks_is_a_column_of_its_model():
    """Developer's trial: a warning's misspelt column ('revenu') passed make test-fast and every run, checking nothing.
    The columns a suite names are the model's: its column-set contract, else its documented columns."""
    documented = docs.load()
    problems = []
    for name, suite in SUITES.items():
        contract = [e for e in suite.expectations if e["type"] == "expect_table_columns_to_match_set"]
        known = set(contract[0]["kwargs"]["column_set"]) if contract else set(documented[name].get("columns") or {})
        if not known:
            continue  # neither says its columns (make test checks them on a built warehouse)
        for i, e in enumerate(suite.expectations):
            named = [e["kwargs"][k] for k in COLUMN_KWARGS if k in e["kwargs"]]
            for column in [c for n in named for c in (n if isinstance(n, list) else [n])]:
                if column not in known:
                    problems.append(f"{suite.path.name}: expectation {i} ({e['type']}) checks {column!r}, not a column")
    assert problems == [], "\n".join(problems)


def test_queries_name_tables_through_ref_only():
    for name, suite in SUITES.items():
        for e in suite.expectations:
            query = e["kwargs"].get("unexpected_rows_query")
            if query is None:
                continue
            assert "{batch}" in query, (name, query)
            # GX aliases {batch} as subselect itself, except in a query with JOIN, which must alias it: the
            # queries use EXISTS / subqueries instead, so every one reads "subselect".
            after = re.findall(r"\{batch\}\s*(\w*)", query)
            assert all(word.lower() in BATCH_FOLLOWERS for word in after), f"{name}: alias after {{batch}}: {query}"
            assert not re.search(r"\bjoin\b", query, re.IGNORECASE), (
                f"{name}: a suite query may not use JOIN (GX then leaves {{batch}} unaliased): read the other table"
                f" with exists (...) or a subquery in the select list instead: {query}"
            )
            for ref in re.findall(r"ref\('([^']+)'\)", query):
                assert ref in MODELS, (name, ref)
            schemas = (config.get().raw_schema, *config.LAYERS)
            assert not re.search(rf"\b({'|'.join(schemas)})\.", query), f"{name}: hard-coded schema in {query}"


def _plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


@pytest.mark.db
def test_no_query_check_runs_a_subquery_per_row(published_url):
    """PostgreSQL runs a correlated subquery it cannot turn into a join (e.g. two NOT EXISTS joined by OR) once
    per row of the table: int_buyers' first version of such a check ran for over 14 minutes at scale 1000, where
    the tests' small data showed nothing. Every query check is planned here on the published real data, as GX
    sends it: none may hold a plain SubPlan (a hashed one, or an InitPlan run once, is fine), but on the tables of
    a row per day (their key has the day), where a lookup per row is one per day."""
    per_row = []
    daily = {name for name, m in MODELS.items() if {"date", "day", "as_of_date"} & set(m.table_key)}
    assert daily >= {"fact_funnel_daily", "int_source_volumes_daily", "metrics_daily"}, daily
    with psycopg.connect(published_url, autocommit=True) as conn:
        for name, e, query in query_checks({n: s for n, s in SUITES.items() if n not in daily}):
            text = query.replace("{batch}", f"(select * from {MODELS[name].relation} where true) as subselect")
            [[plan]] = conn.execute(f"explain (format json) {text}").fetchone()
            per_row += [
                (name, e["description"])
                for node in _plan_nodes(plan["Plan"])
                if node.get("Parent Relationship") == "SubPlan" and not node["Subplan Name"].startswith("hashed")
            ]
    assert per_row == [], per_row


@pytest.mark.stack  # imports Great Expectations
def test_every_suite_file_round_trips_through_gx_unchanged():
    import great_expectations as gx

    for suite in SUITES.values():
        text = suite.path.read_text()
        assert suites.dump(gx.ExpectationSuite(**json.loads(text)).to_json_dict()) == text, (
            f"{suite.path} is not in GX's serialized form: run `greenery format-suites`"
        )
        assert suite.data["meta"].get("notes"), f"{suite.path}: meta.notes says what the table is"


def test_ids_are_fixed_and_unique():
    ids = [s.data["id"] for s in SUITES.values()] + [e["id"] for s in SUITES.values() for e in s.expectations]
    assert len(ids) == len(set(ids))


def test_a_suite_file_without_ids_is_refused_by_name(tmp_path):
    data = json.loads(SUITES["stg_postgres__promos"].path.read_text())
    del data["expectations"][2]["id"]
    (tmp_path / "stg_postgres__promos.json").write_text(suites.dump(data))
    with pytest.raises(
        suites.SuiteDefinitionError, match=r"stg_postgres__promos\.json: expectation 2 \(.*\) needs an 'id'"
    ):
        suites.load_suites(MODELS, tmp_path)


@pytest.mark.parametrize(
    ("suite", "typo", "said"),
    [
        ("int_orders", ("ref('stg_postgres__orders')", "ref('stg_postgres__order')"), "ref('stg_postgres__order')"),
        ("int_orders", ("ref('stg_postgres__orders')", "source('order')"), "source('order') names no raw table; did"),
        ("int_orders", ("ref('stg_postgres__orders')", "ref('a', 'b')"), "ref() takes one name, as ref('x')"),
        # Review: any model passed, and validate, which passes the quarantines of the models that have one, KeyError.
        (
            "int_orders",
            ("ref('stg_postgres__orders')", "quarantined('fact_orders')"),
            "quarantined('fact_orders') names no model with a quarantine",
        ),
        (
            "metrics_daily",
            ("{{ run_date }}", "{{ run_day }}"),
            "no variable run_day; a suite's text may use full_refresh,",
        ),
        ("metrics_daily", ("{{ run_date }}", "{{ run_date }"), "unexpected '}'"),
    ],
    ids=["ref", "source", "two-names", "quarantined", "variable", "syntax"],
)
def test_a_suite_naming_what_does_not_exist_is_refused_by_file_and_expectation(suite, typo, said, tmp_path):
    """Review: a typo'd ref() in a suite's query passed prepare_build and failed validate, after every model was
    built, with "KeyError: 'stg_postgres__order'", naming no file or expectation (in the page too)."""
    data = json.loads(SUITES[suite].path.read_text())
    i = next(i for i, e in enumerate(data["expectations"]) if typo[0] in json.dumps(e))
    data["expectations"][i] = json.loads(json.dumps(data["expectations"][i]).replace(typo[0], typo[1], 1))
    (tmp_path / f"{suite}.json").write_text(suites.dump(data))
    with pytest.raises(suites.SuiteDefinitionError) as refused:
        suites.load_suites(MODELS, tmp_path)
    where = f"{suite}.json: expectation {i} ({data['expectations'][i]['type']}): "
    assert where + said in str(refused.value), refused.value
    if typo[1] == "ref('stg_postgres__order')":
        assert str(refused.value).endswith("names no model; did you mean 'stg_postgres__orders'?"), refused.value


def test_a_suite_text_is_checked_and_rendered_as_the_same_jinja():
    """Review: names a template makes ({% for %}) were refused though they render; a text with only a {% if %} was
    checked, then sent to PostgreSQL unrendered."""
    looped = "{% for m in ['int_orders'] %}select 1 from {{ ref(m) }}{% endfor %}"
    suites._check_templates(Path("x.json"), "expectation 0", looped, MODELS)  # not refused
    branch = "select 1 where {% if full_refresh == 'true' %}false{% else %}true{% endif %}"
    suites._check_templates(Path("x.json"), "expectation 0", branch, MODELS)
    assert suites.resolve_refs(branch, str, {"full_refresh": "true"}) == "select 1 where false"


def test_a_suite_file_naming_no_model_names_the_models_folder_and_the_closest_model(tmp_path):
    data = json.loads(SUITES["fact_orders"].path.read_text())
    data["name"] = "fact_order"
    (tmp_path / "fact_order.json").write_text(suites.dump(data))
    with pytest.raises(suites.SuiteDefinitionError) as refused:
        suites.load_suites(MODELS, tmp_path)
    assert str(refused.value) == (
        f"{tmp_path / 'fact_order.json'}: no model named 'fact_order' in {config.get().sql_dir}; did you mean"
        " 'fact_orders' (rename the file and its name)?"
    )


def test_a_suite_file_with_an_unknown_severity_is_refused_naming_every_severity(tmp_path):
    """Review: the message said "needs severity 'critical' or 'warning'", though 'info' is accepted too (a
    capitalized "Info" is not: GX's severities are lower case)."""
    data = json.loads(SUITES["stg_postgres__promos"].path.read_text())
    data["expectations"][2]["severity"] = "Info"
    (tmp_path / "stg_postgres__promos.json").write_text(suites.dump(data))
    with pytest.raises(suites.SuiteDefinitionError) as refused:
        suites.load_suites(MODELS, tmp_path)
    assert re.search(r"stg_postgres__promos\.json: expectation 2 \(.*\) needs severity ", str(refused.value)), refused
    assert str(refused.value).endswith("needs severity 'critical', 'warning' or 'info', not 'Info'"), refused.value


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[]", "expected a JSON object \\(a suite\\), found a list"),
        (b'{"name": "stg_postgres__promos", "expectations": "oops"}', "'expectations' must be a list, found a str"),
        (b'{"name": "stg_postgres__promos", "expectations": [1]}', "expectation 0 must be a JSON object, found a int"),
        (
            b'{"name": "stg_postgres__promos", "meta": {"notes": "caf\xe9"}}',
            "not UTF-8 at byte 55: invalid continuation byte",
        ),
    ],
    ids=["list", "expectations-str", "expectation-int", "latin-1"],
)
def test_a_suite_file_of_the_wrong_shape_is_refused_by_name(content, reason, tmp_path):
    """Review: these failed validate, after every model was built, with an AttributeError or a
    UnicodeDecodeError naming no file."""
    (tmp_path / "stg_postgres__promos.json").write_bytes(content)
    with pytest.raises(suites.SuiteDefinitionError, match=rf"stg_postgres__promos\.json: {reason}"):
        suites.load_suites(MODELS, tmp_path)


def test_a_key_given_twice_in_a_suite_file_is_refused_naming_its_line_not_settled_silently(tmp_path):
    """Review: json keeps the last of two equal keys, so a suite whose merge left two "expectations" arrays was
    checked with the second alone, green, fewer checks than the file holds; a severity given twice took the last."""
    text = SUITES["stg_postgres__promos"].path.read_text()
    doubled = repeated_expectations(text)
    assert len(json.loads(doubled)["expectations"]) == 1  # the positive control: what json alone made of it
    line = doubled.count("\n", 0, doubled.rindex('"expectations"')) + 1
    (tmp_path / "stg_postgres__promos.json").write_text(doubled)
    key = "'expectations' is given twice in one object"
    with pytest.raises(suites.SuiteDefinitionError, match=rf"stg_postgres__promos\.json:{line}: the key {key}"):
        suites.load_suites(MODELS, tmp_path)
    inner = text.replace('"severity": "critical"', '"severity": "critical", "severity": "info"', 1)
    (tmp_path / "stg_postgres__promos.json").write_text(inner)
    with pytest.raises(suites.SuiteDefinitionError, match="the key 'severity' is given twice"):
        suites.load_suites(MODELS, tmp_path)


def test_strict_json_reads_what_json_reads_and_finds_the_second_of_two_keys_where_it_is():
    from greenery.checks import strict_json

    for path in sorted(Path(config.get().expectations_dir).glob("*.json")):
        assert strict_json.loads(path.read_text()) == json.loads(path.read_text()), path
    nested = '{"a": {"b": 1, "c": {"b": 2}},\n "b": [{"b": 3}],\n  "\\u0062": 4}'  # b again, escaped, line 3
    with pytest.raises(strict_json.RepeatedKeyError) as found:
        strict_json.loads(nested)
    assert (found.value.key, found.value.lineno, found.value.colno) == ("b", 3, 3)
    with pytest.raises(strict_json.JSONDecodeError, match="Expecting property name"):
        strict_json.loads('{"a": 1,}')
    with pytest.raises(strict_json.JSONDecodeError, match="Unexpected UTF-8 BOM"):  # as json says it (review)
        strict_json.loads('\ufeff{"a": 1}')


def test_a_malformed_suite_fails_the_first_build_task_before_any_model_is_built(tmp_path, monkeypatch):
    """Review: suites were read only by validate, after every model had been built (prepare_build reads them
    first; it touches nothing before)."""
    from greenery.tasks import build

    (tmp_path / "stg_postgres__promos.json").write_bytes(b"[]")
    monkeypatch.setenv("GREENERY_EXPECTATIONS_DIR", str(tmp_path))
    with pytest.raises(suites.SuiteDefinitionError, match=r"stg_postgres__promos\.json: expected a JSON object"):
        build.prepare({})  # no run context needed: it fails before it reads one


@pytest.mark.parametrize("folder", ["missing", "one suite short"])
def test_models_without_a_suite_fail_the_first_build_task_naming_the_configured_folder(tmp_path, monkeypatch, folder):
    """Review: GREENERY_EXPECTATIONS_DIR=/no/such/dir built every model, then validate failed with "models without a
    suite in include/expectations" (the default folder, not the setting). prepare_build refuses it, naming both."""
    from greenery.tasks import build

    directory = tmp_path / "suites"
    if folder == "one suite short":
        directory.mkdir()
        for name, suite in SUITES.items():
            if name != "fact_orders":
                (directory / suite.path.name).write_bytes(suite.path.read_bytes())
    monkeypatch.setenv("GREENERY_EXPECTATIONS_DIR", str(directory))
    gone = ", no such folder" if folder == "missing" else ""
    short = f"{len(MODELS)} of {len(MODELS)}" if folder == "missing" else f"1 of {len(MODELS)} ['fact_orders']"
    with pytest.raises(suites.SuiteDefinitionError) as refused:
        build.prepare({})  # no run context needed: it fails before it reads one
    assert str(refused.value).startswith(
        f"models without a suite in {directory} (GREENERY_EXPECTATIONS_DIR{gone}): {short}"
    ), refused.value
    assert len(suites.load_complete(MODELS, config.INCLUDE_DIR / "expectations")) == len(MODELS)  # the control


@pytest.mark.stack  # imports Great Expectations
def test_format_suite_file_adds_missing_ids_and_keeps_the_others(tmp_path):
    data = json.loads(SUITES["stg_postgres__promos"].path.read_text())
    kept = data["expectations"][0]["id"]
    del data["id"], data["expectations"][1]["id"]
    path = tmp_path / "stg_postgres__promos.json"
    path.write_text(json.dumps(data))  # hand-written: no ids, other layout
    text, formatted = gx_suites().formatted_suite(path)
    assert formatted != text and path.read_text() == text  # nothing written
    path.write_text(formatted)
    [suite] = suites.load_suites(MODELS, tmp_path).values()
    assert suite.expectations[0]["id"] == kept and suite.expectations[1]["id"] and suite.data["id"]
    assert gx_suites().formatted_suite(path) == (formatted, formatted), "formatting is idempotent"


@pytest.mark.stack  # imports Great Expectations
def test_format_suite_file_refuses_a_copy_that_kept_its_neighbours_id_and_names_what_gx_cannot_read(tmp_path):
    """Review: an expectation copied with its id, its type misspelled, was dropped by GX (its id was still in the suite,
    through the original) and the file lost it, exit 0; a copy with a correct type kept a shared id. Now both are
    refused, and GX's reason is in the one line, not a traceback above it."""
    from greenery.checks.suites import SuiteDefinitionError

    data = json.loads(SUITES["dim_products"].path.read_text())
    path = tmp_path / "dim_products.json"
    for copy_type, said in (
        ("expect_column_values_to_be_uniqe", "expectations 0 and"),
        (data["expectations"][0]["type"], "expectations 0 and"),
    ):
        copy = {**data["expectations"][0], "type": copy_type}
        path.write_text(json.dumps({**data, "expectations": [*data["expectations"], copy]}))
        with pytest.raises(SuiteDefinitionError) as refused:
            gx_suites().formatted_suite(path)
        assert said in str(refused.value) and f"share the id {copy['id']}" in str(refused.value), refused.value
        assert "delete the copy's id" in str(refused.value)
    del copy["id"]
    copy["type"] = "expect_column_values_to_be_uniqe"
    path.write_text(json.dumps({**data, "expectations": [*data["expectations"], copy]}))
    with pytest.raises(SuiteDefinitionError) as refused:
        gx_suites().formatted_suite(path)
    last = len(data["expectations"])
    said = str(refused.value)
    assert f"GX cannot read expectation {last} (expect_column_values_to_be_uniqe): " in said, said
    assert "expect_column_values_to_be_uniqe not found" in said and "\n" not in said, said
    # Review: a file without "expectations" was written back as an empty suite, exit 0.
    path.write_text(json.dumps({"name": "dim_products"}))
    with pytest.raises(SuiteDefinitionError, match=r"not a suite \(a JSON object with a name and a list of"):
        gx_suites().formatted_suite(path)


def copy_suites(folder: Path) -> None:
    """Every suite file into ``folder``, to be broken there as a user's edit would break one."""
    shutil.copytree(Path(config.get().expectations_dir), folder, dirs_exist_ok=True)


@pytest.mark.stack  # imports Great Expectations
def test_suites_gx_cannot_read_fail_the_first_task_each_file_named_with_each_expectation_and_why(tmp_path, monkeypatch):
    """User trial: a misspelt key (``"kwarg"``, ``row_conditon``) or type in a suite passed prepare_build and failed
    validate after every model was built, naming no file (``TypeError: ... unexpected keyword argument 'kwarg'``) or
    saying "see the log above" with no log above; with three files wrong, one was named per run, and each run paged.
    prepare_build now reads every suite through GX first and names every file, expectation and reason at once."""
    from greenery.tasks import build

    copy_suites(tmp_path)
    edits = {
        "stg_postgres__orders": ("kwargs", "kwarg", "TypeError: ExpectationConfiguration.__init__() got an unexpected"),
        "stg_postgres__users": ("expect_column_values_to_be_unique", "expect_column_values_to_be_uniqe", "not found"),
        "stg_postgres__events": ('"kwargs": {', '"kwargs": {"row_conditon": "x", ', "row_conditon extra fields not"),
    }
    for name, (old, new, _) in edits.items():
        text = (tmp_path / f"{name}.json").read_text()
        assert old in text, name  # the positive control: each edit changes its file
        (tmp_path / f"{name}.json").write_text(text.replace(old, new, 1))
    monkeypatch.setenv("GREENERY_EXPECTATIONS_DIR", str(tmp_path))
    suites.load_complete(MODELS, tmp_path)  # each file still reads as JSON, with its ids and severities
    with pytest.raises(suites.SuiteDefinitionError) as refused:
        build.prepare({})  # no run context needed: it fails before it reads one
    lines = str(refused.value).splitlines()
    assert len(lines) == 3, lines
    for line, (name, (_, _, why)) in zip(lines, sorted(edits.items()), strict=True):
        assert line.startswith(f"{tmp_path / name}.json: GX cannot read expectation ") and why in line, line


@pytest.mark.parametrize(
    ("expectation", "said"),
    [
        (
            {"type": "unexpected_rows_expectation", "kwargs": {"unexpected_rows_query": "select 1 where false"}},
            "its unexpected_rows_query does not read {batch}, the table it checks",
        ),
        (
            {
                "type": "unexpected_rows_expectation",
                "kwargs": {
                    "unexpected_rows_query": "select user_id from {batch} where user_id not in"
                    " (select user_id from staging.stg_postgres__users)"
                },
            },
            "its query names staging.stg_postgres__users itself: the published table, not this run's; use ref()",
        ),
        (
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "user_id", "mostly": 0}},
            "mostly 0: expected a fraction above 0 and at most 1",
        ),
        (
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "user_id", "min_value": 0}},
            "min_value and max_value, both numbers",
        ),
        (
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "user_id", "min_value": 0, "max_value": math.inf},
            },
            "a bound or number that is NaN or infinite checks nothing: give a finite one",
        ),
    ],
    ids=["no batch", "a schema named", "mostly 0", "one bound", "infinity"],
)
def test_a_check_that_would_check_nothing_or_another_table_is_refused_naming_its_file_and_rule(
    tmp_path, expectation, said
):
    """Review: only this repo's tests refused these (GX takes them, and only warns of a query without {batch}); a
    deployment's own suites checked the published table instead of the run's build, or nothing, green."""
    copy_suites(tmp_path)
    users = tmp_path / "stg_postgres__users.json"
    data = json.loads(users.read_text())
    data["expectations"][0] = {**data["expectations"][0], "kwargs": {}, **expectation}
    users.write_text(json.dumps(data, indent=2))
    with pytest.raises(suites.SuiteDefinitionError) as refused:
        suites.load_suites(MODELS, tmp_path)
    assert str(refused.value).startswith(f"{users}: expectation 0 ({expectation['type']}): {said}"), refused.value


def test_every_malformed_suite_file_is_named_at_once(tmp_path):
    """User trial: a bad severity in one file and a second file's broken JSON took a run (and a page) each to find."""
    copy_suites(tmp_path)
    users = tmp_path / "stg_postgres__users.json"
    users.write_text(users.read_text().replace('"severity": "critical"', '"severity": "critcal"', 1))
    (tmp_path / "stg_postgres__orders.json").write_text('{"name": "stg_postgres__orders",\n')
    with pytest.raises(suites.SuiteDefinitionError) as refused:
        suites.load_suites(MODELS, tmp_path)
    lines = str(refused.value).splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{tmp_path}/stg_postgres__orders.json:2: invalid JSON"), lines
    assert lines[1].startswith(f"{users}: expectation ") and lines[1].endswith("not 'critcal'"), lines


def _between_checks():
    for name, suite in SUITES.items():
        for e in suite.expectations:
            if e["type"] == "expect_column_values_to_be_between":
                yield name, e


def test_every_between_check_has_finite_bounds_on_both_sides():
    """PostgreSQL sorts NaN above every number: a check with only min_value lets NaN (and +Infinity) through."""
    for name, e in _between_checks():
        bounds = (e["kwargs"].get("min_value"), e["kwargs"].get("max_value"))
        assert all(isinstance(b, int | float) and math.isfinite(b) for b in bounds), (name, e["kwargs"])


@pytest.mark.db
def test_every_numeric_column_is_held_between_finite_bounds(warehouse_url):
    """Every column that can hold NaN or +/-Infinity (numeric, real, double) of every model has a between-check."""
    _build(warehouse_url, known_data.load)
    checked = {(MODELS[name].relation, e["kwargs"]["column"]) for name, e in _between_checks()}
    with psycopg.connect(warehouse_url) as conn:
        columns = conn.execute(
            "select table_schema || '.' || table_name, column_name from information_schema.columns "
            "where table_schema = any(%s) and data_type in ('numeric', 'real', 'double precision')",
            (list(config.LAYERS),),
        ).fetchall()
    assert len(columns) > 20
    assert {(t, c) for t, c in columns if t in {m.relation for m in MODELS.values()}} - checked == set()


def _price_check(**override) -> dict:
    [check] = [
        e for name, e in _between_checks() if name == "stg_postgres__products" and e["kwargs"]["column"] == "price"
    ]
    return {**check["kwargs"], **override}


@pytest.mark.db
@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_a_nan_or_infinite_price_fails_the_price_check(bad, db, warehouse_url, tmp_path):
    import great_expectations as gx

    db.execute("create table prices (product_id text, price numeric)")
    db.execute("insert into prices values ('ok', 15.00), ('bad', %s::numeric)", (bad,))
    checks = validation()
    context = checks._context(tmp_path / "gx")
    with checks._sources(context, checks._connect_args(warehouse.sqlalchemy_url()), [{}]) as [(source, _)]:
        batch = source.add_table_asset(name="prices", table_name="prices", schema_name="public")
        batch = batch.add_batch_definition_whole_table("whole_table").get_batch()
        checked = batch.validate(gx.expectations.ExpectColumnValuesToBeBetween(**_price_check()))
        # Why both bounds: without the max, PostgreSQL's NaN (sorted above every number) would pass.
        min_only = batch.validate(gx.expectations.ExpectColumnValuesToBeBetween(**_price_check(max_value=None)))
    assert (checked.success, checked.result["unexpected_count"]) == (False, 1)
    assert min_only.success is (bad != "-Infinity")


# ------------------------------------------------------------------------------------- clean data


@pytest.mark.db
def test_real_data_passes_every_suite_without_a_warning(warehouse_url, real_greenery, tmp_path):
    _build(warehouse_url, lambda conn: raw.load_dir(conn, real_greenery))
    summary = _validate(tmp_path)
    assert _brief(summary["failures"]) == []
    assert (summary["failed_critical"], summary["failed_warning"], summary["blocking"]) == (0, 0, False)
    _assert_every_suite_ran(summary)
    # a Data Docs page per suite, for the validate task to store in the warehouse
    assert sorted(p.suite for p in docs_pages.collect(tmp_path / "gx")) == sorted(SUITES)


@pytest.mark.db
def test_known_data_passes_every_critical_expectation(warehouse_url, tmp_path):
    _build(warehouse_url, known_data.load)
    summary = _validate(tmp_path)
    assert [f for f in _brief(summary["failures"]) if f[0] == "critical" or f[5]] == []
    assert summary["failed_critical"] == 0 and not summary["blocking"]
    _assert_every_suite_ran(summary)
    assert summary["failures"] == []


# ---------------------------------------------------------------------------------------- defects

DEFECTS = {
    "duplicated order": (
        f"insert into raw.orders select * from raw.orders where order_id = '{ORDER}'",
        ("staging.stg_postgres__orders", "expect_column_values_to_be_unique", "order_id", ORDER),
    ),
    "duplicated order line": (
        "insert into staging.stg_postgres__order_items select * from staging.stg_postgres__order_items "
        f"where order_id = '{ORDER}' and product_id = '{ORDER_LINE_PRODUCT}'",
        ("staging.stg_postgres__order_items", "unexpected_rows_expectation", "(order_id, product_id) is the", ORDER),
    ),
    "first-order window built on another order": (
        "update intermediate.int_user_behavior set avg_order_total = avg_order_total + 1"
        f" where behavior_scope = 'through_first_order' and user_id = '{BUYER}'",
        ("intermediate.int_user_behavior", "unexpected_rows_expectation", "is their first order", BUYER),
    ),
    "order of an unknown user": (
        f"update staging.stg_postgres__orders set user_id = 'no-such-user' where order_id = '{ORDER}'",
        ("staging.stg_postgres__orders", "unexpected_rows_expectation", "order's user exists", ORDER),
    ),
    "unknown event type": (
        f"update staging.stg_postgres__events set event_type = 'wishlist' where event_id = '{PAGE_VIEW}'",
        ("staging.stg_postgres__events", "expect_column_values_to_be_in_set", "event_type", PAGE_VIEW),
    ),
    "order total off by 1.00": (
        f"update marts.fact_orders set order_total = order_total + 1.00 where order_id = '{ORDER}'",
        ("marts.fact_orders", "unexpected_rows_expectation", "order_total =", ORDER),
    ),
    "delivered before created": (
        "update staging.stg_postgres__orders set delivered_at = created_at - interval '1 hour' "
        f"where order_id = '{ORDER}'",
        ("staging.stg_postgres__orders", "expect_column_pair_values_a_to_be_greater_than_b", "delivered", ORDER),
    ),
    "negative quantity": (
        "update staging.stg_postgres__order_items set quantity = -1 "
        f"where order_id = '{ORDER}' and product_id = '{ORDER_LINE_PRODUCT}'",
        ("staging.stg_postgres__order_items", "expect_column_values_to_be_between", "quantity", ORDER_LINE_PRODUCT),
    ),
    "page view without product": (
        # Staging quarantines it (invalid_event_shape): the suite's rule stands behind that, in the built table.
        f"update staging.stg_postgres__events set product_id = null where event_id = '{PAGE_VIEW}'",
        ("staging.stg_postgres__events", "expect_column_values_to_not_be_null", "product_id", PAGE_VIEW),
    ),
    "paused promo": (
        "update raw.promos set status = 'paused' where promo_id = 'task-force'",
        ("staging.stg_postgres__promos", "expect_column_values_to_be_in_set", "promo_status", "task-force"),
    ),
    # A buyer's first order, defined once (int_buyers): checked against every order of the buyer.
    "first order not the earliest": (
        "update intermediate.int_buyers set (first_order_id, first_order_at, second_order_id, second_order_at)"
        f" = (second_order_id, second_order_at, first_order_id, first_order_at) where user_id = '{BUYER}'",
        ("intermediate.int_buyers", "unexpected_rows_expectation", "comes before their first order", BUYER),
    ),
    "repeat buyer labelled one-time": (
        "update intermediate.int_buyers set (is_repeat_buyer, second_order_id, second_order_at) = (false, null, null)"
        f" where user_id = '{BUYER}'",
        ("intermediate.int_buyers", "unexpected_rows_expectation", "a one-time buyer has no other order", BUYER),
    ),
    # The analytics marts: a buyer counted without orders, a p-value out of range, a funnel that widens.
    "buyer without orders": (
        f"update marts.fact_user_behavior set orders = 0 where user_id = '{BUYER}'",
        ("marts.fact_user_behavior", "unexpected_rows_expectation", "is_buyer is orders >= 1", BUYER),
    ),
    "order count off by one": (
        f"update marts.fact_user_behavior set orders = orders + 1 where user_id = '{BUYER}'",
        ("marts.fact_user_behavior", "unexpected_rows_expectation", "agree with fact_user_orders", BUYER),
    ),
    "p-value above 1": (
        "update marts.repurchase_indicators set p_value = 1.5 where indicator = 'page_views'",
        ("marts.repurchase_indicators", "expect_column_values_to_be_between", "p_value", "page_views"),
    ),
    "more checkouts than carts": (
        "update marts.fact_funnel_daily set sessions_with_checkout = sessions_with_add_to_cart + 1",
        (
            "marts.fact_funnel_daily",
            "expect_column_pair_values_a_to_be_greater_than_b",
            "sessions_with_add_to_cart",
            "2021-02-12",
        ),
    ),
}


def _names(failure: dict, what: str) -> bool:
    """A failure is the expected one by its column, or (unexpected_rows_expectation) its description."""
    return failure["column"] == what or what in (failure["description"] or "")


@pytest.mark.db
@pytest.mark.parametrize("case", list(DEFECTS))
def test_one_defect_fails_the_right_critical_expectation(case, request, real_greenery, tmp_path):
    defect, (table, expectation, what, key) = DEFECTS[case]
    # One day is enough here: every suite still has rows (metrics_daily gets that day).
    if _on_raw(defect):
        url = request.getfixturevalue("warehouse_url")
        _build(url, lambda conn: raw.load_dir(conn, real_greenery), defect, days=DAYS[-1:])
    else:
        # A built table's defect goes into a copy of that day already built and published (conftest.py).
        with psycopg.connect(request.getfixturevalue("published_url"), autocommit=True) as conn:
            assert conn.execute(defect).rowcount == 1, defect
    # The suites of the defective table and of every model built from it: where the defect can show. (Every
    # suite runs on clean data above; validating all 29 per case would triple this test's time.)
    [model] = [name for name, m in MODELS.items() if m.relation == table]
    suites = {name: suite for name, suite in SUITES.items() if name == model or model in ANCESTORS[name]}
    summary = _validate(tmp_path, build_docs=False, suites=suites)
    _assert_every_suite_ran(summary, suites)
    assert summary["blocking"] and summary["failed_critical"] >= 1
    assert [f for f in summary["failures"] if f["error"]] == [], "no expectation errored"
    hits = [
        f
        for f in summary["failures"]
        if f["table"] == table and f["expectation"] == expectation and f["severity"] == "critical" and _names(f, what)
    ]
    assert len(hits) == 1, _brief(summary["failures"])
    assert hits[0]["unexpected_count"] >= 1
    assert any(key in sample for sample in hits[0]["sample_keys"]), hits[0]["sample_keys"]
    if case == "duplicated order":
        # The key itself is the sample, and the duplicate cascades to every table keyed by order_id.
        assert hits[0]["sample_keys"][0] == ORDER
        cascaded = {f["table"] for f in summary["failures"] if f["expectation"] == expectation}
        assert {"intermediate.int_orders", "marts.fact_orders"} <= cascaded


@pytest.mark.db
def test_a_missing_dimension_of_delivery_performance_fails_its_reconciliation(published_url, tmp_path):
    """The reconciliation grouped by dimension: a dimension with no rows made no group and was never compared,
    so a mart without its 'state' rows passed every check."""
    with psycopg.connect(published_url, autocommit=True) as conn:
        assert conn.execute("delete from marts.fact_delivery_performance where dimension = 'state'").rowcount > 0
    suites = {"fact_delivery_performance": SUITES["fact_delivery_performance"]}
    summary = _validate(tmp_path, build_docs=False, suites=suites)
    [hit] = [f for f in summary["failures"] if "accounts for every delivered order" in f["description"]]
    assert hit["severity"] == "critical" and summary["blocking"]
    assert any("dimension=state, delivered=0" in sample for sample in hit["sample_keys"]), hit["sample_keys"]


INCREMENTAL_SANITY = ("int_user_sessions", "int_sessions_per_hour", "int_product_events", "int_user_product_sessions")


@pytest.mark.db
def test_row_count_sanity_checks_the_whole_incremental_model_not_the_days_rebuilt_rows(published_url, tmp_path):
    """A daily run validates an incremental model's rebuilt rows (its delta) and refers to the whole model with
    ref(). A quiet lookback window (no product events for days) gives an empty delta: no blocking failure. An
    empty model beside a non-empty upstream still is one."""
    suites = {name: SUITES[name] for name in INCREMENTAL_SANITY}
    with psycopg.connect(published_url, autocommit=True) as conn:
        for name in INCREMENTAL_SANITY:
            conn.execute(f"create table public.{name}__empty as select * from {MODELS[name].relation} where false")
    empty_delta = {name: f"public.{name}__empty" for name in INCREMENTAL_SANITY}
    quiet = validation().validate(
        warehouse.sqlalchemy_url(),
        MODELS,
        suites,
        gx_dir=tmp_path / "quiet",
        build_docs=False,
        relation=lambda name: empty_delta.get(name, MODELS[name].relation),
        refs=lambda name: MODELS[name].relation,
    )
    assert [f for f in quiet["failures"] if "row-count sanity" in f["description"]] == [], _brief(quiet["failures"])
    with psycopg.connect(published_url, autocommit=True) as conn:
        conn.execute("truncate intermediate.int_product_events")
    emptied = validation().validate(
        warehouse.sqlalchemy_url(), MODELS, {"int_product_events": SUITES["int_product_events"]}, gx_dir=tmp_path / "e"
    )
    [hit] = [f for f in emptied["failures"] if "row-count sanity" in f["description"]]
    assert hit["severity"] == "critical" and emptied["blocking"]


@pytest.mark.db
def test_purchases_without_any_viewing_session_is_a_warning(published_url, tmp_path):
    """The between check on conversion_rate skips NULLs, and a product bought in sessions where it was never
    viewed has conversion_rate NULL: the pair check sees it."""
    with psycopg.connect(published_url, autocommit=True) as conn:
        changed = conn.execute(
            "update marts.fact_product set sessions_viewed = 0, conversion_rate = null"
            " where product_id = %s and sessions_purchased > 0",
            (ORDER_LINE_PRODUCT,),
        )
        assert changed.rowcount == 1
    summary = _validate(tmp_path, build_docs=False, suites={"fact_product": SUITES["fact_product"]})
    assert not summary["blocking"], _brief(summary["failures"])
    [hit] = summary["failures"]
    assert hit["severity"] == "warning" and hit["expectation"] == "expect_column_pair_values_a_to_be_greater_than_b"
    assert any(ORDER_LINE_PRODUCT in sample for sample in hit["sample_keys"]), hit["sample_keys"]


# A column documented never NULL set to NULL in the published table: (the row it is set in, a key its sample names).
NULLED = {
    "fact_orders.status": (f"order_id = '{ORDER}'", ORDER),
    "fact_order_items.quantity": (f"order_id = '{ORDER}' and product_id = '{ORDER_LINE_PRODUCT}'", ORDER),
    "metrics_daily.buyers": ("as_of_date = '2021-02-12'", "2021-02-12"),
    "fact_user_behavior.orders": (f"user_id = '{BUYER}'", BUYER),
}


@pytest.mark.db
@pytest.mark.parametrize("column", list(NULLED))
def test_a_null_in_a_column_documented_never_null_blocks(column, published_url, tmp_path):
    """Review: the suite's in_set, between and pair checks skip NULLs, so a NULL status or buyers count passed."""
    model, name = column.split(".")
    where, key = NULLED[column]
    with psycopg.connect(published_url, autocommit=True) as conn:
        assert conn.execute(f"update {MODELS[model].relation} set {name} = null where {where}").rowcount == 1
    summary = _validate(tmp_path, build_docs=False, suites={model: SUITES[model]})
    assert summary["blocking"] and [f for f in summary["failures"] if f["error"]] == []
    [hit] = [
        f
        for f in summary["failures"]
        if f["expectation"] == "expect_column_values_to_not_be_null" and f["column"] == name
    ]
    assert hit["severity"] == "critical" and hit["unexpected_count"] == 1
    assert any(key in sample for sample in hit["sample_keys"]), hit["sample_keys"]


@pytest.mark.db
def test_a_key_repeated_outside_orders_or_a_row_without_its_time_blocks(published_url, tmp_path):
    """Review (catalog gaps): the catalog showed a duplicated order only. Staging passes a repeated user or product
    key and a row without its time through from raw (it quarantines neither); their staging suites block on each,
    naming the key. All three at once in one copy, validated by those three suites only."""
    defects = {
        "stg_postgres__users": (
            "insert into staging.stg_postgres__users select * from staging.stg_postgres__users"
            f" where user_id = '{BUYER}'",
            "expect_column_values_to_be_unique",
            "user_id",
            BUYER,
        ),
        "stg_postgres__products": (
            "insert into staging.stg_postgres__products select * from staging.stg_postgres__products"
            f" where product_id = '{ORDER_LINE_PRODUCT}'",
            "expect_column_values_to_be_unique",
            "product_id",
            ORDER_LINE_PRODUCT,
        ),
        "stg_postgres__events": (
            f"update staging.stg_postgres__events set created_at = null where event_id = '{PAGE_VIEW}'",
            "expect_column_values_to_not_be_null",
            "created_at",
            PAGE_VIEW,
        ),
    }
    with psycopg.connect(published_url, autocommit=True) as conn:
        for defect, *_ in defects.values():
            assert conn.execute(defect).rowcount == 1, defect
    summary = _validate(tmp_path, build_docs=False, suites={name: SUITES[name] for name in defects})
    assert summary["blocking"] and [f for f in summary["failures"] if f["error"]] == []
    for name, (_, expectation, column, key) in defects.items():
        [hit] = [
            f
            for f in summary["failures"]
            if f["suite"] == name and f["expectation"] == expectation and f["column"] == column
        ]
        assert hit["severity"] == "critical" and any(key in sample for sample in hit["sample_keys"]), hit
