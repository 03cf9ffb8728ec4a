"""Mart docs: one source (include/sql/marts/_docs.yml) for the README and the tables' COMMENTs."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import known_data
import pytest

from greenery import config, docs
from greenery.materialize import build
from greenery.project import models, render

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_section_is_generated_from_the_docs_file():
    assert docs.readme_section() in README.read_text(), "run: .venv/bin/greenery docs --write-readme"


def test_write_readme_refuses_missing_doubled_or_reversed_markers_and_writes_nothing(tmp_path):
    """`greenery docs --write-readme` rewrote the text between its markers whatever they were: reversed, it
    duplicated the README's text between them and said "updated"; missing, it died with a bare ValueError."""
    start, end = docs.README_START, docs.README_END
    for text, why in (
        ("# readme\n", f"{start} must appear once (found 0)"),
        (f"{start}\n{start}\nold\n{end}\n", f"{start} must appear once (found 2)"),
        (f"a\n{end}\nb\n{start}\nc\n", f"{end} comes before {start}"),
    ):
        readme = tmp_path / "README.md"
        readme.write_text(text)
        with pytest.raises(docs.ReadmeMarkersError, match=re.escape(f"{readme}: {why}")):
            docs.update_readme(readme)
        assert readme.read_text() == text
    readme.write_text(f"a\n{start}\nold\n{end}\nb\n")  # the positive control
    assert docs.update_readme(readme) and readme.read_text() == f"a\n{docs.readme_section()}\nb\n"


