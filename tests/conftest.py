"""Session set-up shared by all tests.

- Airflow gets a private home (SQLite metadata DB), with this project's dags and plugins folders, when
  this file is loaded: Airflow fixes its settings when first imported, and any test may import it first.
- PostgreSQL: the server named by ``GREENERY_TEST_POSTGRES_URL`` if set, else an embedded one
  (``pgserver`` wheel) started for this session. Each test that asks for ``warehouse_url`` gets a
  fresh database, exposed to Airflow as ``AIRFLOW_CONN_GREENERY_WAREHOUSE``; ``module_warehouse_url`` is
  one shared by a module's tests (for an expensive set-up that tests only read, e.g. a whole DAG run).
- Under pytest-xdist each worker is a process of its own: it gets its own session directory (Airflow
  home, PostgreSQL) from this module, and database names carry the process id.
"""

from __future__ import annotations

import atexit
import datetime as dt
import fcntl
import functools
import itertools
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from greenery import gc_tuning
from greenery.dev import addresses, embedded_pg, local_airflow


def _ports_of_this_worker() -> Callable[[str], int]:
    """Ports for the servers the tests start, each handed out once, from a range of this xdist worker's own below
    Linux's ephemeral ports (32768-60999), where ``bind(0)`` picks (CI: a worker's api-server was given the port
    another worker's Airflow log server took a moment later, and its token request met that server: 404)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    first = 20000 + 500 * (int(worker) if worker.isdigit() else 0)
    ports = itertools.count(first)

    def free_port(host: str = "127.0.0.1") -> int:
        for port in ports:
            if port >= first + 500:
                raise RuntimeError(f"this worker's 500 ports from {first} are used up")
            if addresses.cannot_listen(port, host) is None:
                return port
        raise AssertionError("unreachable")

    return free_port


# Before any test module imports local_ui (which takes free_port by name).
addresses.free_port = _ports_of_this_worker()

# Traversable: as root, the embedded PostgreSQL runs as the user 'pgserver', which must enter this folder.
_SESSION_DIR = embedded_pg.traversable_tempdir("greenery-tests-")
local_airflow.configure(_SESSION_DIR / "airflow")
# configure() turned the DAG's backfills off for that home's SQLite database; the Airflow stacks the tests start
# decide for themselves (local_ui.airflow_env), as `greenery ui` does, instead of inheriting it.
os.environ.pop("GREENERY_ALLOW_BACKFILLS", None)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ.pop("AIRFLOW_CONN_GREENERY_WAREHOUSE", None)
# Read when the DAG is parsed: keep the alert task's retries short in tests.
os.environ["GREENERY_ALERT_RETRIES"] = "2"
os.environ["GREENERY_ALERT_RETRY_DELAY_SECONDS"] = "0"
os.environ["GREENERY_RETRY_DELAY_SECONDS"] = "0"

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Fixtures of the fake Slack (a local HTTP server): slack_server, slack_alerts_webhook; and -m skipping the
# files none of whose tests it could select (collect_by_marks).
pytest_plugins = ["slack_server", "collect_by_marks"]


def _real_greenery_candidates() -> list[Path]:
    """GREENERY_REAL_DATA, else ../shared/greenery beside this checkout or beside the repo it was cloned from."""
    if os.environ.get("GREENERY_REAL_DATA"):
        return [Path(os.environ["GREENERY_REAL_DATA"])]
    found = [PROJECT_DIR.parent / "shared" / "greenery"]

    origin = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), "config", "--get", "remote.origin.url"], capture_output=True, text=True
    ).stdout.strip()
    if origin and "://" not in origin and Path(origin).is_dir():
        found.append(Path(origin).resolve().parent / "shared" / "greenery")
    return found


REAL_GREENERY = next((p for p in _real_greenery_candidates() if (p / "orders.csv").is_file()), None)

_db_names = itertools.count(1)
PUBLISHED_DAY = dt.date(2021, 2, 12)
# pgserver logs from an atexit hook, after pytest closed the captured streams.
logging.getLogger("pgserver").setLevel(logging.WARNING)


def _exit_without_interpreter_teardown() -> None:
    """End an xdist worker once every later atexit hook has run, skipping the interpreter's teardown.

    Tearing down Airflow's and GX's module graphs takes 0.5 and 1 s of CPU (measured on an idle machine), and
    xdist's controller waits for every worker to exit: about 2 s at the end of each run. The results are
    already with the controller by then. Registered when this file is imported, so the hooks that libraries
    and tests register later (pgserver, Airflow, tempfile, multiprocessing) run first; of the two registered
    before it, logging's is run here.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if os.environ.get("PYTEST_XDIST_WORKER"):
    atexit.register(_exit_without_interpreter_teardown)


