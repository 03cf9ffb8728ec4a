"""Benchmark the greenery_daily pipeline against the bare SQL (the floor) and an equivalent dbt project.

    .venv/bin/python benchmarks/bench.py --scales 1,100 [--days N] [--repeat R]

For each scale: generate the raw CSVs (cached in benchmarks/.cache), start one embedded PostgreSQL
(or use the server of ``GREENERY_BENCH_POSTGRES_URL``, an admin URL), load raw once into a template
database, then clone it (``create database ... template ...``) for every contender so each starts from
identical data. In the same run, one after the other:

- floor: each model rendered with ``greenery.models.render`` and run as ``create table ... as`` in the
  published schemas, one transaction per model, in dependency order (psycopg; no Airflow, no GX).
  Quarantine models keep their good rows in the same statement; nothing goes to ``quarantine.*``.
- dbt: ``dbt build`` of benchmarks/dbt_greenery (models generated from include/sql by
  greenery_to_dbt.py; primary-key tests), from its own venv benchmarks/.venv-dbt, created here from
  benchmarks/requirements-dbt.txt when missing.
- pipeline: the whole DAG through Airflow ``dag.test`` for the last day of the data (freshness,
  write-audit-publish build, GX validation, publish, branch), with the ``validate`` task's duration
  read from the DagRun's task instances.
- with >= 2 days of data, "one day incremental": a second run of the DAG (and of ``dbt build``) for the
  last day right after the full one, on the same database, in a new process. The first run found nothing
  published and built every model whole (a full refresh); this one finds the published tables, so the
  incremental models recompute only their lookback window (the run's day and 3 days before) and merge
  it, as the next scheduled run would. Current-state models (users, orders, products) are rebuilt whole
  in both. dbt's second ``dbt build`` likewise runs its incremental models incrementally.

The Python contenders read compiled bytecode from benchmarks/.cache/pycache (built once, ~40 s): a venv
installed without --compile-bytecode (plain ``uv pip install``; ``make install`` now compiles) has no .pyc
files while dbt's venv has, and Airflow and GX would pay for compiling their modules at every import and
dbt would not (--as-installed measures them without it; the DAG parse time is reported both ways).

Every contender runs in its own subprocess; its peak memory is that process tree's peak RSS as
``os.wait4`` reports it for that child (the per-child form of ``getrusage(RUSAGE_CHILDREN)``). The
PostgreSQL server is shared and its memory is not counted; neither is its CPU ("client CPU" is the
contender's own). DAG parse time is measured in fresh interpreters (3 times, median).

Results: a Markdown table on stdout, and everything in benchmarks/results/<timestamp>.json
(git-ignored, like benchmarks/.cache and benchmarks/.venv-dbt).
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
import tempfile
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
DAG_FILE = PROJECT_DIR / "dags" / "greenery_daily.py"
DBT_PROJECT = BENCH_DIR / "dbt_greenery"
DBT_VENV = BENCH_DIR / ".venv-dbt"
DBT_REQUIREMENTS = BENCH_DIR / "requirements-dbt.txt"
RESULTS_DIR = BENCH_DIR / "results"
CACHE_DIR = BENCH_DIR / ".cache"
PG_URL_ENV = "GREENERY_BENCH_POSTGRES_URL"
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

    from greenery.build import RULE_COLUMN
    from greenery.models import Interval, discover, render

    found = discover()
    interval = Interval.for_day(dt.date.fromisoformat(args["day"]))
    per_model = {}
    started = time.perf_counter()
    with psycopg.connect(args["url"], autocommit=True) as conn:
        for name, model in found.items():
            body = render(model, interval, lambda ref: found[ref].relation).strip().rstrip(";")
            t = time.perf_counter()
            with conn.transaction():
                conn.execute("set local timezone = 'UTC'")
                conn.execute(f"create schema if not exists {model.layer}")
                if model.config.get("quarantine"):
                    # "offset 0" keeps PostgreSQL from flattening the subquery, which would evaluate the
                    # rules (a CASE of regexes) twice per row: once to filter, once for the column.
                    cur = conn.execute(
                        f"create table {model.relation} as select * from (\n{body}\noffset 0) as checked"
                        f" where {RULE_COLUMN} is null"
                    )
                    rows = cur.rowcount
                    conn.execute(f"alter table {model.relation} drop column {RULE_COLUMN}")
                else:
                    rows = conn.execute(f"create table {model.relation} as\n{body}").rowcount
            per_model[name] = {"seconds": round(time.perf_counter() - t, 4), "rows": rows}
    return {"wall_s": round(time.perf_counter() - started, 3), "models": per_model}


# Where the pipeline's time goes inside its tasks: these functions are wrapped with timers in the worker
# (the product's code is unchanged; a wrapper costs microseconds).
PROFILED = (
    ("greenery.warehouse", "connect"),
    ("greenery.freshness", "check"),
    ("greenery.wap", "prepare"),
    ("greenery.build", "build_model"),
    ("greenery.quality", "quarantined_counts"),
    ("greenery.validation", "load_suites"),
    ("greenery.validation", "validate"),
    ("greenery.validation", "_context"),
    ("greenery.validation", "_runner"),
    ("greenery.validation", "run_suite"),
    ("greenery.validation", "summarize"),
    ("greenery.wap", "publish"),
    ("greenery.wap", "record_validation"),
    ("greenery.wap", "drop_other_builds"),
)
SUITES_TIMER = "gx suites (two-pass run_suite)"


def _install_timers(profile: dict) -> None:
    import functools
    import importlib

    def timed(name: str, fn, key=None):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                entry = profile.setdefault(name, {"seconds": 0.0, "calls": 0})
                entry["seconds"] += time.perf_counter() - t
                entry["calls"] += 1
                if key is not None:
                    per = profile.setdefault(name + " by suite", {})
                    per[key(*a)] = round(per.get(key(*a), 0) + time.perf_counter() - t, 4)

        return wrapper

    validation = importlib.import_module("greenery.validation")
    original_validate = validation.validate

    def validate_importing_gx_first(*a, **kw):
        # validate() starts with `import great_expectations`: time that import on its own.
        if "great_expectations" not in sys.modules:
            t = time.perf_counter()
            import great_expectations  # noqa: F401

            profile["gx import"] = {"seconds": time.perf_counter() - t, "calls": 1}
        return original_validate(*a, **kw)

    validation.validate = functools.wraps(original_validate)(validate_importing_gx_first)

    for module_name, attr in PROFILED:
        module = importlib.import_module(module_name)
        name = f"{module_name.removeprefix('greenery.')}.{attr}"
        if name == "validation._context":
            original = module._context

            def context_then_patch(gx_dir, _original=original):
                context = _original(gx_dir)
                context.build_data_docs = timed("gx build_data_docs", context.build_data_docs)
                return context

            setattr(module, attr, timed(name + " (GX file context)", context_then_patch))
        elif name == "validation.run_suite":
            setattr(module, attr, timed(SUITES_TIMER, module.run_suite, key=lambda batch, suite, *_: suite.name))
        else:
            setattr(module, attr, timed(name, getattr(module, attr)))


def worker_pipeline(args: dict) -> dict:
    """The whole DAG through Airflow's dag.test, in this process, for one day."""
    from greenery import local_airflow

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
    tasks = {}
    for ti in dag_run.get_task_instances():
        tasks[ti.task_id] = {
            "state": str(ti.state) if ti.state is not None else None,
            "seconds": round(ti.duration, 4) if ti.duration is not None else None,
            "start": ti.start_date.isoformat() if ti.start_date else None,
            "end": ti.end_date.isoformat() if ti.end_date else None,
        }
    ran = [v for v in tasks.values() if v["seconds"] is not None]
    first = min((dt.datetime.fromisoformat(v["start"]) for v in ran), default=started_at)
    last = max((dt.datetime.fromisoformat(v["end"]) for v in ran), default=ended_at)
    for entry in profile.values():
        if "seconds" in entry:
            entry["seconds"] = round(entry["seconds"], 4)
    return {
        "wall_s": round(wall, 3),
        "state": str(dag_run.state),
        "run_id": dag_run.run_id,
        "import_and_load_dag_s": round(load_s, 3),
        "peak_rss_before_run_mib": round(rss_before / 1024, 1),
        "before_first_task_s": round((first - started_at).total_seconds(), 3),
        "after_last_task_s": round((ended_at - last).total_seconds(), 3),
        "tasks": tasks,
        "profile": profile,
    }


