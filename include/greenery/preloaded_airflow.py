"""``greenery-airflow``: the ``airflow`` command with the validate task's code imported first.

The LocalExecutor forks its workers from the scheduler, and each task is forked from a worker: whatever the
scheduler imported, every task starts with. Great Expectations takes 3 to 4 s to import, in every ``validate``
task; imported once by the scheduler, that task starts with it (``make bench``'s ``pipeline_scheduled`` on the
real data: ``validate`` 11.0 s → 6.6 s, the run 28.4 s → 24.1 s). ``greenery ui`` runs its scheduler with it.

Only modules are imported: no connection, thread, setting or GX context exists before Airflow's own ``main``
runs, so nothing of this process's state is shared by the tasks it forks. The price is the scheduler's
memory (GX's modules, shared copy-on-write with its workers) and 3 to 4 s more at its start.

Only libraries, never this project's own modules: a task forked with them would run the code the scheduler
started with beside modules it imports fresh (review: after a deploy, ``validate`` failed on a function the
preloaded ``greenery.checks.suites`` did not have yet; a compatible change would have run stale checks).
A new version of a library still needs the scheduler restarted, as Airflow's own do.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

COMMAND = "greenery-airflow"


def beside(airflow: str) -> str:
    """This command beside the ``airflow`` executable ``airflow``, or ``airflow`` itself where this project is
    not installed (the benchmark's Cosmos venv)."""
    preloaded = Path(airflow).with_name(COMMAND)
    return str(preloaded) if preloaded.is_file() else airflow


# What greenery/checks/gx.py imports that takes time: GX (3 to 4 s), and what it and the tasks connect with.
LIBRARIES = ("great_expectations", "great_expectations.data_context.types.base", "psycopg", "sqlalchemy")


def main() -> int | None:
    # GX first: imported after Airflow, it logs some 200 INFO lines through Airflow's logging at every start.
    for library in LIBRARIES:  # for the tasks this process forks, see above
        importlib.import_module(library)
    return importlib.import_module("airflow.__main__").main()


if __name__ == "__main__":
    sys.exit(main())
