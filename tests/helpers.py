"""Small helpers for assertions: SQL ones (kept out of the product: the product checks data with GX), and sample
values shaped as the product reports them."""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import functools
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from psycopg import sql

from greenery import wap
from greenery.checks import suites as suite_files
from greenery.checks.summary import UNEXPECTED_ROWS
from greenery.project import models

# A real Greenery order whose defects are quarantined without blocking the run (the bad-input catalog's).
OTHER_ORDER = "f3ab84e6-dec5-43b4-9aa7-45b9988bff58"


def parse_python(path: Path) -> ast.Module:
    """``ast.parse`` of a source file, safe beside other threads.

    CPython before 3.11.8 keeps one AST-conversion depth counter per interpreter (gh-106905): an ``ast.parse`` in
    another thread at the same moment (3.11's traceback module calls it to underline an error, so any thread that
    prints or logs a traceback does) makes this one fail with "AST constructor recursion depth mismatch". That
    failure says nothing of the file, so the parse is tried again.
    """
    text = path.read_text()
    for attempt in range(5):
        try:
            return ast.parse(text, str(path))
        except SystemError as error:
            if "recursion depth mismatch" not in str(error) or attempt == 4:
                raise
    raise AssertionError("unreachable")


def duplicate_keys(conn, relation: str, key: tuple[str, ...]) -> int:
    """Rows whose key is NULL or shared with another row."""
    schema, table = relation.split(".")
    cols = sql.SQL(", ").join(map(sql.Identifier, key))
    nulls = sql.SQL(" or ").join(sql.SQL("{} is null").format(sql.Identifier(c)) for c in key)
    query = sql.SQL(
        "select (select count(*) from {t} where {nulls})"
        " + (select coalesce(sum(n), 0) from (select count(*) as n from {t} group by {cols} having count(*) > 1) d)"
    ).format(t=sql.Identifier(schema, table), nulls=nulls, cols=cols)
    return int(conn.execute(query).fetchone()[0])


def table_hash(conn, relation: str) -> str:
    """An order-independent digest of a table's content."""
    schema, table = relation.split(".")
    query = sql.SQL(
        "select md5(coalesce(string_agg(r, '|' order by r), '')) from (select t::text as r from {} t) s"
    ).format(sql.Identifier(schema, table))
    return conn.execute(query).fetchone()[0]


@functools.cache
def _models() -> dict[str, models.Model]:
    return models.discover()


@functools.cache
def _model_relations() -> tuple[str, ...]:
    return tuple(m.relation for m in _models().values())


def hashes(conn, relations: Iterable[str] | None = None) -> dict[str, str]:
    """:func:`table_hash` of each relation; by default of every model's published table."""
    return {r: table_hash(conn, r) for r in (_model_relations() if relations is None else relations)}