def test_write_readme_with_no_mart_docs_found_refuses_and_writes_nothing(tmp_path, monkeypatch):
    """Review: with GREENERY_SQL_DIR pointing nowhere, `--write-readme` wiped every mart's docs and said "updated"."""
    readme = tmp_path / "README.md"
    readme.write_text(text := f"a\n{docs.README_START}\nold\n{docs.README_END}\n")
    # A folder with no model at all is a bad setting (config.py); this one has a model but no mart docs.
    (tmp_path / "sql" / "staging").mkdir(parents=True)
    (tmp_path / "sql" / "staging" / "stg_one.sql").write_text("select 1 as one")
    monkeypatch.setenv("GREENERY_SQL_DIR", str(tmp_path / "sql"))
    docs.load.cache_clear()  # read once per process (the docs of the default folder)
    try:
        with pytest.raises(docs.DocsError, match=re.escape(f"{tmp_path / 'sql' / 'marts' / '_docs.yml'}: no mart")):
            docs.update_readme(readme)
    finally:
        docs.load.cache_clear()
    assert readme.read_text() == text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # Review: yaml's traceback (`greenery docs`, `greenery answers`).
        (
            'dim_users:\n  description: "unterminated\n',
            ", line 3, column 1: not YAML: found unexpected end of stream (while scanning a quoted scalar from line 2,"
            " column 16)",
        ),
        # Review: "TypeError: 'str' object is not a mapping".
        ("dim_users: One row per user\n", ": entry dim_users: expected a mapping of keys to values, got a str"),
        ("dim_users:\n", ": entry dim_users: expected a mapping of keys to values, got nothing"),
        ("- dim_users\n", ": expected a mapping of names to entries, got a list"),
    ],
)
def test_a_broken_docs_file_is_one_line_naming_it(text, error, tmp_path, monkeypatch, capsys):
    (tmp_path / "sql" / "marts").mkdir(parents=True)
    (tmp_path / "sql" / "marts" / "one.sql").write_text("select 1 as one")
    (path := tmp_path / "sql" / "marts" / "_docs.yml").write_text(text)
    monkeypatch.setenv("GREENERY_SQL_DIR", str(tmp_path / "sql"))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    docs.load.cache_clear()  # read once per process (the docs of the default folder)
    try:
        with pytest.raises(docs.DocsError) as err:
            docs.load()
        assert str(err.value).startswith(f"{path}{error}"), err.value
        from greenery import cli

        assert cli.main(["docs"]) == 2
    finally:
        docs.load.cache_clear()
    assert capsys.readouterr().err == f"error: {err.value}\n"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # Review: each went unused in silence, or failed the model's task as its SQL's error, retried (338 s).
        ("one:\n  columns:\n    - one\n", ": entry one: columns: expected a mapping (key: value lines), got a list"),
        ("one:\n  columns:\n    one: [a]\n", ": entry one: column one: expected its meaning as text, got a list"),
        ("one:\n  description: a\none:\n  owner: analytics\n", ", line 3: one is given twice (YAML keeps the last"),
        ("one:\n  columns:\n    one: a\n    one: b\n", ", line 4: one is given twice"),
        ("onne:\n  description: a\n", ": entry onne: no marts model of that name"),
        ("one:\n  owner: analytcs\n", ": entry one: owner 'analytcs' is not in _owners.yml (analytics)"),
        ("one:\n  descripton: a\n", ": entry one: descripton: no such key (an entry holds description, owner,"),
        (
            "one:\n  indicators:\n    x:\n      definition: d\n",
            ": entry one: indicator x: expected definition and says",
        ),
        ("one:\n  layer: staging\n", ": entry one: layer: the file's folder is its layer, marts"),
    ],
    ids=[
        "columns-list",
        "column-list",
        "model-twice",
        "column-twice",
        "no-model",
        "owner",
        "key",
        "indicator",
        "layer",
    ],
)
def test_a_docs_entry_that_would_be_lost_or_break_its_model_is_refused_naming_it(
    text, error, tmp_path, monkeypatch, capsys
):
    (tmp_path / "sql" / "marts").mkdir(parents=True)
    (tmp_path / "sql" / "marts" / "one.sql").write_text("select 1 as one")
    (tmp_path / "sql" / "_owners.yml").write_text("analytics:\n  name: Analytics\n")
    (path := tmp_path / "sql" / "marts" / "_docs.yml").write_text(text)
    monkeypatch.setenv("GREENERY_SQL_DIR", str(tmp_path / "sql"))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    with pytest.raises(docs.DocsError) as err:
        docs.check(models.discover())
    assert str(err.value).startswith(f"{path}{error}"), err.value
    from greenery import cli

    assert cli.main(["docs"]) == 2
    assert capsys.readouterr().err == f"error: {err.value}\n"


def test_a_docs_entry_naming_its_own_layer_is_taken(tmp_path, monkeypatch):
    """Diff review: refusing every layer: key failed every run of a _docs.yml that worked, naming its own folder."""
    (tmp_path / "sql" / "marts").mkdir(parents=True)
    (tmp_path / "sql" / "marts" / "one.sql").write_text("select 1 as one")
    (tmp_path / "sql" / "marts" / "_docs.yml").write_text("one:\n  layer: marts\n  description: a\n")
    monkeypatch.setenv("GREENERY_SQL_DIR", str(tmp_path / "sql"))
    docs.check(models.discover())
    assert docs.load(tmp_path / "sql")["one"] == {"layer": "marts", "description": "a"}


def test_a_docs_file_of_the_wrong_shape_fails_the_run_at_its_first_build_task(tmp_path, monkeypatch):
    """Review: int_buyers' columns written as a list failed its own task as a SQL error, twice retried; a YAML error
    in one layer's file failed four other models' tasks. prepare_build reads them before anything is built."""
    import shutil

    from greenery.tasks import build as build_task

    shutil.copytree(config.get().sql_dir, tmp_path / "sql")
    docs_file = tmp_path / "sql" / "intermediate" / "_docs.yml"
    text = docs_file.read_text()
    docs_file.write_text(text.replace("int_buyers:\n", "int_buyers:\n  colour: green\n", 1))
    monkeypatch.setenv("GREENERY_SQL_DIR", str(tmp_path / "sql"))
    with pytest.raises(docs.DocsError, match=r"_docs\.yml: entry int_buyers: colour: no such key"):
        build_task.prepare({"run_id": "x", "logical_date": dt.datetime(2021, 2, 11, tzinfo=dt.UTC)})


