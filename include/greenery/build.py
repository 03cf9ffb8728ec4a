"""Materialize one model in PostgreSQL, in a single transaction, so a failed build changes nothing."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from psycopg import sql

from greenery import docs
from greenery.models import Interval, Model, incremental_since, render

log = logging.getLogger(__name__)

QUARANTINE_SCHEMA = "quarantine"
# A model with config(quarantine=true) selects this column: NULL keeps the row, text names the broken rule.
RULE_COLUMN = "quarantine_rule"


class ModelBuildError(RuntimeError):
    """A model's SQL failed in PostgreSQL; the message names the file, the line and the server's error."""


@dataclass(frozen=True)
class BuildResult:
    model: str
    relation: str
    rows: int
    seconds: float
    quarantined: int = 0
    incremental: bool = False


def _error_location(rendered: str, position: str | None, prefix_len: int | None) -> str:
    if prefix_len is None or not position or not position.isdigit():
        return ""
    # The server counts from the start of the statement, which wraps the model's select.
    offset = max(int(position) - 1 - prefix_len, 0)
    line_no = rendered.count("\n", 0, offset) + 1
    line = rendered.splitlines()[line_no - 1] if rendered else ""
    return f" at line {line_no} of the rendered SQL: {line.strip()!r}"


def _ident(relation: str) -> sql.Identifier:
    schema, _, table = relation.partition(".")
    return sql.Identifier(schema, table)


def resolver(conn, models: Mapping[str, Model], schema_of: Mapping[str, str] | None) -> Callable[[str], str]:
    """Name -> relation: the run's build schema when the model is there, else the published table.

    Falling back lets a single cleared task rebuild from what is published when its run's build
    schemas were already published or cleaned up.
    """
    schema_of = dict(schema_of or {})

    def relation(name: str) -> str:
        model = models[name]
        build_schema = schema_of.get(model.layer)
        if build_schema is None:
            return model.relation
        found = conn.execute("select to_regclass(%s)", (sql.Identifier(build_schema, name).as_string(conn),))
        return f"{build_schema}.{name}" if found.fetchone()[0] is not None else model.relation

    return relation


def relation_columns(conn, relation: str) -> list[tuple[str, int]] | None:
    """(name, type oid) of a table's columns in order, or None when it does not exist."""
    rows = conn.execute(
        "select attname, atttypid::int from pg_attribute where attrelid = to_regclass(%s)"
        " and attnum > 0 and not attisdropped order by attnum",
        (_ident(relation).as_string(conn),),
    ).fetchall()
    return [(name, oid) for name, oid in rows] or None


PROBE_PREFIX = "select * from ("


def _select_columns(cur, select: sql.Composable) -> list[tuple[str, int]]:
    # LIMIT 0 plans the query and stops before reading a row: a cheap way to learn its columns.
    cur.execute(sql.SQL(PROBE_PREFIX) + select + sql.SQL(") as probe limit 0"))
    return [(c.name, c.type_code) for c in cur.description if c.name != RULE_COLUMN]


def _keys_match(model: Model) -> sql.Composed:
    """``d.k = t.k and ...`` over the model's key: a delta row ``d`` replaces a published row ``t``."""
    return sql.SQL(" and ").join(sql.SQL("d.{k} = t.{k}").format(k=sql.Identifier(k)) for k in model.unique_key)


def merge_statements(model: Model, target: str, delta: str, since: dt.datetime) -> list[tuple[sql.Composed, tuple]]:
    """Replace ``target``'s rows that ``delta`` recomputes: from ``since`` on, or with a key in the delta."""
    keys = _keys_match(model)
    column = sql.Identifier(model.incremental_column)
    # Two deletes, not one with OR, so each can use its index (column range, then key lookups).
    return [
        (sql.SQL("delete from {} as t where t.{} >= %s").format(_ident(target), column), (since,)),
        (sql.SQL("delete from {} as t using {} as d where {}").format(_ident(target), _ident(delta), keys), ()),
        (sql.SQL("insert into {} select * from {}").format(_ident(target), _ident(delta)), ()),
    ]


def _merged_view(model: Model, view: str, delta: str, since: dt.datetime) -> sql.Composed:
    """The published table with this run's delta merged in, as downstream models of the run see it."""
    return sql.SQL(
        "create view {view} as select * from {published} as t"
        " where (t.{col} < {since} or t.{col} is null) and not exists (select from {delta} as d where {keys})"
        " union all select * from {delta}"
    ).format(
        view=_ident(view),
        published=_ident(model.relation),
        col=sql.Identifier(model.incremental_column),
        since=sql.Literal(since),
        delta=_ident(delta),
        keys=_keys_match(model),
    )


