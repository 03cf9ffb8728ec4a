"""Validation's streams (checks/streams.py): the split between connections, and stopping them all together.

No database here: a fake connection's ``cancel_safe`` ends the fake query its stream is blocked in, as
PostgreSQL's cancel ends a real one (tests/test_validation_passes.py does it against PostgreSQL).
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenery import config
from greenery.checks import streams


class FakeConnection:
    """A connection whose running 'query' (``query()``) blocks until ``cancel_safe`` is called."""

    def __init__(self) -> None:
        self.cancels = 0
        self.querying = threading.Event()
        self._cancelled = threading.Event()

    def cancel_safe(self) -> None:
        self.cancels += 1
        self._cancelled.set()

    def query(self, seconds: float = 60) -> None:
        self.querying.set()
        if not self._cancelled.wait(seconds):
            raise AssertionError("the query was never cancelled")
        self._cancelled.clear()
        raise RuntimeError("canceling statement due to user request")


@given(
    costs=st.dictionaries(st.text(min_size=1, max_size=8), st.integers(min_value=0, max_value=10**9), max_size=40),
    count=st.integers(min_value=1, max_value=4),
)
def test_every_suite_gets_one_stream_and_no_stream_is_loaded_beyond_the_list_scheduling_bound(costs, count):
    assigned = streams.assign(costs, count)
    assert set(assigned) == set(costs) and set(assigned.values()) <= set(range(count))
    loads = [sum(costs[name] for name, stream in assigned.items() if stream == s) for s in range(count)]
    # Largest first to the least loaded: no stream exceeds the average by more than one suite's cost.
    assert max(loads) <= sum(costs.values()) / count + max(costs.values(), default=0)
    assert streams.assign(costs, count) == assigned, "the same split on every run"


class SizesOnly:
    """A connection that answers the table-size query only, and counts how often it was asked."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes, self.asked = sizes, 0

    def execute(self, query: str, params):
        assert "pg_total_relation_size" in query, query
        self.asked += 1
        names, _ = params
        return type("Cursor", (), {"fetchall": lambda _: [(name, self.sizes[name]) for name in names]})()


def test_streams_are_balanced_on_the_seconds_before_when_every_suite_has_them_else_on_table_sizes():
    """Review of the scale-1000 streams (21 and 40 s): the size estimate put the events' suite, 12 s of 61, with five
    others and the other 27 suites together; the seconds each suite took before balance them (32 and 33 s)."""
    counts = {"events": 17, "orders": 28, "promos": 9}
    conn = SizesOnly({"events": 1_330_000_000, "orders": 100_000_000, "promos": 8192})
    before = {"events": 12.0, "orders": 4.8, "promos": 0.1, "gone": 3.0}
    costs, basis = streams.costs(conn, counts, str, before)
    assert (costs, basis, conn.asked) == ({"events": 12.0, "orders": 4.8, "promos": 0.1}, streams.BY_SECONDS_BEFORE, 0)
    assert streams.assign(costs, 2) == {"events": 0, "orders": 1, "promos": 1}
    # A suite without seconds (a new model, or none recorded yet): every suite on the estimate, not a mix of units.
    for partial in ({"events": 12.0, "orders": 4.8}, {**before, "promos": None}, {}, None):
        costs, basis = streams.costs(conn, counts, str, partial)
        assert basis == streams.BY_TABLE_SIZES
        assert costs == {
            "events": (1_330_000_000 + 8192) * 17,
            "orders": (100_000_000 + 8192) * 28,
            "promos": 16384 * 9,
        }


def test_results_come_back_in_the_jobs_order():
    jobs = [lambda stopped, i=i: (i, stopped()) for i in range(3)]
    assert streams.run(jobs, [FakeConnection() for _ in jobs]) == [(0, False), (1, False), (2, False)]


def test_a_failing_stream_stops_the_others_before_its_error_propagates():
    slow, ended = FakeConnection(), threading.Event()

    def failing(stopped):
        # Only once the other stream is in a query: raising earlier, it could see stopped() before its first.
        assert slow.querying.wait(30), "the other stream never started a query"
        raise ValueError("suite X: GX could not run")

    def long_running(stopped):
        try:
            while not stopped():  # suite after suite, each a query
                slow.query()
        except RuntimeError:
            pass  # GX records a cancelled query as an error result and goes on; the stream then sees stopped()
        finally:
            ended.set()
        return "stopped"

    with pytest.raises(ValueError, match="suite X"):
        streams.run([failing, long_running], [FakeConnection(), slow])
    assert ended.is_set(), "the other stream ended before run() raised: its connection may now be closed"
    assert slow.cancels >= 1


@pytest.mark.parametrize("signalled", ["task's thread", "a stream's thread"])
def test_an_exception_in_the_tasks_thread_cancels_every_running_query_and_waits_for_the_streams(
    interrupt_main_thread, signalled
):
    """The signal may reach any thread of the process (SIGALRM is sent to the process): Python runs its handler
    in the task's thread, which must not sleep through it."""
    conns = [FakeConnection(), FakeConnection()]
    started, ended = [], []

    def job(conn):
        def run_suites(stopped):
            started.append(threading.get_ident())
            while not stopped():
                try:
                    conn.query()
                except RuntimeError:
                    continue  # a cancelled query: GX goes on with its next one, unless told to stop
            ended.append(conn)

        return run_suites

    target = None if signalled == "task's thread" else (lambda: started[0])
    interrupt_main_thread(lambda: len(started) == 2, thread=target)
    with pytest.raises(interrupt_main_thread.exception):
        streams.run([job(c) for c in conns], conns)
    assert sorted(map(id, ended)) == sorted(map(id, conns)), "both streams ended before the exception propagated"
    assert all(c.cancels >= 1 for c in conns)


def test_jobs_and_connections_must_pair_up():
    with pytest.raises(ValueError, match="2 jobs for 1 connections"):
        streams.run([lambda stopped: 1, lambda stopped: 2], [FakeConnection()])


def test_the_number_of_connections_is_a_setting_of_at_least_one():
    assert config.get({}).validation_connections == 2
    assert config.get({"GREENERY_VALIDATION_CONNECTIONS": "3"}).validation_connections == 3
    for bad, reason in (
        ("0", "expected a value from 1 to 64"),
        ("-1", "expected a value from 1 to 64"),
        ("two", "expected a whole number"),
    ):
        with pytest.raises(config.SettingError, match=f"GREENERY_VALIDATION_CONNECTIONS='{bad}': {reason}"):
            config.get({"GREENERY_VALIDATION_CONNECTIONS": bad})
