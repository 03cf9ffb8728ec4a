"""Runs of a DAG by a real Airflow scheduler (LocalExecutor), for benchmarks/bench.py.

The Airflow components start as ``greenery ui`` starts them (greenery.dev.local_ui: api-server, scheduler,
dag-processor as subprocesses of one private AIRFLOW_HOME, LocalExecutor, no scheduled runs), with two
differences: the metadata database is a database of the bench's PostgreSQL server (a fresh clone of one
migrated once per bench), not SQLite, so the LocalExecutor's task processes really run side by side; and
the ``airflow`` executable may be another venv's (the Cosmos contender runs its own Airflow, started as plain
``airflow``: its venv has no ``greenery-airflow``, so it keeps CPython's collector thresholds and imports nothing
first). The triggerer is not started: neither DAG defers a task.

A run is triggered through the REST API for one day (``POST /api/v2/dags/{id}/dagRuns`` with its
logical date, as the UI's Trigger button does) and its end is read from the metadata database, which
also gives every task instance's ``scheduled_dttm``, ``queued_dttm``, ``start_date`` and ``end_date``:

- ready: when the task could run (the end of its last upstream task; the run's start for the first);
- scheduled -> queued: the scheduler's loop; queued -> running: the executor picks it up and its
  supervisor process starts (``start_date`` is set by the supervisor right after it forks);
- running -> done: the task process (Airflow's task runner imports, parses the DAG file, runs the task,
  reports), of which "work" is what the task itself measured (the pipeline's model tasks return
  ``seconds`` of their build, ``validate`` the ``seconds`` of its GX run), the rest in-task overhead.

The wall time from trigger to the run's end is split along its critical path (the chain of tasks that
ended last, each behind its latest-ending upstream), so the parts add up to the whole.
CPU: every process of the Airflow components' process trees (tasks included) and of the PostgreSQL
server, from /proc, between the trigger and the run's end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from greenery.dev import local_ui

COMPONENTS = ("api-server", "scheduler", "dag-processor")
FINISHED = ("success", "failed")
POLL_SECONDS = 0.2


def metadata_sqlalchemy_url(admin_url: str, database: str) -> str:
    """SQLAlchemy URL (psycopg2, which Airflow and dbt-postgres both ship) of ``database`` on the bench's server."""
    parts = urlsplit(admin_url)
    return parts._replace(scheme="postgresql+psycopg2", path=f"/{database}").geturl()


