"""Great Expectations' own log lines: quieter during a validation, and caught as one-line reasons while a suite is
read (this module does not import GX: the logger is found by name)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def at_warning() -> Iterator[None]:
    """GX logs about 450 INFO lines per run (two per expectation each time it reads its configuration:
    "_get_default_value called with key 'row_condition'"): noise in the task log, and 0.5 s of CPU."""
    logger = logging.getLogger("great_expectations")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def one_line(error: object) -> str:
    """An error's text on one line (GX's and pydantic's messages run over several)."""
    return " ".join(str(error).split())


# One reader at a time: errors_to swaps the GX logger's handler and propagation, which every thread shares (the
# validation's streams read their suites side by side; two overlapping swaps left propagation off for good: review).
_ONE_READER = threading.Lock()


@contextlib.contextmanager
def errors_to(found: list[str]) -> Iterator[None]:
    """GX's error log lines of this thread while reading a suite, as one line each in ``found``, not on the terminal
    (a 29-line traceback above a command's one-line error). Another thread's GX lines go where they would have (a
    line logged in the instant the handler goes on or off may be lost: never doubled)."""
    reader = threading.get_ident()
    logger = logging.getLogger("great_expectations")

    with _ONE_READER:
        propagate = logger.propagate

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                # Asked here, not of the record: emit runs in the thread that logged (record.thread is None when
                # logging.logThreads is off).
                if threading.get_ident() != reader:  # another stream's, not this suite's: propagated as it was
                    if propagate and logger.parent is not None:
                        logger.parent.callHandlers(record)
                elif record.levelno >= logging.ERROR:
                    cause = record.exc_info[1] if record.exc_info else None
                    found.append(one_line(cause if cause is not None else record.getMessage()))

        keep = Keep()
        try:  # inside: an exception raised right after the swap (Airflow's timeout) still restores it
            logger.propagate = False
            logger.addHandler(keep)
            yield
        finally:
            logger.removeHandler(keep)
            logger.propagate = propagate