def rows(conn, query: str, params=None) -> list[dict]:
    cur = conn.execute(query, params)
    names = [c.name for c in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def query_checks(suites: Mapping[str, suite_files.SuiteFile]) -> Iterator[tuple[str, dict, str]]:
    """Each query check (unexpected_rows_expectation) of ``suites``: its model, the expectation, and its query as an
    ad-hoc ``gx.validate`` renders it (refs to the published tables, anomaly checks as of today; ``{batch}`` kept)."""
    found = _models()

    def published(name: str) -> str:
        return found[name].relation

    for name, suite in suites.items():
        for expectation in suite.expectations:
            if expectation["type"] == UNEXPECTED_ROWS:
                query = expectation["kwargs"]["unexpected_rows_query"]
                yield (
                    name,
                    expectation,
                    suite_files.resolve_refs(
                        query, published, {**suite_files.run_variables(found), "published": published}
                    ),
                )


def publish_checked(conn, found: Mapping[str, models.Model], run: wap.Build) -> list[str]:
    """``wap.publish`` of a build marked as checked first, as a passing ``validate`` task marks it: for tests of
    publishing itself, which build without GX (publish refuses a build no passing validation checked)."""
    with conn.transaction():
        wap.record_validated(conn, run, wap.built_times(conn, run))
    return wap.publish(conn, found, run)


def run_day_without_airflow(
    conn, day: dt.date, run_id: str | None = None, run_time: dt.datetime | None = None, full_refresh: bool = False
) -> wap.Build:
    """What one DAG run does, minus Airflow and GX: prepare (with ``run_time`` as a new run's clock), build every
    model, publish (as if validated), clean up."""
    run = wap.Build(run_id or f"run-{day}", day)
    wap.prepare(conn, run, run_time=run_time)
    wap.build_models(conn, _models(), run, full_refresh=full_refresh)
    publish_checked(conn, _models(), run)
    wap.drop_finished_builds(conn, keep=run)
    return run


def run_day_through_the_tasks(
    url: str, run_id: str, day: dt.date, full_refresh: bool = False
) -> tuple[str, dict | None]:
    """The DAG's task bodies for ``day`` without Airflow: build, validate (GX, the validate task's own code), publish
    unless blocked. Returns the outcome ("failed", "blocked", "published") and the validation summary. The Airflow
    connection greenery_warehouse must point at ``url``."""
    import psycopg

    from greenery.materialize.model_sql import ModelBuildError
    from greenery.tasks import validate as validate_task

    pushed = {}
    ti = type("TaskInstance", (), {"xcom_push": lambda self, key, value: pushed.update({key: value})})()
    context = {"run_id": run_id, "logical_date": dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC), "ti": ti}
    context["params"] = {"full_refresh": full_refresh}  # the DAG's Param, as validate reads it
    with psycopg.connect(url, autocommit=True) as conn:
        build = wap.Build(run_id, day)
        wap.prepare(conn, build)
        try:
            wap.build_models(conn, _models(), build, full_refresh=full_refresh)
        except ModelBuildError:
            return "failed", None
    try:
        summary = validate_task.run(context)
    except validate_task.ChecksFailed:
        return "blocked", pushed[validate_task.SUMMARY_KEY]
    with psycopg.connect(url, autocommit=True) as conn:
        wap.publish(conn, _models(), build)  # validate marked what it checked
    return "published", summary


def asset_events(dag_run) -> set[str]:
    """Names of the assets that this run emitted an event for (Airflow's metadata DB)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.name)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_run_id == dag_run.run_id)
        ).all()
    return {r[0] for r in rows}


def duplicated_compound_key() -> str:
    """A sample key as the primary-key query of a three-UUID key reports a duplicate (the summary formats the
    query's row): 153 characters, the number of copies last."""
    from greenery.checks.summary import sample_keys

    row = {
        "event_id": "0007a1f6-0123-4ab3-bac3-6dfefa832975",
        "product_id": "fb0e8be7-5ac4-4a76-a1fa-2cc4bf0b2d80",
        "session_id": "b3367c91-53bd-4aac-ab6d-0a596fe382c2",
        "copies": 2,
    }
    [key] = sample_keys({"details": {"unexpected_rows": [row]}})
    return key


def may_log_in(conn, role: str) -> str:
    """Let ``role`` (one of :func:`roles`) log in; return its new password."""
    password = uuid.uuid4().hex
    conn.execute(sql.SQL("alter role {} login password {}").format(sql.Identifier(role), sql.Literal(password)))
    return password


@contextlib.contextmanager
def roles(conn, *names: str):
    """New roles, one per name (unique: roles are the whole cluster's), dropped with their grants at the end."""
    made = [f"greenery_test_{uuid.uuid4().hex[:8]}_{name}" for name in names]
    for role in made:
        conn.execute(sql.SQL("create role {}").format(sql.Identifier(role)))
    try:
        yield made
    finally:
        conn.execute("reset role")
        idents = sql.SQL(", ").join(map(sql.Identifier, made))
        conn.execute(sql.SQL("drop owned by {}").format(idents))  # their grants and tables, in this database
        conn.execute(sql.SQL("drop role {}").format(idents))


def repeated_expectations(text: str) -> str:
    """The suite's text with a second ``"expectations"`` key holding its first expectation only, as a merge left it."""
    data = json.loads(text)
    return text.rstrip().removesuffix("}") + f',\n  "expectations": {json.dumps(data["expectations"][:1])}\n}}\n'
