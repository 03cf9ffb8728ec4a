"""The benchmark's reading of a scheduled run (benchmarks/scheduled.py): per-task latencies and the split of
the wall time along the critical path, on a hand-made run whose numbers are known."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import scheduled

T0 = dt.datetime(2021, 2, 13, 1, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def task(scheduled_s, queued_s, start_s, end_s, work=None) -> dict:
    row = {"state": "success", "tries": 1, "scheduled": at(scheduled_s), "queued": at(queued_s)}
    row |= {"start": at(start_s), "end": at(end_s), "seconds": end_s - start_s}
    return row if work is None else row | {"work": work}


def run_of(tasks: dict) -> dict:
    return {"triggered_at": at(0), "run_start": at(1), "run_end": at(20), "tasks": tasks}


# a -> b, a -> c, (b, c) -> d: c ends after b, so the critical path is a, c, d.
UPSTREAM = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_the_critical_path_follows_the_latest_upstream_and_its_parts_add_up_to_the_wall_time():
    run = run_of(
        {
            "a": task(1.2, 1.5, 2.0, 5.0, work=1.0),
            "b": task(5.5, 6.0, 6.5, 9.0, work=2.0),
            "c": task(5.5, 6.5, 8.0, 12.0, work=3.0),
            "d": task(12.2, 12.5, 13.0, 19.0, work=5.0),
        }
    )
    result = scheduled.analyse(run, UPSTREAM)
    assert result["critical_path"] == ["a", "c", "d"]
    parts = result["critical_path_parts"]
    assert parts == {
        "trigger -> run started": 1.0,
        # a: the run's start 1 -> 1.5; c: a's end 5 -> 6.5; d: c's end 12 (not b's 9) -> 12.5
        "scheduler: ready -> queued": 0.5 + 1.5 + 0.5,
        "executor: queued -> running": 0.5 + 1.5 + 0.5,
        "task work (measured by the task)": 1.0 + 3.0 + 5.0,
        "in-task overhead (task runner, DAG parse, imports, connect)": 2.0 + 1.0 + 1.0,
        "last task done -> run ended": 1.0,
    }
    assert sum(parts.values()) == pytest.approx(result["wall_s"]) == 20.0


def test_per_task_overhead_is_queued_to_done_minus_the_tasks_own_work():
    run = run_of({"a": task(1.2, 1.5, 2.0, 5.0, work=1.0), "b": task(5.5, 6.0, 6.5, 9.0)})
    result = scheduled.analyse(run, UPSTREAM, work={"b": 0.5})
    a, b = run["tasks"]["a"], run["tasks"]["b"]
    assert a["overhead_s"] == pytest.approx(0.5 + 2.0)  # queued -> running 0.5, running 3.0 of which work 1.0
    assert b["overhead_s"] == pytest.approx(0.5 + 2.0) and b["work_estimated"] is True
    assert result["median_overhead_s"] == pytest.approx(2.5)
    assert result["tasks_with_work"] == 2


def test_a_task_that_never_ran_is_left_out_of_the_path():
    never = {"state": "upstream_failed", "tries": 0, "scheduled": None, "queued": None, "start": None, "end": None}
    run = run_of({"a": task(1.2, 1.5, 2.0, 5.0), "b": never | {"seconds": None}})
    result = scheduled.analyse(run, UPSTREAM)
    assert result["critical_path"] == ["a"] and result["tasks_run"] == 1
