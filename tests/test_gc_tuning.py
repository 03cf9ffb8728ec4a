"""The collector's thresholds (greenery/gc_tuning.py): set for the `greenery` command's whole process, around the
validate task wherever it runs, and given back to a process that is not the project's."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading

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


def test_the_greenery_command_sets_them_for_its_process():
    """The console script's path (argv from the command line), in a process of its own."""
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('thresholds', *gc.get_threshold()))\n"
        "from greenery.cli import main\n"
        "sys.argv = ['greenery', '--help']\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines()[-1].split() == ["thresholds", *map(str, gc_tuning.THRESHOLDS)]


def test_a_caller_of_the_cli_with_its_own_argv_keeps_its_collector(cpython_thresholds, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
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


def test_two_validations_at_once_keep_them_until_the_last_ends_then_give_the_process_its_own_back(cpython_thresholds):
    """Review: two dag.test runs in threads of one process. The first to end left the other on CPython's thresholds,
    and the last to end left the process on the project's for good."""
    first_in, second_in, first_out, second_done = (threading.Event() for _ in range(4))
    seen = {}

    def first():
        with gc_tuning.fewer_collections():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with gc_tuning.fewer_collections():
            second_in.set()
            first_out.wait(10)
            seen["after the first ended"] = gc.get_threshold()
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert second_done.is_set()
    assert seen == {"after the first ended": gc_tuning.THRESHOLDS}
    assert gc.get_threshold() == CPYTHON

    with gc_tuning.fewer_collections(), gc_tuning.fewer_collections():  # nested in one thread
        assert gc.get_threshold() == gc_tuning.THRESHOLDS
    assert gc.get_threshold() == CPYTHON


def test_a_range_of_days_collects_between_its_days_only(monkeypatch):
    """A full collection before each day but the first (greenery run --end-date): what the last day's cycles held is
    freed, at a point where no run waits on it."""
    import datetime as dt
    from types import SimpleNamespace

    calls = []
    monkeypatch.setattr(gc_tuning, "between_runs", lambda: calls.append("collect"))

    def one_day(n, days, day, dag, log_file, full_refresh, ran):
        calls.append(day)
        ran.append(day)
        return SimpleNamespace(state="success", run_id=f"run-{day}")

    monkeypatch.setattr(cli, "_one_day", one_day)
    days = [dt.date(2021, 2, 10) + dt.timedelta(days=i) for i in range(3)]
    assert cli._each_day(days, SimpleNamespace(dag_id="greenery_daily"), None, False) == 0
    assert calls == [days[0], "collect", days[1], "collect", days[2]]
