"""Run the DAG in-process with ``dag.test`` against a private Airflow home (CLI, demo, tests, bench).

Airflow reads its configuration when first imported, so :func:`prepare` must run before anything
imports ``airflow``.
"""

from __future__ import annotations

import configparser
import contextlib
import copy
import datetime as dt
import fcntl
import importlib.metadata
import importlib.util
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from greenery import config, links, preloaded_airflow
from greenery.cli_types import UsageError
from greenery.dev import metadata_db, stop_signals

PROJECT_DIR = config.PROJECT_DIR
DAG_FILE = PROJECT_DIR / "dags" / "greenery_daily.py"
BASE_URL_FILE = "greenery-ui-base-url"  # in the Airflow home: where `greenery ui` last served it
# The paths Airflow writes into a new home's airflow.cfg, from the home's path at that moment. A home moved or
# copied with its state folder kept naming the old one (review: "no such table: dag", the metadata database
# being looked for where the folder used to be; task logs written there).
_HOME_PATHS = {
    ("database", "sql_alchemy_conn"): metadata_db.OWN_DATABASE,
    ("logging", "base_log_folder"): "{home}/logs",
    ("logging", "dag_processor_child_process_log_directory"): "{home}/logs/dag_processor",
}


def record_base_url(home: Path, url: str) -> None:
    """Keep the address ``greenery ui`` serves ``home`` at, for the in-process runs on the same home (review: their
    alerts and Data quality links pointed at Airflow's default localhost:8080 whatever port the UI listened on)."""
    (Path(home) / BASE_URL_FILE).write_text(url + "\n")


def configure(home: Path, quiet: bool = False, ui_links: bool = True, backfills: bool = True) -> Path:
    """Point Airflow at ``home`` and this project's dags. Call before anything imports airflow. ``ui_links``: links
    start where ``greenery ui`` last served ``home`` (not for ``greenery ui`` itself, which serves anew).
    ``backfills``: decide here whether the DAG takes them (metadata_db; the CLI leaves it to prepare() and to
    ``greenery ui``'s components, so that a command starting no Airflow never asks Airflow which database)."""
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(Path(home).resolve()):
        raise RuntimeError("airflow was imported before local_airflow.configure(): its settings are fixed")
    home = Path(home).resolve()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # review: a traceback (NotADirectoryError) for every command, `greenery db status` too
        raise UsageError(
            f"{home}: cannot make Airflow's home there ({exc.strerror}); set GREENERY_STATE_DIR (its airflow folder is"
            " the default home) or AIRFLOW_HOME to a folder this user can write"
        ) from None
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAG_FILE.parent))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_DIR / "plugins"))
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    if ui_links and (recorded := home / BASE_URL_FILE).is_file():  # the user's own AIRFLOW__API__BASE_URL still wins
        os.environ.setdefault("AIRFLOW__API__BASE_URL", recorded.read_text().strip())
    if quiet:
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    for name, value in moved_home_paths(home, os.environ).items():
        os.environ[name] = value
    if backfills:  # dag.test writes the DAG's allowed run types where the UI reads them
        metadata_db.no_backfills_on_sqlite(home, os.environ)
    return home


def moved_home_paths(home: Path, environ) -> dict[str, str]:
    """The settings of ``home``'s airflow.cfg that still name the folder Airflow created it in, each as the
    variable that names ``home`` instead. Only values of the shape Airflow generated, in the folder its
    ``dags_folder`` was generated in: a path the user chose is theirs, and so is any variable already set."""
    if environ.get("AIRFLOW_CONFIG"):  # a config file of the user's choosing, wherever it is
        return {}
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        if not parser.read(Path(home) / "airflow.cfg"):
            return {}
    except configparser.Error:
        return {}  # Airflow reports its own config's errors, naming the line
    created_in = _home_in(parser.get("core", "dags_folder", fallback=""), "{home}/dags")
    if created_in is None or Path(created_in) == Path(home):
        return {}
    moved = {}
    for (section, key), template in _HOME_PATHS.items():
        name = f"AIRFLOW__{section.upper()}__{key.upper()}"
        value = parser.get(section, key, fallback="")
        if name not in environ and _home_in(value, template) == created_in:
            moved[name] = template.format(home=home)
    return moved


def _home_in(value: str, template: str) -> str | None:
    """The folder ``value`` was made from with ``template``, or None if it does not have the template's shape."""
    prefix, suffix = template.split("{home}")
    if value.startswith(prefix + "/") and value.endswith(suffix) and len(value) > len(prefix + suffix):
        return value[len(prefix) : len(value) - len(suffix)]
    return None