def worker_main(kind: str, args_json: str) -> int:
    args = json.loads(args_json)
    result = {"pipeline": worker_pipeline, "floor": worker_floor}[kind](args)
    result["vm_hwm_mib"] = round(_vm_kib("VmHWM") / 1024, 1)
    Path(args["out"]).write_text(json.dumps(result, indent=1, default=str))
    return 0


# --- set-up ---------------------------------------------------------------------------------------


def requirements_digest() -> str:
    return hashlib.sha256(DBT_REQUIREMENTS.read_bytes()).hexdigest()


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


def data_for(scale: float, days: int | None) -> tuple[Path, dict, float]:
    """Generated CSVs for (scale, days), cached; return the folder, row counts and generation seconds."""
    from greenery.generator import default_days, generate

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


def drop_database(admin_url: str, name: str) -> None:
    with admin_connect(admin_url) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def model_tables(url: str, relations: list[str]) -> dict[str, dict]:
    """Rows and an order-independent content digest of each model table (to check the contenders agree)."""
    out = {}
    with admin_connect(url) as conn:
        for rel in relations:
            found = conn.execute("select to_regclass(%s)", (rel,)).fetchone()[0]
            if found is None:
                out[rel] = {"rows": None, "digest": None}
                continue
            rows, digest = conn.execute(
                f"select count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text from {rel} t"
            ).fetchone()
            out[rel] = {"rows": rows, "digest": digest}
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
    def __init__(self, args, report: dict, work: Path, admin_url: str, airflow_env: dict[str, str]):
        self.args = args
        self.report = report
        self.work = work
        self.admin_url = admin_url
        self.airflow_env = airflow_env
        from greenery.models import discover

        self.sql_version = fingerprint(*SQL_FOLDERS)
        self.code_version = fingerprint(*CODE_FOLDERS)
        self.models = discover()
        self.relations = [m.relation for m in self.models.values()]
        from greenery import settings

        self.expectations = sum(
            len(json.loads(f.read_text()).get("expectations", [])) for f in settings.EXPECTATIONS_DIR.glob("*.json")
        )

    def _worker(self, kind: str, url: str, day: dt.date, tag: str, env: dict[str, str]) -> dict:
        out = self.work / f"{tag}.json"
        payload = {"url": url, "day": day.isoformat(), "out": str(out), "airflow_home": env.get("AIRFLOW_HOME")}
        cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", kind, json.dumps(payload)]
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
        from greenery import warehouse

        env = dict(self.airflow_env)
        env[warehouse.conn_env_var()] = warehouse.connection_json(url)
        result = self._worker("pipeline", url, day, tag, env)
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
            **measured,
            "wall_s": measured["process_s"],
            "dbt_elapsed_s": round(run.get("elapsed_time", 0), 3),
            "models_s": round(model_s, 3),
            "tests_s": round(test_s, 3),
            "tests": sum(1 for r in nodes if r["unique_id"].startswith("test.")),
            "statuses": sorted({r["status"] for r in nodes}),
        }

    # One scale: template, then every contender on its own clone, one after the other.
    def scale(self, scale: float) -> dict:
        from greenery import raw

        rec: dict = {
            "scale": scale,
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
        rec.update(days=meta["days"], raw_rows=sum(meta["rows"].values()), raw_rows_by_table=meta["rows"])
        rec["steps"]["generate_s"] = round(gen_s, 1)
        say(f"scale {scale:g}: data {folder.name} ({rec['raw_rows']:,} raw rows; generated in {gen_s:.1f}s)")

        tag = f"s{scale:g}".replace(".", "_")
        template = f"greenery_bench_{tag}_template"
        t = time.perf_counter()
        with admin_connect(self.admin_url) as conn:
            conn.execute(f'drop database if exists "{template}" with (force)')
            conn.execute(f'create database "{template}"')
        with admin_connect(database_url(self.admin_url, template)) as conn:
            raw.load_dir(conn, folder)
            conn.execute("vacuum analyze")
            day = conn.execute("select max(created_at)::date from raw.events").fetchone()[0]
        rec["steps"]["load_raw_s"] = round(time.perf_counter() - t, 1)
        rec["day"] = day.isoformat()
        say(f"scale {scale:g}: raw loaded into {template} in {rec['steps']['load_raw_s']}s; last day {day}")
        incremental = meta["days"] >= 2 and not self.args.no_incremental
        contenders = self.args.contenders

        clone_s = []
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
                        f"scale {scale:g}: {run['contender']:<8} {run['mode']:<13} wall {run['wall_s']:8.2f}s  "
                        f"process {run['process_s']:8.2f}s  peak {run['peak_rss_mib']:7.1f} MiB"
                        + (f"  validate {run['validate_s']:.2f}s" if run.get("validate_s") is not None else "")
                        + (f"  tests {run['tests_s']:.2f}s" if run.get("tests_s") is not None else "")
                    )
                    runs.append(run)
                    return run

                if fingerprint(*SQL_FOLDERS) != self.sql_version:
                    raise InputsChangedError(
                        "include/sql changed during the benchmark (someone committed or edited meanwhile): "
                        "the contenders would not run the same SQL; run it again"
                    )
                code_version = fingerprint(*CODE_FOLDERS)
                if kind == "pipeline" and code_version != self.code_version:
                    note = f"pipeline code (include/greenery, expectations, dags) changed since the start: {git_head()}"
                    say(f"scale {scale:g}: note: {note}")
                    rec["notes"].append(note)
                try:
                    if kind == "floor":
                        checked(self.floor(url, day, f"{db}-full"))
                    elif kind == "dbt":
                        target = self.work / f"dbt-target-{db}"
                        checked(self.dbt(url, day, f"{db}-full", target))
                        if incremental:
                            checked(self.dbt(url, day, f"{db}-again", target))
                    elif kind == "pipeline":
                        checked(self.pipeline(url, day, f"{db}-full"))
                        if incremental:
                            checked(self.pipeline(url, day, f"{db}-again"))
                except Exception as exc:  # one broken contender must not lose the others' numbers
                    say(f"scale {scale:g}: {kind} FAILED: {exc}")
                    rec["errors"].append({"contender": kind, "repeat": rep, "error": str(exc)})
                rec["runs"] += runs
                if not self.args.keep:
                    drop_database(self.admin_url, db)
        if not self.args.keep:
            drop_database(self.admin_url, template)
        rec["steps"]["clone_s_median"] = round(statistics.median(clone_s), 2) if clone_s else None
        rec["agreement"] = agreement(rec["runs"])
        rec["steps"]["total_s"] = round(time.perf_counter() - started, 1)
        say(f"scale {scale:g}: done in {rec['steps']['total_s']}s; tables agree: {rec['agreement']['all_equal']}")
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


