"""The package's shape, checked from its source: no import cycles, settings read in one place, every
module says what it is for, and the DAG file only wires (its task bodies live in greenery.tasks)."""

from __future__ import annotations

import ast
import functools
import graphlib
from pathlib import Path

import pytest
from helpers import parse_python

PROJECT_DIR = Path(__file__).resolve().parent.parent
PACKAGE = PROJECT_DIR / "include" / "greenery"
DAG_FILE = PACKAGE.parent.parent / "dags" / "greenery_daily.py"
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """Every greenery module ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(parse_python(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from greenery.x import y": y is a module when greenery.x.y is one, else a name in greenery.x.
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        found |= {n for n in names if n in MODULES}
    return found


def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(path) - {name} for name, path in MODULES.items()}


def test_there_is_no_import_cycle():
    try:
        list(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_cycle_check_catches_a_cycle():
    graph = import_graph()
    graph["greenery.config"] = graph["greenery.config"] | {"greenery.wap"}  # wap imports config
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter(graph).static_order())


def _env_access(tree: ast.AST) -> list[int]:
    """Lines that touch the process environment: os.environ (read, written or handed on) or os.getenv."""
    return sorted(
        {
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and ast.unparse(node) in ("os.environ", "os.getenv")
        }
    )


def _greenery_reads(tree: ast.AST) -> list[int]:
    """Lines that read a GREENERY_* variable by name (a message may name one; only config reads them)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            args = node.args[:1]
        elif isinstance(node, ast.Subscript):
            args = [node.slice]
        else:
            continue
        if any(isinstance(a, ast.Constant) and str(a.value).startswith("GREENERY_") for a in args):
            lines.append(node.lineno)
    return lines


def test_an_installed_wheel_carries_every_subpackage_and_the_markup_beside_the_code():
    """Operator trial: `packages = ["greenery"]` built a wheel without greenery.checks and the seven other
    subpackages (`import greenery.cli` failed). What pyproject.toml tells setuptools, against the package's files."""
    import fnmatch
    import tomllib

    from setuptools import find_packages

    tool = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = tool["packages"]["find"]
    shipped = set(find_packages(where=PROJECT_DIR / found["where"][0], include=found["include"]))
    assert shipped == {name for name, path in MODULES.items() if path.name == "__init__.py"}
    data = tool["package-data"]
    for path in PACKAGE.rglob("*"):
        if path.is_file() and path.suffix not in (".py", ".pyc"):
            home = next(d for d in path.parents if (d / "__init__.py").exists())  # the package it belongs to
            package, inside = module_name(home / "__init__.py"), path.relative_to(home).as_posix()
            assert any(fnmatch.fnmatch(inside, pattern) for pattern in data.get(package, ())), path


def test_settings_are_read_only_in_config():
    """No module but greenery.config reads a GREENERY_* variable (or names one to read it)."""
    offenders = []
    for name, path in [*MODULES.items(), ("dags.greenery_daily", DAG_FILE)]:
        if name == "greenery.config":
            continue
        tree = parse_python(path)
        offenders += [f"{path.name}:{line}" for line in _greenery_reads(tree)]
        # Other variables (AIRFLOW_HOME, connections) are Airflow's business: only the dev tools set them, and
        # greenery-airflow reads AIRFLOW__CORE__EXECUTOR before Airflow may be imported (it imports no module of the
        # project, config.py included: the scheduler's tasks would inherit it).
        if not name.startswith(("greenery.dev", "greenery.cli")) and name != "greenery.preloaded_airflow":
            offenders += [f"{path.name}:{line} uses os.environ" for line in _env_access(tree)]
    assert offenders == []


def test_every_module_says_what_it_is_for_and_stays_readable():
    for name, path in MODULES.items():
        tree = parse_python(path)
        doc = ast.get_docstring(tree)
        assert doc and doc.strip(), f"{name} has no docstring"
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_MODULE_LINES or name == "greenery.dev.generator", f"{name}: {lines} lines"


