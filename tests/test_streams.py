"""Validation's streams (checks/streams.py): the split between connections, and stopping them all together.

No database here: a fake connection's ``cancel_safe`` ends the fake query its stream is blocked in, as
PostgreSQL's cancel ends a real one (tests/test_validation_passes.py does it against PostgreSQL).
"""

from __future__ import annotations

import functools
import threading
import time

import pytest
from hypothesis import given, settings
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


def test_the_queue_is_costliest_first_then_by_name():
    costs = {"b": 5.0, "a": 5.0, "big": 40.0, "tiny": 0.0}
    assert list(streams.order(costs)) == ["big", "a", "b", "tiny"]
    assert list(streams.order({})) == []


@settings(deadline=None)  # threads start in each example: a loaded machine is slow to, not wrong
@given(names=st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=60), count=st.integers(1, 4))
def test_streams_taking_from_one_queue_at_once_take_every_suite_exactly_once(names, count):
    queue = streams.order(dict.fromkeys(names, 1.0))
    taken: list[list[str]] = [[] for _ in range(count)]
    ready = threading.Barrier(count)

    def job(stream: int, stopped):
        ready.wait(timeout=10)  # all streams take at the same time
        taken[stream].extend(streams.take(queue, stopped))
        return stream

    assert streams.run([functools.partial(job, s) for s in range(count)], [FakeConnection()] * count) == list(
        range(count)
    )
    assert sorted(name for part in taken for name in part) == sorted(names)


def test_a_stream_free_early_takes_what_is_left_while_another_runs_a_suite_the_estimate_got_wrong():
    """A fixed split is as good as its estimate: at scale 1000 table sizes left one stream 21 s and the other 40 s.
    Here "b" is estimated below "a" but runs until the queue is empty: the other stream takes every suite after it."""
    queue = streams.order({"a": 10.0, "b": 9.0, "c": 1.0, "d": 1.0, "e": 1.0})
    taken: dict[int, list[str]] = {0: [], 1: []}

    def job(stream: int, stopped):
        for name in streams.take(queue, stopped):
            taken[stream].append(name)
            if name == "b":  # a long suite: it ends only once the others are done
                deadline = time.monotonic() + 10
                while queue and time.monotonic() < deadline:
                    time.sleep(0.01)

    streams.run([functools.partial(job, 0), functools.partial(job, 1)], [FakeConnection(), FakeConnection()])
    [long_one] = [s for s in taken if "b" in taken[s]]
    assert taken[long_one][-1] == "b", taken  # nothing after it: the other stream took c, d and e
    assert set(taken[1 - long_one]) >= {"c", "d", "e"}, taken
    assert sorted(taken[0] + taken[1]) == ["a", "b", "c", "d", "e"]


def test_a_stopped_stream_takes_nothing_more():
    queue = streams.order({"a": 2.0, "b": 1.0})
    stop = threading.Event()
    took = []
    for name in streams.take(queue, stop.is_set):
        took.append(name)
        stop.set()
    assert took == ["a"] and list(queue) == ["b"]


class SizesOnly:
    """A connection that answers the table-size query only, and counts how often it was asked."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes, self.asked = sizes, 0

    def execute(self, query: str, params):
        assert "pg_total_relation_size" in query, query
        self.asked += 1
        names, _ = params
        return type("Cursor", (), {"fetchall": lambda _: [(name, self.sizes[name]) for name in names]})()


def test_suites_are_ordered_on_the_seconds_before_when_every_suite_has_them_else_on_table_sizes():
    """Review of the scale-1000 streams (21 and 40 s, when each stream's share was fixed before the start): the size
    estimate put the events' suite, 12 s of 61, with five others; the seconds each suite took before, 32 and 33 s."""
    counts = {"events": 17, "orders": 28, "promos": 9}
    conn = SizesOnly({"events": 1_330_000_000, "orders": 100_000_000, "promos": 8192})
    before = {"events": 12.0, "orders": 4.8, "promos": 0.1, "gone": 3.0}
    costs, basis = streams.costs(conn, counts, str, before)
    assert (costs, basis, conn.asked) == ({"events": 12.0, "orders": 4.8, "promos": 0.1}, streams.BY_SECONDS_BEFORE, 0)
    assert list(streams.order(costs)) == ["events", "orders", "promos"]
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
