"""The collector's thresholds (greenery/gc_tuning.py): set for the `greenery` command's whole process, around the
validate task wherever it runs, and given back to a process that is not the project's."""

from __future__ import annotations

import gc
import os
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


def test_validate_runs_with_them_and_gives_the_process_its_own_back_even_when_it_fails(
    cpython_thresholds, monkeypatch, caplog
):
    """It logs what the process started it with (the stack tests read that line from greenery-airflow's tasks)."""
    from greenery.tasks import validate

    seen = []

    def checks(context):
        seen.append(gc.get_threshold())
        raise validate.ChecksFailed("1 critical check failed")

    monkeypatch.setattr(validate, "_validate", checks)
    # Airflow's logging set-up, run by the first import of the task's modules, replaces the root logger's handlers
    # (caplog's among them): the record is taken from the task's logger itself.
    validate.log.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger=validate.log.name), pytest.raises(validate.ChecksFailed):
            validate.run({})
    finally:
        validate.log.removeHandler(caplog.handler)
    assert seen == [gc_tuning.THRESHOLDS]
    assert gc.get_threshold() == CPYTHON
    assert f"collector thresholds when the task started: {CPYTHON}" in caplog.text


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


# `greenery-airflow` in a process of its own, with stand-ins first on the path: for Airflow (its `__main__`, which
# reports what the component starts with) and for GX (a library no process imports at its start; the real imports
# are test_architecture's and test_local_ui's). Each notes the thresholds it was imported under.
STAND_INS = {
    "airflow/__init__.py": "",
    "airflow/__main__.py": (
        "import gc, sys\n"
        "imported_under = gc.get_threshold()\n"
        "def main():\n"
        "    library = sys.modules.get('stand_in_library')\n"
        "    print('airflow', *imported_under)\n"
        "    print('library', *(library.imported_under if library else ['not', 'imported']))\n"
        "    print('project', *sorted(m for m in sys.modules if m.split('.')[0] == 'greenery'))\n"
    ),
    "stand_in_library.py": "import gc\nimported_under = gc.get_threshold()\n",
}
COMPONENT = (
    "import sys\n"
    "from greenery import preloaded_airflow as p\n"
    "p.LIBRARIES = ('stand_in_library',)\n"
    "sys.argv = ['greenery-airflow', *sys.argv[1:]]\n"
    "p.main()\n"
)
FORKING = ["scheduler", "celery worker -q default"]  # the processes the tasks are forked from
OTHERS = ["api-server --port 8080", "dag-processor", "triggerer", "celery flower", "db migrate"]


def start_component(
    tmp_path, command: str, executor: str | None = None, component: str = COMPONENT
) -> subprocess.CompletedProcess:
    """``greenery-airflow <command>`` with the stand-ins first on the path (``component`` may set other LIBRARIES),
    AIRFLOW__CORE__EXECUTOR unset or set to ``executor``."""
    for name, text in STAND_INS.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    env.pop("AIRFLOW__CORE__EXECUTOR", None)
    if executor is not None:
        env["AIRFLOW__CORE__EXECUTOR"] = executor
    return subprocess.run(
        [sys.executable, "-c", component, *command.split()], env=env, capture_output=True, text=True, timeout=60
    )


def reported(done: subprocess.CompletedProcess) -> list[str]:
    """What the stand-in Airflow printed: the thresholds it and the library were imported under, the project's
    modules loaded."""
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-3:]


THRESHOLDS_TEXT = " ".join(map(str, gc_tuning.THRESHOLDS))


@pytest.mark.parametrize("command", FORKING + OTHERS)
def test_every_airflow_component_started_by_greenery_airflow_runs_with_them_from_its_first_import(command, tmp_path):
    """Set before Airflow's import (and GX's, imported only by the processes the tasks are forked from), without
    importing a module of the project (gc_tuning.py) that the scheduler's tasks would inherit (test_architecture)."""
    library = THRESHOLDS_TEXT if command in FORKING else "not imported"
    done = start_component(tmp_path, command)
    assert reported(done) == [
        f"airflow {THRESHOLDS_TEXT}",
        f"library {library}",
        "project greenery greenery.preloaded_airflow",
    ], done.stdout + done.stderr


