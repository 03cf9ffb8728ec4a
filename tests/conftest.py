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

import datetime as dt
import itertools
import logging
import os
import tempfile
from pathlib import Path

import pytest

from greenery.dev import local_airflow

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="greenery-tests-"))
local_airflow.configure(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ.pop("AIRFLOW_CONN_GREENERY_WAREHOUSE", None)
# Read when the DAG is parsed: keep the alert task's retries short in tests.
os.environ["GREENERY_ALERT_RETRIES"] = "2"
os.environ["GREENERY_ALERT_RETRY_DELAY_SECONDS"] = "1"
os.environ["GREENERY_RETRY_DELAY_SECONDS"] = "1"

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Fixtures of the fake Slack (a local HTTP server): slack_server, slack_alerts_webhook.
pytest_plugins = ["slack_server"]


def _real_greenery_candidates() -> list[Path]:
    """GREENERY_REAL_DATA, else ../shared/greenery beside this checkout or beside the repo it was cloned from."""
    if os.environ.get("GREENERY_REAL_DATA"):
        return [Path(os.environ["GREENERY_REAL_DATA"])]
    found = [PROJECT_DIR.parent / "shared" / "greenery"]
    import subprocess

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


@pytest.fixture(scope="session")
def pg_admin_url():
    external = os.environ.get("GREENERY_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    from greenery.dev.embedded_pg import EmbeddedPostgres

    server = EmbeddedPostgres(_SESSION_DIR / "pg")
    yield server.url()
    server.stop()


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
        wap.publish(conn, found, baseline)
    return name


@pytest.fixture
def published_url(pg_admin_url, published_template, monkeypatch) -> str:
    """A fresh copy of :func:`published_template`; the Airflow connection greenery_warehouse points at it."""
    from greenery import warehouse

    name = f"greenery_test_{os.getpid()}_{next(_db_names)}"
    url = warehouse.create_database(pg_admin_url, name, template=published_template)
    monkeypatch.setenv(warehouse.conn_env_var(), warehouse.connection_json(url))
    return url


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


@pytest.fixture(scope="session")
def airflow_dag():
    """The greenery_daily DAG, loaded under a migrated private Airflow home."""
    local_airflow.prepare(Path(os.environ["AIRFLOW_HOME"]))
    return local_airflow.load_dag()


@pytest.fixture(scope="session")
def real_greenery() -> Path:
    if REAL_GREENERY is None:
        pytest.skip(f"the real Greenery dataset is not in any of {_real_greenery_candidates()}")
    return REAL_GREENERY


def pytest_unconfigure(config):
    import shutil

    shutil.rmtree(_SESSION_DIR, ignore_errors=True)
