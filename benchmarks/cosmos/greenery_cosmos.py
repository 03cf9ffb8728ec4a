"""greenery_cosmos: the benchmark's Airflow peer, benchmarks/dbt_greenery run by astronomer-cosmos.

Not part of the product: benchmarks/bench.py points an Airflow of its own venv (benchmarks/.venv-cosmos,
from benchmarks/requirements-cosmos.txt) at this folder. Cosmos as a user gets it out of the box: a
``DbtDag`` of the whole project, its default local execution mode (dbt in the Airflow venv, invoked
in-process through dbtRunner), its default ``TestBehavior.AFTER_EACH`` (each model's tests right after it,
a ``<model>.run`` and a ``<model>.test`` task per model), its default automatic load mode (``dbt ls``,
cached by Cosmos), and the warehouse through the same Airflow connection the pipeline reads
(``greenery_warehouse``, mapped to a dbt profile by Cosmos). One departure: no asset events (see
``emit_datasets`` below).

The run's day and clock go to dbt as vars, as the pipeline's renderer fills them in: ``run_date`` is the
logical date's day, ``run_time`` the run's ``run_after`` (when it was triggered; the row rules compare
timestamps with it). Not its ``start_date``: ``dag.test`` records the logical date there.
"""

from __future__ import annotations

from pathlib import Path

from airflow.timetables.interval import CronDataIntervalTimetable
from cosmos import DbtDag, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.profiles import PostgresUserPasswordProfileMapping

DBT_PROJECT = Path(__file__).resolve().parent.parent / "dbt_greenery"

dag = DbtDag(
    dag_id="greenery_cosmos",
    project_config=ProjectConfig(dbt_project_path=DBT_PROJECT),
    profile_config=ProfileConfig(
        profile_name="greenery",
        target_name="bench",
        profile_mapping=PostgresUserPasswordProfileMapping(
            conn_id="greenery_warehouse", profile_args={"schema": "public"}
        ),
    ),
    execution_config=ExecutionConfig(),
    # The one departure from Cosmos' defaults: its assets are postgres://host:port/... URIs and the bench's
    # embedded PostgreSQL has no host (a unix socket), which Airflow's URI check rejects: every model fails.
    render_config=RenderConfig(emit_datasets=False),
    operator_args={"vars": {"run_date": "{{ ds }}", "run_time": "{{ dag_run.run_after.isoformat() }}"}},
    # As greenery_daily: a run covers one UTC day, its logical date; no start_date, no catchup.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
    tags=["benchmark"],
)