def prepare(home: Path, quiet: bool = False) -> Path:
    """:func:`configure`, then migrate the metadata DB unless this Airflow's migration of it is stamped (up_to_date):
    a new home, one an earlier Airflow migrated (an upgrade: the tasks would meet tables without its columns), one
    migrated before the stamp existed (once), or a database configured in airflow.cfg (every time)."""
    home = configure(home, quiet)
    ours = _HOME_PATHS["database", "sql_alchemy_conn"].format(home=home)  # set by configure() for a moved home
    if os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", ours) != ours:
        return home  # the user's own metadata database: theirs to migrate
    with one_migration_at_a_time(home):
        # A database that cannot be read (locked, not a database) is left to Airflow, whose error names it.
        if metadata_db.uses_own_database(home, os.environ) and (
            _revision(home / "airflow.db") is None or up_to_date(home)
        ):
            return home
        done = migrate(str(Path(sys.executable).with_name("airflow")))
        if done.returncode != 0:
            said = " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise MigrationError(f"airflow db migrate of {home} failed (exit {done.returncode}): {said}")
        record_migration(home, os.environ)
    return home


def may_skip_migration(home: Path, environ) -> bool:
    """Whether components started at once on ``home`` with ``environ`` may skip `airflow db migrate`: its own SQLite
    database, this Airflow's migration of it stamped, and its airflow.cfg there (the migration writes a missing one,
    Fernet key included, before they start: each would write its own at once)."""
    return metadata_db.uses_own_database(home, environ) and (home / "airflow.cfg").is_file() and up_to_date(home)


@contextlib.contextmanager
def one_migration_at_a_time(home: Path):
    """Held while a process checks and migrates ``home``'s metadata database (review: two `greenery run` on a new home
    both migrated it, and the second ended in a traceback, 'table connection already exists')."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".greenery-migrate.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class MigrationError(RuntimeError):
    """Airflow's metadata database could not be migrated; the message says what ``airflow db migrate`` said."""


def migrate(airflow: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``airflow db migrate`` with the ``airflow`` executable (through ``greenery-airflow`` where it is beside it:
    preloaded_airflow.py's collector thresholds, 2.3-2.7 → 1.8-2.1 CPU-s on SQLite), run to its end (stopped half-way,
    it leaves a database without its tables): in a session of its own, out of reach of a terminal's Ctrl-C or hang-up
    (sent to its whole process group), and with this process's stops deferred until it ends (dev/stop_signals.py)."""
    with stop_signals.deferred():
        return subprocess.run(
            [preloaded_airflow.beside(airflow), "db", "migrate"],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            start_new_session=True,
        )


def _revision(db: Path) -> str | None:
    """The migration revision of the SQLite metadata database ``db``; "" where it has none (no file, no table: review,
    a migration killed half-way left a file without tables, and every later run failed with "no such table: dag");
    None where it cannot be read (locked, or not a database: not ours to migrate, Airflow's own error names it)."""
    if not db.is_file():
        return ""
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("select version_num from alembic_version").fetchone()
    except sqlite3.OperationalError as exc:
        return "" if "no such table" in str(exc) else None
    except sqlite3.DatabaseError:
        return None
    return row[0] if row else ""


# In an Airflow home: "<Airflow's version> <revision>" after each migration by this project. `airflow db migrate` of a
# database already at the installed Airflow's last revision changes nothing and took 3 s of every `greenery ui` start.
MIGRATION_STAMP = ".greenery-migrated"


def up_to_date(home: Path) -> bool:
    """Whether ``home``'s SQLite metadata database is as the installed Airflow's migration by this project left it."""
    revision = _revision(home / "airflow.db")
    return bool(revision) and _stamp(home) == f"{_airflow_version()} {revision}"


def record_migration(home: Path, environ) -> None:
    """Stamp ``home`` after Airflow run with ``environ`` migrated its own SQLite metadata database (uses_own_database;
    a database elsewhere is not stamped, nor a stale file beside it)."""
    if metadata_db.uses_own_database(home, environ) and (revision := _revision(home / "airflow.db")):
        (home / MIGRATION_STAMP).write_text(f"{_airflow_version()} {revision}\n")


def _stamp(home: Path) -> str | None:
    try:
        return (home / MIGRATION_STAMP).read_text().strip()
    except OSError:
        return None


def _airflow_version() -> str:
    return importlib.metadata.version("apache-airflow-core")  # the package holding the migrations


def load_dag(dag_file: Path = DAG_FILE):
    spec = importlib.util.spec_from_file_location(dag_file.stem, dag_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_day(day: dt.date, conf: dict | None = None, dag=None, must_finish: bool = False):
    """Run the whole DAG for ``day`` (the UTC day [day, day+1)); return the finished DagRun. ``must_finish``: raise
    :class:`RunDidNothingError` unless every task finished (:func:`check_ran`), while the run is still this process's:
    it is then failed and on-call paged (review: raised after, the unfinished run was left running, unlisted).

    The run shares Airflow's history with ``greenery ui`` (same AIRFLOW_HOME), so it must look like any
    other run there: its logical date is ``day`` at the time of day it starts (a run's day is its logical
    date's UTC day), so that triggering ``day`` from the UI (00:00) does not collide with it (Airflow
    allows one run per logical date); and its start is when it really started (``dag.test`` would
    record the logical date, and the UI would show a run of five years).
    """
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    dag = dag or load_dag()
    if conf:
        # dag.test runs the tasks in this process, and Airflow merges the run's conf into the tasks' own Param
        # objects (process_params updates a ParamsDict holding them): every later run of the same DAG object
        # inherited full_refresh. The scheduler's tasks parse the DAG afresh; here a copy takes the conf (a
        # DAG's deep copy shares its tasks' Params, hence theirs too).
        dag = copy.deepcopy(dag)
        for task in dag.tasks:
            task.params = copy.deepcopy(task.params)
    from greenery.dev import cli_runs

    started = dt.datetime.now(dt.UTC)
    logical_date = dt.datetime.combine(day, started.time(), tzinfo=dt.UTC)
    again = cli_runs.run_again(day) + (" --full-refresh" if (conf or {}).get("full_refresh") else "")
    # A run this process leaves behind is failed by the next; its alerts give the command that runs the day again.
    with cli_runs.owned(dag.dag_id, logical_date, started), links.rerun_with(again):
        dag_run = dag.test(logical_date=logical_date, run_conf=conf or {})
        with create_session() as session:
            session.query(DagRun).filter(DagRun.dag_id == dag.dag_id, DagRun.run_id == dag_run.run_id).update(
                {DagRun.start_date: started}, synchronize_session=False
            )
        if must_finish:
            check_ran(dag, dag_run)
    return dag_run


class SchedulerAliveError(RuntimeError):
    """A scheduler runs on this Airflow state with the DAG unpaused: it would run an in-process run's tasks too."""


def refuse_beside_a_scheduler(dag_id: str) -> None:
    """Raise when a live scheduler shares this Airflow home's metadata and ``dag_id`` is unpaused there.

    Review: with ``greenery ui`` up and the DAG unpaused, its scheduler queued the tasks of ``dag.test``'s runs as
    well; whichever process came second failed the task (TaskAlreadyRunningError), and on-call was paged for a
    killed task, once twice. A paused DAG's runs are left alone by the scheduler.
    """
    from airflow.jobs.job import most_recent_job
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        paused = session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag_id))
        job = most_recent_job("SchedulerJob", session=session)
        if paused is False and job is not None and job.is_alive():
            raise SchedulerAliveError(
                f"a scheduler (on {job.hostname}) runs on this Airflow state ({os.environ.get('AIRFLOW_HOME')}) with"
                f" {dag_id} unpaused: it would run this command's tasks too, and both would fail. Trigger the day"
                f" from the UI instead, or pause {dag_id} there (or stop it) and run again"
            )


