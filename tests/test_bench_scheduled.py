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


# The DAG's shape (dags/greenery_daily.py): freshness -> prepare_build -> models -> validate -> publish ->
# state_of_the_data; alert_slack after validate and publish whatever happened (trigger all_done).
DAG_UPSTREAM = {
    "check_source_freshness": [],
    "prepare_build": ["check_source_freshness"],
    "stg": ["prepare_build"],
    "validate": ["stg"],
    "publish": ["validate"],
    "state_of_the_data": ["publish"],
    "alert_slack": ["validate", "publish"],
}


def test_the_critical_path_of_the_dag_runs_through_validate_and_publish_to_the_task_that_ended_last():
    run = run_of(
        {
            "check_source_freshness": task(1.1, 1.2, 1.5, 3.0, work=0.1),
            "prepare_build": task(3.1, 3.2, 3.5, 4.0),
            "stg": task(4.1, 4.2, 4.5, 6.0, work=0.5),
            "validate": task(6.1, 6.2, 6.5, 12.0, work=4.0),
            "publish": task(12.1, 12.2, 12.5, 14.0),
            # skipped by the task itself (digest off, nothing to page): it ran, so it counts
            "state_of_the_data": task(14.1, 14.2, 14.5, 16.0) | {"state": "skipped"},
            "alert_slack": task(14.1, 14.3, 15.0, 19.0) | {"state": "skipped"},
        }
    )
    result = scheduled.analyse(run, DAG_UPSTREAM)
    assert result["critical_path"] == [
        "check_source_freshness", "prepare_build", "stg", "validate", "publish", "alert_slack"
    ]  # fmt: skip
    # alert_slack was ready when publish (its later upstream) ended, not validate
    assert run["tasks"]["alert_slack"]["to_queued_s"] == pytest.approx(0.3)
    assert sum(result["critical_path_parts"].values()) == pytest.approx(result["wall_s"]) == 20.0
    assert result["tasks_run"] == 7 and result["tasks_with_work"] == 3
