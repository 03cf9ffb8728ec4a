"""A home migrated by this Airflow is not migrated again; one migrated by another Airflow is, before anything runs.

`airflow db migrate` of a database already at the installed Airflow's last revision changes nothing and took 3 s of
every `greenery ui` start (2026-12-06). Before the stamp, `greenery run` never migrated a home that had been migrated
once: after an Airflow upgrade its tasks would have met tables without the new Airflow's columns.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path
from unittest import mock

import pytest

from greenery.dev import local_airflow, local_ui

OURS = "sqlite:///{home}/airflow.db"


def _database(home: Path, revision: str | None) -> Path:
    """``home`` holding an airflow.db at ``revision`` (None: a file without Airflow's tables)."""
    home.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(home / "airflow.db") as conn:
        conn.execute("create table if not exists other (x)")
        if revision is not None:
            conn.execute("create table if not exists alembic_version (version_num text)")
            conn.execute("delete from alembic_version")
            conn.execute("insert into alembic_version values (?)", (revision,))
    return home


@pytest.fixture
def migrations(monkeypatch, tmp_path):
    """Every `airflow db migrate` asked for, by home; each brings the database to revision "head" as Airflow would."""
    asked: list[Path] = []

    def migrate(airflow, env=None, cwd=None):
        home = Path(cwd or os.environ["AIRFLOW_HOME"])
        asked.append(home)
        _database(home, "head")
        return subprocess.CompletedProcess(["airflow", "db", "migrate"], 0, "", "")

    monkeypatch.setattr(local_airflow, "migrate", migrate)
    monkeypatch.setattr(local_airflow, "_airflow_version", lambda: "3.3.2")
    return asked


def test_the_stamp_names_this_airflow_and_the_databases_revision(migrations, tmp_path):
    home = _database(tmp_path / "airflow", "head")
    assert not local_airflow.up_to_date(home)  # never stamped
    local_airflow.record_migration(home)
    assert (home / local_airflow.MIGRATION_STAMP).read_text() == "3.3.2 head\n"
    assert local_airflow.up_to_date(home)
    _database(home, "older")  # the file replaced by a copy at another revision
    assert not local_airflow.up_to_date(home)


def test_a_home_without_a_database_or_tables_is_not_stamped(migrations, tmp_path):
    home = tmp_path / "airflow"
    home.mkdir()
    local_airflow.record_migration(home)
    assert not (home / local_airflow.MIGRATION_STAMP).exists() and not local_airflow.up_to_date(home)
    _database(home, None)
    local_airflow.record_migration(home)
    assert not (home / local_airflow.MIGRATION_STAMP).exists() and not local_airflow.up_to_date(home)


def _prepare(home: Path) -> None:
    """`greenery run`'s preparation of ``home``, the process's environment as it was afterwards (configure() sets it;
    AIRFLOW_HOME first: a worker that imported Airflow for another test's home would refuse another)."""
    with mock.patch.dict(os.environ, {"AIRFLOW_HOME": str(home.resolve())}):
        os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
        local_airflow.prepare(home)


def test_greenery_run_migrates_a_home_an_earlier_airflow_migrated(migrations, tmp_path):
    home = _database(tmp_path / "airflow", "older")
    (home / local_airflow.MIGRATION_STAMP).write_text("3.2.0 older\n")
    _prepare(home)
    assert migrations == [home]
    assert (home / local_airflow.MIGRATION_STAMP).read_text() == "3.3.2 head\n"
    _prepare(home)  # now up to date: not again
    assert migrations == [home]


def test_greenery_run_migrates_a_new_home_and_stamps_it_but_takes_an_unstamped_one_as_it_is(migrations, tmp_path):
    new = tmp_path / "new"
    _prepare(new)
    assert migrations == [new] and local_airflow.up_to_date(new)
    old = _database(tmp_path / "old", "head")  # migrated before the stamp existed (or copied without it)
    _prepare(old)
    assert migrations == [new]


@pytest.fixture
def started(monkeypatch):
    """local_ui.start up to its components, which are not started."""
    monkeypatch.setattr(local_ui, "launch", lambda ui, airflow, components: ui)
    monkeypatch.setattr(local_ui, "cannot_listen", lambda port, host: None)


def test_greenery_ui_migrates_at_start_unless_this_airflows_migration_is_stamped(
    migrations, started, tmp_path, monkeypatch
):
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    monkeypatch.delenv("AIRFLOW_CONFIG", raising=False)
    home = _database(tmp_path / "airflow", "head")
    local_ui.start(home, port=8080)  # never stamped: migrated, then stamped
    local_ui.start(home, port=8080)
    assert migrations == [home] and local_airflow.up_to_date(home)
    monkeypatch.setattr(local_airflow, "_airflow_version", lambda: "3.4.0")  # an upgrade
    local_ui.start(home, port=8080)
    assert migrations == [home, home]


@pytest.mark.parametrize(
    "setting",
    [
        {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow@db/airflow"},
        {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "cat /run/secrets/airflow-db"},
        {"AIRFLOW_CONFIG": "/etc/airflow/airflow.cfg"},
        {"airflow.cfg": "[database]\nsql_alchemy_conn = postgresql://airflow@db/airflow\n"},
    ],
    ids=["variable", "command", "config file", "airflow.cfg"],
)
def test_a_database_the_user_configured_is_migrated_at_every_start_and_never_stamped(
    migrations, started, tmp_path, monkeypatch, setting
):
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    monkeypatch.delenv("AIRFLOW_CONFIG", raising=False)
    home = _database(tmp_path / "airflow", "head")  # a stale airflow.db beside it, stamped: not what Airflow uses
    local_airflow.record_migration(home)
    if "airflow.cfg" in setting:
        (home / "airflow.cfg").write_text(setting["airflow.cfg"])
    else:
        for name, value in setting.items():
            monkeypatch.setenv(name, value)
    local_ui.start(home, port=8080)
    local_ui.start(home, port=8080)
    assert migrations == [home, home]


def test_the_home_made_by_airflow_or_pointed_at_by_configure_is_its_own(tmp_path):
    home = tmp_path / "airflow"
    home.mkdir()
    assert local_airflow.uses_own_database(home, {})
    (home / "airflow.cfg").write_text(f"[database]\nsql_alchemy_conn = {OURS.format(home=home)}\n")
    assert local_airflow.uses_own_database(home, {})
    assert local_airflow.uses_own_database(home, {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": OURS.format(home=home)})
    assert not local_airflow.uses_own_database(home, {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": OURS.format(home="/x")})
