"""A home migrated by this Airflow is not migrated again; any other is, before anything runs.

`airflow db migrate` of a database already at the installed Airflow's last revision changes nothing and took 3 s of
every `greenery ui` start (2026-12-06). Before the stamp, `greenery run` never migrated a home that had been migrated
once: after an Airflow upgrade its tasks would have met tables without the new Airflow's columns.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from greenery.dev import local_airflow, local_ui, metadata_db

OURS = "sqlite:///{home}/airflow.db"
CFG = "[core]\nload_examples = False\n"  # an airflow.cfg as Airflow writes one, naming no database: the default


def _database(home: Path, revision: str | None) -> Path:
    """``home`` holding an airflow.db at ``revision`` (None: a file without Airflow's tables) and an airflow.cfg."""
    home.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(home / "airflow.db") as conn:
        conn.execute("create table if not exists other (x)")
        if revision is not None:
            conn.execute("create table if not exists alembic_version (version_num text)")
            conn.execute("delete from alembic_version")
            conn.execute("insert into alembic_version values (?)", (revision,))
    if not (home / "airflow.cfg").exists():
        (home / "airflow.cfg").write_text(CFG)
    return home


@pytest.fixture
def migrations(monkeypatch):
    """Every `airflow db migrate` asked for (``.asked``, by home); each brings the database to revision "head" as
    Airflow would, writing a missing airflow.cfg too, or fails while ``.fail`` is set."""
    seen = SimpleNamespace(asked=[], fail=False)

    def migrate(airflow, env=None, cwd=None):
        home = Path(cwd or os.environ["AIRFLOW_HOME"])
        seen.asked.append(home)
        if seen.fail:
            return subprocess.CompletedProcess(["airflow", "db", "migrate"], 1, "", "boom")
        _database(home, "head")
        return subprocess.CompletedProcess(["airflow", "db", "migrate"], 0, "", "")

    monkeypatch.setattr(local_airflow, "migrate", migrate)
    monkeypatch.setattr(local_airflow, "_airflow_version", lambda: "3.3.2")
    # Which database Airflow reads, asked of Airflow in a child for a configured one (2-3 s): the backfill decision,
    # tested in test_dag_integrity.py, not here.
    monkeypatch.setattr(metadata_db, "metadata_url", lambda home, environ: "")
    for name in [n for n in os.environ if n.startswith(("AIRFLOW__DATABASE__", "AIRFLOW__CORE__SQL"))]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("AIRFLOW_CONFIG", raising=False)
    return seen


def test_the_stamp_names_this_airflow_and_the_databases_revision(migrations, tmp_path):
    home = _database(tmp_path / "airflow", "head")
    assert not local_airflow.up_to_date(home)  # never stamped
    local_airflow.record_migration(home, {})
    assert (home / local_airflow.MIGRATION_STAMP).read_text() == "3.3.2 head\n"
    assert local_airflow.up_to_date(home)
    _database(home, "older")  # the file replaced by a copy at another revision
    assert not local_airflow.up_to_date(home)


def test_a_home_without_a_database_or_tables_or_its_own_database_is_not_stamped(migrations, tmp_path):
    home = tmp_path / "airflow"
    home.mkdir()
    local_airflow.record_migration(home, {})
    _database(home, None)
    local_airflow.record_migration(home, {})
    stale = _database(tmp_path / "stale", "head")  # beside a database the migration really went to
    local_airflow.record_migration(stale, {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow@db/airflow"})
    assert not any((h / local_airflow.MIGRATION_STAMP).exists() for h in (home, stale))


def _prepare(home: Path) -> None:
    """`greenery run`'s preparation of ``home``, the process's environment as it was afterwards (configure() sets it;
    AIRFLOW_HOME first: a worker that imported Airflow for another test's home would refuse another)."""
    with mock.patch.dict(os.environ, {"AIRFLOW_HOME": str(home.resolve())}):
        local_airflow.prepare(home)


def test_greenery_run_migrates_a_home_an_earlier_airflow_migrated_then_not_again(migrations, tmp_path):
    home = _database(tmp_path / "airflow", "older")
    (home / local_airflow.MIGRATION_STAMP).write_text("3.2.0 older\n")
    _prepare(home)
    assert migrations.asked == [home]
    assert (home / local_airflow.MIGRATION_STAMP).read_text() == "3.3.2 head\n"
    _prepare(home)
    assert migrations.asked == [home]


def test_greenery_run_migrates_a_new_home_and_one_migrated_before_the_stamp_once(migrations, tmp_path):
    new, unstamped = tmp_path / "new", _database(tmp_path / "unstamped", "older")
    for home in (new, unstamped, new, unstamped):
        _prepare(home)
    assert migrations.asked == [new, unstamped]
    assert local_airflow.up_to_date(new) and local_airflow.up_to_date(unstamped)


def test_a_failed_migration_leaves_no_stamp_and_the_next_command_migrates(migrations, tmp_path):
    home = _database(tmp_path / "airflow", "older")
    migrations.fail = True
    with pytest.raises(local_airflow.MigrationError, match="boom"):
        _prepare(home)
    assert not (home / local_airflow.MIGRATION_STAMP).exists()
    migrations.fail = False
    _prepare(home)
    assert migrations.asked == [home, home] and local_airflow.up_to_date(home)


def test_a_database_airflow_cannot_read_is_left_to_airflows_own_error(migrations, tmp_path):
    home = tmp_path / "airflow"
    home.mkdir()
    (home / "airflow.db").write_bytes(b"not a database at all" * 100)
    _prepare(home)
    assert migrations.asked == []


@pytest.fixture
def started(monkeypatch):
    """local_ui.start up to its components, which are not started."""
    monkeypatch.setattr(local_ui, "launch", lambda ui, airflow, components: ui)
    monkeypatch.setattr(local_ui, "cannot_listen", lambda port, host: None)


def test_greenery_ui_migrates_at_start_unless_this_airflows_migration_is_stamped(migrations, started, tmp_path):
    home = _database(tmp_path / "airflow", "head")
    local_ui.start(home, port=8080)  # never stamped: migrated, then stamped
    local_ui.start(home, port=8080)
    assert migrations.asked == [home] and local_airflow.up_to_date(home)
    with mock.patch.object(local_airflow, "_airflow_version", lambda: "3.4.0"):  # an upgrade
        local_ui.start(home, port=8080)
    assert migrations.asked == [home, home]


def test_greenery_ui_migrates_a_stamped_home_without_its_airflow_cfg(migrations, started, tmp_path):
    """Review: the migration writes a missing airflow.cfg, Fernet key included, before the components start; skipped,
    each component would write its own at once, and a connection saved in the UI could be encrypted with a key the
    file does not keep (a user deleting airflow.cfg to get Airflow's defaults back)."""
    home = _database(tmp_path / "airflow", "head")
    local_airflow.record_migration(home, {})
    (home / "airflow.cfg").unlink()
    local_ui.start(home, port=8080)
    assert migrations.asked == [home] and (home / "airflow.cfg").exists()


@pytest.mark.parametrize(
    "setting",
    [
        {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow@db/airflow"},
        {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "cat /run/secrets/airflow-db"},
        {"AIRFLOW__CORE__SQL_ALCHEMY_CONN": "postgresql://airflow@db/airflow"},  # deprecated, still read
        {"AIRFLOW_CONFIG": "/etc/airflow/airflow.cfg"},
        {"airflow.cfg": "[database]\nsql_alchemy_conn = postgresql://airflow@db/airflow\n"},
        {"airflow.cfg": "[database]\nsql_alchemy_conn_cmd = cat /run/secrets/airflow-db\n"},
        {"airflow.cfg": "[core]\nsql_alchemy_conn = postgresql://airflow@db/airflow\n"},
    ],
    ids=[
        "variable",
        "command",
        "core variable",
        "config file",
        "airflow.cfg",
        "airflow.cfg command",
        "airflow.cfg core",
    ],
)
def test_a_database_the_user_configured_is_migrated_at_every_start_and_never_stamped(
    migrations, started, tmp_path, monkeypatch, setting
):
    home = _database(tmp_path / "airflow", "head")  # a stale airflow.db beside it, stamped: not what Airflow uses
    local_airflow.record_migration(home, {})
    if "airflow.cfg" in setting:
        (home / "airflow.cfg").write_text(setting["airflow.cfg"])
    else:
        for name, value in setting.items():
            monkeypatch.setenv(name, value)
    local_ui.start(home, port=8080)
    local_ui.start(home, port=8080)
    assert migrations.asked == [home, home]
    assert (home / local_airflow.MIGRATION_STAMP).read_text() == "3.3.2 head\n"  # as it was: not stamped again


def test_the_home_made_by_airflow_or_pointed_at_by_configure_is_its_own(tmp_path):
    home = tmp_path / "airflow"
    home.mkdir()
    assert metadata_db.uses_own_database(home, {})
    (home / "airflow.cfg").write_text(f"[database]\nsql_alchemy_conn = {OURS.format(home=home)}\n")
    assert metadata_db.uses_own_database(home, {})
    assert metadata_db.uses_own_database(home, {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": OURS.format(home=home)})
    assert not metadata_db.uses_own_database(home, {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": OURS.format(home="/x")})
    # A moved home: the file still names the old folder, configure() points Airflow at this one.
    (home / "airflow.cfg").write_text(f"[database]\nsql_alchemy_conn = {OURS.format(home='/old')}\n")
    assert not metadata_db.uses_own_database(home, {})
    assert metadata_db.uses_own_database(home, {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": OURS.format(home=home)})


def test_greenery_run_migrates_a_database_named_in_airflow_cfg_every_time(migrations, tmp_path):
    home = _database(tmp_path / "airflow", "head")  # a stale airflow.db beside it
    local_airflow.record_migration(home, {})
    (home / "airflow.cfg").write_text("[database]\nsql_alchemy_conn = postgresql://airflow@db/airflow\n")
    _prepare(home)
    _prepare(home)
    assert migrations.asked == [home, home]
