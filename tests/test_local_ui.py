"""``greenery ui``'s Airflow (greenery.local_ui): the real API server, scheduler and dag-processor as
subprocesses in a private Airflow home, driven through the REST API v2 the way a user drives the UI.

The DAG is parsed and listed, unpaused, triggered for 2021-02-12; on the real Greenery data (loaded into
the test database) the run must succeed within RUN_TIMEOUT and build the known answers; then one task is
cleared and must rerun. Teardown stops every process group.
"""

from __future__ import annotations

import datetime as dt
import time
import warnings
from decimal import Decimal
from importlib.metadata import version

import psycopg
import pytest

from greenery.dev import local_ui
from greenery.project import models
from greenery.sources import load as raw

pytestmark = [pytest.mark.db, pytest.mark.integration]

DAG_ID = local_ui.DAG_ID
LOGICAL_DATE = "2021-02-12T00:00:00Z"
RUN_TIMEOUT = 120  # a whole run takes ~30-60 s under the real scheduler
RERUN_TASK = "check_source_freshness"  # read-only: a rerun changes nothing


@pytest.fixture
def raw_loaded(warehouse_url, request) -> bool:
    """Load the real Greenery data into the test database when it is available."""
    try:
        real = request.getfixturevalue("real_greenery")
    except pytest.skip.Exception:
        return False
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        raw.load_dir(conn, real)
    return True


@pytest.fixture
def ui(raw_loaded, tmp_path):
    # The warehouse_url fixture has pointed AIRFLOW_CONN_GREENERY_WAREHOUSE at the test database; the
    # components inherit this process's environment.
    handle = local_ui.start(
        tmp_path / "airflow",
        port=local_ui.free_port(),
        components=("api-server", "scheduler", "dag-processor"),
    )
    yield handle
    handle.stop()
    still_running = [name for name, proc in handle.processes.items() if proc.poll() is None]
    assert not still_running, f"not stopped: {still_running}"


def dag_run(ui, run_id: str) -> dict:
    status, body = ui.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
    assert status == 200, body
    return body


def task_instance(ui, run_id: str, task_id: str) -> dict:
    status, body = ui.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}")
    assert status == 200, body
    return body


def task_states(ui, run_id: str) -> dict[str, str | None]:
    status, body = ui.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")
    assert status == 200, body
    return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}


def wait_until(predicate, timeout: float, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def failure_report(ui, run_id: str) -> str:
    states = task_states(ui, run_id)
    lines = [f"task states: {states}"]
    for task_id, state in states.items():
        if state in ("failed", "upstream_failed", "up_for_retry"):
            ti = task_instance(ui, run_id, task_id)
            path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{max(ti['try_number'], 1)}"
            _, log = ui.request("GET", path + "?full_content=true")
            lines.append(f"--- log of {task_id}:\n{str(log)[-3000:]}")
    return "\n".join(lines) + "\n" + ui.diagnostics(20)


def test_the_dag_is_listed_triggered_run_and_a_task_cleared_and_rerun(ui, raw_loaded, warehouse_url):
    started = time.monotonic()
    assert ui.wait_ready(timeout=90) == version("apache-airflow")
    ready = time.monotonic()

    # Listed once the dag-processor has parsed it, paused as new DAGs are, without import errors.
    dag = ui.wait_for_dag(DAG_ID, timeout=120)
    assert dag["is_paused"] is True and not ui.import_errors()
    status, listed = ui.request("GET", "/api/v2/dags?dag_id_pattern=greenery")
    assert status == 200 and DAG_ID in [d["dag_id"] for d in listed["dags"]], listed
    parsed = time.monotonic()

    # The graph the UI draws: every model task and the quality tasks, with their edges.
    status, body = ui.request("GET", f"/api/v2/dags/{DAG_ID}/tasks")
    assert status == 200, body
    tasks = {t["task_id"]: t for t in body["tasks"]}
    assert {"check_source_freshness", "prepare_build", "validate", "publish", "alert_slack"} <= set(tasks)
    assert set(models.discover()) <= set(tasks)
    assert tasks["check_source_freshness"]["downstream_task_ids"] == ["prepare_build"]

    status, body = ui.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    assert status == 200 and body["is_paused"] is False, body

    status, run = ui.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": LOGICAL_DATE, "conf": {}})
    assert status == 200, run
    run_id = run["dag_run_id"]
    assert run["run_type"] == "manual" and run["logical_date"].startswith("2021-02-12"), run
    assert dag_run(ui, run_id)["state"] in ("queued", "running")
    triggered = time.monotonic()

    if not raw_loaded:
        # No raw data: the scheduler still picks the run up (its first task runs, and fails on freshness).
        assert wait_until(lambda: task_instance(ui, run_id, "check_source_freshness")["state"], 90), failure_report(
            ui, run_id
        )
        return

    def finished_state():
        state = dag_run(ui, run_id)["state"]
        return state if state in ("success", "failed") else None

    state = wait_until(finished_state, RUN_TIMEOUT)
    if not state:  # a slow machine: the scheduler must at least be making progress
        done = [t for t, s in task_states(ui, run_id).items() if s == "success"]
        assert done, f"nothing ran within {RUN_TIMEOUT}s\n{failure_report(ui, run_id)}"
        warnings.warn(f"run not finished in {RUN_TIMEOUT}s ({len(done)} tasks done): rerun not checked", stacklevel=1)
        return
    assert state == "success", failure_report(ui, run_id)
    finished = time.monotonic()
    assert set(task_states(ui, run_id).values()) <= {"success", "skipped"}

    # The run wrote the known answers into the test warehouse.
    with psycopg.connect(warehouse_url) as conn:
        answer = conn.execute(
            "select buyers, repeat_buyers, repeat_rate from marts.metrics_daily where as_of_date = %s",
            (dt.date(2021, 2, 12),),
        ).fetchone()
    assert answer == (124, 99, Decimal("0.7984"))

    # Clear one task, as the UI's Clear button does, and see it run again.
    before = task_instance(ui, run_id, RERUN_TASK)
    body = {
        "dry_run": False,
        "only_failed": False,
        "reset_dag_runs": True,
        "dag_run_id": run_id,
        "task_ids": [RERUN_TASK],
    }
    status, cleared = ui.request("POST", f"/api/v2/dags/{DAG_ID}/clearTaskInstances", body)
    assert status == 200, cleared
    assert [ti["task_id"] for ti in cleared["task_instances"]] == [RERUN_TASK]

    def rerun_done():
        ti = task_instance(ui, run_id, RERUN_TASK)
        return ti["try_number"] > before["try_number"] and ti["state"] == "success" and ti

    rerun = wait_until(rerun_done, 60)
    assert rerun, failure_report(ui, run_id)
    assert wait_until(lambda: dag_run(ui, run_id)["state"] == "success", 30), failure_report(ui, run_id)
    print(
        f"\nlocal ui timings: api ready {ready - started:.1f}s, DAG parsed +{parsed - ready:.1f}s, "
        f"run {finished - triggered:.1f}s, clear+rerun {time.monotonic() - finished:.1f}s, "
        f"total {time.monotonic() - started:.1f}s"
    )
