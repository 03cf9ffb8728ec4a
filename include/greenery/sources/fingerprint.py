"""A cheap fingerprint of the raw tables: rows and the transactions that wrote them, per table.

Taken with the source check, recorded when a run prepares its build and compared when it validates: if raw
changed in between (a load during the run, or a fix loaded before only part of the run was cleared), the built
tables mix old and new data, and the run must be cleared whole instead of validated and published.
"""

from __future__ import annotations

from psycopg import sql

from greenery import config
from greenery.sources.schema import RAW_TABLES

# The key of check_source_freshness's result that holds the fingerprint it took before its check (prepare_build
# registers that one: a change during the check or between the two tasks is then a change during the run).
AS_CHECKED = "raw_fingerprint"


def fingerprint(conn, raw_schema: str | None = None) -> dict[str, list[int]]:
    """{table: [row count, newest xmin, sum of xmins]}: any insert, update, delete or reload changes it. The sum
    too: a transaction that began before another one committed writes rows with an older xmin than the newest."""
    raw_schema = raw_schema or config.get().raw_schema
    found = {}
    for table in RAW_TABLES:
        kind = conn.execute("select relkind from pg_class where oid = to_regclass(%s)", (f"{raw_schema}.{table}",))
        if (kind := kind.fetchone()) is None:
            continue
        # A view, materialized view or foreign table (the source check reads them) has no xmin: its rows' hashes
        # then, [rows, 0, sum] (review: a raw view passed the source check and the run crashed here).
        query = (
            "select count(*), coalesce(max(xmin::text::bigint), 0), coalesce(sum(xmin::text::bigint), 0)::bigint"
            " from {}"
            if kind[0] in ("r", "p")
            else "select count(*), 0, coalesce(sum(hashtext(t::text)::bigint), 0)::bigint from {} as t"
        )
        count, newest, total = conn.execute(sql.SQL(query).format(sql.Identifier(raw_schema, table))).fetchone()
        found[table] = [count, newest, total]
    return found


def changed_tables(before: dict, after: dict) -> list[str]:
    return sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))


def content(conn, raw_schema: str | None = None) -> dict[str, list[int]]:
    """{table: [row count, sum of the rows' hashes]}: the same for the same rows however loaded (the fingerprint
    changes with every load). A whole scan of raw: for the demo's small data."""
    raw_schema = raw_schema or config.get().raw_schema
    found = {}
    for table in RAW_TABLES:
        if conn.execute("select to_regclass(%s)", (f"{raw_schema}.{table}",)).fetchone()[0] is not None:
            query = sql.SQL("select count(*), coalesce(sum(hashtext(t::text)::bigint), 0) from {} as t")
            found[table] = list(conn.execute(query.format(sql.Identifier(raw_schema, table))).fetchone())
    return found