@pytest.mark.parametrize(
    ("command", "executor", "preloads"),
    [
        ("scheduler", "LocalExecutor", True),
        ("scheduler", "CeleryExecutor", False),  # docker-compose's Celery profile: the workers fork the tasks
        ("scheduler", "LocalExecutor,CeleryExecutor", True),  # Airflow 3's several executors: some tasks are local
        ("scheduler", "airflow.executors.local_executor.LocalExecutor", True),
        ("scheduler", "fast:LocalExecutor", True),  # an alias
        ("celery worker -q default", "CeleryExecutor", True),
    ],
)
def test_the_scheduler_preloads_only_when_a_localexecutor_forks_its_tasks(command, executor, preloads, tmp_path):
    """Review: with CeleryExecutor the scheduler forks no task, and paid GX's import and memory for nothing."""
    done = start_component(tmp_path, command, executor)
    assert reported(done)[:2] == [
        f"airflow {THRESHOLDS_TEXT}",
        f"library {THRESHOLDS_TEXT if preloads else 'not imported'}",
    ], done.stdout + done.stderr


def test_greenery_airflow_writes_the_same_thresholds_without_importing_this_module():
    """Written twice on purpose: the scheduler's forked tasks would inherit gc_tuning.py from it."""
    from greenery import preloaded_airflow

    assert preloaded_airflow.THRESHOLDS == gc_tuning.THRESHOLDS


def test_greenery_ui_starts_every_component_and_the_migration_through_greenery_airflow(tmp_path, monkeypatch, caplog):
    """And says so, once, where greenery-airflow is not there (review: the fallback was silent)."""
    from greenery import preloaded_airflow
    from greenery.dev import local_airflow, local_ui

    started = []

    class Recorded:
        def __init__(self, args, **kwargs):
            started.append(args)
            self.args, self.returncode = args, 0

    monkeypatch.setattr(local_ui.subprocess, "Popen", Recorded)
    monkeypatch.setattr(local_airflow.subprocess, "run", Recorded)
    for venv, ours in (("project", True), ("cosmos", False)):  # the benchmark's Cosmos venv has no greenery-airflow
        bindir = tmp_path / venv / "bin"
        bindir.mkdir(parents=True)
        if ours:
            (bindir / preloaded_airflow.COMMAND).touch()
        started.clear()
        local_airflow.migrate(str(bindir / "airflow"))
        ui = local_ui.LocalAirflow(home=tmp_path, port=8080, host="127.0.0.1", env={}, log_dir=tmp_path / "logs")
        local_ui.launch(ui, str(bindir / "airflow"))
        command = bindir / (preloaded_airflow.COMMAND if ours else "airflow")
        assert [args[:2] for args in started] == [[str(command), name] for name in ("db", *local_ui.COMPONENTS)]
    said = [r.getMessage() for r in caplog.records if r.name == preloaded_airflow.__name__]
    assert said == [
        f"greenery-airflow is not installed beside {tmp_path / 'cosmos' / 'bin' / 'airflow'}: Airflow's components"
        " start as plain airflow, with CPython's collector thresholds and no libraries preloaded for the tasks"
        " (install the project: make install)"
    ]


def test_a_library_that_is_not_installed_is_skipped_with_a_line_and_the_component_starts(tmp_path):
    """The preload only saves time: a provider release that moved one of LIBRARIES must not keep the scheduler from
    starting (test_architecture fails on it instead). A module that is there but fails to import still fails."""
    moved = COMPONENT.replace("('stand_in_library',)", "('airflow_provider_that_moved.assets', 'stand_in_library')")
    done = start_component(tmp_path, "scheduler", component=moved)
    assert reported(done)[1] == f"library {THRESHOLDS_TEXT}", done.stdout + done.stderr
    assert "greenery-airflow: airflow_provider_that_moved.assets is not installed: not preloaded" in done.stderr

    (tmp_path / "broken_library.py").write_text("import no_such_dependency_of_it\n")
    broken = COMPONENT.replace("('stand_in_library',)", "('broken_library', 'stand_in_library')")
    done = start_component(tmp_path, "scheduler", component=broken)
    assert done.returncode != 0 and "No module named 'no_such_dependency_of_it'" in done.stderr