def test_every_model_is_documented_and_owned():
    found = models.discover()
    assert set(docs.load()) == set(found)
    assert all(doc.get("description") for doc in docs.load().values())
    for name, model in found.items():
        assert docs.load()[name]["layer"] == model.layer, name
        owner = docs.owner_of(name)
        assert owner and owner.get("slack", "").startswith("<"), f"{name}: owner {owner} has no Slack handle"
    marts = [name for name, m in found.items() if m.layer == "marts"]
    assert all(docs.load()[name].get("columns") for name in marts), "every mart documents its columns"


def test_indicator_definitions_are_in_the_readme():
    indicators = docs.load()["repurchase_indicators"]["indicators"]
    assert all(d.get("definition") and d.get("says") for d in indicators.values())
    section = docs.readme_section()
    assert all(f"| `{name}` | " in section for name in indicators)


@pytest.mark.db
def test_built_marts_carry_the_docs_as_comments_and_every_column_is_documented(db):
    known_data.load(db)
    found = models.discover()
    build.build_all(db, found, render.Interval.for_day(dt.date(2021, 2, 12)))
    for name, doc in docs.load().items():
        if "columns" not in doc:
            continue  # staging and intermediate models document the table only
        layer = doc["layer"]
        columns = {
            r[0]: r[1]
            for r in db.execute(
                "select a.attname, col_description(a.attrelid, a.attnum) from pg_attribute a "
                "where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped",
                (f"{layer}.{name}",),
            )
        }
        assert set(columns) == set(doc["columns"]), name
        assert columns == {c: str(t) for c, t in doc["columns"].items()}, name
        table_comment = db.execute("select obj_description(%s::regclass, 'pg_class')", (f"{layer}.{name}",)).fetchone()
        assert table_comment[0] == doc["description"]


def _comment_mismatches(conn) -> list[str]:
    """Each published mart table or documented column whose COMMENT is not the text _docs.yml gives it."""
    wrong = []
    for name, doc in docs.load().items():
        if doc["layer"] != "marts":
            continue
        relation = f"marts.{name}"
        found = dict(
            conn.execute(
                "select a.attname, col_description(a.attrelid, a.attnum) from pg_attribute a where a.attrelid ="
                " %s::regclass and a.attnum > 0 and not a.attisdropped union all"
                " select null, obj_description(%s::regclass, 'pg_class')",
                (relation, relation),
            ).fetchall()
        )
        wanted = {None: doc["description"], **{c: str(t) for c, t in doc["columns"].items()}}
        wrong += [f"{relation}.{c or '(table)'}: {found.get(c)!r}" for c, t in wanted.items() if found.get(c) != t]
    return wrong


@pytest.mark.db
def test_published_marts_carry_the_docs_as_comments_and_edited_docs_reach_them(published_url, tmp_path, monkeypatch):
    """Review: the four daily marts (published by insert into a LIKE copy) had no table COMMENT, and text edited in
    _docs.yml never reached them. Published through write-audit-publish (the template), then with edited docs."""
    import shutil

    import psycopg
    import yaml
    from helpers import run_day_without_airflow

    docs.load.cache_clear()
    with psycopg.connect(published_url, autocommit=True) as conn:
        assert _comment_mismatches(conn) == []
        sql_dir = shutil.copytree(Path(config.get().sql_dir), tmp_path / "sql")
        path = sql_dir / "marts" / "_docs.yml"
        edited = yaml.safe_load(path.read_text(encoding="utf-8"))
        for name in ("metrics_daily", "fact_funnel_daily", "fact_orders"):
            edited[name]["description"] += " EDITED."
            column = next(iter(edited[name]["columns"]))
            edited[name]["columns"][column] = f"EDITED {column}."
        path.write_text(yaml.safe_dump(edited, sort_keys=False, allow_unicode=True), encoding="utf-8")
        monkeypatch.setenv("GREENERY_SQL_DIR", str(sql_dir))
        docs.load.cache_clear()
        try:
            assert len(_comment_mismatches(conn)) == 6  # the control: the edits are not on the tables yet
            run_day_without_airflow(conn, dt.date(2021, 2, 12), "edited")
            assert _comment_mismatches(conn) == []
            comment = "select obj_description('marts.metrics_daily'::regclass, 'pg_class')"
            assert conn.execute(comment).fetchone()[0].endswith(" EDITED.")
        finally:
            docs.load.cache_clear()