def refuse_beside_cli_runs(dag_id: str, runs: list[tuple[int, str]]) -> None:
    """Raise when ``runs`` (pid, day: live `greenery run` days on this home) exist and ``dag_id`` is unpaused: the
    scheduler about to start would take their tasks (review: it queued three of a running range's tasks, each failed;
    the command checks for a scheduler only before each day). A paused DAG's runs are left alone by the scheduler."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    if not runs:
        return
    with create_session() as session:
        paused = session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == dag_id))
    if paused is False:
        days = ", ".join(f"{day} (pid {pid})" for pid, day in runs)
        raise SchedulerAliveError(
            f"greenery run is running {days} on this Airflow state ({os.environ.get('AIRFLOW_HOME')}) with {dag_id}"
            " unpaused: the UI's scheduler would run its tasks too, and both would fail. Start the UI once it ends"
        )


FINISHED = ("success", "skipped", "failed", "upstream_failed", "removed")


class RunDidNothingError(RuntimeError):
    """``dag.test`` came back without running the DAG's tasks (so its state says nothing about the day)."""

    ran_in_part = False  # set when some of its tasks finished (run_outcome.stopped_later: "ran in part")


def check_ran(dag, dag_run) -> None:
    """Raise unless every task of ``dag`` has a finished task instance in ``dag_run``."""
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    missing = sorted(set(dag.task_ids) - set(states))
    unfinished = sorted(t for t, state in states.items() if state not in FINISHED)
    if missing or unfinished:
        error = RunDidNothingError(
            f"run {dag_run.run_id} ended {dag_run.state!r} without running every task"
            f" (no task instance: {', '.join(missing) or 'none'}; unfinished: {', '.join(unfinished) or 'none'})"
        )
        error.ran_in_part = any(state in FINISHED for state in states.values())
        raise error


@contextlib.contextmanager
def output_to(path: Path):
    """Send everything this process writes to stdout and stderr (Airflow's task logs) to ``path``.

    At the file descriptor level, because Airflow's loggers hold on to the streams they were given.
    Yields a writer to the real stdout, for the command's own progress lines.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        console = os.fdopen(os.dup(saved[0]), "w", buffering=1)
        try:
            yield console
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            # A reader gone: a line it did not take (run_outcome.line_ends_on_a_stop) must not replace the error in
            # flight (review: exit 141 "its output was closed" instead of the day's own error); a print to it raised.
            with contextlib.suppress(OSError):
                console.close()


def failed_tasks(dag_run) -> list[str]:
    """The failed tasks in the order they ended: the first is where the run went wrong."""
    failed = [ti for ti in dag_run.get_task_instances() if ti.state == "failed"]
    return [ti.task_id for ti in sorted(failed, key=lambda ti: (ti.end_date is None, ti.end_date, ti.task_id))]
