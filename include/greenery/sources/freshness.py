"""Source freshness (dbt's ``source freshness``): does raw hold data for the run's day?

Checked before anything is built, so a missing, empty or stale source stops the run with its own
message instead of producing empty partitions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from greenery import config, links
from greenery.project.render import CLOCK_SKEW, Interval
from greenery.sources.schema import RAW_TABLES, way_out

# The event stream must have rows inside the run's day; orders may lag behind by a day (the shop's
# orders stop before its last shipping events); the other tables are state without a daily cadence.
DAILY_SOURCES = {"events": 0, "orders": 1}


# A whole-number column of raw (sources/schema.py) in one of these types holding a fraction would be rounded by
# staging's cast, silently.
FRACTIONAL_TYPES = frozenset({"numeric", "real", "double precision"})
NUMBER_TYPES = frozenset({"smallint", "integer", "bigint"}) | FRACTIONAL_TYPES
# What staging can read for each kind of raw column (sources/schema.py) without guessing. A timestamp or number held
# as text is cast by PostgreSQL's input rules: 'yesterday' and 'now' are read from the clock, '02/03/2021' by the
# server's DateStyle, '0x10' and '1_0' as 16 and 10 (review: a column turned to text upstream passed every check).
READABLE_TYPES = {
    "timestamptz": frozenset({"timestamp with time zone", "timestamp without time zone"}),
    "integer": NUMBER_TYPES,
    "numeric": NUMBER_TYPES,
}


class SourceNotReadyError(RuntimeError):
    """Raw lacks a table, columns or rows for the run's day, or the role cannot read them; nothing was built."""


@dataclass(frozen=True)
class SourceProblem:
    table: str
    problem: str  # missing | unreadable | empty | stale | columns
    detail: str
    gap: bool = False  # stale, and raw holds later rows (up to the clock): the day is missing inside raw's history


