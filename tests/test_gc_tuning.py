"""The collector's thresholds (greenery/gc_tuning.py): set for the `greenery` command's whole process, around the
validate task wherever it runs, and given back to a process that is not the project's."""

from __future__ import annotations

import gc

import pytest

from greenery import cli, gc_tuning

CPYTHON = (700, 10, 10)


@pytest.fixture
def cpython_thresholds():
    """CPython's own thresholds while the test runs (the tests' processes run with the project's: conftest)."""
    before = gc.get_threshold()
    gc.set_threshold(*CPYTHON)
    yield
    gc.set_threshold(*before)


def _stopped_at_once(monkeypatch) -> None:
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)


def test_the_greenery_command_sets_them_for_its_process(cpython_thresholds, monkeypatch):
    _stopped_at_once(monkeypatch)
    assert cli.main() == 130
    assert gc.get_threshold() == gc_tuning.THRESHOLDS


def test_a_caller_of_the_cli_with_its_own_argv_keeps_its_collector(cpython_thresholds, monkeypatch):
    _stopped_at_once(monkeypatch)
    assert cli.main(["run"]) == 130
    assert gc.get_threshold() == CPYTHON


def test_validate_runs_with_them_and_gives_the_process_its_own_back_even_when_it_fails(cpython_thresholds, monkeypatch):
    from greenery.tasks import validate

    seen = []

    def checks(context):
        seen.append(gc.get_threshold())
        raise validate.ChecksFailed("1 critical check failed")

    monkeypatch.setattr(validate, "_validate", checks)
    with pytest.raises(validate.ChecksFailed):
        validate.run({})
    assert seen == [gc_tuning.THRESHOLDS]
    assert gc.get_threshold() == CPYTHON
