"""``greenery-airflow``: the ``airflow`` command for this project's Airflow components, with Python's cycle collector
run less, and, for the commands that fork the tasks, the validate task's libraries imported first.

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
and the Postgres provider's hook (connecting): about 0.1 s of CPU in each of the 40; they are imported here too
(tests/test_architecture.py fails on a library a task imports that is not). Celery's pool processes are forked from
the worker the same way. Only modules are imported: no connection, thread, setting or GX
context exists before Airflow's own ``main`` runs, so nothing of this process's state is shared by the tasks it
forks. The price is the process's memory (GX's modules, shared copy-on-write with its workers) and 3 to 4 s more
at its start, which the other components (api-server, dag-processor, triggerer) do not pay.

Only libraries, never this project's own modules: a task forked with them would run the code the scheduler
started with beside modules it imports fresh (review: after a deploy, ``validate`` failed on a function the
preloaded ``greenery.checks.suites`` did not have yet; a compatible change would have run stale checks). So the
thresholds are written here again, not imported from gc_tuning.py (tests/test_gc_tuning.py holds them equal).
A new version of a library still needs the scheduler restarted, as Airflow's own do.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

COMMAND = "greenery-airflow"

# greenery/gc_tuning.py's THRESHOLDS, which says why these.
THRESHOLDS = (50_000, 20, 20)


def beside(airflow: str) -> str:
    """This command beside the ``airflow`` executable ``airflow``, or ``airflow`` itself where this project is
    not installed (the benchmark's Cosmos venv)."""
    preloaded = Path(airflow).with_name(COMMAND)
    return str(preloaded) if preloaded.is_file() else airflow


# What the tasks import that takes time, in this order. First greenery/checks/gx.py's: GX (3 to 4 s), and what it
# and the tasks connect with. Then, once GX is in, Airflow's: what every task imports between its fork and its SQL
# (the DAG file's decorators and assets, the Postgres provider's hook that greenery/warehouse.py connects through),
# about 0.1 s of CPU in each (py-spy in a scheduled run: benchmarks/RESULTS.md, 2026-12-06 late morning).
LIBRARIES = (
    "great_expectations",
    "great_expectations.data_context.types.base",
    "psycopg",
    "sqlalchemy",
    "airflow.sdk.definitions.decorators",
    "airflow.providers.common.compat.assets",
    "airflow.providers.common.io.assets.file",
    "airflow.providers.postgres.assets.postgres",
    "airflow.providers.postgres.hooks.postgres",
)

# The Airflow commands whose process forks the tasks: they import LIBRARIES first.
FORKS_TASKS = (("scheduler",), ("celery", "worker"))


def forks_tasks(args: list[str], environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``args`` (an ``airflow`` command line without the program) start a process the tasks are forked from.

    The scheduler forks them only through a LocalExecutor: with the executor set to others only (docker-compose's
    Celery profile sets CeleryExecutor), its preload was 3 to 4 s and GX's memory for nothing. Read from the
    environment, where docker-compose and ``greenery ui`` set it: Airflow's own configuration is read by importing
    Airflow, which must come after GX. Without the variable Airflow's default (LocalExecutor) or airflow.cfg decide,
    and the scheduler preloads as before.
    """
    if tuple(args[:1]) == ("scheduler",):
        executors = environ.get("AIRFLOW__CORE__EXECUTOR")
        return executors is None or "LocalExecutor" in executors
    return any(tuple(args[: len(command)]) == command for command in FORKS_TASKS)


def main() -> int | None:
    gc.set_threshold(*THRESHOLDS)  # before any import: Airflow's own made most of the collections
    if forks_tasks(sys.argv[1:]):
        # GX first: imported after Airflow, it logs some 200 INFO lines through Airflow's logging at every start.
        for library in LIBRARIES:  # for the tasks this process forks, see above
            importlib.import_module(library)
    return importlib.import_module("airflow.__main__").main()


if __name__ == "__main__":
    sys.exit(main())