def migrate(airflow_bin: Path, home: Path, env: Mapping[str, str], sqlalchemy_url: str) -> float:
    """``airflow db migrate`` into ``sqlalchemy_url``; return seconds."""
    home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env = {**env, "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url}
    done = subprocess.run([str(airflow_bin), "db", "migrate"], env=env, cwd=home, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate into {sqlalchemy_url} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def start(
    airflow_bin: Path, home: Path, env: Mapping[str, str], sqlalchemy_url: str, dags_folder: Path
) -> local_ui.LocalAirflow:
    """The components of local_ui.start against an already migrated metadata database, from ``airflow_bin``."""
    home.mkdir(parents=True, exist_ok=True)
    base = {
        **env,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url,
    }
    port = local_ui.free_port()
    ui = local_ui.LocalAirflow(
        home=home,
        port=port,
        host="127.0.0.1",
        env=local_ui.airflow_env(home, port, base=base),
        log_dir=home / "ui-logs",
    )
    return local_ui.launch(ui, str(airflow_bin), COMPONENTS)


def ready(ui: local_ui.LocalAirflow, dag_id: str, timeout: float) -> dict:
    """Wait for the API and the parsed DAG, unpause it; return the DAG's tasks with their upstream ids."""
    ui.wait_ready(timeout=timeout)
    ui.wait_for_dag(dag_id, timeout=timeout)
    if errors := ui.import_errors():
        raise RuntimeError(f"import errors in {ui.home}: {errors}")
    status, body = ui.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    if status != 200:
        raise RuntimeError(f"unpausing {dag_id} answered {status}: {body}")
    status, body = ui.request("GET", f"/api/v2/dags/{dag_id}/tasks")
    if status != 200:
        raise RuntimeError(f"GET tasks of {dag_id} answered {status}: {body}")
    upstream: dict[str, list[str]] = {t["task_id"]: [] for t in body["tasks"]}
    for t in body["tasks"]:
        for down in t["downstream_task_ids"]:
            upstream[down].append(t["task_id"])
    return upstream


# --- CPU of process trees, from /proc ------------------------------------------------------------------


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of itself and its reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        # cutime cstime
        found[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / tick)
    return found


def tree_cpu(roots: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds of each root's process tree: live processes plus what their parents reaped."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, root in roots.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            if pid in procs:
                total += procs[pid][1]
                todo += children.get(pid, [])
        out[name] = total
    return out


def postmaster_pid(data_dir: Path | None) -> int | None:
    try:
        return int((Path(data_dir) / "postmaster.pid").read_text().splitlines()[0]) if data_dir else None
    except (OSError, ValueError, IndexError):
        return None


# --- one run --------------------------------------------------------------------------------------------


def trigger_and_wait(
    ui: local_ui.LocalAirflow,
    metadata_url: str,
    dag_id: str,
    logical_date: dt.datetime,
    timeout: float,
    cpu_roots: Mapping[str, int],
) -> dict:
    """Trigger ``dag_id`` for ``logical_date`` through the REST API; wait for its end; return what happened."""
    import psycopg

    cpu_before = tree_cpu(cpu_roots)
    triggered_at = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    status, run = ui.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date.isoformat()})
    if status != 200:
        raise RuntimeError(f"triggering {dag_id} for {logical_date} answered {status}: {run}")
    run_id = run["dag_run_id"]
    state = None
    with psycopg.connect(metadata_url, autocommit=True) as conn:
        while time.perf_counter() - started < timeout:
            state = conn.execute(
                "select state from dag_run where dag_id = %s and run_id = %s", (dag_id, run_id)
            ).fetchone()[0]
            if state in FINISHED:
                break
            ui._check_alive()  # a component that died would leave the run hanging: say so instead
            time.sleep(POLL_SECONDS)
        observed = time.perf_counter() - started
        cpu_after = tree_cpu(cpu_roots)
        dag_run = conn.execute(
            "select queued_at, start_date, end_date from dag_run where dag_id = %s and run_id = %s", (dag_id, run_id)
        ).fetchone()
        tis = conn.execute(
            "select task_id, state, try_number, scheduled_dttm, queued_dttm, start_date, end_date, duration"
            " from task_instance where dag_id = %s and run_id = %s and map_index = -1",
            (dag_id, run_id),
        ).fetchall()
        xcoms = conn.execute(
            "select task_id, value from xcom where dag_id = %s and run_id = %s and key = 'return_value'",
            (dag_id, run_id),
        ).fetchall()
    queued_at, run_start, run_end = dag_run
    tasks = {}
    for task_id, ti_state, tries, scheduled, queued, start_date, end_date, duration in tis:
        tasks[task_id] = {
            "state": ti_state,
            "tries": tries,
            "scheduled": scheduled,
            "queued": queued,
            "start": start_date,
            "end": end_date,
            "seconds": duration,
        }
    for task_id, value in xcoms:
        value = json.loads(value) if isinstance(value, str) else value
        if task_id in tasks and isinstance(value, dict) and isinstance(value.get("seconds"), int | float):
            tasks[task_id]["work"] = float(value["seconds"])
    return {
        "run_id": run_id,
        "state": state if state in FINISHED else f"not finished after {timeout:.0f}s ({state})",
        "triggered_at": triggered_at,
        "queued_at": queued_at,
        "run_start": run_start,
        "run_end": run_end,
        "observed_s": round(observed, 3),
        "cpu_s": {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after},
        "tasks": tasks,
    }


def _s(later: dt.datetime | None, earlier: dt.datetime | None) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


def analyse(run: dict, upstream: Mapping[str, list[str]], work: Mapping[str, float] | None = None) -> dict:
    """Per-task latencies and the wall time's split along the critical path (see the module docstring).

    ``work`` gives a task's own work time when the task does not report it (the Cosmos tasks: dbt's node
    times from the dbt contender's run on the same data).
    """
    tasks = run["tasks"]
    ran = {t: v for t, v in tasks.items() if v["start"] is not None and v["end"] is not None}
    for task_id, v in ran.items():
        ends = [ran[u]["end"] for u in upstream.get(task_id, []) if u in ran]
        v["ready"] = max(ends) if ends else run["run_start"]
        if "work" not in v and work and task_id in work:
            v["work"] = work[task_id]
            v["work_estimated"] = True
        v["to_queued_s"] = _s(v["queued"], v["ready"])
        v["queued_to_running_s"] = _s(v["start"], v["queued"])
        v["running_s"] = _s(v["end"], v["start"])
        if "work" in v:
            v["in_task_overhead_s"] = v["running_s"] - v["work"]
            if v["queued_to_running_s"] is not None:
                # the task's cost beyond its own work, from the moment it was queued
                v["overhead_s"] = v["queued_to_running_s"] + v["in_task_overhead_s"]

    def med(key: str, rows=None) -> float | None:
        values = [v[key] for v in (rows if rows is not None else ran.values()) if v.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    # Critical path: from the task that ended last, back through the upstream that ended last.
    path = []
    current = max(ran, key=lambda t: ran[t]["end"]) if ran else None
    while current is not None:
        path.append(current)
        ups = [u for u in upstream.get(current, []) if u in ran]
        current = max(ups, key=lambda u: ran[u]["end"]) if ups else None
    path.reverse()
    parts = {
        "trigger -> run started": _s(run["run_start"], run["triggered_at"]),
        "scheduler: ready -> queued": sum(ran[t]["to_queued_s"] or 0 for t in path),
        "executor: queued -> running": sum(ran[t]["queued_to_running_s"] or 0 for t in path),
        "task work (measured by the task)": sum(ran[t].get("work", 0) for t in path),
        "in-task overhead (task runner, DAG parse, imports, connect)": sum(
            ran[t]["running_s"] - ran[t].get("work", 0) for t in path
        ),
        "last task done -> run ended": _s(run["run_end"], ran[path[-1]]["end"]) if path else None,
    }
    with_work = [v for v in ran.values() if "work" in v]
    wall = _s(run["run_end"], run["triggered_at"])
    for v in tasks.values():
        for key in ("scheduled", "queued", "start", "end", "ready"):
            if isinstance(v.get(key), dt.datetime):
                v[key] = v[key].isoformat()
    return {
        "wall_s": round(wall, 3) if wall is not None else None,
        "tasks_run": len(ran),
        "critical_path": path,
        "critical_path_parts": {k: round(v, 3) if v is not None else None for k, v in parts.items()},
        "median_to_queued_s": med("to_queued_s"),
        "median_queued_to_running_s": med("queued_to_running_s"),
        "median_running_s": med("running_s"),
        "median_in_task_overhead_s": med("in_task_overhead_s", with_work),
        "median_overhead_s": med("overhead_s", with_work),
        "tasks_with_work": len(with_work),
        "sum_running_s": round(sum(v["running_s"] for v in ran.values()), 3),
        "sum_work_s": round(sum(v.get("work", 0) for v in ran.values()), 3),
    }
