"""Fewer runs of Python's cycle collector in the processes that import Airflow and GX, then validate.

CPython collects its youngest generation every 700 allocations net of frees, and walks every tracked object of the
process in a full collection when enough new objects have survived: importing Airflow and GX makes about a million
of them, so their imports and GX's validation (hundreds of thousands of small objects per suite) paid for some 2,300
young and a dozen full collections per ``greenery demo``, the full ones about 0.25 s each. Measured with a
``gc.callbacks`` timer on every collection (2026-12-06, ``greenery demo``, benchmarks/RESULTS.md): 3.6 s of its 18
CPU-s in the collector with CPython's thresholds, 0.6 s with these, its peak memory 422 → 432 MB.

The thresholds are the process's, for all its threads. Cycles are still collected, later, so a finalizer of one runs
later; nothing of this project's depends on when (its connections are closed explicitly). The Airflow components
started through ``greenery-airflow`` (every one of ``greenery ui`` and of docker-compose.yaml) set the same thresholds
themselves (preloaded_airflow.py), and the tasks forked from them inherit them; elsewhere (``airflow dags test``, a
deployment's plain ``airflow`` commands) only ``validate`` sets them.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

# The youngest generation every 50,000 allocations (CPython: 700); the middle one every 20 young collections (about
# a million allocations); a full one after 20 middle ones, when CPython's own rule (a quarter more long-lived
# objects than at the last one) also holds. 20 rather than CPython's 10: fewer walks of the middle generation, which
# holds what the imports left until a full collection moves it on.
THRESHOLDS = (50_000, 20, 20)

_lock = threading.Lock()
_inside = 0  # validations in fewer_collections() at once (threads of one process)
_before: tuple[int, int, int] | None = None


def apply() -> None:
    """For a whole process of ours: the ``greenery`` command (``greenery ui``'s supervising process included, which
    allocates little). ``greenery-airflow`` sets the same without importing this module: its forked tasks would
    inherit the module from it (preloaded_airflow.py imports libraries only)."""
    gc.set_threshold(*THRESHOLDS)


def between_runs() -> None:
    """A full collection between two days' runs of one process (``greenery run`` over a range), where nothing waits
    on it. With these thresholds the full ones stopped coming, and a range kept what each day's cycles held: 15 MB
    more resident per day (441 → 562 MB over nine days at scale 1), 2 MB with this (441 → 483 MB), for 0.6-0.9 s a
    day (benchmarks/RESULTS.md)."""
    gc.collect()


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """For a while in a process that may not be ours (a task in ``airflow dags test``, a caller's ``dag.test``):
    the process's own thresholds come back when the last of the validations running at once in it ends."""
    global _inside, _before
    with _lock:
        if _inside == 0:
            _before = gc.get_threshold()
            gc.set_threshold(*THRESHOLDS)
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0 and _before is not None:
                gc.set_threshold(*_before)
                _before = None
