"""Benchmark the greenery_daily pipeline against the bare SQL (the floor), an equivalent dbt project and Cosmos.

    .venv/bin/python benchmarks/bench.py --scales real,1,100 [--contenders all] [--days N] [--repeat R]

For each data set (``real``: the real Greenery data of ../shared/greenery when present, or a scale factor
of the generator): generate the raw CSVs (cached in benchmarks/.cache), start one embedded PostgreSQL
(or use the server of ``GREENERY_BENCH_POSTGRES_URL``, an admin URL), load raw once into a template
database, then clone it (``create database ... template ...``) for every contender so each starts from
identical data. In the same run, one after the other:

- floor: each model rendered with ``greenery.project.render.render`` (the run's clock: the bench's start)
  and run as ``create table ... as`` in the published schemas, one transaction per model, in dependency
  order (psycopg; no Airflow, no GX). Quarantine models keep their good rows, cast to their
  ``column_types``, in the same statement; nothing goes to ``quarantine.*``. Snapshot models get their
  first step: every row valid from the end of the run's day, valid_to NULL. The floor runs only the full
  build: the incremental runs of the others (the same day again) are compared with it, which holds for a
  snapshot because a rerun of its latest step gives the same versions (dbt: nothing changed, no new one).
- dbt: ``dbt build`` of benchmarks/dbt_greenery (models generated from include/sql by
  greenery_to_dbt.py; primary-key tests), from its own venv benchmarks/.venv-dbt, created here from
  benchmarks/requirements-dbt.txt when missing.
- pipeline: the whole DAG through Airflow ``dag.test`` for the last day orders were placed (freshness,
  write-audit-publish build, GX validation, publish, branch), with the ``validate`` task's duration
  read from the DagRun's task instances.
- pipeline_scheduled: the same DAG run by a real Airflow (api-server, scheduler, dag-processor;
  LocalExecutor; metadata in a database of the same PostgreSQL server), triggered through the REST API,
  with the latencies of every task instance (see benchmarks/scheduled.py).
- cosmos, cosmos_scheduled (opt in: ``--contenders all``): benchmarks/dbt_greenery run by
  astronomer-cosmos (benchmarks/cosmos/greenery_cosmos.py, Cosmos' defaults) in an Airflow of its own venv
  benchmarks/.venv-cosmos (created here from benchmarks/requirements-cosmos.txt), through ``dag.test`` and
  through the scheduler as above.
- with >= 2 days of data, "one day incremental": a second run of the DAG (and of ``dbt build``) for the
  last day after the full one, on the same database, in a new process. The first run found nothing
  published and built every model whole (a full refresh); this one finds the published tables, so the
  incremental models recompute only their lookback window (the run's day and 3 days before) and merge
  it, as the next scheduled run would. Current-state models (users, orders, products) are rebuilt whole
  in both. dbt's second ``dbt build`` likewise runs its incremental models incrementally. Before it, outside
  its timing, every contender's database gets what the day between two scheduled runs gives it: autovacuum's
  work on the tables the full run wrote (``settle``); ``--back-to-back`` skips that, as a backfill's next day
  would find the database.

The Python contenders read compiled bytecode from benchmarks/.cache/pycache (built once, ~40 s): a venv
installed without --compile-bytecode (plain ``uv pip install``; ``make install`` now compiles) has no .pyc
files while dbt's venv has, and Airflow and GX would pay for compiling their modules at every import and
dbt would not (--as-installed measures them without it; the DAG parse time is reported both ways).

The ``pipeline`` worker runs with the collector thresholds of the ``greenery`` command, whose ``greenery run`` it
stands for (greenery/gc_tuning.py: 3.6 s of a demo's 18 CPU-s were collections), and ``pipeline_scheduled``'s Airflow
components with those of ``greenery-airflow``, through which ``greenery ui`` starts them (the same thresholds:
greenery/preloaded_airflow.py); dbt and Cosmos, in both modes, run with CPython's own, as their commands do (Cosmos
would gain as well; that control is not measured).

Every contender runs in its own subprocess; its peak memory is that process tree's peak RSS as
``os.wait4`` reports it for that child (the per-child form of ``getrusage(RUSAGE_CHILDREN)``). The
PostgreSQL server is shared and its memory is not counted; neither is its CPU ("client CPU" is the
contender's own). DAG parse time is measured in fresh interpreters (3 times, median).

Results: a Markdown table on stdout (bench_report.py), and everything in benchmarks/results/<timestamp>.json
(git-ignored, like benchmarks/.cache and the venvs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from bench_report import GX_DOCS_TIMER, GX_IMPORT_TIMER, GX_PASS1_TIMER, GX_PASS2_TIMER, markdown

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
DAG_FILE = PROJECT_DIR / "dags" / "greenery_daily.py"
DBT_PROJECT = BENCH_DIR / "dbt_greenery"
DBT_VENV = BENCH_DIR / ".venv-dbt"
DBT_REQUIREMENTS = BENCH_DIR / "requirements-dbt.txt"
COSMOS_VENV = BENCH_DIR / ".venv-cosmos"
COSMOS_REQUIREMENTS = BENCH_DIR / "requirements-cosmos.txt"
COSMOS_DAGS = BENCH_DIR / "cosmos"  # the Cosmos Airflow's dags folder: only its DAG file
COSMOS_DAG_ID = "greenery_cosmos"
RESULTS_DIR = BENCH_DIR / "results"
CACHE_DIR = BENCH_DIR / ".cache"
PG_URL_ENV = "GREENERY_BENCH_POSTGRES_URL"
# The real Greenery data (data set "real"): as tests/conftest.py finds it.
REAL_DATA = Path(os.environ.get("GREENERY_REAL_DATA") or PROJECT_DIR.parent / "shared" / "greenery")
CONTENDERS = ("floor", "dbt", "pipeline", "cosmos", "pipeline_scheduled", "cosmos_scheduled")
# Cosmos takes minutes even on the real data (a dbt invocation per task): opt in (--contenders all).
DEFAULT_CONTENDERS = ("floor", "dbt", "pipeline", "pipeline_scheduled")
SCHEDULED_CONTENDERS = ("pipeline_scheduled", "cosmos_scheduled")
AIRFLOW_METADATA_TEMPLATE = "greenery_bench_airflow_template"
SEED = 42
PARSE_RUNS = 3

# The part of the DAG file's import that is Airflow's own SDK, then the rest: run in a fresh interpreter.
PARSE_PROBE = """
import importlib.util, json, sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
spec = importlib.util.spec_from_file_location("greenery_daily", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t2 = time.perf_counter()
heavy = ("great_expectations", "pandas", "numpy", "sqlalchemy", "psycopg", "yaml", "jinja2", "pendulum")
print(json.dumps({"sdk_s": t1 - t0, "dag_s": t2 - t1, "total_s": t2 - t0, "tasks": len(module.dag.tasks),
                  "modules": len(sys.modules), "heavy": [m for m in heavy if m in sys.modules]}))
"""

log = logging.getLogger("bench")
_T0 = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --- measuring a subprocess -----------------------------------------------------------------------


def run_measured(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float) -> dict:
    """Run ``cmd``; return its wall time, its process tree's peak RSS and CPU (os.wait4 of that child)."""
    started = time.perf_counter()
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_DIR)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    return {
        "process_s": round(wall, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "returncode": proc.returncode,
        "timed_out": wall >= timeout,
        "log": str(log_path),
    }


def tail(path: str | Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- workers (run as subprocesses of this script: ``bench.py _worker KIND ARGS_JSON``) --------------


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def worker_floor(args: dict) -> dict:
    """The models' SQL straight into PostgreSQL: create table as select, one transaction per model."""
    import psycopg

    from greenery.materialize.quarantine import RULE_COLUMN
    from greenery.materialize.snapshot import VALID_FROM, VALID_TO
    from greenery.project.models import discover
    from greenery.project.render import Interval, render

    found = discover()
    interval = Interval.for_day(dt.date.fromisoformat(args["day"]))
    run_time = dt.datetime.fromisoformat(args["run_time"])
    per_model = {}
    started = time.perf_counter()
    with psycopg.connect(args["url"], autocommit=True) as conn:
        for name, model in found.items():
            body = render(model, interval, lambda ref: found[ref].relation, run_time=run_time).strip().rstrip(";")
            t = time.perf_counter()
            with conn.transaction():
                conn.execute("set local timezone = 'UTC'")
                for setting, value in model.full_build_settings.items():
                    conn.execute("select set_config(%s, %s, true)", (setting, value))
                conn.execute(f"create schema if not exists {model.layer}")
                if model.config.get("quarantine"):
                    # The columns, from a plan without rows (limit 0 executes nothing); the kept rows get
                    # the model's column_types, as greenery.materialize.quarantine casts them.
                    cur = conn.execute(f"select * from (\n{body}\n) as probe limit 0")
                    kept = ", ".join(
                        f'"{c.name}"::{model.column_types[c.name]} as "{c.name}"'
                        if c.name in model.column_types
                        else f'"{c.name}"'
                        for c in cur.description
                        if c.name != RULE_COLUMN
                    )
                    # "offset 0" keeps PostgreSQL from flattening the subquery, which would evaluate the
                    # rules (a CASE over every id and value) twice per row: once to filter, once for the column.
                    cur = conn.execute(
                        f"create table {model.relation} as select {kept} from (\n{body}\noffset 0) as checked"
                        f" where {RULE_COLUMN} is null"
                    )
                    rows = cur.rowcount
                elif model.materialized == "snapshot":
                    # A first step of the snapshot (greenery.materialize.snapshot): every row's first version,
                    # valid from the end of the run's day. The floor runs once (no incremental day), so the
                    # check strategy never has a current version to compare with.
                    cur = conn.execute(
                        f"create table {model.relation} as select observed.*, %s::timestamptz as {VALID_FROM},"
                        f" null::timestamptz as {VALID_TO} from (\n{body}\n) as observed",
                        (interval.end,),
                    )
                    rows = cur.rowcount
                else:
                    rows = conn.execute(f"create table {model.relation} as\n{body}").rowcount
            per_model[name] = {"seconds": round(time.perf_counter() - t, 4), "rows": rows}
    return {"wall_s": round(time.perf_counter() - started, 3), "models": per_model}


# Where the pipeline's time goes inside its tasks: these functions are wrapped with timers in the worker
# (the product's code is unchanged; a wrapper costs microseconds).
# Each is patched where its caller looks it up (a module attribute read at call time).
PROFILED = (
    ("greenery.warehouse", "connect"),
    ("greenery.sources.freshness", "check"),
    ("greenery.wap", "prepare"),
    ("greenery.tasks.build", "build_model"),  # imported by name there
    ("greenery.tasks.validate", "quarantined_counts"),
    ("greenery.checks.suites", "load_suites"),
    ("greenery.wap", "publish"),
    ("greenery.audit", "record_validation"),
    ("greenery.build_schemas", "drop_finished"),
)
# greenery.checks.gx (its two-pass run: _run sets up and runs the streams, each of which keeps a suite's query rows,
# runs its validation definition (pass 1) and asks _details for what failed (pass 2); then the Data Docs). The
# validate task imports it (and GX) itself: these are wrapped once it is imported, inside the task, so the task's
# time keeps the import.
GX_PROFILED = ("validate", "_run", "_context", "_planned", "_add_suite", "_details", "summarize")


def _timer(profile: dict):
    import functools
    import threading

    lock = threading.Lock()  # the validation's streams call timed functions side by side

    def timed(name: str, fn, key=None):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                took = time.perf_counter() - t
                with lock:
                    entry = profile.setdefault(name, {"seconds": 0.0, "calls": 0})
                    entry["seconds"] += took
                    entry["calls"] += 1
                    if key is not None:
                        per = profile.setdefault(name + " by suite", {})
                        per[key(*a)] = round(per.get(key(*a), 0) + took, 4)

        return wrapper

    return timed


def _install_gx_timers(profile: dict, module) -> None:
    timed = _timer(profile)
    for attr in GX_PROFILED:
        name = f"checks.gx.{attr}"
        if attr == "_context":
            original = module._context

            def context_then_patch(gx_dir, _original=original):
                context = _original(gx_dir)
                context.build_data_docs = timed(GX_DOCS_TIMER, context.build_data_docs)
                return context

            module._context = timed(name + " (GX file context)", context_then_patch)
        elif attr == "_details":
            module._details = timed(GX_PASS2_TIMER, module._details, key=lambda batch, suite, *_: suite.name)
        else:
            setattr(module, attr, timed(name, getattr(module, attr)))
    # The suites run in the streams that streams.run runs at once: its wall time (the definitions' own times would
    # add up the streams' overlapping seconds).
    module.streams.run = timed(GX_PASS1_TIMER, module.streams.run)


def _install_timers(profile: dict) -> None:
    import importlib

    timed = _timer(profile)
    for module_name, attr in PROFILED:
        module = importlib.import_module(module_name)
        setattr(module, attr, timed(f"{module_name.removeprefix('greenery.')}.{attr}", getattr(module, attr)))

    gx_module = "greenery.checks.gx"
    if gx_module in sys.modules:  # imported before the run (not by the validate task): time what is left
        _install_gx_timers(profile, sys.modules[gx_module])
        profile[GX_IMPORT_TIMER] = {"seconds": 0.0, "calls": 0, "note": "imported before the run"}
        return
    validate_task = importlib.import_module("greenery.tasks.validate")
    original_run = validate_task.run

    def run_importing_gx_first(*a, **kw):
        # The task's first line imports greenery.checks.gx (and so great_expectations): time that import on
        # its own, in the task, then wrap its functions.
        if gx_module not in sys.modules:
            t = time.perf_counter()
            module = importlib.import_module(gx_module)
            profile[GX_IMPORT_TIMER] = {"seconds": time.perf_counter() - t, "calls": 1}
            _install_gx_timers(profile, module)
        return original_run(*a, **kw)

    validate_task.run = run_importing_gx_first


def _task_rows(dag_run) -> dict:
    tasks = {}
    for ti in dag_run.get_task_instances():
        tasks[ti.task_id] = {
            "state": str(ti.state) if ti.state is not None else None,
            "seconds": round(ti.duration, 4) if ti.duration is not None else None,
            "start": ti.start_date.isoformat() if ti.start_date else None,
            "end": ti.end_date.isoformat() if ti.end_date else None,
        }
    return tasks


def _around_tasks(tasks: dict, started_at: dt.datetime, ended_at: dt.datetime) -> dict:
    ran = [v for v in tasks.values() if v["seconds"] is not None]
    first = min((dt.datetime.fromisoformat(v["start"]) for v in ran), default=started_at)
    last = max((dt.datetime.fromisoformat(v["end"]) for v in ran), default=ended_at)
    return {
        "before_first_task_s": round((first - started_at).total_seconds(), 3),
        "after_last_task_s": round((ended_at - last).total_seconds(), 3),
    }


def worker_cosmos(args: dict) -> dict:
    """The Cosmos DAG through Airflow's dag.test, in this process (run by benchmarks/.venv-cosmos's python)."""
    import importlib.util

    warnings.filterwarnings("ignore")
    t = time.perf_counter()
    spec = importlib.util.spec_from_file_location(COSMOS_DAG_ID, COSMOS_DAGS / f"{COSMOS_DAG_ID}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    load_s = time.perf_counter() - t
    started_at = dt.datetime.now(dt.UTC)
    # As greenery.dev.local_airflow.run_day: the day at the time of day the run starts.
    logical_date = dt.datetime.combine(dt.date.fromisoformat(args["day"]), started_at.time(), tzinfo=dt.UTC)
    t = time.perf_counter()
    dag_run = module.dag.test(logical_date=logical_date)
    wall = time.perf_counter() - t
    tasks = _task_rows(dag_run)
    return {
        "wall_s": round(wall, 3),
        "state": str(dag_run.state),
        "run_id": dag_run.run_id,
        "import_and_load_dag_s": round(load_s, 3),
        **_around_tasks(tasks, started_at, dt.datetime.now(dt.UTC)),
        "tasks": tasks,
    }


def worker_pipeline(args: dict) -> dict:
    """The whole DAG through Airflow's dag.test, in this process, for one day."""
    from greenery import gc_tuning
    from greenery.dev import local_airflow

    gc_tuning.apply()  # this process is `greenery run`'s (local_airflow.run_day), with that command's collector

    local_airflow.configure(Path(args["airflow_home"]), quiet=True)  # migrated by the parent
    warnings.filterwarnings("ignore")
    t = time.perf_counter()
    dag = local_airflow.load_dag()
    load_s = time.perf_counter() - t
    profile: dict = {}
    _install_timers(profile)
    rss_before = _vm_kib("VmHWM")
    started_at = dt.datetime.now(dt.UTC)
    t = time.perf_counter()
    dag_run = local_airflow.run_day(dt.date.fromisoformat(args["day"]), dag=dag)
    wall = time.perf_counter() - t
    ended_at = dt.datetime.now(dt.UTC)
    tasks = _task_rows(dag_run)
    for entry in profile.values():
        if "seconds" in entry:
            entry["seconds"] = round(entry["seconds"], 4)
    return {
        "wall_s": round(wall, 3),
        "state": str(dag_run.state),
        "run_id": dag_run.run_id,
        "import_and_load_dag_s": round(load_s, 3),
        "peak_rss_before_run_mib": round(rss_before / 1024, 1),
        **_around_tasks(tasks, started_at, ended_at),
        "tasks": tasks,
        "profile": profile,
    }


def worker_main(kind: str, args_json: str) -> int:
    args = json.loads(args_json)
    result = {"pipeline": worker_pipeline, "floor": worker_floor, "cosmos": worker_cosmos}[kind](args)
    result["vm_hwm_mib"] = round(_vm_kib("VmHWM") / 1024, 1)
    Path(args["out"]).write_text(json.dumps(result, indent=1, default=str))
    return 0


# --- set-up ---------------------------------------------------------------------------------------


def requirements_digest(requirements: Path = DBT_REQUIREMENTS) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def ensure_cosmos_venv() -> float:
    """Create benchmarks/.venv-cosmos from requirements-cosmos.txt unless it is current; return seconds.

    With the project's own uv (``make install`` put it in .venv), compiling the bytecode as ``make install``
    does for the project's venv, so both Airflows start alike.
    """
    stamp = COSMOS_VENV / ".installed"
    digest = requirements_digest(COSMOS_REQUIREMENTS)
    if (COSMOS_VENV / "bin" / "airflow").exists() and stamp.is_file() and stamp.read_text() == digest:
        return 0.0
    say(f"installing Airflow + Cosmos + dbt into {COSMOS_VENV.relative_to(PROJECT_DIR)} (once)")
    started = time.perf_counter()
    python = COSMOS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([shutil.which("python3.11") or sys.executable, "-m", "venv", str(COSMOS_VENV)], check=True)
    uv = Path(sys.executable).with_name("uv")
    cmd = [str(uv), "pip", "install", "--quiet", "--compile-bytecode", "--python", str(python)]
    subprocess.run([*cmd, "-r", str(COSMOS_REQUIREMENTS)], check=True)
    stamp.write_text(digest)
    return time.perf_counter() - started


def ensure_dbt_venv() -> float:
    """Create benchmarks/.venv-dbt from requirements-dbt.txt unless it is there and current; return seconds."""
    stamp = DBT_VENV / ".installed"
    if (DBT_VENV / "bin" / "dbt").exists() and stamp.is_file() and stamp.read_text() == requirements_digest():
        return 0.0
    say(f"installing dbt into {DBT_VENV.relative_to(PROJECT_DIR)} from {DBT_REQUIREMENTS.name} (once)")
    started = time.perf_counter()
    python = shutil.which("python3.11") or sys.executable
    if not (DBT_VENV / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(DBT_VENV)], check=True)
    subprocess.run(
        [str(DBT_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(DBT_REQUIREMENTS)],
        check=True,
    )
    stamp.write_text(requirements_digest())
    return time.perf_counter() - started


def data_for(scale: float | str, days: int | None) -> tuple[Path, dict, float]:
    """Generated CSVs for (scale, days), cached; return the folder, row counts and generation seconds.

    ``scale`` "real" is the real Greenery data (its rows and days are counted once loaded).
    """
    from greenery.dev.generator import default_days, generate

    if scale == "real":
        return REAL_DATA, {"days": None, "rows": None}, 0.0
    days = days or (365 if scale >= 1000 else default_days(scale))
    folder = CACHE_DIR / "data" / f"scale-{scale:g}-days-{days}-seed-{SEED}"
    marker = folder / "counts.json"
    if marker.is_file():
        return folder, json.loads(marker.read_text()), 0.0
    started = time.perf_counter()
    counts = generate(folder, scale=scale, seed=SEED, days=days)
    marker.write_text(json.dumps({"days": days, "rows": counts}))
    return folder, {"days": days, "rows": counts}, time.perf_counter() - started


def admin_connect(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def database_url(admin_url: str, name: str) -> str:
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


def clone(admin_url: str, template: str, name: str) -> float:
    started = time.perf_counter()
    with admin_connect(admin_url) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        # file_copy: a large template is copied as files instead of through the WAL.
        conn.execute(f'create database "{name}" template "{template}" strategy file_copy')
        conn.execute("checkpoint")  # start each contender with no dirty pages of the previous one
    return time.perf_counter() - started


def settle(url: str) -> float:
    """Vacuum and analyze every table autovacuum may process (not those created with ``autovacuum_enabled =
    false``, which it never touches), then checkpoint; the seconds it took.

    A scheduled run comes a day after the one before, when autovacuum has long processed what that run wrote;
    the benchmark's incremental run came a few seconds after the full one, while autovacuum was processing its
    3.6 M events, 3.7 M product events and 1.9 M product sessions (first vacuum and analyze of a table written
    whole: at scale 1000 it overlapped the incremental run's ``int_user_behavior``, 15.4-16.7 s, where it took
    8.4-14.0 s on a settled database). Only tables autovacuum may process: the ``table`` models' tables, created
    with it off, keep no visibility map, as in production (whatever spelling of "off" the option was given). The
    tables the full run did not write (raw) are analyzed again too, which autovacuum would not do; they were
    analyzed after loading and have not changed since.
    """
    started = time.perf_counter()
    with admin_connect(url) as conn:
        tables = conn.execute(
            "select format('%I.%I', n.nspname, c.relname) from pg_class as c"
            " join pg_namespace as n on n.oid = c.relnamespace"
            " where c.relkind in ('r', 'm') and n.nspname not in ('pg_catalog', 'information_schema')"
            " and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'"
            " and not exists (select from pg_options_to_table(c.reloptions) as o"
            "  where o.option_name = 'autovacuum_enabled' and not o.option_value::boolean)"
        ).fetchall()
        for (table,) in tables:
            conn.execute(f"vacuum (analyze) {table}")
        conn.execute("checkpoint")
    return time.perf_counter() - started


def drop_database(admin_url: str, name: str) -> None:
    with admin_connect(admin_url) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


# dbt's bookkeeping columns of a snapshot, which the pipeline's snapshot has no counterpart of (its
# valid_from/valid_to are dbt's dbt_valid_from/dbt_valid_to renamed by snapshot_meta_column_names).
DBT_SNAPSHOT_COLUMNS = ("dbt_scd_id", "dbt_updated_at", "dbt_is_deleted")


def model_tables(url: str, relations: list[str]) -> dict[str, dict]:
    """Rows and an order-independent content digest of each model table (to check the contenders agree)."""
    out = {}
    with admin_connect(url) as conn:
        for rel in relations:
            found = conn.execute("select to_regclass(%s)", (rel,)).fetchone()[0]
            if found is None:
                out[rel] = {"rows": None, "digest": None}
                continue
            columns = [
                name
                for (name,) in conn.execute(
                    "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0"
                    " and not attisdropped order by attnum",
                    (rel,),
                ).fetchall()
            ]
            kept = [c for c in columns if c not in DBT_SNAPSHOT_COLUMNS]
            row = "t" if kept == columns else "row(" + ", ".join(f't."{c}"' for c in kept) + ")"
            rows, digest = conn.execute(
                f"select count(*), coalesce(sum(hashtextextended({row}::text, 0)::numeric), 0)::text from {rel} t"
            ).fetchone()
            out[rel] = {"rows": rows, "digest": digest}
    return out


def cosmos_task_seconds(results: list[dict], manifest: Path) -> dict[str, float]:
    """dbt's node times as the Cosmos tasks' ids: ``<model>.run`` and ``<model>.test`` (its tests summed)."""
    nodes = json.loads(manifest.read_text())["nodes"] if manifest.is_file() else {}
    out: dict[str, float] = {}
    for r in results:
        uid = r["unique_id"]
        if uid.startswith("model."):
            key = uid.rsplit(".", 1)[1] + ".run"
        elif uid.startswith("test.") and nodes.get(uid, {}).get("attached_node"):
            key = nodes[uid]["attached_node"].rsplit(".", 1)[1] + ".test"
        else:
            continue
        out[key] = round(out.get(key, 0.0) + r["execution_time"], 4)
    return out


def dbt_profile(url: str, profiles_dir: Path, threads: int) -> None:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.get("host") or parts.hostname or "localhost"
    profile = {
        "greenery": {
            "target": "bench",
            "outputs": {
                "bench": {
                    "type": "postgres",
                    # A socket directory works as host: psycopg2/libpq treat a path as the socket's folder.
                    "host": unquote(host),
                    "port": parts.port or 5432,
                    "user": unquote(parts.username or "postgres"),
                    "password": unquote(parts.password or ""),
                    "dbname": parts.path.lstrip("/"),
                    "schema": "public",
                    "threads": threads,
                }
            },
        }
    }
    profiles_dir.mkdir(parents=True, exist_ok=True)
    (profiles_dir / "profiles.yml").write_text(json.dumps(profile, indent=1))  # JSON is YAML


def fingerprint(*folders: str) -> str:
    """A digest of the files under ``folders``: other people edit the project while it is benchmarked."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((PROJECT_DIR / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(PROJECT_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


SQL_FOLDERS = ("include/sql",)  # what every contender runs: a change here makes them incomparable
CODE_FOLDERS = ("include/greenery", "include/expectations", "dags")  # only the pipeline runs these


def git_head() -> str | None:
    done = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or None


class InputsChangedError(RuntimeError):
    """include/sql changed during the benchmark: the contenders would not run the same SQL."""


class SlackSink:
    """A local stand-in for Slack's webhook (127.0.0.1 only), so the DAG's alert branch can complete."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        sink = self
        self.received = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.received += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def connection_json(self) -> str:
        url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXX"
        return json.dumps({"conn_type": "slackwebhook", "password": url})

    def close(self) -> None:
        self.server.shutdown()


def validation_outcome(url: str) -> dict | None:
    """The pipeline's own record of its last validation (greenery_audit.validation_runs)."""
    with admin_connect(url) as conn:
        if conn.execute("select to_regclass('greenery_audit.validation_runs')").fetchone()[0] is None:
            return None
        row = conn.execute(
            "select published, summary from greenery_audit.validation_runs order by validated_at desc limit 1"
        ).fetchone()
    if row is None:
        return None
    published, summary = row
    return {
        "published": published,
        "evaluated": summary.get("evaluated"),
        "failed_critical": summary.get("failed_critical"),
        "failed_warning": summary.get("failed_warning"),
        "quarantined": summary.get("quarantined"),
        "failures": [
            {k: f.get(k) for k in ("table", "expectation", "column", "severity", "observed_value", "unexpected_count")}
            for f in (summary.get("failures") or [])[:10]
        ],
    }


# --- contenders -----------------------------------------------------------------------------------


class Bench:
    def __init__(
        self, args, report: dict, work: Path, admin_url: str, airflow_env: dict[str, str], postmaster: int | None
    ):
        self.args = args
        self.report = report
        self.work = work
        self.admin_url = admin_url
        self.airflow_env = airflow_env
        self.postmaster = postmaster  # the embedded PostgreSQL's, for the scheduled runs' CPU
        # From the dbt contender, for the Cosmos ones: its test count, and its node times per (repeat, mode)
        # as the Cosmos tasks' work.
        self.dbt_tests: int | None = None
        self.dbt_nodes: dict[tuple[int, str], dict[str, float]] = {}
        from greenery import config
        from greenery.project.models import discover

        self.sql_version = fingerprint(*SQL_FOLDERS)
        self.code_version = fingerprint(*CODE_FOLDERS)
        self.models = discover()
        self.relations = [m.relation for m in self.models.values()]
        self.expectations = sum(
            len(json.loads(f.read_text()).get("expectations", [])) for f in config.get().expectations_dir.glob("*.json")
        )

    def _worker(
        self, kind: str, url: str, day: dt.date, tag: str, env: dict[str, str], python: str = sys.executable
    ) -> dict:
        out = self.work / f"{tag}.json"
        payload = {
            "url": url,
            "day": day.isoformat(),
            "run_time": dt.datetime.now(dt.UTC).isoformat(),
            "out": str(out),
            "airflow_home": env.get("AIRFLOW_HOME"),
        }
        cmd = [python, str(Path(__file__).resolve()), "_worker", kind, json.dumps(payload)]
        measured = run_measured(cmd, env, self.work / f"{tag}.log", self.args.timeout)
        if measured["returncode"] != 0 or not out.is_file():
            raise RuntimeError(
                f"{tag} failed (exit {measured['returncode']}); log {measured['log']}:\n{tail(measured['log'])}"
            )
        return {**measured, **json.loads(out.read_text())}

    def floor(self, url: str, day: dt.date, tag: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env["PYTHONWARNINGS"] = "ignore"
        if not self.args.as_installed:
            env = bytecode_env(env)
        return {"contender": "floor", **self._worker("floor", url, day, tag, env)}

    def pipeline(self, url: str, day: dt.date, tag: str) -> dict:
        result = self._worker("pipeline", url, day, tag, self.pipeline_env(url, tag))
        result["validation"] = validation_outcome(url)
        if result["state"] != "success":
            failed = [t for t, v in result["tasks"].items() if v["state"] == "failed"]
            raise RuntimeError(
                f"{tag}: DAG run {result['state']}, failed tasks {failed}; validation {result['validation']}"
            )
        tasks = result["tasks"]
        ran = [v for v in tasks.values() if v["seconds"] is not None]
        model_s = sum(tasks[n]["seconds"] or 0 for n in self.models if n in tasks)
        result.update(
            contender="pipeline",
            validate_s=tasks.get("validate", {}).get("seconds"),
            model_tasks_s=round(model_s, 3),
            tasks_run=len(ran),
            in_tasks_s=round(sum(v["seconds"] for v in ran), 3),
        )
        # dag.test's own loop: the wall time not spent inside a task, before the first or after the last.
        result["between_tasks_s"] = round(
            result["wall_s"] - result["in_tasks_s"] - result["before_first_task_s"] - result["after_last_task_s"], 3
        )
        return result

    def dbt(self, url: str, day: dt.date, tag: str, target_dir: Path) -> dict:
        profiles = self.work / f"profiles-{tag}"
        dbt_profile(url, profiles, self.args.dbt_threads)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DBT_"))}
        env.update(DBT_SEND_ANONYMOUS_USAGE_STATS="false", DBT_USE_COLORS="false", DBT_PROFILES_DIR=str(profiles))
        cmd = [
            str(DBT_VENV / "bin" / "dbt"),
            "build",
            "--project-dir", str(DBT_PROJECT),
            "--target-path", str(target_dir),
            "--log-path", str(self.work / f"dbt-logs-{tag}"),
            "--vars", json.dumps({"run_date": day.isoformat()}),
        ]  # fmt: skip
        measured = run_measured(cmd, env, self.work / f"{tag}.log", self.args.timeout)
        results_file = target_dir / "run_results.json"
        if measured["returncode"] != 0 or not results_file.is_file():
            raise RuntimeError(f"{tag}: dbt build failed (exit {measured['returncode']}):\n{tail(measured['log'], 40)}")
        run = json.loads(results_file.read_text())
        nodes = run["results"]
        model_s = sum(r["execution_time"] for r in nodes if r["unique_id"].startswith("model."))
        test_s = sum(r["execution_time"] for r in nodes if r["unique_id"].startswith("test."))
        return {
            "contender": "dbt",
            "node_seconds": cosmos_task_seconds(nodes, target_dir / "manifest.json"),
            **measured,
            "wall_s": measured["process_s"],
            "dbt_elapsed_s": round(run.get("elapsed_time", 0), 3),
            "models_s": round(model_s, 3),
            "tests_s": round(test_s, 3),
            "tests": sum(1 for r in nodes if r["unique_id"].startswith("test.")),
            "statuses": sorted({r["status"] for r in nodes}),
        }

    def pipeline_env(self, url: str, tag: str) -> dict[str, str]:
        from greenery import warehouse

        env = dict(self.airflow_env)
        env[warehouse.conn_env_var()] = warehouse.connection_json(url)
        return env

    def cosmos_env(self, url: str, cache: str) -> dict[str, str]:
        """The Cosmos Airflow's environment: its venv first on PATH (dbt there, as in an activated venv)."""
        from greenery import warehouse

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GREENERY_", "DBT_", "PYTHON"))}
        conn = json.loads(warehouse.connection_json(url))
        # Cosmos' profile mapping requires a password (the embedded server trusts its socket and ignores it)
        # and hands dbt the connection's port, which dbt requires (a socket's name carries it: 5432).
        conn["password"] = conn["password"] or "unused"
        conn.setdefault("port", 5432)
        env.update(
            PATH=f"{COSMOS_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            AIRFLOW_HOME=str(self.work / "airflow-cosmos"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_FOLDER=str(COSMOS_DAGS),
            AIRFLOW__CORE__PLUGINS_FOLDER=str(self.work / "no-plugins"),
            # Cosmos caches dbt ls and dbt's partial parse; one cache per contender database, as a deployment
            # keeps it between runs.
            AIRFLOW__COSMOS__CACHE_DIR=str(self.work / f"cosmos-cache-{cache}"),
            AIRFLOW__COSMOS__ENABLE_TELEMETRY="False",  # no network here
            AIRFLOW_CONN_GREENERY_WAREHOUSE=json.dumps(conn),
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            PYTHONWARNINGS="ignore",
        )
        return env

    def cosmos(self, url: str, day: dt.date, tag: str, cache: str) -> dict:
        env = self.cosmos_env(url, cache)
        result = self._worker("cosmos", url, day, tag, env, python=str(COSMOS_VENV / "bin" / "python"))
        if result["state"] != "success":
            failed = [t for t, v in result["tasks"].items() if v["state"] == "failed"]
            raise RuntimeError(f"{tag}: Cosmos DAG run {result['state']}, failed tasks {failed}; log {result['log']}")
        return {"contender": "cosmos", **result, **self.cosmos_tests(result["tasks"])}

    def cosmos_tests(self, tasks: dict) -> dict:
        tests = [v for t, v in tasks.items() if t.endswith(".test")]
        return {
            "tests": self.dbt_tests,
            "test_tasks": len(tests),
            "tests_s": round(sum(v.get("seconds") or 0 for v in tests), 3),
        }

    def scheduled(self, kind: str, url: str, day: dt.date, tag: str, modes: Iterable[str], rep: int):
        """Start the contender's Airflow, trigger a run per mode as ``modes`` yields it (the caller settles the
        database before an incremental one), yield each; stop Airflow at the end."""
        import scheduled

        if kind == "pipeline_scheduled":
            env = {k: v for k, v in self.pipeline_env(url, tag).items() if k != "AIRFLOW__LOGGING__LOGGING_LEVEL"}
            airflow_bin, dags, dag_id = Path(sys.executable).with_name("airflow"), DAG_FILE.parent, DAG_FILE.stem
        else:
            env = self.cosmos_env(url, tag)
            airflow_bin, dags, dag_id = COSMOS_VENV / "bin" / "airflow", COSMOS_DAGS, COSMOS_DAG_ID
            # Cosmos' parallel first tasks each run dbt's "create schema if not exists" and race on a fresh
            # database (PostgreSQL: duplicate key in pg_namespace, the run fails); a deployed project has its
            # schemas, so they are made here, as after a first run.
            from greenery import config

            with admin_connect(url) as conn:
                for layer in config.LAYERS:
                    conn.execute(f"create schema if not exists {layer}")
        metadata_db = f"{tag}_airflow"
        clone(self.admin_url, AIRFLOW_METADATA_TEMPLATE, metadata_db)
        home = self.work / f"airflow-{tag}"
        started = time.perf_counter()
        ui = scheduled.start(
            airflow_bin, home, env, scheduled.metadata_sqlalchemy_url(self.admin_url, metadata_db), dags
        )
        try:
            upstream = scheduled.ready(ui, dag_id, timeout=300)
            say(f"{tag}: Airflow up and {dag_id} parsed in {time.perf_counter() - started:.1f}s ({home})")
            roots = {name: proc.pid for name, proc in ui.processes.items()}
            if self.postmaster:
                roots["postgres"] = self.postmaster
            for second, mode in enumerate(modes):
                # One run per logical date: the second run of the same day is a second later.
                logical_date = dt.datetime.combine(day, dt.time(0, 0, second), tzinfo=dt.UTC)
                run = scheduled.trigger_and_wait(
                    ui, database_url(self.admin_url, metadata_db), dag_id, logical_date, self.args.timeout, roots
                )
                work = self.dbt_nodes.get((rep, mode)) if kind == "cosmos_scheduled" else None
                if run["state"] != "success":
                    failed = {t: v["state"] for t, v in run["tasks"].items() if v["state"] != "success"}
                    raise RuntimeError(
                        f"{tag}: scheduled run {run['run_id']} {run['state']}; tasks not successful {failed}; "
                        f"task logs under {home / 'logs'}"
                    )
                analysis = scheduled.analyse(run, upstream, work)
                cpu = run["cpu_s"]
                result = {
                    "contender": kind,
                    **run,
                    "analysis": analysis,
                    "wall_s": analysis["wall_s"],
                    "process_s": run["observed_s"],
                    "client_cpu_s": round(sum(v for k, v in cpu.items() if k != "postgres"), 2),
                    "peak_rss_mib": None,
                    "airflow_home": str(home),
                }
                if kind == "pipeline_scheduled":
                    result["validation"] = validation_outcome(url)
                    result["validate_s"] = run["tasks"].get("validate", {}).get("seconds")
                else:
                    result.update(self.cosmos_tests(run["tasks"]))
                yield result
        finally:
            ui.stop()
            if not self.args.keep:
                drop_database(self.admin_url, metadata_db)

    # One data set: template, then every contender on its own clone, one after the other.
    def scale(self, scale: float | str) -> dict:
        from greenery import warehouse
        from greenery.sources import load as raw

        label = "real Greenery data" if scale == "real" else f"scale {scale:g}"
        rec: dict = {
            "scale": scale,
            "label": label,
            "steps": {},
            "runs": [],
            "models": list(self.models),
            "gx_expectations": self.expectations,
            "errors": [],
            "notes": [],
        }
        self.report["scales"].append(rec)  # partial results survive an abort
        started = time.perf_counter()
        folder, meta, gen_s = data_for(scale, self.args.days)
        rec["steps"]["generate_s"] = round(gen_s, 1)
        say(f"{label}: data {folder}" + (f" (generated in {gen_s:.1f}s)" if gen_s else ""))

        tag = "real" if scale == "real" else f"s{scale:g}".replace(".", "_")
        template = f"greenery_bench_{tag}_template"
        t = time.perf_counter()
        with admin_connect(self.admin_url) as conn:
            conn.execute(f'drop database if exists "{template}" with (force)')
            conn.execute(f'create database "{template}" {warehouse.NEW_DATABASE}')  # as the product creates one
        with admin_connect(database_url(self.admin_url, template)) as conn:
            loaded = raw.load_dir(conn, folder)
            conn.execute("vacuum analyze")
            # The last day orders were placed: shipping events and deliveries run on past it, and the day after
            # holds a few of them only, which the pipeline's volume checks rightly call a broken extract.
            day, days = conn.execute(
                "select (select max(created_at)::date from raw.orders), count(distinct created_at::date)"
                " from raw.events"
            ).fetchone()
        meta = {"days": meta["days"] or days, "rows": meta["rows"] or loaded}
        rec.update(days=meta["days"], raw_rows=sum(meta["rows"].values()), raw_rows_by_table=meta["rows"])
        rec["steps"]["load_raw_s"] = round(time.perf_counter() - t, 1)
        rec["day"] = day.isoformat()
        say(f"{label}: {rec['raw_rows']:,} raw rows loaded into {template} in {rec['steps']['load_raw_s']}s; day {day}")
        incremental = meta["days"] >= 2 and not self.args.no_incremental
        modes = ["full", "one_day_incremental"] if incremental else ["full"]
        contenders = self.args.contenders

        clone_s, settle_s = [], []
        for rep in range(self.args.repeat):
            for kind in contenders:
                db = f"greenery_bench_{tag}_{kind}_{rep}"
                url = database_url(self.admin_url, db)
                clone_s.append(clone(self.admin_url, template, db))
                runs: list[dict] = []

                def checked(run: dict, url: str = url, runs: list[dict] = runs, rep: int = rep) -> dict:
                    run["mode"] = "full" if not runs else "one_day_incremental"
                    run["repeat"] = rep
                    run["git_head"] = git_head()
                    run["code_version"] = fingerprint(*CODE_FOLDERS)
                    run["tables"] = model_tables(url, self.relations)  # outside the timing
                    run["model_rows"] = sum(v["rows"] or 0 for v in run["tables"].values())
                    run["rows_per_s"] = round(run["model_rows"] / run["wall_s"]) if run["wall_s"] else None
                    say(
                        f"{label}: {run['contender']:<8} {run['mode']:<13} wall {run['wall_s']:8.2f}s  "
                        f"process {run['process_s']:8.2f}s"
                        + (f"  peak {run['peak_rss_mib']:7.1f} MiB" if run.get("peak_rss_mib") is not None else "")
                        + (f"  validate {run['validate_s']:.2f}s" if run.get("validate_s") is not None else "")
                        + (f"  tests {run['tests_s']:.2f}s" if run.get("tests_s") is not None else "")
                    )
                    runs.append(run)
                    return run

                def settled(mode: str, url: str = url, kind: str = kind, rep: int = rep) -> str:
                    """``mode``, its database settled first unless it is the full run (see settle)."""
                    if mode != "full" and not self.args.back_to_back:
                        settle_s.append({"contender": kind, "repeat": rep, "seconds": round(settle(url), 1)})
                        say(f"{label}: {kind}: database settled before the {mode} run in {settle_s[-1]['seconds']}s")
                    return mode

                if fingerprint(*SQL_FOLDERS) != self.sql_version:
                    raise InputsChangedError(
                        "include/sql changed during the benchmark (someone committed or edited meanwhile): "
                        "the contenders would not run the same SQL; run it again"
                    )
                code_version = fingerprint(*CODE_FOLDERS)
                if kind.startswith("pipeline") and code_version != self.code_version:
                    note = f"pipeline code (include/greenery, expectations, dags) changed since the start: {git_head()}"
                    say(f"{label}: note: {note}")
                    rec["notes"].append(note)
                try:
                    if kind == "floor":
                        checked(self.floor(url, day, f"{db}-full"))
                    elif kind == "dbt":
                        target = self.work / f"dbt-target-{db}"
                        for mode in map(settled, modes):
                            run = checked(self.dbt(url, day, f"{db}-{mode}", target))
                            self.dbt_tests = run["tests"]
                            self.dbt_nodes[(rep, mode)] = run["node_seconds"]
                    elif kind == "pipeline":
                        for mode in map(settled, modes):
                            checked(self.pipeline(url, day, f"{db}-{mode}"))
                    elif kind == "cosmos":
                        for mode in map(settled, modes):
                            checked(self.cosmos(url, day, f"{db}-{mode}", cache=db))
                    elif kind in SCHEDULED_CONTENDERS:
                        for run in self.scheduled(kind, url, day, db, map(settled, modes), rep):
                            checked(run)
                except Exception as exc:  # one broken contender must not lose the others' numbers
                    say(f"{label}: {kind} FAILED: {exc}")
                    rec["errors"].append({"contender": kind, "repeat": rep, "error": str(exc)})
                rec["runs"] += runs
                if not self.args.keep:
                    drop_database(self.admin_url, db)
        if not self.args.keep:
            drop_database(self.admin_url, template)
        rec["steps"]["clone_s_median"] = round(statistics.median(clone_s), 2) if clone_s else None
        # Before each incremental run, outside its timing (see settle); none without incremental runs.
        rec["steps"]["settle_s"] = settle_s if incremental else None
        rec["agreement"] = agreement(rec["runs"])
        rec["steps"]["total_s"] = round(time.perf_counter() - started, 1)
        say(f"{label}: done in {rec['steps']['total_s']}s; tables agree: {rec['agreement']['all_equal']}")
        return rec


def agreement(runs: list[dict]) -> dict:
    """Do all contenders' model tables hold the same rows (count and content digest)?"""
    reference = next((r for r in runs if r["contender"] == "floor"), runs[0] if runs else None)
    if reference is None:
        return {"all_equal": None, "differences": []}
    differences = []
    for run in runs:
        for rel, ref in reference["tables"].items():
            got = run["tables"].get(rel)
            if got != ref:
                differences.append(
                    {"contender": run["contender"], "mode": run["mode"], "table": rel, "got": got, "floor": ref}
                )
    return {"all_equal": not differences, "reference": reference["contender"], "differences": differences[:20]}


def failures(report: dict, contenders: list[str]) -> list[str]:
    """Why this benchmark must not count as a success: an abort, a contender that failed or produced no run,
    tables that disagree, no data set at all. Empty when every contender ran and the tables agree."""
    reasons = []
    if report.get("aborted"):
        reasons.append(f"aborted: {report['aborted']}")
    if not report.get("scales"):
        reasons.append("no data set was benchmarked")
    # Review: both said "benchmark OK" and exited 0 having run fewer data sets than asked.
    if report.get("skipped_real"):
        reasons.append(f"real: {report['skipped_real']}, or leave real out of --scales")
    if report.get("stopped"):
        reasons.append(f"stopped early: {report['stopped']} (raise --stop-after-minutes to run them)")
    for rec in report.get("scales", []):
        label = rec.get("label", "?")
        for err in rec.get("errors", []):
            # The first line says what failed (and its log), the last one usually why (a traceback's end).
            lines = [line.strip() for line in (err.get("error") or "?").strip().splitlines() if line.strip()]
            why = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
            reasons.append(f"{label}: {err['contender']} (repeat {err.get('repeat')}) failed: {why}")
        ran = {r["contender"] for r in rec.get("runs", [])}
        failed = {e["contender"] for e in rec.get("errors", [])}
        for kind in contenders:
            if kind not in ran and kind not in failed:
                reasons.append(f"{label}: {kind} produced no run")
        agreement = rec.get("agreement") or {}
        reference = next((r for r in rec.get("runs", []) if r["contender"] == agreement.get("reference")), None)
        if empty := sorted(t for t, got in (reference or {}).get("tables", {}).items() if not (got or {}).get("rows")):
            # Review: a table empty or missing in every contender, the floor included, "agreed": nothing was compared.
            reasons.append(f"{label}: empty or missing in every contender, so not compared: {', '.join(empty[:5])}")
        if agreement.get("all_equal") is False:
            diffs = agreement.get("differences") or []
            named = ", ".join(sorted({f"{d['contender']} {d['mode']} {d['table']}" for d in diffs})[:5])
            reasons.append(f"{label}: tables disagree with {agreement.get('reference')}: {named}")
    return reasons


def verdict(reasons: list[str]) -> str:
    """The last line of the output: what failed, or that nothing did."""
    if reasons:
        return f"BENCHMARK FAILED ({len(reasons)}): " + "; ".join(reasons)
    return "benchmark OK: every contender succeeded and the tables agree"


PYCACHE = CACHE_DIR / "pycache"


def bytecode_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` reading compiled bytecode from benchmarks/.cache/pycache.

    The project's .venv holds no .pyc files (uv installs without --compile-bytecode) and this environment
    sets PYTHONDONTWRITEBYTECODE=1, so as installed every import compiles its module from source, in
    every process. dbt's venv (pip) is compiled. So that both start alike, the Python contenders read a
    bytecode cache compiled once by :func:`compile_bytecode` (PYTHONPYCACHEPREFIX), .venv left untouched.
    """
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def compile_bytecode() -> subprocess.Popen:
    """Start compiling the stdlib, the venv's packages and the project into the bytecode cache."""
    import sysconfig

    paths = sysconfig.get_paths()
    folders = dict.fromkeys([paths["stdlib"], paths["purelib"], paths["platlib"]])
    folders.update(dict.fromkeys(str(PROJECT_DIR / f) for f in ("include", "dags", "plugins")))
    cmd = [sys.executable, "-m", "compileall", "-q", "-j", "0", *[f for f in folders if Path(f).is_dir()]]
    env = bytecode_env(dict(os.environ))
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure_parse(env: dict[str, str]) -> dict:
    samples = []
    for _ in range(PARSE_RUNS):
        t = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", PARSE_PROBE, str(DAG_FILE)], env=env, capture_output=True, text=True, cwd=PROJECT_DIR
        )
        wall = time.perf_counter() - t
        if done.returncode != 0:
            raise RuntimeError(f"DAG import failed:\n{done.stderr[-3000:]}")
        sample = json.loads(done.stdout.strip().splitlines()[-1])
        sample["process_s"] = wall
        samples.append(sample)

    def med(key: str) -> float:
        return round(statistics.median(s[key] for s in samples), 3)

    return {
        "runs": PARSE_RUNS,
        "total_s": med("total_s"),
        "sdk_s": med("sdk_s"),
        "dag_s": med("dag_s"),
        "process_s": med("process_s"),
        "tasks": samples[0]["tasks"],
        "modules": samples[0]["modules"],
        "heavy_modules": samples[0]["heavy"],
        "samples": samples,
    }


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--scales",
        default="1",
        help="comma-separated scale factors (1 = the real shop's size), or 'real' for the real Greenery data"
        " (../shared/greenery or GREENERY_REAL_DATA; when absent, the others run and the benchmark fails)",
    )
    p.add_argument("--days", type=int, default=None, help="days of data (default: the generator's; 365 at scale 1000)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each contender per scale (medians reported)")
    p.add_argument(
        "--contenders",
        default=",".join(DEFAULT_CONTENDERS),
        help=f"subset of {','.join(CONTENDERS)}, or all (default: %(default)s)",
    )
    p.add_argument("--dbt-threads", type=int, default=1, help="dbt threads (dag.test runs one task at a time)")
    p.add_argument("--no-incremental", action="store_true", help="skip the 'one day incremental' runs")
    p.add_argument(
        "--back-to-back",
        action="store_true",
        help="start each incremental run right after the full one, without settling its database first",
    )
    p.add_argument("--no-parse", action="store_true", help="skip the DAG parse-time measurement")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a contender is killed")
    p.add_argument(
        "--stop-after-minutes",
        type=float,
        default=10,
        help="skip the remaining (larger) scales once one scale took longer than this (the benchmark then fails)",
    )
    p.add_argument(
        "--as-installed",
        action="store_true",
        help="run the Python contenders without the compiled-bytecode cache (as a venv without .pyc files)",
    )
    p.add_argument("--keep", action="store_true", help="keep the databases and the work folder")
    args = p.parse_args(argv)
    try:
        args.scales_list = [s.strip() if s.strip() == "real" else float(s) for s in args.scales.split(",") if s.strip()]
    except ValueError:
        p.error(f"--scales {args.scales!r}: numbers or 'real'")
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if args.contenders == ["all"]:
        args.contenders = list(CONTENDERS)
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        p.error(f"unknown contenders {sorted(unknown)}; choose from {','.join(CONTENDERS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_worker":
        return worker_main(argv[1], argv[2])
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pgserver").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    sys.path.insert(0, str(BENCH_DIR))
    import greenery_to_dbt

    started_at = dt.datetime.now(dt.UTC)
    report: dict = {
        "started_at": started_at.isoformat(),
        "args": {k: v for k, v in vars(args).items() if k != "scales_list"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_start": os.getloadavg()},
        "setup": {},
        "scales": [],
    }
    from greenery.dev.embedded_pg import traversable_tempdir

    work = traversable_tempdir("greenery-bench-")  # short: the PostgreSQL socket lives here
    say(f"work folder {work}")
    server = None
    migrate = None
    slack = SlackSink()
    failed = False
    try:
        compiling = None if args.as_installed and args.no_parse else compile_bytecode()
        compile_started = time.perf_counter()
        cosmos_wanted = any(c.startswith("cosmos") for c in args.contenders)
        if "dbt" in args.contenders or cosmos_wanted:
            changed = greenery_to_dbt.sync()
            if changed:
                say(f"dbt project refreshed from include/sql: {len(changed)} file(s)")
        if "dbt" in args.contenders:
            report["setup"]["dbt_venv"] = round(ensure_dbt_venv(), 1)
        if cosmos_wanted:
            report["setup"]["cosmos_venv"] = round(ensure_cosmos_venv(), 1)
        if "real" in args.scales_list and not (REAL_DATA / "orders.csv").is_file():
            args.scales_list.remove("real")
            report["skipped_real"] = f"no real Greenery data at {REAL_DATA} (set GREENERY_REAL_DATA)"
            say(report["skipped_real"])

        # A private Airflow home with its SQLite metadata DB, migrated while the data is prepared
        # (the variables are those of greenery.dev.local_airflow.configure, set before airflow is imported).
        airflow_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GREENERY_"))}
        airflow_env.update(
            AIRFLOW_HOME=str(work / "airflow"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_FOLDER=str(DAG_FILE.parent),
            AIRFLOW__CORE__PLUGINS_FOLDER=str(PROJECT_DIR / "plugins"),
            AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
            GX_ANALYTICS_ENABLED="false",
            PYTHONWARNINGS="ignore",
            # Fail fast instead of waiting out retries if something breaks.
            GREENERY_RETRY_DELAY_SECONDS="1",
            GREENERY_ALERT_RETRIES="0",
            # The alert branch posts to a local sink instead of Slack (no network here).
            AIRFLOW_CONN_SLACK_ALERTS=slack.connection_json,
        )
        if "pipeline" in args.contenders or not args.no_parse:
            (work / "airflow").mkdir()
            airflow_bin = Path(sys.executable).with_name("airflow")
            migrate_started = time.perf_counter()
            migrate = subprocess.Popen(
                [str(airflow_bin), "db", "migrate"], env=airflow_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        cosmos_migrate = None
        if "cosmos" in args.contenders:  # its dag.test runs: SQLite in their own home, from the Cosmos venv
            (work / "airflow-cosmos").mkdir()
            cosmos_migrate = subprocess.Popen(
                [str(COSMOS_VENV / "bin" / "airflow"), "db", "migrate"],
                env={**airflow_env, "AIRFLOW_HOME": str(work / "airflow-cosmos")},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

        admin_url = os.environ.get(PG_URL_ENV)
        if admin_url:
            say(f"PostgreSQL: {PG_URL_ENV}")
            report["postgres"] = "external"
        else:
            from greenery.dev.embedded_pg import EmbeddedPostgres

            t = time.perf_counter()
            server = EmbeddedPostgres(work / "pg")
            admin_url = server.url()
            report["setup"]["embedded_postgres_start"] = round(time.perf_counter() - t, 1)
            report["postgres"] = "embedded (pgserver)"
        with admin_connect(admin_url) as conn:
            report["postgres_version"] = conn.execute("show server_version").fetchone()[0]
        if any(c in SCHEDULED_CONTENDERS for c in args.contenders):
            # The scheduled runs' metadata: a database of this server, migrated once, cloned for every start.
            import scheduled

            with admin_connect(admin_url) as conn:
                conn.execute(f'drop database if exists "{AIRFLOW_METADATA_TEMPLATE}" with (force)')
                conn.execute(f'create database "{AIRFLOW_METADATA_TEMPLATE}"')
            seconds = scheduled.migrate(
                Path(sys.executable).with_name("airflow"),
                work / "airflow-metadata-template",
                airflow_env,
                scheduled.metadata_sqlalchemy_url(admin_url, AIRFLOW_METADATA_TEMPLATE),
            )
            report["setup"]["airflow_db_migrate_postgres"] = round(seconds, 1)
            say(f"Airflow metadata template database migrated in {seconds:.1f}s")
        if cosmos_migrate is not None:
            _, err = cosmos_migrate.communicate()
            if cosmos_migrate.returncode != 0:
                raise RuntimeError(f"airflow db migrate (Cosmos venv) failed:\n{err.decode()[-3000:]}")

        if migrate is not None:
            _, err = migrate.communicate()
            if migrate.returncode != 0:
                raise RuntimeError(f"airflow db migrate failed:\n{err.decode()[-3000:]}")
            report["setup"]["airflow_db_migrate"] = round(time.perf_counter() - migrate_started, 1)
            say(f"Airflow metadata DB ready ({report['setup']['airflow_db_migrate']} s, overlapping other set-up)")

        if compiling is not None:
            compiling.wait()
            report["setup"]["compile_bytecode"] = round(time.perf_counter() - compile_started, 1)
            say(f"bytecode cache ready ({report['setup']['compile_bytecode']} s; {PYCACHE.relative_to(PROJECT_DIR)})")
        report["bytecode"] = "as installed (no .pyc)" if args.as_installed else "compiled (PYTHONPYCACHEPREFIX)"
        if not args.no_parse:
            report["parse"] = measure_parse(airflow_env)
            report["parse_compiled"] = measure_parse(bytecode_env(airflow_env))
            for key in ("parse", "parse_compiled"):
                say(
                    f"DAG import ({key}): {report[key]['total_s']:.2f}s (airflow.sdk {report[key]['sdk_s']:.2f}s "
                    f"+ the rest {report[key]['dag_s']:.2f}s)"
                )
        if not args.as_installed:
            airflow_env = bytecode_env(airflow_env)

        import scheduled

        postmaster = scheduled.postmaster_pid(work / "pg") if server is not None else None
        bench = Bench(args, report, work, admin_url, airflow_env, postmaster)
        report["git_head"] = git_head()
        report["sql_version"], report["code_version"] = bench.sql_version, bench.code_version
        for scale in args.scales_list:
            rec = bench.scale(scale)
            failed = failed or bool(rec["errors"])
            # The real data is about scale 1: what it takes says nothing about the larger scales after it.
            too_long = rec["steps"]["total_s"] > args.stop_after_minutes * 60 and scale != "real"
            if too_long and scale != args.scales_list[-1]:
                report["stopped"] = (
                    f"{rec['label']} took {rec['steps']['total_s'] / 60:.1f} min > {args.stop_after_minutes:g}: "
                    "the data sets after it skipped"
                )
                say(report["stopped"])
                break
    except BaseException as exc:
        failed = True
        report["aborted"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        slack.close()
        report["slack_alerts_received"] = slack.received
        report["machine"]["load_avg_end"] = os.getloadavg()
        report["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
        if report["scales"] or report.get("parse"):
            RESULTS_DIR.mkdir(exist_ok=True)
            out = RESULTS_DIR / f"{started_at:%Y%m%dT%H%M%SZ}.json"
            out.write_text(json.dumps(report, indent=1, default=str))
            print(markdown(report))
            print(f"\nresults: {out.relative_to(PROJECT_DIR) if out.is_relative_to(PROJECT_DIR) else out}")
            if report.get("stopped"):
                print(report["stopped"])
            if report.get("aborted"):
                print(f"ABORTED: {report['aborted']}")
        reasons = failures(report, args.contenders)
        keep = args.keep or failed or bool(reasons)  # the logs of what failed
        if server is not None and not args.keep:
            server.stop()
        if keep:
            say(f"kept {work} (logs, and the databases with --keep)")
        else:
            shutil.rmtree(work, ignore_errors=True)
        # Last, on stdout: `make bench` and whoever reads the output see why it failed (exit status 1).
        print(verdict(reasons), flush=True)
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main())
