"""Which metadata database Airflow run on a home with an environment reads, and whether the DAG takes backfills there.

Airflow cannot make a backfill safely on SQLite: creating one can fail half-way ("database is locked"), and its
clean-up of the half-made backfill deleted the runs it had taken in, older ones too (README, *Running it under a real
Airflow scheduler*). The ``greenery`` commands that start Airflow decide, because Airflow's DAG parsing processes are
not told the database: :func:`no_backfills_on_sqlite`.
"""

from __future__ import annotations

import configparser
import logging
import subprocess
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from greenery import config

OWN_DATABASE = "sqlite:///{home}/airflow.db"  # what Airflow writes into a new home's airflow.cfg
_DATABASE_VAR, _CORE_VAR = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN"
# Airflow's own answer, asked once per process and setting (`demo` prepares twice; `ui` asks for its components).
_asked: dict[tuple, str | None] = {}
_READ = "from airflow.configuration import conf; print('URL=' + conf.get('database', 'sql_alchemy_conn'))"
log = logging.getLogger(__name__)


def uses_own_database(home: Path, environ: Mapping[str, str]) -> bool:
    """Whether Airflow run with ``environ`` keeps its metadata in ``home``'s own SQLite file (as Airflow made it, or
    as configure() points a moved home at it), not in a database the user configured: any other setting naming the
    connection (a _CMD or _SECRET variant, the deprecated [core] option, an airflow.cfg of their choosing) says no."""
    ours = OWN_DATABASE.format(home=home)
    if environ.get("AIRFLOW_CONFIG"):
        return False
    # Any setting starting so (sql_alchemy_conn_async, _connect_args too: then every start migrates, as before).
    named = [n for n in environ if n.startswith((_DATABASE_VAR, _CORE_VAR))]
    if named:  # the variables come before the file
        return named == [_DATABASE_VAR] and environ[named[0]] == ours
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(Path(home) / "airflow.cfg")
    except configparser.Error:
        return False
    found = [
        (k, parser.get(s, k))
        for s in ("database", "core")
        if parser.has_section(s)
        for k in parser.options(s)
        if k.startswith("sql_alchemy_conn")
    ]
    return all(k == "sql_alchemy_conn" and value == ours for k, value in found)  # none: Airflow's default, ours


def no_backfills_on_sqlite(home: Path, environ: MutableMapping[str, str]) -> None:
    """Turn the DAG's backfills off in ``environ`` (config.turn_backfills_off: unless set) when Airflow run with it
    keeps its metadata in SQLite, ``home``'s own file or another, or when what it reads cannot be told (off is the
    safe side; GREENERY_ALLOW_BACKFILLS=true undoes it)."""
    if config.backfills_set(environ):
        return  # the user's own value stands: no need to ask Airflow
    if uses_own_database(home, environ) or (url := metadata_url(home, environ)) is None or url.startswith("sqlite"):
        config.turn_backfills_off(environ)


def metadata_url(home: Path, environ: Mapping[str, str]) -> str | None:
    """The metadata database Airflow run on ``home`` with ``environ`` reads. A plain variable in the order Airflow
    takes them ([database] before its _CMD and _SECRET, the deprecated [core] one after those); else (a _CMD or
    _SECRET variant, AIRFLOW_CONFIG, an airflow.cfg: review, a SQLite file named so kept backfills on) what Airflow
    itself reads, asked in a child process (1-3 s, once per process); None, with a warning, if it cannot tell."""
    plain = environ.get(_DATABASE_VAR) or (
        environ.get(_CORE_VAR)
        if not any(n in environ for n in (f"{_DATABASE_VAR}_CMD", f"{_DATABASE_VAR}_SECRET"))
        else ""
    )
    if plain and "$" not in plain and not plain.startswith("~"):  # Airflow expands those: let it
        return plain
    key = (
        str(home),
        *sorted(
            (n, v)
            for n, v in environ.items()
            if n.startswith(("AIRFLOW__DATABASE__", "AIRFLOW__CORE__SQL", "AIRFLOW__SECRETS__", "AIRFLOW_CONFIG"))
        ),
    )
    if key not in _asked:
        _asked[key] = _ask_airflow(home, environ)
    return _asked[key]


def _ask_airflow(home: Path, environ: Mapping[str, str]) -> str | None:
    # As a library, Airflow sets up no logging (whose console handler writes to stdout), ORM or log folder.
    env = {**environ, "AIRFLOW_HOME": str(home), "_AIRFLOW__AS_LIBRARY": "1", "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _READ], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        why = "Airflow did not answer in 60 s"
    else:
        urls = [line[4:].strip() for line in done.stdout.splitlines() if line.startswith("URL=")]
        if done.returncode == 0 and urls:
            return urls[-1]
        why = ((done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"])[-1]
    log.warning(
        "could not tell which metadata database Airflow reads (%s): the DAG takes no backfills in this start"
        " (GREENERY_ALLOW_BACKFILLS=true allows them)",
        why,
    )
    return None