class _Recording:
    """A cursor that keeps the text of every statement it runs."""

    def __init__(self, cur) -> None:
        self.cur, self.statements = cur, []

    def execute(self, query, params=None):
        self.statements.append(query if isinstance(query, str) else query.as_string(self.cur))
        return self.cur.execute(query, params)


@pytest.mark.db
def test_comments_are_written_where_they_differ_only(db):
    """A comment waits for autovacuum's lock on the table: a table whose comments are already right (an
    incremental one, merged into every day) gets none; one edited in the warehouse is put back."""
    name = "int_user_session_behavior"
    doc = docs.load()[name]
    columns = ", ".join(f"{c} text" for c in doc["columns"])
    db.execute(f"create table public.documented ({columns}, undocumented text)")

    def apply() -> list[str]:
        recording = _Recording(db.cursor())
        docs.apply_comments(recording, name, "public", "documented")
        return [s for s in recording.statements if s.startswith("comment on")]

    assert len(apply()) == 1 + len(doc["columns"])
    assert apply() == []
    db.execute("comment on column public.documented.user_id is 'edited by hand'")
    [again] = apply()
    assert "user_id" in again
    comment = "select col_description('public.documented'::regclass, 2)"  # user_id, the second column
    assert db.execute(comment).fetchone()[0] == doc["columns"]["user_id"]


def test_every_setting_is_in_the_readmes_table_with_its_default():
    """README (Settings): every GREENERY_* variable config.py reads has a row, and a default written there is
    config.py's (review: seven settings were in no README line)."""
    from greenery import config

    source = Path(config.__file__).read_text()
    rows = dict(re.findall(r"^\| `(GREENERY_[A-Z_]+)` \| ([^|]*) \|", README.read_text(), re.M))
    assert set(re.findall(r'"(GREENERY_[A-Z_]+)"', source)) == set(rows)
    defaults = re.findall(r'"(GREENERY_[A-Z_]+)", "([^"]+)"', source)
    assert len(defaults) >= 10  # the pattern still finds them
    for name, default in defaults:
        assert rows[name].strip() == f"`{default}`", name
    # The defaults made in code rather than written as a pair above (review: the pattern skipped them).
    made = config.get({})
    project = config.PROJECT_DIR
    assert rows["GREENERY_ALERT_CONN_ID"].strip() == f"`{made.alert_conn_id}`"
    assert rows["GREENERY_SQL_DIR"].strip() == f"`{made.sql_dir.relative_to(project)}`"
    assert rows["GREENERY_EXPECTATIONS_DIR"].strip() == f"`{made.expectations_dir.relative_to(project)}`"
    assert rows["GREENERY_STATE_DIR"].strip() == f"`{config.state_dir({}).relative_to(project)}` (in the project)"