def check(
    conn,
    interval: Interval,
    raw_schema: str | None = None,
    now: dt.datetime | None = None,
    built: str | None = None,
) -> list[SourceProblem]:
    """What raw lacks for ``interval`` (nothing: it is ready).

    Rows created after ``now`` (plus the clock skew the rules allow) do not count: the run will quarantine them as
    ``future_timestamp`` (review: a day in the future, whose only rows were such, passed and published an empty day).
    ``built``, the published ``int_daily_marts_built``: a day without rows whose own run built its daily marts from
    some is told as rows that left raw, not as rows not loaded yet.
    """
    raw_schema = raw_schema or config.get().raw_schema
    clock = (now or dt.datetime.now(dt.UTC)) + CLOCK_SKEW
    until = min(interval.end, clock)
    problems: list[SourceProblem] = []
    with conn.transaction(), conn.cursor() as cur:
        # A raw column without a zone holds UTC, as staging reads it (review: max() of one came back naive, and its
        # comparison with the day crashed the task with a TypeError).
        cur.execute("set local timezone = 'UTC'")
        role = cur.execute("select current_user").fetchone()[0]
        for table, columns in RAW_TABLES.items():
            # information_schema hides what the role cannot read: ask the catalog whether the table exists first
            # (review: a table the role lost its grant on was paged as "does not exist").
            access = _access(cur, raw_schema, table, columns, role)
            if access is None:
                problems.append(SourceProblem(table, "missing", f"{raw_schema}.{table} does not exist"))
                continue
            if access:
                problems.append(
                    SourceProblem(
                        table,
                        "unreadable",
                        f"{raw_schema}.{table} exists but is not readable by role {role}: it lacks {access}",
                    )
                )
                continue
            cur.execute(
                "select column_name, data_type from information_schema.columns"
                " where table_schema = %s and table_name = %s",
                (raw_schema, table),
            )
            present = dict(cur.fetchall())
            if not present:
                problems.append(SourceProblem(table, "missing", f"{raw_schema}.{table} does not exist"))
                continue
            absent = [c for c in columns if c not in present]
            if absent:
                # User trial: a column renamed upstream read as one lost; the load it was told to run then refused
                # the table's other column. Those it has that the pipeline does not read are named too.
                extra = [c for c in present if c not in columns]
                also = f"; it has {', '.join(extra)}, which the pipeline does not read (renamed?)" if extra else ""
                if len(absent) == len(extra) == 1:  # user trial: the page said "load the source"; this is the fix
                    quoted = (sql.Identifier(raw_schema, table), sql.Identifier(extra[0]), sql.Identifier(absent[0]))
                    also += ": " + way_out(*(name.as_string(cur) for name in quoted))
                problems.append(
                    SourceProblem(table, "columns", f"{raw_schema}.{table} lacks column(s) {', '.join(absent)}{also}")
                )
                continue
            mistyped = [
                f"{c} is {present[c]} (expected {kind})"
                for c, kind in columns.items()
                if kind in READABLE_TYPES and present[c] not in READABLE_TYPES[kind]
            ]
            if mistyped:
                problems.append(
                    SourceProblem(
                        table,
                        "columns",
                        f"{raw_schema}.{table}: {', '.join(mistyped)}: staging would read its values by PostgreSQL's"
                        " input rules ('yesterday' as a date, '0x10' as 16); give the column its type back",
                    )
                )
                continue
            ident = sql.Identifier(raw_schema, table)
            if unfit := _unfit_whole_numbers(cur, ident, columns, present):
                problems.append(
                    SourceProblem(
                        table,
                        "columns",
                        f"{raw_schema}.{table}: {'; '.join(unfit)}: staging's cast to integer would round them (1.5"
                        " becomes 2) or fail on them; fix the values or the column's type",
                    )
                )
                continue
            cur.execute(sql.SQL("select exists (select 1 from {})").format(ident))
            if not cur.fetchone()[0]:
                problems.append(SourceProblem(table, "empty", f"{raw_schema}.{table} has no rows"))
                continue
            if table in DAILY_SOURCES:
                since = interval.start - dt.timedelta(days=DAILY_SOURCES[table])
                latest_query = sql.SQL("select max(created_at)::timestamptz from {} where created_at < %s")
                cur.execute(latest_query.format(ident), (until,))
                latest = cur.fetchone()[0]
                if latest is None or latest < since:
                    if latest:
                        seen = f"the newest is {latest:%Y-%m-%d %H:%M} UTC"
                    else:  # review: "there are none" read as an empty table
                        cur.execute(sql.SQL("select min(created_at)::timestamptz from {}").format(ident))
                        oldest = cur.fetchone()[0]
                        seen = "none was created before then" + (
                            f": its oldest row was created {oldest:%Y-%m-%d %H:%M} UTC" if oldest else ""
                        )
                    if until < interval.end:
                        seen += f" (rows created after {until:%Y-%m-%d %H:%M} UTC, the clock, are in the future)"
                    gap = _later_rows(cur, ident, interval.end, clock)
                    seen += _left_raw(cur, built, table, interval, gap)
                    problems.append(
                        SourceProblem(
                            table,
                            "stale",
                            f"{raw_schema}.{table} has no rows created in [{since:%Y-%m-%d}, {interval.end:%Y-%m-%d})"
                            f"; {seen}",
                            gap,
                        )
                    )
    return problems


_ACCESS = """
select has_schema_privilege(n.oid, 'usage'), has_table_privilege(c.oid, 'select'),
    coalesce(cols.unreadable, '{}'), coalesce(cols.present, '{}')
from pg_class c join pg_namespace n on n.oid = c.relnamespace
cross join lateral (
    select array_agg(a.attname order by a.attnum) as present,
        array_agg(a.attname order by a.attnum) filter (
            where not has_column_privilege(c.oid, a.attnum, 'select')
        ) as unreadable
    from pg_attribute a
    where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attname = any(%(columns)s)
) as cols
where n.nspname = %(schema)s and c.relname = %(table)s and c.relkind in ('r', 'p', 'v', 'm', 'f')
"""


def _access(cur, schema: str, table: str, columns: dict[str, str], role: str) -> str | None:
    """None: no such table; else the privilege the role lacks to read its columns ("" when it lacks none)."""
    found = cur.execute(_ACCESS, {"schema": schema, "table": table, "columns": list(columns)}).fetchone()
    if found is None:
        return None
    usage, select, unreadable, present = found
    if not usage:
        return f"usage on schema {schema} (grant usage on schema {schema} to {role})"
    if select or not unreadable:
        return ""
    if unreadable != present:  # column grants, and not on all the columns the run reads
        return f"select on column(s) {', '.join(unreadable)} of {schema}.{table}"
    return f"select on it (grant select on {schema}.{table} to {role})"


