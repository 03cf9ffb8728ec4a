"""GX's log lines while a suite is read (checks/gx_logs.py), with the validation's streams reading side by side, and
which query checks' rows can be kept as GX would read them (checks/query_rows.py: no database needed to say)."""

from __future__ import annotations

import logging
import threading

import pytest

from greenery.checks import gx_logs, query_rows

GX = logging.getLogger("great_expectations")


def test_two_streams_reading_at_once_leave_gx_logging_as_it_was():
    """Review: two overlapping reads (A in, B in, A out, B out) left the GX logger's propagation off for the rest of
    the process: GX's lines gone from the task log. Reads now take turns."""
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a() -> None:
        with gx_logs.errors_to([]):
            a_in.set()
            b_in.wait(0.25)  # B inside too, unless reads take turns
        a_out.set()

    def b() -> None:
        a_in.wait(5)
        with gx_logs.errors_to([]):
            b_in.set()
            a_out.wait(5)  # B leaves after A

    before = GX.propagate
    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert a_in.is_set() and b_in.is_set()
    assert GX.propagate is before is True and not GX.handlers


def test_another_threads_gx_error_during_a_read_goes_where_it_would_have(caplog):
    """A stream's GX error logged while the other stream reads its suite is not that suite's (it was kept as a line
    of the other file, and hidden from the log)."""
    found: list[str] = []
    other = threading.Thread(target=lambda: logging.getLogger("great_expectations.core").error("the other stream's"))
    with caplog.at_level(logging.ERROR), gx_logs.errors_to(found):
        other.start()
        other.join(5)
        logging.getLogger("great_expectations.core").error("this read's")
    assert found == ["this read's"]
    assert [r.getMessage() for r in caplog.records] == ["the other stream's"]


def test_a_reads_own_error_is_kept_when_logging_records_no_threads(monkeypatch):
    """Review: with logging.logThreads off a record's thread is None: every line was taken for another thread's, a
    suite's reasons lost ("no reason given")."""
    monkeypatch.setattr(logging, "logThreads", False)
    found: list[str] = []
    with gx_logs.errors_to(found):
        logging.getLogger("great_expectations.core").error("this read's")
    assert found == ["this read's"]


BATCH = '(select * from "s"."t" where true) as subselect'


@pytest.mark.parametrize(
    "query",
    [
        "select subselect.id from {batch} join other using (id)",  # GX renders {batch} unaliased with a join
        "select subselect.id from {batch} /* why */",
        "select subselect.id from {batch} where subselect.note = 'a\\:b'",  # SQLAlchemy's text() reads 'a:b'
        "select subselect.id from {batch} where subselect.at = :day",  # a bind parameter to SQLAlchemy
        "select subselect.id from {batch.name}",  # str.format raises AttributeError: GX names the brace itself
        "select subselect.id from {batch} where {x}",
        "select subselect.id, '{batch}' as checked from {batch}",  # GX's text for it is not ours: a value differs
        "select subselect.id from {batch} where '{batch!r}' <> ''",
        "select subselect.id from {batch:>5}",
    ],
)
def test_a_query_is_not_kept_when_gx_would_read_it_otherwise(query):
    assert query_rows._rendered(query, BATCH) is None


@pytest.mark.parametrize(
    ("query", "rendered"),
    [
        ("select subselect.id::text from {batch};\n", f"select subselect.id::text from {BATCH}"),
        ("select 'a -- b' as x from {batch} where 1 = 1", f"select 'a -- b' as x from {BATCH} where 1 = 1"),
        ("select '{{}}' as x, subselect.at from {batch} where subselect.at < '2021-02-10 00:00:00'",
         f"select '{{}}' as x, subselect.at from {BATCH} where subselect.at < '2021-02-10 00:00:00'"),
    ],
)  # fmt: skip
def test_a_query_is_kept_as_gx_renders_it(query, rendered):
    assert query_rows._rendered(query, BATCH) == rendered