def _poll_dag_test_faster() -> None:
    """``dag.test`` sleeps a second whenever no task is runnable: after a failure it marks the failed task's
    downstream tasks one level per poll (four polls in this DAG), and it waits out retry delays the same way.
    That was about 4 s of idle per failed run, in some 25 runs. Here its poll is 0.05 s; every other sleep
    (the tasks', the servers', the tests') is untouched. What a run does is the same: only how soon
    dag.test looks again."""
    sleep = time.sleep
    dag_module = str(Path("airflow", "sdk", "definitions", "dag.py"))

    def sleep_less_in_dag_test(seconds: float) -> None:
        caller = sys._getframe(1).f_code.co_filename
        sleep(0.05 if seconds == 1 and caller.endswith(dag_module) else seconds)

    time.sleep = sleep_less_in_dag_test


_poll_dag_test_faster()

# The tests' processes collect garbage as the `greenery` command does (greenery/gc_tuning.py): each imports Airflow
# and GX, runs whole DAGs and validations in process, and paid for full collections over that heap.
gc_tuning.apply()


class Interrupted(Exception):
    """What Airflow's execution timeout is to a task: an exception raised in the task's own thread by a signal."""


@pytest.fixture
def interrupt_main_thread():
    """``interrupt(when)``: once ``when()`` is true (polled), signal this test's thread (or another one of the
    process), which then raises :class:`Interrupted`, as Airflow's timeout (SIGALRM) interrupts a task."""

    def raise_interrupted(*_):
        raise Interrupted("Timeout, PID: test")

    main = threading.main_thread().ident
    watchers: list[threading.Thread] = []
    stop = threading.Event()

    def interrupt(when: Callable[[], bool], within_s: float = 60, thread: Callable[[], int] | None = None) -> None:
        """``thread``: the ident of another thread to send the signal to (the handler still runs in this one)."""

        def watch():
            deadline = time.monotonic() + within_s
            while not stop.is_set() and time.monotonic() < deadline:
                if when():
                    signal.pthread_kill(thread() if thread else main, signal.SIGUSR1)
                    return
                time.sleep(0.05)

        watchers.append(threading.Thread(target=watch, daemon=True))
        watchers[-1].start()

    previous = signal.signal(signal.SIGUSR1, raise_interrupted)
    interrupt.exception = Interrupted
    yield interrupt
    stop.set()
    for watcher in watchers:
        watcher.join()
    signal.signal(signal.SIGUSR1, previous)


