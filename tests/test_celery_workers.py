"""The DAG through the CeleryExecutor, without Docker: a real Redis (Debian's ``redis-server``) on loopback,
the api-server, scheduler and dag-processor, and two ``airflow celery worker`` processes, each with its own
AIRFLOW_HOME and working directory (they share the configuration, the metadata database and the warehouse,
and no file). One run on the real Greenery data: once each worker has finished a task, one is killed in the
middle of a model task; the run completes, with task instances on both workers, the killed task retried on
the other, marts identical to the day's build without Airflow, and the api-server's Data quality view shows
the Data Docs the validate task stored from its worker; the workers run as ``greenery-airflow celery worker``
and validate starts with GX imported. (One run, one stack: each run costs a minute of both
cores, and a run without a kill proves nothing this one does not.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psycopg
import pytest
from airflow_api import DAG_ID, finished, task_instances, trigger, unpause

from greenery import gc_tuning, preloaded_airflow, warehouse
from greenery.dev import addresses, local_ui
from greenery.sources import load as raw

pytestmark = [pytest.mark.db, pytest.mark.integration]

DAY = "2021-02-12"
RUN_TIMEOUT = 600
REDIS = shutil.which("redis-server")
WORKERS = ("worker-a", "worker-b")
# Both workers run on this machine: each reports its own name as the task instances' hostname.
HOSTNAME_MODULE = "import os\n\n\ndef name():\n    return os.environ['CELERY_TEST_WORKER_NAME']\n"


@pytest.fixture
def redis_url(tmp_path):
    if REDIS is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    port = local_ui.free_port()
    server = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while addresses.port_in_use(port) is False:
        assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(timeout=10)


def _sqlalchemy(url: str) -> str:
    return "postgresql+psycopg2://" + url.split("://", 1)[1]


@pytest.fixture
def celery_stack(request, pg_admin_url, warehouse_url, real_greenery, redis_url, tmp_path):
    """The stack, running; ``request.param`` (indirect parametrization) adds settings."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        raw.load_dir(conn, real_greenery)
    meta = warehouse.create_database(pg_admin_url, f"airflow_meta_{tmp_path.name}"[:60])
    base = {
        **os.environ,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _sqlalchemy(meta),
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + _sqlalchemy(meta),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        **getattr(request, "param", {}),
    }
    ui = local_ui.start(tmp_path / "airflow", port=local_ui.free_port(), components=("api-server",), env=base)
    ui.env["AIRFLOW__CORE__EXECUTOR"] = "CeleryExecutor"
    airflow = local_ui._airflow_executable()
    for name in ("scheduler", "dag-processor"):
        ui.processes[name] = subprocess.Popen(
            [airflow, name], env=ui.env, cwd=ui.home, stdout=(ui.log_dir / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    for name in WORKERS:
        home = tmp_path / name
        (home / "lib").mkdir(parents=True)
        (home / "lib" / "celery_test_host.py").write_text(HOSTNAME_MODULE)
        env = {
            **ui.env,
            "AIRFLOW_HOME": str(home),
            "CELERY_TEST_WORKER_NAME": name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "celery_test_host.name",
            "PYTHONPATH": f"{home / 'lib'}:{ui.env['PYTHONPATH']}",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(local_ui.free_port()),
        }
        ui.processes[name] = subprocess.Popen(
            [preloaded_airflow.beside(airflow), "celery", "worker", "-H", f"{name}@127.0.0.1", "-q", "default"],
            env=env, cwd=home, stdout=(ui.log_dir / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    yield ui
    ui.stop()


def trigger_the_day(ui) -> str:
    ui.wait_ready(timeout=180)
    ui.wait_for_dag(DAG_ID, timeout=240)
    unpause(ui)
    return trigger(ui, DAY)


KILL_SETTINGS = {
    # A killed worker's task stops heartbeating: the scheduler fails it after this, and it is retried soon.
    # Tasks heartbeat every second here (local_ui: [workers] min_heartbeat_interval), so 12 s is a dozen missed
    # beats; a healthy task taken for dead would only be retried, which this test would survive too.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "12",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "GREENERY_RETRY_DELAY_SECONDS": "3",
    # A task the killed worker had received but not started stays "queued" (its message unacknowledged in
    # Redis): the scheduler requeues it after this (docker-compose.yaml: 180 s; Airflow's default, 600 s,
    # stalled one run in five here for 10 minutes).
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "5",
}
STUCK_IN_QUEUED = "stuck in queued reschedule"  # the event Airflow logs when it requeues such a task


@pytest.mark.parametrize("celery_stack", [KILL_SETTINGS], indirect=True)
def test_a_run_on_two_workers_survives_one_killed_mid_task_and_the_view_shows_its_docs(
    celery_stack, warehouse_url, pg_admin_url, published_template
):
    from helpers import hashes

    from greenery.project import models

    marts = sorted(m.relation for m in models.discover().values() if m.relation.startswith("marts."))
    # The reference: the same day built and published by the library in this process (no Airflow).
    with psycopg.connect(urlsplit(pg_admin_url)._replace(path=f"/{published_template}").geturl()) as conn:
        expected = hashes(conn, marts)

    ui = celery_stack
    run_id, started = trigger_the_day(ui), time.monotonic()
    model_tasks = set(models.discover())
    # Kill a worker that has already finished a task (so both workers' work is in the run) while it runs a
    # model task: the process group, its task too.
    while True:
        tis = task_instances(ui, run_id)
        finished_on = {ti["hostname"] for ti in tis if ti["state"] == "success"}
        running = [ti for ti in tis if ti["state"] == "running" and ti["task_id"] in model_tasks]
        victims = [ti for ti in running if ti["hostname"] in WORKERS and ti["hostname"] in finished_on]
        if victims:
            victim, killed = victims[0]["hostname"], victims[0]["task_id"]
            break
        left = [ti["task_id"] for ti in tis if ti["task_id"] in model_tasks and ti["state"] != "success"]
        assert left, f"every model task finished before a worker with a finished task ran one: {tis}"
        assert time.monotonic() - started < RUN_TIMEOUT, ui.diagnostics(30)
        time.sleep(0.2)
    ui._signal(victim, signal.SIGKILL)
    state = finished(ui, run_id, timeout=RUN_TIMEOUT - (time.monotonic() - started))
    rows = {ti["task_id"]: ti for ti in task_instances(ui, run_id)}
    print(f"killed {victim} during {killed}; run {state} in {time.monotonic() - started:.0f}s")
    for ti in rows.values():
        print(ti["task_id"], ti["state"], ti["hostname"], ti["try_number"])
    status, events = ui.request("GET", "/api/v2/eventLogs?" + urlencode({"dag_id": DAG_ID, "event": STUCK_IN_QUEUED}))
    assert status == 200, events
    requeued = sorted(e["task_id"] for e in events["event_logs"] if e["run_id"] == run_id)
    print(f"requeued after sitting in queued on the killed worker: {requeued or 'none'}")
    survivor = next(w for w in WORKERS if w != victim)
    assert all(rows[t]["hostname"] == survivor for t in requeued), {t: rows[t]["hostname"] for t in requeued}
    assert state == "success", ({k: (v["state"], v["hostname"], v["try_number"]) for k, v in rows.items()},)
    assert {ti["hostname"] for ti in rows.values() if ti["state"] == "success"} == set(WORKERS)
    assert rows[killed]["try_number"] >= 2 and rows[killed]["hostname"] == survivor, rows[killed]
    with psycopg.connect(warehouse_url) as conn:
        assert hashes(conn, marts) == expected

    # The api-server's view finds the Data Docs the validate task stored on the worker that ran it.
    status, latest = ui.request("GET", "/data-quality/api/latest")
    assert status == 200 and latest["latest_run"]["run_id"] == run_id, latest
    links = [t["data_docs"] for t in latest["tables"]]
    assert links and all(links), latest["tables"]
    status, page = ui.request("GET", links[0].removeprefix(ui.url))  # absolute: from the deployment's base URL
    assert status == 200 and "Expectation Validation Result" in page, (links[0], status)
    assert not list(Path(ui.home).rglob("*.html")), "no Data Docs file on the api-server's side"
    print(f"validate ran on {rows['validate']['hostname']}; the view lists {len(links)} Data Docs pages")

    # The workers run as `greenery-airflow celery worker`: their pool processes, which run the tasks, were forked
    # after GX was imported, so validate did not import it again.
    logs = sorted((ui.home.parent / rows["validate"]["hostname"] / "logs").rglob("task_id=validate/attempt=*.log"))
    assert logs, "no validate log in the worker's home"
    text = logs[-1].read_text(errors="replace")
    assert "Great Expectations: already imported when the task started" in text
    # And with the collector's thresholds greenery-airflow set in the worker (preloaded_airflow.py).
    assert f"collector thresholds when the task started: {gc_tuning.THRESHOLDS}" in text