# --- report ---------------------------------------------------------------------------------------


def _f(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a, b) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def _pct(part, whole) -> str:
    return "-" if part is None or not whole else f"{100 * part / whole:.0f}%"


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]


def group(rec: dict) -> dict[tuple[str, str], dict]:
    """The run of median wall time of each (contender, mode) over the repeats, with the repeats' peak."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in rec["runs"]:
        groups.setdefault((run["contender"], run["mode"]), []).append(run)
    out = {}
    for key, runs in groups.items():
        out[key] = {**_median_run(runs), "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "repeats": len(runs)}
    return out


LABELS = {
    ("floor", "full"): "floor: SQL via psycopg",
    ("dbt", "full"): "dbt build (full)",
    ("dbt", "one_day_incremental"): "dbt build (one day incremental)",
    ("pipeline", "full"): "pipeline: DAG via dag.test (full)",
    ("pipeline", "one_day_incremental"): "pipeline: DAG via dag.test (one day incremental)",
}


def breakdown(run: dict, model_names: list[str]) -> list[tuple[str, float | None]]:
    """The pipeline run's wall time, part by part (task durations from the DagRun, the rest from timers)."""
    tasks, prof = run["tasks"], run.get("profile", {})

    def task(name: str) -> float:
        return tasks.get(name, {}).get("seconds") or 0.0

    def timer(name: str) -> float:
        return prof.get(name, {}).get("seconds", 0.0)

    validate = task("validate")
    gx_validate = timer("validation.validate")
    gx_import = timer("gx import")
    gx_context = timer("validation._context (GX file context)")
    gx_suites = timer(SUITES_TIMER)
    gx_docs = timer("gx build_data_docs")
    gx_summary = timer("validation.summarize")
    gx_runner = timer("validation._runner")
    gx_config = gx_validate - gx_import - gx_context - gx_runner - gx_suites - gx_docs - gx_summary
    model_tasks = sum(task(n) for n in model_names)
    build_sql = timer("build.build_model")
    fixed = ("validate", "check_source_freshness", "prepare_build", "publish")
    other = [t for t in tasks if t not in model_names and t not in fixed]
    return [
        ("dag.test start-up (serialize DAG, sync DagBag, create run)", run["before_first_task_s"]),
        ("check_source_freshness task (the process's first task)", task("check_source_freshness")),
        ("  of which freshness.check (SQL)", timer("freshness.check")),
        ("prepare_build task", task("prepare_build")),
        (f"{len(model_names)} model tasks", model_tasks),
        ("  of which build_model (SQL, quarantine, ANALYZE, COMMENTs)", build_sql),
        ("  of which task overhead (Airflow, connect)", model_tasks - build_sql),
        ("validate task", validate),
        ("  of which import great_expectations", gx_import),
        ("  of which GX file context", gx_context),
        ("  of which GX ephemeral context + data source", gx_runner),
        ("  of which GX set-up: suites, assets, result store", gx_config),
        ("  of which running the suites (SQL)", gx_suites),
        ("  of which Data Docs", gx_docs),
        ("  of which the rest (task overhead, discover, connect, summary)", validate - gx_validate),
        ("publish task", task("publish")),
        (f"{len(other)} branch/notify/gate tasks", sum(task(t) for t in other)),
        ("dag.test loop between tasks", run["between_tasks_s"]),
        ("after the last task", run["after_last_task_s"]),
    ]


