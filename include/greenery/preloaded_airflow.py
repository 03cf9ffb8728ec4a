"""``greenery-airflow``: the ``airflow`` command for this project's Airflow components, with Python's cycle collector
run less, and, for the commands that fork the tasks (a LocalExecutor's scheduler, a Celery worker), the libraries
the tasks import imported first.

The collector (every component): Airflow's processes hold about a million objects after their imports, and CPython
walks all of them at every full collection. With greenery/gc_tuning.py's thresholds, set before Airflow is imported,
the collections of ``greenery ui``'s components in the on-call test (tests/test_local_ui.py, about 100 s here) took
2.4-2.7 s of their CPU instead of 7.4-8.3 s, for 5-9 MB more memory each at their peak; over 24 runs in a row under
one scheduler, and 30 idle minutes, their memory levelled off 5-10 MB above CPython's (benchmarks/RESULTS.md,
2026-12-06). Tasks forked from the scheduler or a Celery worker inherit them; full collections still come, rarer.
``greenery ui`` and docker-compose.yaml start every component through this command, and the ``greenery`` command
every ``airflow db migrate`` it runs. (An api-server with more than one worker starts them as new interpreters:
they keep CPython's thresholds.)

The imports (``scheduler``, ``celery worker``): the LocalExecutor forks its workers from the scheduler, and each task
is forked from a worker: whatever the scheduler imported, every task starts with. Great Expectations takes 3 to 4 s
to import, in every ``validate`` task; imported once by the scheduler, that task starts with it (``make bench``'s
``pipeline_scheduled`` on the real data: ``validate`` 11.0 s → 6.6 s, the run 28.4 s → 24.1 s). Every task also
imported, between its fork and its SQL, the Task SDK's decorators and the assets' providers (parsing the DAG file)
and the Postgres provider's hook (connecting): 30-40 ms of CPU in each of a run's 39 tasks, measured alone; they
are imported here too (tests/test_architecture.py fails on a library that the DAG file, a task module or the hook
imports and the list misses). Celery's pool processes are forked from the worker the same way. Only modules are
imported: Airflow's own import-time set-up runs here as it did when ``airflow.__main__`` was imported (its logging,
its secrets masker, an engine that connects to nothing), and no connection, thread or GX context exists before
Airflow's ``main`` runs, so nothing of this process's state is shared by the tasks it forks. The price is the
process's memory (GX's modules, shared copy-on-write with its workers) and 3 to 4 s more at its start, which the
other components (api-server, dag-processor, triggerer) do not pay.

Only libraries, never this project's own modules: a task forked with them would run the code the scheduler
started with beside modules it imports fresh (review: after a deploy, ``validate`` failed on a function the
preloaded ``greenery.checks.suites`` did not have yet; a compatible change would have run stale checks). So the
thresholds are written here again, not imported from gc_tuning.py (tests/test_gc_tuning.py holds them equal).
A new version of a library still needs the scheduler restarted, as Airflow's own do.
"""

from __future__ import annotations

import functools
import gc
import importlib
import os
import sys
from pathlib import Path

COMMAND = "greenery-airflow"

# greenery/gc_tuning.py's THRESHOLDS, which says why these.
THRESHOLDS = (50_000, 20, 20)


@functools.cache
def beside(airflow: str) -> str:
    """This command beside the ``airflow`` executable ``airflow``, or ``airflow`` itself where this project is
    not installed (the benchmark's Cosmos venv), said once per executable: the components then run without what
    this command gives them, and a `greenery ui` from a checkout that was never installed should not look the same."""
    preloaded = Path(airflow).with_name(COMMAND)
    if preloaded.is_file():
        return str(preloaded)
    import logging  # not at the top: main() sets the thresholds before any import

    logging.getLogger(__name__).warning(
        "%s is not installed beside %s: Airflow's components start as plain airflow, with CPython's collector"
        " thresholds and no libraries preloaded for the tasks (install the project: make install)",
        COMMAND,
        airflow,
    )
    return airflow


# What the tasks import that takes time, in this order. First greenery/checks/gx.py's: GX (3 to 4 s), and what it
# and the tasks connect with. Then, once GX is in, Airflow's: what every task imports between its fork and its SQL
# (the DAG file's decorators and assets, the Postgres provider's hook that greenery/warehouse.py connects through),
# 30-40 ms of CPU in each (benchmarks/RESULTS.md, 2026-12-06 late morning).
LIBRARIES = (
    "great_expectations",
    "great_expectations.data_context.types.base",
    "psycopg",
    "sqlalchemy",
    "jinja2.meta",  # checks/suites.py: each task's suite checks (prepare_build, validate)
    "airflow.sdk.definitions.decorators",
    "airflow.providers.common.io.assets.file",
    "airflow.providers.postgres.assets.postgres",
    "airflow.providers.postgres.hooks.postgres",
)

# The Airflow commands whose process forks the tasks (the scheduler only through a LocalExecutor: forks_tasks).
FORKS_TASKS = (("scheduler",), ("celery", "worker"))


def forks_tasks(args: list[str]) -> bool:
    """Whether ``args`` (an ``airflow`` command line without the program) start a process the tasks are forked from.

    The scheduler forks them only through a LocalExecutor: with the executor set to others only (docker-compose's
    Celery profile sets CeleryExecutor), its preload was 3 to 4 s and GX's memory for nothing. Read from the
    environment, where docker-compose and ``greenery ui`` set it: Airflow's own configuration is read by importing
    Airflow, which must come after GX. Without the variable Airflow's default (LocalExecutor) or airflow.cfg decide,
    and the scheduler preloads as before.
    """
    command = next((c for c in FORKS_TASKS if tuple(args[: len(c)]) == c), None)
    if command == ("scheduler",):
        executors = os.environ.get("AIRFLOW__CORE__EXECUTOR")
        # A substring: an alias ("fast:LocalExecutor"), a module path and a list of several executors all name the
        # class. A wrong answer only costs the preload or goes without it.
        return executors is None or "LocalExecutor" in executors
    return command is not None


def preload() -> None:
    """Import LIBRARIES in order, skipping (with a line on stderr) one that is not installed: the
    preload only saves time, and a provider release that moves a module must not keep the scheduler from starting
    (tests/test_architecture.py fails on it instead). A module that is there but fails to import still fails."""
    for library in LIBRARIES:
        try:
            importlib.import_module(library)
        except ModuleNotFoundError as exc:
            if not exc.name or not (library == exc.name or library.startswith(f"{exc.name}.")):
                raise
            print(f"{COMMAND}: {library} is not installed: not preloaded", file=sys.stderr)


def main() -> int | None:
    gc.set_threshold(*THRESHOLDS)  # before any import: Airflow's own made most of the collections
    if forks_tasks(sys.argv[1:]):
        # GX first: imported after Airflow, it logs some 200 INFO lines through Airflow's logging at every start.
        preload()  # for the tasks this process forks, see above
    return importlib.import_module("airflow.__main__").main()


if __name__ == "__main__":
    sys.exit(main())
