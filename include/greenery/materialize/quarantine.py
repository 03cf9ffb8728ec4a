"""Quarantine: rows a staging model flags in ``quarantine_rule`` are kept out of it, with the rule, per day.

In a write-audit-publish run the flagged rows go to the run's own quarantine schema and are published
with the run's tables (see :mod:`greenery.wap`); built in place (no build schemas) they replace that
day's rows of ``quarantine.<model>`` at once.

An incremental build re-reads only its window (``incremental_column`` from ``incremental_since`` on, and rows
without a value there): it replaces the day's quarantined rows of that window and keeps the older ones, which
an earlier full refresh of the same day held back and no incremental run reads again (review: a scheduled run
after a ``full_refresh`` run of its day dropped them from quarantine, and staging never had them).
"""

from __future__ import annotations

import datetime as dt
import logging

from psycopg import sql

from greenery import config
from greenery.materialize import relations
from greenery.materialize.relations import NO_AUTOVACUUM, ident
from greenery.project.models import Model
from greenery.project.render import valid_since

SCHEMA = config.QUARANTINE_SCHEMA
# A model with config(quarantine=true) selects this column: NULL keeps the row, text names the broken rule.
RULE_COLUMN = "quarantine_rule"
# The model's rows before the split, in a temporary table of the build's transaction.
CANDIDATE = "_greenery_candidate"
META_COLUMNS = ("logical_date", "run_id", "rule", "quarantined_at")
# date, timestamp, timestamptz: a window column of another type in quarantine cannot be compared with its start.
_TIME_TYPES = (1082, 1114, 1184)


def _replace_day(cur, table: str, day: dt.date, model: Model, since: dt.datetime | None, clock: dt.datetime) -> None:
    """Delete the rows of ``day`` in ``table`` that the run's quarantine replaces: all of them after a whole
    build (``since`` None), after an incremental one those whose ``incremental_column`` is ``since`` or later,
    NULL, or before the run's ``valid_since(clock)`` (an incremental build reads those again, as stg_postgres__events
    does): the build did not read the others again."""
    where, params = sql.SQL("logical_date = %s"), [day]
    if since is not None:
        column = model.incremental_column
        if dict(relations.columns(cur, table) or []).get(column) in _TIME_TYPES:
            where = sql.SQL("{} and ({col} >= %s or {col} is null or {col} < %s)").format(
                where, col=sql.Identifier(column)
            )
            params += [since, valid_since(clock)]
        else:
            logging.getLogger(__name__).warning(
                "%s: no date or time column %r to tell the incremental window by; the day's rows are all replaced",
                table,
                column,
            )
    cur.execute(sql.SQL("delete from {} where {}").format(ident(table), where), params)


def candidate_prefix() -> sql.Composable:
    return sql.SQL("create temporary table {} on commit drop as ").format(sql.Identifier(CANDIDATE))


def typed_columns(model: Model, columns: list[str]) -> sql.Composable:
    """The select list of the rows a quarantine model keeps: ``columns`` but the rule, each with its declared type
    (``config(column_types=...)``) where it has one."""
    return sql.SQL(", ").join(
        sql.SQL("{c}::{t} as {c}").format(c=sql.Identifier(c), t=sql.SQL(model.column_types[c]))
        if c in model.column_types
        else sql.Identifier(c)
        for c in columns
        if c != RULE_COLUMN
    )


def split(
    cur,
    model: Model,
    table: str,
    day: dt.date,
    run_id: str,
    run_time: dt.datetime,
    *,
    whole_table: bool,
    since: dt.datetime | None = None,
) -> tuple[sql.Composable, int]:
    """Write the flagged rows of the candidate table to ``table``; return the select of the good rows.

    ``whole_table``: ``table`` belongs to this run (its build schema) and is replaced; otherwise ``day``'s
    rows of the shared table are (after an incremental build from ``since``, those inside its window only).
    """
    cur.execute(sql.SQL("select * from {} limit 0").format(sql.Identifier(CANDIDATE)))
    columns = [c.name for c in cur.description]
    if RULE_COLUMN not in columns:
        raise ValueError(f"{model.path}: config(quarantine=true) needs a {RULE_COLUMN!r} column")
    kept = sql.SQL(", ").join(sql.Identifier(c) for c in columns if c != RULE_COLUMN)
    rule = sql.Identifier(RULE_COLUMN)
    # Quarantine keeps the values as the source had them (NaN, 1e15...); the model's rows get their
    # declared types (config(column_types=...)), which such values could not even be cast to.
    typed = typed_columns(model, columns)
    schema = sql.Identifier(table.partition(".")[0])
    cur.execute(sql.SQL("create schema if not exists {}").format(schema))
    if whole_table:
        cur.execute(sql.SQL("drop table if exists {}").format(ident(table)))
    cur.execute(
        sql.SQL(
            "create table if not exists {} {} as select null::date as logical_date, null::text as run_id,"
            " null::text as rule, null::timestamptz as quarantined_at, {} from {} with no data"
        ).format(
            ident(table),
            # The run's own table, moved into the published one and dropped by the publish.
            NO_AUTOVACUUM if whole_table else sql.SQL(""),
            kept,
            sql.Identifier(CANDIDATE),
        )
    )
    if not whole_table:
        _replace_day(cur, table, day, model, since, run_time)
    cur.execute(
        sql.SQL(
            "insert into {} (logical_date, run_id, rule, quarantined_at, {cols})"
            " select %s, %s, {rule}, %s, {cols} from {candidate} where {rule} is not null"
        ).format(ident(table), cols=kept, rule=rule, candidate=sql.Identifier(CANDIDATE)),
        (day, run_id, run_time),
    )
    quarantined = cur.rowcount
    good = sql.SQL("select {} from {} where {} is null").format(typed, sql.Identifier(CANDIDATE), rule)
    return good, quarantined


def publish_day(
    conn, source: str, target: str, day: dt.date, model: Model, since: dt.datetime | None, clock: dt.datetime
) -> None:
    """Replace ``day``'s rows of the published quarantine table ``target`` with the run's (``source``, dropped),
    inside the publish transaction. After an incremental build of ``model`` from ``since`` (None: a whole
    build), only the rows inside its window are replaced (``clock``: the run's, as _replace_day reads it)."""
    schema = target.split(".")[0]
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("create table if not exists {} (like {})").format(ident(target), ident(source)))
    have = {name for name, _ in relations.columns(conn, target) or []}
    wanted = relations.columns(conn, source) or []
    for name, type_oid in wanted:
        if name not in have:  # the model gained a column since its rows were first quarantined
            type_name = conn.execute("select format_type(%s, null)", (type_oid,)).fetchone()[0]
            conn.execute(
                sql.SQL("alter table {} add column {} {}").format(
                    ident(target), sql.Identifier(name), sql.SQL(type_name)
                )
            )
    cols = sql.SQL(", ").join(sql.Identifier(name) for name, _ in wanted)
    _replace_day(conn, target, day, model, since, clock)
    conn.execute(sql.SQL("insert into {} ({}) select {} from {}").format(ident(target), cols, cols, ident(source)))
    conn.execute(sql.SQL("drop table {}").format(ident(source)))