def _create_indexes(cur, model: Model, relation: str) -> None:
    for columns in model.indexes:
        cur.execute(
            sql.SQL("create index on {} ({})").format(
                _ident(relation), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
        )


def delta_relation(relation: str) -> str:
    """Where an incremental build keeps the rows it recomputed (``<schema>.<model>__delta``)."""
    return f"{relation}__delta"


def _drop_relation(cur, relation: str) -> None:
    """Drop ``relation``, a table or a view: DROP VIEW IF EXISTS fails on a table, and the other way round."""
    kind = cur.execute(
        "select relkind from pg_class where oid = to_regclass(%s)", (_ident(relation).as_string(cur),)
    ).fetchone()
    if kind is not None:
        statement = "drop view {}" if kind[0] == "v" else "drop table {}"
        cur.execute(sql.SQL(statement).format(_ident(relation)))


def _drop_incremental_build(cur, target: str) -> None:
    """Drop what an earlier attempt at ``target`` left in its build schema (a cleared task reruns there).

    That is a merge view and its delta after an incremental build, a table after a whole one.
    """
    _drop_relation(cur, target)
    cur.execute(sql.SQL("drop table if exists {}").format(_ident(delta_relation(target))))


def build_model(
    conn,
    model: Model,
    models: Mapping[str, Model],
    interval: Interval,
    schema_of: Mapping[str, str] | None = None,
    run_id: str = "adhoc",
    full_refresh: bool = False,
) -> BuildResult:
    """Build ``model`` for ``interval``; ``schema_of`` maps a layer to the schema it is written to.

    ``table`` models are replaced whole; ``daily_partition`` models have the run's day deleted and
    written again, so reruns and backfills overwrite instead of appending. ``incremental`` models
    recompute only the rows from the run's day minus their lookback (see :func:`merge_statements`),
    unless ``full_refresh``, nothing is published yet, or the model's columns changed: then they are
    built whole. In a build schema an incremental model is ``<model>__delta`` (the recomputed rows)
    plus a view ``<model>`` merging it over the published table, which downstream models read;
    publishing applies the delta. Rows a model flags in ``quarantine_rule`` go to
    ``quarantine.<model>`` (replacing that day's) instead of the table.
    """
    schema_of = dict(schema_of or {})
    schema = schema_of.get(model.layer, model.layer)
    target = f"{schema}.{model.name}"
    in_place = schema == model.layer
    ref = resolver(conn, models, schema_of)
    relation = lambda name: target if name == model.name else ref(name)  # noqa: E731
    since = incremental_since(model, interval)
    incremental = False
    rendered = ""
    # Length of what wraps the model's SQL in the failing statement; None once the body is not in it.
    prefix_len: int | None = None
    quarantined = 0
    started = time.perf_counter()
    try:
        # In a transaction block so that these lookups leave no transaction open on a non-autocommit connection.
        with conn.transaction():
            if model.materialized == "incremental" and not full_refresh:
                published = relation_columns(conn, model.relation)
                if published is not None:
                    rendered = render(model, interval, relation)
                    body = rendered.strip().rstrip(";")
                    prefix_len = len(PROBE_PREFIX) - rendered.index(body)
                    with conn.cursor() as cur:
                        wanted = _select_columns(cur, sql.SQL(body))
                    prefix_len = None
                    incremental = wanted == published
                    if not incremental:
                        log.warning("%s: columns changed since it was published; building it whole", model.name)
            rendered = render(model, interval, relation, incremental=incremental)
        body = rendered.strip().rstrip(";")
        select = sql.SQL(body)
        with conn.transaction(), conn.cursor() as cur:
            # Hour buckets and dates are UTC whatever the role's or server's default time zone is.
            cur.execute("set local timezone = 'UTC'")
            cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
            if model.config.get("quarantine"):
                prefix = "create temporary table _greenery_candidate on commit drop as "
                prefix_len = len(prefix) - rendered.index(body)
                cur.execute(sql.SQL(prefix) + select)
                select, quarantined = _split_quarantine(cur, model, interval, run_id)
                body = None
                prefix_len = None
            if incremental:
                delta = "pg_temp._greenery_delta" if in_place else delta_relation(target)
                if in_place:
                    prefix = "create temporary table _greenery_delta on commit drop as "
                else:
                    _drop_incremental_build(cur, target)
                    prefix = sql.SQL("create table {} as ").format(_ident(delta)).as_string(conn)
                prefix_len = None if body is None else len(prefix) - rendered.index(body)
                cur.execute(sql.SQL(prefix) + select)
                rows = cur.rowcount
                prefix_len = None
                if in_place:
                    for statement, params in merge_statements(model, target, delta, since):
                        cur.execute(statement, params)
                else:
                    cur.execute(sql.SQL("analyze {}").format(_ident(delta)))
                    cur.execute(_merged_view(model, target, delta, since))
            elif model.materialized in ("table", "incremental"):
                staged = f"{target}__next"
                cur.execute(sql.SQL("drop table if exists {}").format(_ident(staged)))
                prefix = sql.SQL("create table {} as ").format(_ident(staged)).as_string(conn)
                prefix_len = None if body is None else len(prefix) - rendered.index(body)
                cur.execute(sql.SQL(prefix) + select)
                rows = cur.rowcount
                prefix_len = None
                _create_indexes(cur, model, staged)
                if model.materialized == "incremental" and not in_place:
                    _drop_incremental_build(cur, target)
                cur.execute(sql.SQL("drop table if exists {}").format(_ident(target)))
                cur.execute(sql.SQL("alter table {} rename to {}").format(_ident(staged), sql.Identifier(model.name)))
            else:
                partition = sql.Identifier(model.partition_by)
                prefix = sql.SQL("create table if not exists {} as ").format(_ident(target)).as_string(conn)
                prefix_len = None if body is None else len(prefix) - rendered.index(body)
                cur.execute(sql.SQL(prefix) + select + sql.SQL(" with no data"))
                cur.execute(sql.SQL("delete from {} where {} = %s").format(_ident(target), partition), (interval.day,))
                prefix = sql.SQL("insert into {} ").format(_ident(target)).as_string(conn)
                prefix_len = None if body is None else len(prefix) - rendered.index(body)
                cur.execute(sql.SQL(prefix) + select)
                rows = cur.rowcount
            if in_place or not incremental:  # a build's delta gets them when it is merged at publish
                docs.apply_comments(cur, model.name, schema, model.name)
                cur.execute(sql.SQL("analyze {}").format(_ident(target)))
    except Exception as exc:
        diag = getattr(exc, "diag", None)
        detail = getattr(diag, "message_primary", None) or str(exc)
        sqlstate = getattr(exc, "sqlstate", None)
        where = _error_location(rendered, getattr(diag, "statement_position", None), prefix_len)
        raise ModelBuildError(
            f"model {model.name} ({model.path}) failed building {target}: "
            f"[{sqlstate or type(exc).__name__}] {detail}{where}"
        ) from exc
    result = BuildResult(model.name, target, rows, time.perf_counter() - started, quarantined, incremental)
    log.info(
        "built %s%s: %d rows in %.2fs (%d quarantined)",
        target,
        f" incrementally from {since:%Y-%m-%d}" if incremental else "",
        rows,
        result.seconds,
        quarantined,
    )
    return result


def _split_quarantine(cur, model: Model, interval: Interval, run_id: str) -> tuple[sql.Composable, int]:
    """Write flagged rows of ``_greenery_candidate`` to quarantine; return the select of the good rows."""
    cur.execute("select * from _greenery_candidate limit 0")
    columns = [c.name for c in cur.description]
    if RULE_COLUMN not in columns:
        raise ValueError(f"{model.path}: config(quarantine=true) needs a {RULE_COLUMN!r} column")
    kept = [c for c in columns if c != RULE_COLUMN]
    cols = sql.SQL(", ").join(map(sql.Identifier, kept))
    table = sql.Identifier(QUARANTINE_SCHEMA, model.name)
    cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(QUARANTINE_SCHEMA)))
    cur.execute(
        sql.SQL(
            "create table if not exists {} as select null::date as logical_date, null::text as run_id,"
            " null::text as rule, null::timestamptz as quarantined_at, {} from _greenery_candidate with no data"
        ).format(table, cols)
    )
    cur.execute(sql.SQL("delete from {} where logical_date = %s").format(table), (interval.day,))
    cur.execute(
        sql.SQL(
            "insert into {} (logical_date, run_id, rule, quarantined_at, {cols})"
            " select %s, %s, {rule}, now(), {cols} from _greenery_candidate where {rule} is not null"
        ).format(table, cols=cols, rule=sql.Identifier(RULE_COLUMN)),
        (interval.day, run_id),
    )
    quarantined = cur.rowcount
    good = sql.SQL("select {} from _greenery_candidate where {} is null").format(cols, sql.Identifier(RULE_COLUMN))
    return good, quarantined


def build_all(
    conn,
    models: Mapping[str, Model],
    interval: Interval,
    schema_of=None,
    run_id: str = "adhoc",
    full_refresh: bool = False,
) -> list[BuildResult]:
    """Build every model in dependency order (what the DAG does, without Airflow)."""
    return [build_model(conn, m, models, interval, schema_of, run_id, full_refresh) for m in models.values()]
