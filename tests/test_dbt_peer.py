"""The dbt peer committed in benchmarks/dbt_greenery is what benchmarks/greenery_to_dbt.py makes of include/sql.

`make bench` regenerates it before every run, so the benchmark always compared the current SQL; but the committed
copy, which anyone running dbt or the Cosmos DAG by hand reads, fell behind unseen: on 2026-12-05 it had no
int_daily_marts_built at all, and five of its files (int_user_behavior, int_source_volumes_daily,
int_sessions_per_hour and two property files) lacked changes made to the models since."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import greenery_to_dbt

PROJECT_DIR = greenery_to_dbt.PROJECT_DIR


@pytest.fixture
def default_settings(monkeypatch):
    """The committed peer is the translation with the default settings (review: GREENERY_RAW_SCHEMA set in the
    developer's shell made the committed _sources.yml look out of date)."""
    for name in [n for n in os.environ if n.startswith("GREENERY_")]:
        monkeypatch.delenv(name)


def test_the_committed_dbt_project_is_generated_from_include_sql(default_settings):
    out_of_date = [str(p.relative_to(PROJECT_DIR)) for p in greenery_to_dbt.stale()]
    assert out_of_date == [], "run: python benchmarks/greenery_to_dbt.py, and commit what it wrote"


def test_every_generated_file_is_committed(default_settings):
    """Review: the files on disk can be current while git lacks one (make bench wrote it, nobody added it): a clean
    clone had no int_daily_marts_built."""
    folders = [str(f.relative_to(PROJECT_DIR)) for f in greenery_to_dbt.GENERATED_DIRS]
    listed = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), "ls-files", "--", *folders], capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    tracked = {PROJECT_DIR / line for line in listed.stdout.splitlines()}
    expected = set(greenery_to_dbt.expected_files())
    assert sorted(map(str, expected - tracked)) == [], "generated but not committed: git add them"
    assert sorted(map(str, tracked - expected)) == [], "committed but no longer generated: git rm them"


def test_a_model_edited_without_regenerating_is_named(monkeypatch):
    generated = greenery_to_dbt.expected_files()
    path, text = next((p, t) for p, t in generated.items() if p.name == "int_user_behavior.sql")
    monkeypatch.setattr(greenery_to_dbt, "expected_files", lambda: {**generated, path: text + "-- edited\n"})
    assert path in greenery_to_dbt.stale()


def test_a_missing_generated_file_is_named(monkeypatch, tmp_path):
    missing = tmp_path / "models" / "marts" / "new_model.sql"
    generated = greenery_to_dbt.expected_files()
    monkeypatch.setattr(greenery_to_dbt, "expected_files", lambda: {**generated, missing: "select 1\n"})
    assert missing in greenery_to_dbt.stale()


def test_a_generated_file_of_a_removed_model_is_named(monkeypatch, tmp_path):
    left = tmp_path / "models" / "marts" / "gone.sql"
    left.parent.mkdir(parents=True)
    left.write_text("select 1\n")
    monkeypatch.setattr(greenery_to_dbt, "GENERATED_DIRS", (tmp_path / "models",))
    assert left in greenery_to_dbt.stale()


def test_the_peers_start_date_is_the_pipelines_default(default_settings):
    """The peer's greenery_start_date() (a full refresh recounts the days before it) falls back on the pipeline's
    GREENERY_START_DATE default, which the benchmark's pipeline contender runs with (review: written by hand there, it
    could drift from config.py unseen)."""
    import re

    from greenery import config

    macros = (greenery_to_dbt.DBT_DIR / "macros" / "greenery.sql").read_text()
    [default] = re.findall(r"var\('start_date', '([0-9-]+)'\)", macros)
    assert default == config.get().start_date.isoformat()
