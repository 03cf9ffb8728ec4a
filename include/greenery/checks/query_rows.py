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
(GX renders ``{batch}`` without an alias then, the query gives its own), a block comment, a ``row_condition`` (GX
narrows the batch by it), what SQLAlchemy's ``text()`` would read otherwise than PostgreSQL (``\\:``, a ``:name``
bind), ``{batch}`` used otherwise than as a table (in a literal, with a conversion), braces GX would refuse, or
PostgreSQL refuses the table: two columns of one name, a column of type record, a statement that is not one query
(the table is made from ``select * from (<query>) as ...``, as GX counts it). Whether the session may create
temporary tables at all (a role without TEMPORARY, a standby) is asked once per connection, and said once.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from greenery import warehouse

log = logging.getLogger(__name__)

QUERY = "unexpected_rows_query"
TABLE_PREFIX = "greenery_rows_"
# What GX puts for {batch} in a query without a join, for a whole-table batch definition (the suites read
# ``subselect.<column>``).
_BATCH = "(select * from {} where true) as subselect"
# A join; a block comment (the kept query is quoted in one); what SQLAlchemy's text() turns into something else
# than PostgreSQL reads: an escaped colon, a bind parameter (its own pattern: a colon and a word, not a cast).
_NOT_KEPT = re.compile(r"\bjoin\b|/\*|\*/|\\:|(?<![:\w\\]):\w+(?!:)", re.IGNORECASE)
# The batch narrowed by the expectation: GX's {batch} is then a query of its own.
_NARROWED = ("row_condition", "condition_parser")


class Keeper:
    """Keeps the query checks' rows of one suite at a time on ``conn``, one stream's connection."""

    def __init__(self, conn: psycopg.Connection, stopped: Callable[[], bool]) -> None:
        self.conn, self.stopped = conn, stopped
        self.refused: str | None = None  # why this session cannot create temporary tables, once asked
        self._asked = False
        self.kept = 0  # tables kept for the current suite

    def suite(self, data: Mapping[str, Any], relation: str) -> dict[str, Any]:
        """``data`` (a suite, its refs rendered) with each query check reading, from a temporary table of this
        session, the rows its query returned on ``relation`` (the table the suite checks) just now; each query whose
        rows could not be kept so, as it was."""
        # Quoted without the connection: a lost one is GX's to report, in the results (review: this raised, and the
        # whole validation with it).
        batch = _BATCH.format(sql.Identifier(*relation.split(".", 1)).as_string(None))
        expectations = []
        for index, expectation in enumerate(data["expectations"]):
            kwargs = expectation.get("kwargs") or {}
            query = kwargs.get(QUERY)
            table = f"{TABLE_PREFIX}{index}"
            if (
                isinstance(query, str)
                and not any(kwargs.get(key) for key in _NARROWED)
                and self._create(table, _rendered(query, batch), data["name"])
            ):
                reads = f"select * from pg_temp.{table} /* the rows, kept once, of: {query} */"
                expectation = {**expectation, "kwargs": {**kwargs, QUERY: reads}}
            expectations.append(expectation)
        return {**data, "expectations": expectations}

    def forget(self) -> None:
        """Drop the current suite's kept rows (the next suite's tables take the same names)."""
        if not self.kept:
            return
        self.kept = 0
        try:
            self.conn.execute("discard temp")
        except psycopg.Error as exc:  # a connection lost: GX's next statement on it says so, in the results
            log.warning("the validation's kept query rows could not be dropped: %s", exc)

    def _may_create(self) -> bool:
        """Whether this session may create temporary tables at all (a role without TEMPORARY, a standby): asked once,
        not read from a create's error, which may be the query's own (a table it names the role cannot read: review)."""
        if not self._asked:
            self._asked = True
            try:
                role, database, missing = warehouse.missing_privileges(self.conn)
                if "temp" in missing:
                    self.refused = f"role {role} has no TEMPORARY privilege on database {database}"
                elif self.conn.execute("show transaction_read_only").fetchone()[0] == "on":
                    self.refused = "a read-only session"
            except psycopg.Error as exc:
                if self.stopped():
                    raise
                self.refused = str(exc)
            if self.refused is not None:
                log.warning("query checks run as GX runs them (twice): no temporary table on this connection: %s",
                            self.refused)  # fmt: skip
        return self.refused is None

    def _create(self, table: str, query: str | None, suite: str) -> bool:
        if query is None or not self._may_create():
            return False
        statement = sql.SQL("create temporary table {} as select * from ({}) as substituted_batch_subquery").format(
            sql.Identifier(table), sql.SQL(query)
        )
        try:
            self.conn.execute(statement)
        except psycopg.Error as exc:
            if self.stopped():  # cancelled because the validation stops: not a query to run again
                raise
            log.info("%s: a query check runs as GX runs it (twice), its rows not kept: %s", suite, exc)
            return False
        self.kept += 1
        return True


def _rendered(query: str, batch: str) -> str | None:
    """``query`` as GX would run it on a whole-table batch, or None when that is not certain."""
    if _NOT_KEPT.search(query) or not _batch_as_a_table(query):
        return None
    try:
        # As GX substitutes it (str.format, and the trailing semicolons and spaces it strips).
        return query.rstrip("; \t\r\n\v\f").format(batch=batch)
    except Exception:  # KeyError, ValueError, AttributeError ({batch.x}), ...: GX refuses such braces itself
        return None


def _batch_as_a_table(query: str) -> bool:
    """Every field of ``query`` is a plain ``{batch}`` outside a string literal: GX's own text for it differs from
    ours (its spacing and capitals), so a query that uses it as a value (``'{batch}'``, ``{batch!r}``) is not kept."""
    try:
        fields = list(string.Formatter().parse(query))
    except ValueError:
        return False
    quotes = 0
    for literal, field, spec, conversion in fields:
        quotes += literal.count("'")
        if field is not None and (field != "batch" or spec or conversion or quotes % 2):
            return False
    return True
