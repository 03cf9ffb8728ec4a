"""A state folder moved or copied elsewhere keeps working: Airflow's metadata database and logs follow the home.

Airflow writes a new home's airflow.cfg with that home's path in it. Review: after `mv .greenery elsewhere`, the
next command looked for the metadata database where the folder used to be ("no such table: dag"); a copy used
the original's database.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from greenery.dev import local_airflow

GENERATED = """\
[core]
dags_folder = {old}/dags
[database]
sql_alchemy_conn = sqlite:///{old}/airflow.db
[logging]
base_log_folder = {old}/logs
dag_processor_child_process_log_directory = {old}/logs/dag_processor
"""


def _home(path: Path, cfg: str) -> Path:
    path.mkdir(parents=True)
    (path / "airflow.cfg").write_text(cfg)
    return path


def test_a_moved_homes_generated_paths_name_where_it_is_now(tmp_path):
    old, new = "/srv/was/.greenery/airflow", tmp_path / "now"
    home = _home(new, GENERATED.format(old=old))
    assert local_airflow.moved_home_paths(home, {}) == {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": f"{home}/logs",
        "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": f"{home}/logs/dag_processor",
    }
    assert local_airflow.moved_home_paths(_home(tmp_path / "here", GENERATED.format(old=tmp_path / "here")), {}) == {}


def test_what_the_user_chose_stays_theirs(tmp_path):
    old = "/srv/was/airflow"
    chosen = GENERATED.format(old=old).replace(f"{old}/logs\n", "/var/log/airflow\n", 1)
    chosen = chosen.replace(f"sqlite:///{old}/airflow.db", "postgresql+psycopg2://airflow@db/airflow")
    assert local_airflow.moved_home_paths(_home(tmp_path / "a", chosen), {}) == {
        "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": f"{tmp_path / 'a'}/logs/dag_processor"
    }
    # A variable already set wins; so does a config file of the user's own (AIRFLOW_CONFIG).
    home = _home(tmp_path / "b", GENERATED.format(old=old))
    own = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////data/meta.db"}
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in local_airflow.moved_home_paths(home, own)
    assert local_airflow.moved_home_paths(home, {"AIRFLOW_CONFIG": "/etc/airflow.cfg"}) == {}
    # A dags_folder of the user's: no telling which folder the home was made in, so nothing is changed.
    edited = GENERATED.format(old=old).replace(f"{old}/dags", "/srv/dags")
    assert local_airflow.moved_home_paths(_home(tmp_path / "c", edited), {}) == {}


def test_no_config_or_a_broken_one_is_left_to_airflow(tmp_path):
    assert local_airflow.moved_home_paths(tmp_path, {}) == {}
    assert local_airflow.moved_home_paths(_home(tmp_path / "broken", "[core\ndags_folder = /x/dags\n"), {}) == {}


@pytest.mark.stack
def test_airflow_reads_the_moved_homes_own_metadata_database(migrated_airflow_db, tmp_path):
    """The session's migrated home (airflow.cfg and airflow.db, made by `airflow db migrate`) copied elsewhere:
    Airflow, configured by the CLI's code, reads the copy's database, not the original's, and logs in the copy."""
    home = tmp_path / "copied"
    shutil.copytree(migrated_airflow_db.parent, home)
    with sqlite3.connect(home / "airflow.db") as db:
        db.execute("insert into variable (key, val, is_encrypted) values ('where', 'the copy', false)")
    script = (
        "import sys; from greenery.dev import local_airflow; local_airflow.prepare(sys.argv[1]);"
        "from airflow import settings; from airflow.configuration import conf; import sqlalchemy as sa;"
        "print(conf.get('logging', 'base_log_folder'));"
        "print(settings.engine.connect().execute(sa.text(\"select val from variable where key = 'where'\")).scalar())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__DATABASE__", "AIRFLOW__LOGGING__"))}
    env.pop("AIRFLOW_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", script, str(home)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[-3:] == [str(home.resolve() / "logs"), "the copy", ""], done.stdout


@pytest.mark.stack
def test_commands_preparing_a_new_home_at_once_migrate_it_once(tmp_path):
    """Review: two `greenery run` on a new home both ran `airflow db migrate`; the second failed ('table connection
    already exists') and its command ended in a traceback. One migrates while the others wait, then find it done."""
    home = tmp_path / "airflow"
    code = "import sys; from pathlib import Path; from greenery.dev import local_airflow; "
    code += "local_airflow.prepare(Path(sys.argv[1]), quiet=True)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    preparing = [
        subprocess.Popen([sys.executable, "-c", code, str(home)], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    failed = [err for proc in preparing if (err := proc.communicate(timeout=300)[1]) and proc.returncode != 0]
    assert not failed, failed[0][-2000:]
    assert local_airflow._revision(home / "airflow.db")
    # Stamped with the installed Airflow and the revision its migration left: a `greenery ui` start migrates no more.
    version, revision = (home / local_airflow.MIGRATION_STAMP).read_text().split()
    assert version == importlib.metadata.version("apache-airflow-core") and len(revision) == 12, (version, revision)
    assert local_airflow.up_to_date(home)
