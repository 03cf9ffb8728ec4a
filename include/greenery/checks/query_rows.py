"""Each query check of a validation run once: its rows kept in a temporary table that GX's expectation then reads.

GX's UnexpectedRowsExpectation runs its query twice in any result format (``SELECT COUNT(*)`` around it, then again
for its rows: GX's PR #10604 did so on purpose), and a relationship or reconciliation query reads its table and the
one it names: at scale 1000 the second runs were 12.1 s of validation's 36.2 s of SQL (benchmarks/RESULTS.md).
Running each once inside GX would take a custom Expectation class, which this project's rule (GX through its public
API, no subclass registered globally) excludes. So the stream about to validate a suite runs each of its queries
once, on its own connection, into a temporary table (only that session sees it; :func:`forget` drops them after
the suite), and GX gets the suite with each such query reading that table: GX counts and fetches those rows, the
query's own, from a table that is empty on a clean run. The check's query stays in the expectation, in a comment,
for the Data Docs and whoever reads the stored results.

A query GX then runs as written (twice, as before) when its rows could not be kept the same way: it has a join
(GX renders ``{batch}`` without an alias then, the query gives its own), a block comment, braces GX would refuse,
or PostgreSQL refuses the table (two columns of one name, a column of type record, a role without TEMPORARY on
the database: the reason is logged).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

QUERY = "unexpected_rows_query"
TABLE_PREFIX = "greenery_rows_"
# What GX puts for {batch} in a query without a join, for a whole-table batch definition (the suites read
# ``subselect.<column>``).
_BATCH = "(select * from {} where true) as subselect"
_NOT_KEPT = re.compile(r"\bjoin\b|/\*|\*/", re.IGNORECASE)


def kept(
    conn: psycopg.Connection, data: Mapping[str, Any], relation: str, stopped: Callable[[], bool]
) -> dict[str, Any]:
    """``data`` (a suite, its refs rendered) with each query check reading, from a temporary table of ``conn``'s
    session, the rows its query returned on ``relation`` (the table the suite checks) just now; each query whose rows
    could not be kept so, as it was."""
    batch = _BATCH.format(sql.Identifier(*relation.split(".", 1)).as_string(conn))
    expectations = []
    for index, expectation in enumerate(data["expectations"]):
        kwargs = expectation.get("kwargs") or {}
        query = kwargs.get(QUERY)
        table = f"{TABLE_PREFIX}{index}"
        if isinstance(query, str) and _create(conn, table, _rendered(query, batch), data["name"], stopped):
            reads = f"select * from pg_temp.{table} /* the rows, kept once, of: {query} */"
            expectation = {**expectation, "kwargs": {**kwargs, QUERY: reads}}
        expectations.append(expectation)
    return {**data, "expectations": expectations}


def forget(conn: psycopg.Connection) -> None:
    """Drop the session's kept rows (the next suite's tables take the same names)."""
    try:
        conn.execute("discard temp")
    except psycopg.Error as exc:  # a connection lost: GX's next statement on it says so, in the results
        log.warning("the validation's kept query rows could not be dropped: %s", exc)


def _rendered(query: str, batch: str) -> str | None:
    """``query`` as GX would run it on a whole-table batch, or None when that is not certain."""
    if _NOT_KEPT.search(query):
        return None
    try:
        # As GX substitutes it (str.format, and the trailing semicolons and spaces it strips).
        return query.rstrip("; \t\r\n\v\f").format(batch=batch)
    except (KeyError, IndexError, ValueError):  # GX refuses such braces itself, naming the query
        return None


def _create(conn: psycopg.Connection, table: str, query: str | None, suite: str, stopped: Callable[[], bool]) -> bool:
    if query is None:
        return False
    statement = sql.SQL("create temporary table {} as {}").format(sql.Identifier(table), sql.SQL(query))
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        if stopped():  # cancelled because the validation stops: not a query to run again
            raise
        log.info("%s: a query check runs as GX runs it (twice), its rows not kept: %s", suite, exc)
        return False
    return True