def test_the_dag_file_only_wires():
    """Task bodies are one call into greenery.tasks (plus its import): no logic in the DAG file."""
    tree = parse_python(DAG_FILE)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(
            ast.unparse(d).startswith(("task", "task.branch")) for d in node.decorator_list
        ):
            body = [n for n in node.body if not isinstance(n, ast.Expr | ast.ImportFrom)]
            assert len(body) <= 1, f"{node.name} holds logic"
            imports = [n for n in node.body if isinstance(n, ast.ImportFrom)]
            assert all(i.module == "greenery.tasks" for i in imports), node.name


def test_the_defaults_the_readme_gives_are_the_ones_config_has():
    """Each "`GREENERY_X` (default V)" of the README: setting V changes no setting, setting another value does."""
    import re

    from greenery import config

    readme = (PROJECT_DIR / "README.md").read_text()
    documented = dict(re.findall(r"`(GREENERY_[A-Z_]+)`,? \(?default ([0-9](?:[0-9.-]*[0-9])?)", readme))
    assert {"GREENERY_BUILD_TTL_HOURS", "GREENERY_ALERT_RETRIES", "GREENERY_TASK_TIMEOUT_MINUTES"} <= set(documented)
    defaults = config.get({})
    for name, value in documented.items():
        assert config.get({name: value}) == defaults, f"README: {name} defaults to {value}; config.py disagrees"
        other = "2020-01-01" if "-" in value else str(int(value) + 1) if value.isdigit() else str(float(value) + 1)
        assert config.get({name: other}) != defaults, f"{name} is not read by config.get"


# What the scheduler holds when its LocalExecutor forks a task, besides greenery-airflow's preload: Airflow's CLI and
# scheduler, the task runner (`import airflow` itself imports it, masking secrets through the Task SDK) and the
# supervisor (imported by each LocalExecutor worker once, at its first task, not by each task).
SCHEDULER_IMPORTS = (
    "airflow.__main__",
    "airflow.cli.commands.scheduler_command",
    "airflow.jobs.scheduler_job_runner",
    "airflow.executors.local_executor",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
)

# A task's imports after its fork: the DAG file (parsed by each task), every task module, the docs its model task
# reads (a function-level import of yaml) and the Postgres hook it connects through (built, not connected).
TASK_IMPORTS = """
import importlib, importlib.util, json, pkgutil, sys
from greenery import preloaded_airflow as p
for m in (*PRELOADED, *SCHEDULER_IMPORTS): importlib.import_module(m)
before = set(sys.modules)
spec = importlib.util.spec_from_file_location('greenery_daily', DAG_FILE)
spec.loader.exec_module(importlib.util.module_from_spec(spec))
import greenery.tasks
for task in pkgutil.iter_modules(greenery.tasks.__path__):
    importlib.import_module(f'greenery.tasks.{task.name}')
from greenery import docs
docs.load()
from airflow.providers.postgres.hooks.postgres import PostgresHook
PostgresHook(postgres_conn_id='greenery_warehouse')
print('SCHEDULER', json.dumps(sorted(m for m in before if m.split('.')[0] == 'greenery')))
print('TASK', json.dumps(sorted(set(sys.modules) - before)))
"""


@functools.cache
def scheduler_and_task_modules(preloaded: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """In a fresh interpreter, a scheduler that preloaded ``preloaded``: the project's modules it holds, and the
    modules a task forked from it imports (one probe for the tests below)."""
    import json
    import subprocess
    import sys

    probe = (
        f"PRELOADED, SCHEDULER_IMPORTS, DAG_FILE = {preloaded!r}, {SCHEDULER_IMPORTS!r}, {str(DAG_FILE)!r}\n"
        + TASK_IMPORTS
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180, check=True)
    found = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("SCHEDULER ", "TASK ")))
    return json.loads(found["SCHEDULER"]), json.loads(found["TASK"])