@pytest.fixture(scope="session")
def pg_admin_url():
    external = os.environ.get("GREENERY_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    from greenery.dev.embedded_pg import EmbeddedPostgres

    server = EmbeddedPostgres(_SESSION_DIR / "pg")
    yield server.url()
    server.stop(discard=True)  # its folder is deleted when the session ends (pytest_unconfigure)


def _fresh_database(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from greenery import warehouse

    url = warehouse.create_database(pg_admin_url, f"greenery_test_{os.getpid()}_{next(_db_names)}")
    monkeypatch.setenv(warehouse.conn_env_var(), warehouse.connection_json(url))
    return url


@pytest.fixture(scope="session")
def published_template(pg_admin_url, real_greenery) -> str:
    """A database to copy: the real Greenery raw data and its run of 2021-02-12 published (no Airflow).

    Copying it (CREATE DATABASE ... TEMPLATE) takes a fraction of a second; loading and building takes seconds.
    """
    import psycopg
    from helpers import publish_checked

    from greenery import wap, warehouse
    from greenery.project import models
    from greenery.sources import load

    name = f"greenery_template_{os.getpid()}"
    url = warehouse.create_database(pg_admin_url, name)
    found = models.discover()
    with psycopg.connect(url, autocommit=True) as conn:
        load.load_dir(conn, real_greenery)
        baseline = wap.Build("baseline", PUBLISHED_DAY)
        wap.prepare(conn, baseline)
        wap.build_models(conn, found, baseline)
        publish_checked(conn, found, baseline)
    return name


def _database_copy(pg_admin_url: str, template: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from greenery import warehouse

    name = f"greenery_test_{os.getpid()}_{next(_db_names)}"
    url = warehouse.create_database(pg_admin_url, name, template=template)
    monkeypatch.setenv(warehouse.conn_env_var(), warehouse.connection_json(url))
    return url


@pytest.fixture
def published_url(pg_admin_url, published_template, monkeypatch) -> str:
    """A fresh copy of :func:`published_template`; the Airflow connection greenery_warehouse points at it."""
    return _database_copy(pg_admin_url, published_template, monkeypatch)


@pytest.fixture(scope="module")
def module_published_url(pg_admin_url, published_template) -> str:
    """Like ``published_url``, one copy for the whole module (for one DAG run that several tests read)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _database_copy(pg_admin_url, published_template, monkeypatch)


@pytest.fixture
def database_copy(pg_admin_url, monkeypatch):
    """``database_copy(url)``: a fresh copy of the database at ``url``, which nobody may be connected to;
    the Airflow connection greenery_warehouse points at the copy for the test."""
    from urllib.parse import urlsplit

    def copy(url: str) -> str:
        return _database_copy(pg_admin_url, urlsplit(url).path.lstrip("/"), monkeypatch)

    return copy


@pytest.fixture
def pg_tmp_path() -> Path:
    """Like ``tmp_path``, for an embedded PostgreSQL's data: pytest's own temp folders are mode 700, and as
    root the server runs as the user 'pgserver', which must enter every folder above its data."""
    return embedded_pg.traversable_tempdir("pg-", _SESSION_DIR)


@pytest.fixture
def warehouse_url(pg_admin_url, monkeypatch):
    """A fresh, empty database; the Airflow connection greenery_warehouse points at it."""
    return _fresh_database(pg_admin_url, monkeypatch)


@pytest.fixture(scope="module")
def module_warehouse_url(pg_admin_url):
    """Like ``warehouse_url``, but one database for the whole module; the connection points at it while the
    module runs (a test that also takes ``warehouse_url`` points it at its own database for its duration)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _fresh_database(pg_admin_url, monkeypatch)


@pytest.fixture
def db(warehouse_url):
    import psycopg

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def module_db(module_warehouse_url):
    """A connection to the module's database, not in autocommit: for tests that build in a transaction they roll
    back (``conn.transaction(force_rollback=True)``), example after example."""
    import psycopg

    with psycopg.connect(module_warehouse_url) as conn:
        yield conn


@pytest.fixture(scope="session")
def airflow_dag(migrated_airflow_db):
    """The greenery_daily DAG, loaded under a migrated private Airflow home."""
    home = Path(os.environ["AIRFLOW_HOME"])
    if not (home / "airflow.db").exists():
        # A copy of the session's migrated database: prepare() would run `airflow db migrate` once more (about
        # 4 s of CPU per worker) for the same empty schema the `greenery` subprocesses and api-servers copy.
        _with_migrated_db(home, migrated_airflow_db)
    local_airflow.prepare(home)
    return local_airflow.load_dag()


@pytest.fixture(scope="session")
def migrated_airflow_db(tmp_path_factory) -> Path:
    """An empty Airflow metadata database (SQLite), migrated once per run to be copied: by the first xdist worker
    that needs it, the others wait for it (a migration is 7-8 CPU-s)."""
    run_dir = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run_dir = run_dir.parent  # this run's, shared by its workers (not the folder of every run, without xdist)
    home = run_dir / "airflow-template"
    with (run_dir / "airflow-template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "migrated").exists():
            home.mkdir(exist_ok=True)
            env = {**os.environ, "AIRFLOW_HOME": str(home)}
            # As greenery ui and greenery run migrate a home (through greenery-airflow: its collector thresholds).
            done = local_airflow.migrate(str(Path(sys.executable).with_name("airflow")), env=env)
            assert done.returncode == 0, f"airflow db migrate failed: {done.stderr[-3000:]}"
            local_airflow.record_migration(home, env)  # as they stamp it: `greenery run` takes the copies as they are
            assert local_airflow.up_to_date(home), "the session's migrated template is not stamped"
            (home / "migrated").touch()
    return home / "airflow.db"


@pytest.fixture
def new_airflow_home(migrated_airflow_db):
    """``new_airflow_home(path)``: an Airflow home at ``path`` for a `greenery` subprocess, its database already
    migrated (the command would run `airflow db migrate` itself: about 6 s per home)."""
    return functools.partial(_with_migrated_db, migrated=migrated_airflow_db)


def _with_migrated_db(path: Path, migrated: Path) -> Path:
    """``path`` as an Airflow home holding a copy of the migrated metadata database ``migrated``, and its stamp."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated, path / "airflow.db")
    shutil.copyfile(migrated.with_name(local_airflow.MIGRATION_STAMP), path / local_airflow.MIGRATION_STAMP)
    return path


@pytest.fixture(scope="session")
def real_greenery() -> Path:
    if REAL_GREENERY is None:
        pytest.skip(f"the real Greenery dataset is not in any of {_real_greenery_candidates()}")
    return REAL_GREENERY


# The longest files (work seconds in a `make test` run, 2026-11-30; test_paging and the files after
# test_quarantine_rules placed 2026-12-03 by the per-test accounting of 2026-12-02: test_paging, 163 s, had been left
# to start among the last), started first: pytest-xdist hands a worker
# a whole file at a time (--dist loadfile), so a long file started last keeps one worker busy alone at the end.
# (xdist's own order, most tests first, started the three longest single-test files last: 2 minutes idle.)
# test_broken_extracts (106 s alone, 2026-12-07: nine DAG-less runs of the tasks) and four files of 14-21 s had been
# left unlisted, so they started among the last.
LONGEST_FIRST = (
    "test_celery_workers.py",
    "test_local_ui.py",
    "test_backfill.py",
    "test_cli.py",
    "test_dag_real_greenery.py",
    "test_dag_quality.py",
    "test_bad_input_catalog.py",
    "test_suites.py",
    "test_hostile_values.py",
    "test_paging.py",
    "test_write_audit_publish.py",
    "test_broken_extracts.py",
    "test_concurrency.py",
    "test_anomalies.py",
    "test_validation_passes.py",
    "test_properties.py",
    "test_incremental.py",
    "test_digest.py",
    "test_quality_view.py",
    "test_quarantine_rules.py",
    "test_raw_loader.py",
    "test_known_answers.py",
    "test_snapshot.py",
    "test_embedded_pg.py",
    "test_funnel.py",
    "test_airflow_home.py",
    "test_repurchase_indicators.py",
    "test_raw_attachments.py",
    "test_slack_alert.py",
    "test_alert_memory.py",
    "test_sigterm.py",
)


# Fast-tier files whose tests import Airflow (2 s per process). `make test-fast` passes --airflow-files-together:
# they run on one worker, so the other never imports Airflow (no file imports it when collected).
NEEDS_AIRFLOW = (
    "test_bench_verdict.py",  # the product modules the bench times import Airflow (2 s)
    "test_compose.py",
    "test_dag_integrity.py",
    "test_digest.py",
    "test_gc_tuning.py",  # the validate task's module
    "test_quality_view.py",
    "test_slack_alert.py",
)


def pytest_addoption(parser):
    parser.addoption(
        "--airflow-files-together",
        action="store_true",
        help="under --dist loadfile, hand the files of NEEDS_AIRFLOW (tests/conftest.py) to one worker as one unit",
    )


@pytest.hookimpl(optionalhook=True)  # an xdist hook: a run without xdist has no such hook
def pytest_xdist_make_scheduler(config, log):
    if not config.getoption("airflow_files_together"):
        return None  # xdist's own scheduler for --dist
    from xdist.scheduler import LoadScopeScheduling

    class AirflowFilesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "needs-airflow" if Path(path).name in NEEDS_AIRFLOW else path

    return AirflowFilesTogether(config, log)


_HAD_AIRFLOW = pytest.StashKey[bool]()


def _kept_from_airflow(item) -> bool:
    """A fast-tier test of a file left off NEEDS_AIRFLOW, under --airflow-files-together (`make test-fast`)."""
    fast = not any(item.get_closest_marker(m) for m in ("db", "integration", "stack"))
    return fast and item.path.name not in NEEDS_AIRFLOW and item.config.getoption("airflow_files_together")


def pytest_runtest_setup(item):
    item.stash[_HAD_AIRFLOW] = "airflow" in sys.modules


@pytest.hookimpl(trylast=True)  # after the test's own teardown, which a failure here would otherwise cut short
def pytest_runtest_teardown(item):
    """Such a test that imports Airflow fails, naming itself, where Airflow was not imported before it: it would cost
    the worker that never needs Airflow its import (review: one test of test_docs.py cost `make test-fast` 2.5 s).
    (On the worker that ran NEEDS_AIRFLOW's files first, Airflow is there already: nothing to see.)"""
    if _kept_from_airflow(item) and not item.stash.get(_HAD_AIRFLOW, True) and "airflow" in sys.modules:
        pytest.fail(f"{item.nodeid} imported Airflow: add its file to NEEDS_AIRFLOW (tests/conftest.py) or move it")


def pytest_collection_finish(session):
    if session.config.getoption("airflow_files_together") and "airflow" in sys.modules:
        raise pytest.UsageError("a test file imported Airflow when collected: import it inside the tests that need it")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept


def pytest_unconfigure(config):
    """Delete the session's folder in a process of its own, which outlives this one: its PostgreSQL databases
    grow to 1-2.6 GB over a run, and deleting them took 4-10 s at the end of every xdist worker (2026-12-01),
    which the run waited for."""
    subprocess.Popen(
        [sys.executable, "-c", "import shutil, sys; shutil.rmtree(sys.argv[1], ignore_errors=True)", _SESSION_DIR],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