def markdown(report: dict) -> str:
    lines: list[str] = []
    for rec in report["scales"]:
        g = group(rec)
        lines += [
            f"### scale {rec['scale']:g}: {rec['days']} days, {rec['raw_rows']:,} raw rows, run day {rec['day']}"
            + (f" (median of {report['args']['repeat']})" if report["args"]["repeat"] > 1 else ""),
            "",
            "| contender | wall s | process s | client CPU s | peak RSS MiB | model rows | rows/s | checks |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key, label in LABELS.items():
            r = g.get(key)
            if r is None:
                continue
            if key[0] == "pipeline":
                checks = (
                    f"{rec['gx_expectations']} GX expectations: "
                    f"validate {_f(r['validate_s'])} s = {_pct(r['validate_s'], r['wall_s'])}"
                )
            elif key[0] == "dbt":
                checks = f"{r['tests']} PK tests: {_f(r['tests_s'])} s = {_pct(r['tests_s'], r['wall_s'])}"
            else:
                checks = "none"
            lines.append(
                f"| {label} | {_f(r['wall_s'])} | {_f(r['process_s'])} | {_f(r['client_cpu_s'], 1)} | "
                f"{_f(r['peak_rss_mib'], 0)} | {r['model_rows']:,} | {_f(r['rows_per_s'], 0)} | {checks} |"
            )
        for note in rec.get("notes", []):
            lines.append(f"\nNote: {note}")
        for err in rec.get("errors", []):
            lines.append(f"\n**{err['contender']} failed** (repeat {err['repeat']}): {err['error'][:500]}")
        p, p2 = g.get(("pipeline", "full")), g.get(("pipeline", "one_day_incremental"))
        for run in (p, p2):
            v = run and run.get("validation")
            if v:
                lines.append(
                    f"\nValidation ({run['mode']}): {v['evaluated']} expectations evaluated, "
                    f"{v['failed_critical']} critical and {v['failed_warning']} warning failures, "
                    f"quarantined {v['quarantined'] or 'nothing'}, "
                    f"{'published' if v['published'] else 'NOT published'}."
                )
        if p:
            names = list(rec["models"])
            lines += [
                "",
                f"Where the pipeline's time goes (scale {rec['scale']:g}):",
                "",
                "| part | full s | share | one day incremental s | share |",
                "|---|---:|---:|---:|---:|",
            ]
            again = dict(breakdown(p2, names)) if p2 else {}
            for label, seconds in breakdown(p, names):
                lines.append(
                    f"| {label} | {_f(seconds)} | {_pct(seconds, p['wall_s'])} | {_f(again.get(label))} | "
                    f"{_pct(again.get(label), p2 and p2['wall_s'])} |"
                )
            lines.append(f"| **dag.test wall** | **{_f(p['wall_s'])}** | | **{_f(p2 and p2['wall_s'])}** | |")
            suites = p.get("profile", {}).get(SUITES_TIMER + " by suite", {})
            if suites:
                top = sorted(suites.items(), key=lambda kv: -kv[1])[:5]
                lines.append("\nSlowest GX suites (full run): " + ", ".join(f"{n} {s:.2f} s" for n, s in top))
        lines.append("")

    lines += [
        "### ratios (wall; whole process in brackets)",
        "",
        "| scale | pipeline / floor | pipeline / dbt | validate share of pipeline "
        "| one day incremental / full: pipeline | one day incremental / full: dbt | tables agree |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for rec in report["scales"]:
        g = group(rec)
        p, f, d = g.get(("pipeline", "full")), g.get(("floor", "full")), g.get(("dbt", "full"))
        pi, di = g.get(("pipeline", "one_day_incremental")), g.get(("dbt", "one_day_incremental"))

        def both(a, b):
            if not a or not b:
                return "-"
            return f"{_ratio(a['wall_s'], b['wall_s'])} ({_ratio(a['process_s'], b['process_s'])})"

        agree = rec.get("agreement", {}).get("all_equal")
        lines.append(
            f"| {rec['scale']:g} | {both(p, f)} | {both(p, d)} | {_pct(p and p['validate_s'], p and p['wall_s'])} | "
            f"{both(pi, p)} | {both(di, d)} | {'yes' if agree else 'NO' if agree is False else '-'} |"
        )
    parses = [(k, report[k]) for k in ("parse", "parse_compiled") if report.get(k)]
    if parses:
        lines += [
            "",
            "### DAG parse: import of dags/greenery_daily.py in a fresh interpreter "
            f"(median of {parses[0][1]['runs']})",
            "",
            "| bytecode | whole import s | `import airflow.sdk` s | beyond airflow.sdk s | process s (start to exit) "
            "| tasks | modules loaded | heavy modules loaded |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key, parse in parses:
            label = "as installed: no .pyc, compiled at every import" if key == "parse" else "compiled .pyc"
            lines.append(
                f"| {label} | {_f(parse['total_s'], 3)} | {_f(parse['sdk_s'], 3)} | {_f(parse['dag_s'], 3)} | "
                f"{_f(parse['process_s'], 3)} | {parse['tasks']} | {parse['modules']} | "
                f"{', '.join(parse['heavy_modules']) or 'none'} |"
            )
    lines += [
        "",
        "### steps (s)",
        "",
        "| scale | generate data | load raw + VACUUM ANALYZE | clone a database (median) | whole scale |",
        "|---:|---:|---:|---:|---:|",
    ]
    for rec in report["scales"]:
        st = rec["steps"]
        generated = "cached" if st.get("generate_s") == 0 else st.get("generate_s", "-")
        lines.append(
            f"| {rec['scale']:g} | {generated} | {st.get('load_raw_s', '-')} | {st.get('clone_s_median', '-')} | "
            f"{st.get('total_s', 'aborted')} |"
        )
    setup = ", ".join(f"{k} {v} s" for k, v in report["setup"].items())
    if report.get("slack_alerts_received"):
        setup += f"; Slack alerts received by the local sink: {report['slack_alerts_received']}"
    load = report["machine"]
    lines += [
        "",
        f"Set-up: {setup}. Machine: {load['cpus']} CPUs, load average {load['load_avg_start'][0]:.1f} at the start"
        f" and {load.get('load_avg_end', [0])[0]:.1f} at the end; PostgreSQL {report.get('postgres_version')}"
        f" ({report.get('postgres')}), its memory and CPU not counted. Python contenders' bytecode: "
        f"{report.get('bytecode')}; git {report.get('git_head')}.",
    ]
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scales", default="1", help="comma-separated scale factors (1 = the real shop's size)")
    p.add_argument("--days", type=int, default=None, help="days of data (default: the generator's; 365 at scale 1000)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each contender per scale (medians reported)")
    p.add_argument("--contenders", default="floor,dbt,pipeline", help="subset of floor,dbt,pipeline")
    p.add_argument("--dbt-threads", type=int, default=1, help="dbt threads (dag.test runs one task at a time)")
    p.add_argument("--no-incremental", action="store_true", help="skip the 'one day incremental' runs")
    p.add_argument("--no-parse", action="store_true", help="skip the DAG parse-time measurement")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a contender is killed")
    p.add_argument(
        "--stop-after-minutes",
        type=float,
        default=10,
        help="skip the remaining (larger) scales once one scale took longer than this",
    )
    p.add_argument(
        "--as-installed",
        action="store_true",
        help="run the Python contenders without the compiled-bytecode cache (as a venv without .pyc files)",
    )
    p.add_argument("--keep", action="store_true", help="keep the databases and the work folder")
    args = p.parse_args(argv)
    args.scales_list = [float(s) for s in args.scales.split(",") if s.strip()]
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(args.contenders) - {"floor", "dbt", "pipeline"}
    if unknown:
        p.error(f"unknown contenders {sorted(unknown)}")
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
    work = Path(tempfile.mkdtemp(prefix="greenery-bench-"))  # short: the PostgreSQL socket lives here
    say(f"work folder {work}")
    server = None
    migrate = None
    slack = SlackSink()
    failed = False
    try:
        compiling = None if args.as_installed and args.no_parse else compile_bytecode()
        compile_started = time.perf_counter()
        if "dbt" in args.contenders:
            changed = greenery_to_dbt.sync()
            if changed:
                say(f"dbt project refreshed from include/sql: {len(changed)} file(s)")
            report["setup"]["dbt_venv"] = round(ensure_dbt_venv(), 1)

        # A private Airflow home with its SQLite metadata DB, migrated while the data is prepared
        # (the variables are those of greenery.local_airflow.configure, set before airflow is imported).
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

        admin_url = os.environ.get(PG_URL_ENV)
        if admin_url:
            say(f"PostgreSQL: {PG_URL_ENV}")
            report["postgres"] = "external"
        else:
            from greenery.warehouse import EmbeddedPostgres

            t = time.perf_counter()
            server = EmbeddedPostgres(work / "pg")
            admin_url = server.url()
            report["setup"]["embedded_postgres_start"] = round(time.perf_counter() - t, 1)
            report["postgres"] = "embedded (pgserver)"
        with admin_connect(admin_url) as conn:
            report["postgres_version"] = conn.execute("show server_version").fetchone()[0]

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

        bench = Bench(args, report, work, admin_url, airflow_env)
        report["git_head"] = git_head()
        report["sql_version"], report["code_version"] = bench.sql_version, bench.code_version
        for scale in args.scales_list:
            rec = bench.scale(scale)
            failed = failed or bool(rec["errors"])
            if rec["steps"]["total_s"] > args.stop_after_minutes * 60 and scale != args.scales_list[-1]:
                report["stopped"] = (
                    f"scale {scale:g} took {rec['steps']['total_s'] / 60:.1f} min > {args.stop_after_minutes:g}: "
                    "larger scales skipped"
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
            print(f"\nresults: {out.relative_to(PROJECT_DIR)}")
            if report.get("stopped"):
                print(report["stopped"])
            if report.get("aborted"):
                print(f"ABORTED: {report['aborted']}")
        keep = args.keep or failed
        if server is not None and not keep:
            server.stop()
        if keep:
            say(f"kept {work} (logs, and the databases with --keep)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