def _unfit_whole_numbers(cur, ident, columns: dict[str, str], present: dict[str, str]) -> list[str]:
    """What staging's ``::integer`` of each whole-number column would round or fail on, said per column: values not
    whole, not numbers (NaN, Infinity: a type that holds fractions) and beyond integer's range (review: NaN passed
    this check, ``NaN <> trunc(NaN)`` being false, and 3000000000 in a bigint too; the model then failed on "cannot
    convert NaN to integer", retried, paged with PostgreSQL's words)."""
    said = []
    for column in [c for c, kind in columns.items() if kind == "integer" and present[c] not in ("smallint", "integer")]:
        col, fractional = sql.Identifier(column), present[column] in FRACTIONAL_TYPES
        finite = sql.SQL("{c} not in ('NaN', 'Infinity', '-Infinity')" if fractional else "true").format(c=col)
        query = sql.SQL(
            "select count(*) filter (where {finite} and {c} <> trunc({c})), count(*) filter (where not {finite}),"
            " count(*) filter (where {finite} and ({c} < -2147483648 or {c} > 2147483647)) from {t}"
        )
        rounded, not_numbers, too_large = cur.execute(query.format(finite=finite, c=col, t=ident)).fetchone()
        found = [
            f"{n} value(s) {what}"
            for n, what in (
                (rounded, "that are not whole"),
                (not_numbers, "that are not numbers (NaN, Infinity)"),
                (too_large, "beyond integer's range (2147483647)"),
            )
            if n
        ]
        if found:
            said.append(f"{column} is {present[column]} with {', '.join(found)}")
    return said


def _left_raw(cur, built: str | None, table: str, interval: Interval, gap: bool) -> str:
    """What to say of a day without rows whose daily marts were built from some (re-trial: a day deleted from raw on
    purpose was paged "Load the source" and refused on every run, its daily marts keeping the deleted rows), or that
    raw holds later rows of (a gap: a day emptied on purpose, or not loaded; UI trial: no hint once rebuilt empty)."""
    found = None
    if built is not None:
        query = sql.SQL("select row_count from {} where source_table = %s and day = %s")
        try:
            with cur.connection.transaction():  # a savepoint: a table (or schema) this cannot read only loses the hint
                if cur.execute("select to_regclass(%s)", (built,)).fetchone()[0] is not None:
                    found = cur.execute(
                        query.format(sql.Identifier(*built.split("."))), (table, interval.day)
                    ).fetchone()
        except psycopg.Error:
            found = None
    if found and found[0]:
        said = f"; its daily marts were built from {found[0]} rows created that day: they left raw. Load them again"
    elif gap:
        said = "; raw holds later rows: load the day's, or"
    else:
        return ""
    return (
        f"{said}; if the day has none on purpose, {links.TRIGGER_FULL_REFRESH} (`greenery run --date {interval.day}"
        " --full-refresh`), which builds it as raw holds it, then run the days after it again"
    )


def _later_rows(cur, ident, after: dt.datetime, clock: dt.datetime) -> bool:
    """Whether raw holds rows created from ``after`` to the clock (later ones the run quarantines as future)."""
    query = sql.SQL("select exists (select from {} where created_at >= %s and created_at < %s)").format(ident)
    return cur.execute(query, (after, clock)).fetchone()[0]


def rows_created_between(
    conn, table: str, after: dt.datetime, before: dt.datetime, raw_schema: str | None = None
) -> int:
    """How many rows of a daily raw table were created in (``after``, ``before``) (its created_at is indexed)."""
    ident = sql.Identifier(raw_schema or config.get().raw_schema, table)
    query = sql.SQL("select count(*) from {} where created_at > %s and created_at < %s").format(ident)
    with conn.transaction():
        conn.execute("set local timezone = 'UTC'")  # a column without a zone holds UTC (see check)
        return conn.execute(query, (after, before)).fetchone()[0]


def as_dicts(problems: list[SourceProblem]) -> list[dict[str, Any]]:
    return [asdict(p) for p in problems]


def first_step(problems: list[SourceProblem]) -> str:
    """What on-call does first about ``problems``: a load brings rows and tables, not a column's name or type, nor
    a grant (user trial: a renamed column was paged "Load the source", and the load then refused the table)."""
    if all(p.problem in ("missing", "empty", "stale") for p in problems):
        return "Load the source"
    late = any(p.problem in ("missing", "empty", "stale") for p in problems)
    return "Fix the raw tables as the lines above say" + (", load the source" if late else "")
