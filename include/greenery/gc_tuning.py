"""Fewer runs of Python's cycle collector in the processes that import Airflow and GX, then validate.

CPython collects its youngest generation every 700 allocations net of frees, and walks every tracked object of the
process in a full collection when enough new objects have survived: importing Airflow and GX makes about a million
of them, so their imports and GX's validation (hundreds of thousands of small objects per suite) paid for some 2,300
young and a dozen full collections per ``greenery demo``, the full ones about 0.25 s each. Measured with a
``gc.callbacks`` timer on every collection (2026-12-06, ``greenery demo``): 3.6 s of its 18 CPU-s in the collector
with CPython's thresholds, 0.6 s with these; a validation of the real data alone, 0.5-1.0 s → 0.03-0.13 s.

Cycles are still collected, later: the demo's peak memory went from 422 to 432 MB. Nothing here changes what a
program does, only when its unreachable cycles are freed (a finalizer runs later).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# Youngest generation every 50,000 allocations (CPython: 700); the older two as CPython counts them, in collections
# of the generation below. The full collection still comes, once enough survivors pile up (CPython's own rule).
THRESHOLDS = (50_000, 20, 20)


def apply() -> None:
    """For a whole process of ours (the ``greenery`` command). Not in ``greenery-airflow``: the tasks it forks would
    inherit this module from it (preloaded_airflow.py imports libraries only); ``validate`` sets its own."""
    gc.set_threshold(*THRESHOLDS)


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """For a while in a process that is not ours (a task in ``airflow dags test``, a caller's ``dag.test``)."""
    before = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
