"""What the stack tests ask a running Airflow through its REST API v2 (a ``local_ui.LocalUI``), the calls the UI's
pages make: unpause and trigger the DAG, a run's state, its task instances and their logs, and waits that fail with
the stack's own diagnostics. One copy, so that a change of Airflow's API is mended once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from greenery.dev import local_ui

DAG_ID = local_ui.DAG_ID
RUN_TIMEOUT = 420  # a whole run under a real scheduler: about a minute on an idle 2-core machine

T = TypeVar("T")


def get(ui, path: str):
    """The JSON body of a GET that must answer 200."""
    status, body = ui.request("GET", path)
    assert status == 200, (path, body)
    return body


def unpause(ui) -> None:
    status, body = ui.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    assert status == 200, body


def trigger(ui, day: str) -> str:
    """The Trigger button for ``day`` (YYYY-MM-DD): the new run's id."""
    status, run = ui.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": f"{day}T00:00:00Z"})
    assert status == 200, run
    return run["dag_run_id"]


def run_state(ui, run_id: str) -> str:
    return get(ui, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"]


def task_instances(ui, run_id: str) -> list[dict]:
    return get(ui, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]


def task_states(ui, run_id: str) -> dict[str, str | None]:
    return {ti["task_id"]: ti["state"] for ti in task_instances(ui, run_id)}


def tries(ui, run_id: str) -> dict[str, int]:
    """Each task's try number in the run: a task that ran again has a higher one."""
    return {ti["task_id"]: ti["try_number"] for ti in task_instances(ui, run_id)}


def task_instance(ui, run_id: str, task_id: str) -> dict:
    return get(ui, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}")


def task_log(ui, run_id: str, task_id: str, try_number: int) -> str:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
    return str(get(ui, path))


def wait_for(
    ui, run_id: str, predicate: Callable[[], T | None], timeout: float = RUN_TIMEOUT, what: str = "the run"
) -> T:
    """``predicate()``'s first true value, polled every half second; past ``timeout`` the test fails naming the
    run's task states and the components' last log lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    pytest.fail(f"{what} did not finish in {timeout}s: {task_states(ui, run_id)}\n{ui.diagnostics(30)}")


def finished(ui, run_id: str, timeout: float = RUN_TIMEOUT) -> str:
    """The run's state once it is ``success`` or ``failed``."""

    def done() -> str | None:
        state = run_state(ui, run_id)
        return state if state in ("success", "failed") else None

    return wait_for(ui, run_id, done, timeout)