@pytest.mark.db
def test_a_docs_key_naming_no_column_fails_naming_the_docs_file_not_the_models_sql(db, monkeypatch):
    """Review: a misspelt column key in _docs.yml failed the model's build as its SQL ('column "total_revnue" of
    relation ... does not exist'), retried twice; the docs file was never named."""
    db.execute("create table public.promo_usage (promo_id text, total_revenue numeric)")
    documented = {"layer": "marts", "description": "Promos", "columns": {"promo_id": "P", "total_revnue": "R"}}
    monkeypatch.setattr(docs, "load", lambda: {"promo_usage": documented})
    with pytest.raises(docs.DocsError) as err:
        docs.apply_comments(db, "promo_usage", "public", "promo_usage")
    expected = f"{config.get().sql_dir / 'marts' / '_docs.yml'}: promo_usage: documents column(s) total_revnue"
    assert str(err.value).startswith(expected) and "(promo_id, total_revenue)" in str(err.value), err.value


@pytest.mark.db
def test_a_unique_key_naming_no_column_fails_the_build_naming_the_model(db, tmp_path):
    """Developer's trial: config(unique_key='promoid') published green; every alert on the table then said its keys
    could not be read. The build names the model, the key and its columns, and is not retried."""
    import shutil

    from greenery.errors import RetryCannotFix
    from greenery.materialize.model_sql import ModelBuildError

    shutil.copytree(config.get().sql_dir, tmp_path / "sql")
    (tmp_path / "sql" / "marts" / "fact_promo_usage.sql").write_text(
        "{{ config(unique_key='promoid') }}\nselect 'p1' as promo_id, 2 as orders"
    )
    found = models.discover(tmp_path / "sql")
    with pytest.raises(ModelBuildError) as err:
        build.build_model(db, found["fact_promo_usage"], found, render.Interval.for_day(dt.date(2021, 2, 11)))
    assert isinstance(err.value, RetryCannotFix)
    assert (
        "fact_promo_usage.sql): config(unique_key=...) names promoid, not a column of the model (orders, promo_id)"
        in (str(err.value))
    ), err.value


def test_write_readme_names_the_file_it_wrote(tmp_path, monkeypatch, capsys):
    """Review: run from another checkout with this venv, it rewrote this checkout's README and said only "README.md
    updated"; it names the file."""
    from greenery import cli

    (tmp_path / "README.md").write_text(README.read_text())
    monkeypatch.setattr(config, "PROJECT_DIR", tmp_path)
    assert cli.main(["docs", "--write-readme"]) == 0
    assert capsys.readouterr().out.strip() == f"{tmp_path / 'README.md'} already up to date"


def test_the_readme_names_the_schemas_a_run_creates():
    """Review: the grants paragraph listed three of the schemas the role creates. (The GREENERY_RETRIES row's tasks
    are checked against the parsed DAG in test_dag_integrity.py, whose files import Airflow.)"""
    from greenery import audit, build_schemas
    from greenery.materialize import quarantine

    text = README.read_text()
    grants = " ".join(text[text.index("The role needs `usage` on `raw`") :].split("Then `greenery run`")[0].split())
    for schema in (*config.LAYERS, quarantine.SCHEMA, audit.SCHEMA, build_schemas.BUILD_PREFIX):
        assert f"`{schema}" in grants, (schema, grants)


@pytest.mark.parametrize("libyaml", [True, False])
def test_every_docs_file_reads_as_pyyamls_safe_loader_reads_it(libyaml, monkeypatch):
    """docs.py reads them with libyaml's loader where PyYAML has it (a tenth of the CPU, in every model task), else
    with PyYAML's own: the same documents either way."""
    import yaml

    assert yaml.__with_libyaml__, "this PyYAML has no libyaml: docs.py falls back to its slow loader"
    monkeypatch.setattr(yaml, "__with_libyaml__", libyaml)
    files = [*Path(config.get().sql_dir).glob("*/_docs.yml"), Path(config.get().sql_dir) / "_owners.yml"]
    assert len(files) == len(config.LAYERS) + 1
    for path in files:
        assert docs._entries(path) == (yaml.safe_load(path.read_text(encoding="utf-8")) or {}), path
