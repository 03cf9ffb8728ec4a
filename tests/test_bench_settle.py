"""benchmarks/bench.py's settle step before an incremental run: what a day between two scheduled runs gives the
warehouse (autovacuum's work), and nothing autovacuum would not do."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench
import bench_report

pytestmark = pytest.mark.db

# As the pipeline writes them: an incremental table keeps autovacuum, a table replaced whole each run has it off
# (README, Safe runs). A name with a dot and a quote: settle names each table safely. PostgreSQL keeps the option as
# spelled ('false' normalised, 'off' or '0' as written): every spelling of off is left alone.
KEPT = 'marts."incremental.event\'s"'
WHOLE = {"marts.whole_false": "false", "marts.whole_off": "off", "marts.whole_zero": "0"}


def _counts(conn, table: str) -> tuple[int, int]:
    """(vacuums, analyzes) of ``table`` so far, read after the statistics of finished statements are flushed."""
    conn.execute("select pg_stat_clear_snapshot()")
    return conn.execute(
        "select vacuum_count, analyze_count from pg_stat_user_tables where relid = %s::regclass", (table,)
    ).fetchone()


def test_settle_vacuums_and_analyzes_what_autovacuum_may_process_and_nothing_it_never_touches(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("create schema marts")
        rows = "select g as id from generate_series(1, 5000) as g"
        conn.execute(f"create table {KEPT} as {rows}")
        for table, off in WHOLE.items():
            conn.execute(f"create table {table} with (autovacuum_enabled = {off}) as {rows}")
        before = {t: _counts(conn, t) for t in (KEPT, *WHOLE)}

    took = bench.settle(warehouse_url)

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        deadline = time.monotonic() + 10  # the counters are the server's, flushed shortly after a statement ends
        while _counts(conn, KEPT) == before[KEPT]:
            assert time.monotonic() < deadline, "settle did not vacuum the table autovacuum may process"
            time.sleep(0.2)
        assert _counts(conn, KEPT) == tuple(n + 1 for n in before[KEPT])
        # Pages all visible after the vacuum, as autovacuum leaves them.
        visible, pages = conn.execute(
            "select relallvisible, relpages from pg_class where oid = %s::regclass", (KEPT,)
        ).fetchone()
        assert visible == pages > 0
        assert {t: _counts(conn, t) for t in WHOLE} == {t: before[t] for t in WHOLE}
    assert took >= 0


def test_the_report_says_when_the_incremental_runs_were_settled_and_when_they_ran_back_to_back():
    steps = [{"contender": "dbt", "repeat": 0, "seconds": 12.3}, {"contender": "pipeline", "repeat": 0, "seconds": 4.5}]
    assert bench_report._settled(steps) == "dbt 12.3, pipeline 4.5"
    assert bench_report._settled([], back_to_back=True) == "none (back to back)"
    assert bench_report._settled([]) == "none"  # no contender reached its incremental run (the floor alone, failures)
    assert bench_report._settled(None) == "-"  # no incremental run, or results from before the step


def test_back_to_back_is_an_option_and_settling_the_default():
    assert bench.parse_args(["--scales", "1"]).back_to_back is False
    assert bench.parse_args(["--scales", "1", "--back-to-back"]).back_to_back is True
