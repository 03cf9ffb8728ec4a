"""The package's shape, checked from its source: no import cycles, settings read in one place, every
module says what it is for, and the DAG file only wires (its task bodies live in greenery.tasks)."""

from __future__ import annotations

import ast
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
    """Lines that read or write the process environment (os.environ[...], os.environ.get/setdefault/..., getenv)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = ast.unparse(node.func)
            if target == "os.getenv" or target.startswith("os.environ."):
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            lines.append(node.lineno)
    return lines


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


def test_settings_are_read_only_in_config():
    """No module but greenery.config reads a GREENERY_* variable (or names one to read it)."""
    offenders = []
    for name, path in [*MODULES.items(), ("dags.greenery_daily", DAG_FILE)]:
        if name == "greenery.config":
            continue
        tree = parse_python(path)
        offenders += [f"{path.name}:{line}" for line in _greenery_reads(tree)]
        # Other variables (AIRFLOW_HOME, connections) are Airflow's business: only the dev tools set them.
        if not name.startswith(("greenery.dev", "greenery.cli")):
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


@pytest.mark.stack
def test_the_preloading_scheduler_imports_no_module_of_this_project_for_its_tasks():
    """Review: `greenery-airflow` imported greenery.checks.gx before forking its tasks, so after a deploy a task ran the
    scheduler's old greenery.checks.suites beside a new tasks/validate.py (AttributeError, paged). Libraries only."""
    import subprocess
    import sys

    probe = (
        "import importlib, sys; from greenery import preloaded_airflow as p\n"
        "for m in p.LIBRARIES: importlib.import_module(m)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'greenery')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["greenery", "greenery.preloaded_airflow"], done.stdout


# Imported in a fresh interpreter as the scheduler has them when its LocalExecutor forks a task: greenery-airflow's
# libraries, then what the scheduler itself imports.
SCHEDULER_IMPORTS = (
    "airflow.__main__",
    "airflow.jobs.scheduler_job_runner",
    "airflow.executors.local_executor",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
)


@pytest.mark.stack
def test_a_task_forked_from_the_preloading_scheduler_imports_no_library_the_scheduler_did_not():
    """Between its fork and its SQL every task parsed the DAG file and connected: the Task SDK's decorators, the assets'
    providers and the Postgres provider's hook (with sqlparse, wrapt, deprecated, more_itertools, psycopg2) took about
    0.1 s of CPU in each (py-spy, a scheduled run). greenery-airflow imports them once; a library a task comes to
    import later (a new dependency of a task's module) fails here until it is preloaded too. Airflow's own core
    modules are left to the scheduler, which imports them anyway."""
    import subprocess
    import sys

    probe = (
        "import importlib, importlib.util, sys\n"
        "from greenery import preloaded_airflow as p\n"
        f"for m in (*p.LIBRARIES, *{SCHEDULER_IMPORTS!r}): importlib.import_module(m)\n"
        "before = set(sys.modules)\n"
        f"spec = importlib.util.spec_from_file_location('greenery_daily', {str(DAG_FILE)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "import pkgutil, greenery.tasks\n"
        "for task in pkgutil.iter_modules(greenery.tasks.__path__):\n"
        "    importlib.import_module(f'greenery.tasks.{task.name}')\n"
        "from airflow.providers.postgres.hooks.postgres import PostgresHook  # as greenery.warehouse.connect does\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180, check=True)
    new = done.stdout.split()
    assert any(m.startswith("greenery.tasks.") for m in new), "the probe imported the tasks' modules"
    libraries = [
        m
        for m in new
        if m.split(".")[0] not in {"greenery", "greenery_daily", *sys.stdlib_module_names}
        and not (m.startswith("airflow.") and not m.startswith("airflow.providers."))
    ]
    assert libraries == [], "imported by every task after its fork: add them to preloaded_airflow.LIBRARIES"