@pytest.mark.stack
def test_the_preloading_scheduler_imports_no_module_of_this_project_for_its_tasks():
    """Review: `greenery-airflow` imported greenery.checks.gx before forking its tasks, so after a deploy a task ran the
    scheduler's old greenery.checks.suites beside a new tasks/validate.py (AttributeError, paged). Libraries only."""
    from greenery import preloaded_airflow

    project, _ = scheduler_and_task_modules(preloaded_airflow.LIBRARIES)
    assert project == ["greenery", "greenery.preloaded_airflow"]


# What a task still imports after the preload, beside the project's modules: the DAG file's retry policy, a
# dataclass or two (not worth a line in LIBRARIES). Another Airflow version may name others: look at their cost.
PER_TASK = ("airflow.sdk.definitions.retry_policy",)


@pytest.mark.stack
def test_a_task_forked_from_the_preloading_scheduler_imports_no_library_the_scheduler_did_not():
    """Between its fork and its SQL every task parsed the DAG file and connected: the Task SDK's decorators, the assets'
    providers and the Postgres provider's hook (with sqlparse, wrapt, deprecated, more_itertools, psycopg2) took 30-40
    ms of CPU in each (benchmarks/RESULTS.md, 2026-12-06). greenery-airflow imports them once. A library the DAG file, a
    task module, the docs or the hook comes to import (a new dependency) fails here until it is preloaded too; and
    each of Airflow's entries in LIBRARIES must be one a task would import without it. What is left is one module of
    the Task SDK, a few classes (PER_TASK)."""
    import sys

    from greenery import preloaded_airflow

    airflows = [m for m in preloaded_airflow.LIBRARIES if m.split(".")[0] == "airflow"]
    others = [m for m in preloaded_airflow.LIBRARIES if m not in airflows]
    # GX first (preloaded_airflow.main: imported after Airflow it logs through Airflow's logging at every start).
    assert list(preloaded_airflow.LIBRARIES) == others + airflows
    _, new = scheduler_and_task_modules(preloaded_airflow.LIBRARIES)
    assert "greenery.tasks.build" in new and "greenery.docs" in new, "the probe imported the tasks' modules"
    libraries = [m for m in new if m.split(".")[0] not in {"greenery", "greenery_daily", *sys.stdlib_module_names}]
    assert libraries == list(PER_TASK), "imported by every task after its fork: add them to preloaded_airflow.LIBRARIES"
    _, without = scheduler_and_task_modules(tuple(others))
    assert [m for m in airflows if m not in without] == [], "preloaded, though no task imports it"


def test_the_fast_tier_fails_a_test_that_imports_airflow_outside_its_files(monkeypatch):
    """`make test-fast` keeps Airflow's import off one worker (conftest.NEEDS_AIRFLOW); a test of another file that
    imports it fails, where Airflow was not imported before it, and only then."""
    import sys
    import types
    from types import SimpleNamespace

    import conftest

    def item(path: str, option: bool = True, marker=None):
        config = SimpleNamespace(getoption=lambda name: option)
        return SimpleNamespace(
            path=Path(path), nodeid=f"{path}::t", stash={}, config=config, get_closest_marker=lambda m: marker
        )

    def imports_airflow(test) -> None:
        monkeypatch.delitem(sys.modules, "airflow", raising=False)
        conftest.pytest_runtest_setup(test)
        monkeypatch.setitem(sys.modules, "airflow", types.ModuleType("airflow"))
        conftest.pytest_runtest_teardown(test)

    with pytest.raises(pytest.fail.Exception, match=r"tests/test_docs.py::t imported Airflow: add its file"):
        imports_airflow(item("tests/test_docs.py"))
    imports_airflow(item("tests/test_dag_integrity.py"))  # one of NEEDS_AIRFLOW
    imports_airflow(item("tests/test_docs.py", option=False))  # make test: every file may
    imports_airflow(item("tests/test_docs.py", marker="stack"))  # not the fast tier
    already = item("tests/test_docs.py")
    conftest.pytest_runtest_setup(already)  # Airflow there before the test: not its import
    conftest.pytest_runtest_teardown(already)
