"""The README's backfill, through a real scheduler: the exact command the README gives (``airflow backfill create``,
parsed out of README.md), run against a stack with its metadata in PostgreSQL (the README says backfills need it),
the LocalExecutor, on the real Greenery data loaded into an empty warehouse, with a local fake Slack.

1. Raw holds one order twice: each of the backfill's days fails the same critical checks. The runs go one at
   a time (the command's ``--max-active-runs 1``), nothing is published, and on-call is paged once for the root
   cause: the first run's page says the backfill's other days are held back, and the next day's ``alert_slack`` is
   skipped naming that run (README: "once per root cause in a backfill").
2. Raw fixed, the last day backfilled again with the API call the UI's Backfill dialog makes (POST
   /api/v2/backfills, "Missing and Errored Runs": reprocess_behavior "failed"): the same run ends green, the day
   is published once, the other run is left as it was, and nobody is paged. On PostgreSQL the stack leaves the DAG's
   backfills on (GREENERY_ALLOW_BACKFILLS); on SQLite it turns them off (tests/test_local_ui.py).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shlex
import subprocess
import time

import psycopg
import pytest
from airflow_api import DAG_ID, task_instance, task_log, unpause
from psycopg import sql

from greenery import audit, config, warehouse
from greenery.dev import local_ui
from greenery.sources import load as raw

pytestmark = [pytest.mark.db, pytest.mark.integration]

DUPLICATED_ORDER = "8329a65b-7ddf-4250-aeee-bd625f8a401a"
BACKFILL_TIMEOUT = 540  # the runs under one scheduler on two busy cores (each about a minute at worst)


def readme_backfill_command() -> list[str]:
    """The one ``airflow backfill create`` line of the README's code blocks, as a user would paste it."""
    lines = [
        line.strip()
        for line in (config.PROJECT_DIR / "README.md").read_text().splitlines()
        if line.strip().startswith("airflow backfill create")
    ]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture
def stack(pg_admin_url, warehouse_url, real_greenery, slack_alerts_webhook, tmp_path):
    """api-server, scheduler and dag-processor on an Airflow metadata database in the test PostgreSQL, over a
    warehouse holding only raw (the real data, one order twice)."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        raw.load_dir(conn, real_greenery)
        conn.execute("insert into raw.orders select * from raw.orders where order_id = %s", (DUPLICATED_ORDER,))
    meta = warehouse.create_database(pg_admin_url, f"airflow_meta_{tmp_path.name}"[:60])
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://" + meta.split("://", 1)[1]}
    ui = local_ui.start(
        tmp_path / "airflow",
        port=local_ui.free_port(),
        components=("api-server", "scheduler", "dag-processor"),
        env=env,
    )
    yield ui
    ui.stop()


def backfill_runs(ui) -> list[dict]:
    status, body = ui.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?run_type=backfill&order_by=logical_date&limit=50")
    assert status == 200, body
    return body["dag_runs"]


def wait_for_backfill(ui, backfill_id: int) -> list[dict]:
    """Until the backfill is complete (the scheduler marks it once none of its runs is left to run); its runs."""
    deadline = time.monotonic() + BACKFILL_TIMEOUT
    while time.monotonic() < deadline:
        status, body = ui.request("GET", f"/api/v2/backfills/{backfill_id}")
        assert status == 200, body
        if body["completed_at"]:
            return backfill_runs(ui)
        time.sleep(1)
    pytest.fail(
        f"backfill {backfill_id} not complete in {BACKFILL_TIMEOUT}s: {backfill_runs(ui)}\n{ui.diagnostics(20)}"
    )


def assert_one_at_a_time(runs: list[dict]) -> None:
    spans = sorted((dt.datetime.fromisoformat(r["start_date"]), dt.datetime.fromisoformat(r["end_date"])) for r in runs)
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert started >= ended, f"runs overlapped: {spans}"


def publishes(warehouse_url: str) -> list[tuple[str, dt.date]]:
    with psycopg.connect(warehouse_url) as conn:
        if not audit.exists(conn, "publish_log"):
            return []
        query = sql.SQL("select run_id, logical_date from {} order by published_at")
        return conn.execute(query.format(audit.table("publish_log"))).fetchall()


# Three whole runs under a real scheduler, one at a time: 17 s a run on an idle machine, half a minute under CI.
@pytest.mark.timeout(1800)  # above the waits below, so a slow one fails with its diagnostics
def test_the_readmes_backfill_pages_a_root_cause_once_and_reruns_its_failed_days_from_the_ui(
    stack, slack_alerts_webhook, warehouse_url
):
    ui = stack
    command = readme_backfill_command()
    first, last = (dt.datetime.fromisoformat(option(command, name)) for name in ("--from-date", "--to-date"))
    assert first.utcoffset() == last.utcoffset() == dt.timedelta(0)  # UTC days, whatever Airflow's default_timezone
    first, last = first.date(), last.date()
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    assert len(days) >= 2, "one day shows nothing held back nor one run at a time"
    assert option(command, "--dag-id") == DAG_ID and option(command, "--max-active-runs") == "1"
    ui.wait_ready(timeout=180)
    ui.wait_for_dag(DAG_ID, timeout=240)
    unpause(ui)

    # 1. The README's command, as pasted, with the deployment's environment.
    created = subprocess.run(
        [local_ui._airflow_executable(), *command[1:]], env=ui.env, cwd=ui.home, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    status, body = ui.request("GET", f"/api/v2/backfills?dag_id={DAG_ID}")
    assert status == 200 and body["total_entries"] == 1, body
    runs = wait_for_backfill(ui, body["backfills"][0]["id"])
    assert [dt.date.fromisoformat(r["logical_date"][:10]) for r in runs] == days
    assert [r["state"] for r in runs] == ["failed"] * len(days), runs
    assert_one_at_a_time(runs)
    assert publishes(warehouse_url) == []
    posts = slack_alerts_webhook.webhook_posts()
    assert len(posts) == 1, posts
    page = str(posts[0])
    assert DUPLICATED_ORDER in page and "_A backfill:_" in page, page
    paged, *held = [r["dag_run_id"] for r in runs]  # the first day's run pages, the later ones find its page
    assert task_instance(ui, paged, "alert_slack")["state"] == "success"
    for run_id in held:
        assert task_instance(ui, run_id, "validate")["state"] == "failed"
        alert = task_instance(ui, run_id, "alert_slack")
        assert alert["state"] == "skipped", alert
        assert f"held back: run {paged} of a backfill paged these same failed checks" in task_log(
            ui, run_id, "alert_slack", alert["try_number"]
        )

    # 2. Raw fixed; the UI Backfill dialog's call for the last day, "Missing and Errored Runs" (one day: each run here
    # costs half a minute of CI, and the days going one at a time is shown above).
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(
            "delete from raw.orders where ctid = (select max(ctid) from raw.orders where order_id = %s)",
            (DUPLICATED_ORDER,),
        )
    request = {"dag_id": DAG_ID, "from_date": f"{last}T00:00:00Z", "to_date": f"{last}T00:00:00Z"}
    status, body = ui.request("POST", "/api/v2/backfills", {**request, "reprocess_behavior": "failed"})
    assert status == 200, body
    after = wait_for_backfill(ui, body["id"])
    [rerun] = [r for r in after if r["dag_run_id"] == runs[-1]["dag_run_id"]]
    assert rerun["state"] == "success", rerun  # the same run, cleared and run again
    assert [r["state"] for r in after][:-1] == ["failed"] * (len(days) - 1)  # the others left as they were
    assert publishes(warehouse_url) == [(rerun["dag_run_id"], last)]
    # Nobody paged for the green day: the one post after the page says its run is repaired (tasks/repaired.py).
    posts = slack_alerts_webhook.webhook_posts()
    assert len(posts) == 2, posts
    notice = json.dumps(posts[-1].body, ensure_ascii=False)
    assert f"✅ {DAG_ID}: {last} repaired" in notice and "`validate` failed in its first run at" in notice, notice
    with psycopg.connect(warehouse_url) as conn:
        built = conn.execute("select as_of_date from marts.metrics_daily order by 1").fetchall()
    assert [d for (d,) in built] == [last]
