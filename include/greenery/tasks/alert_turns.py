"""Backfill runs' alerts take turns: one run at a time reads what the others paged, pages and records it.

A backfill runs several days at once (ten unless told otherwise); their alerts about one root cause came minutes
or seconds apart, each reading before any other had recorded its page (review: four runs, four pages). Holding a
session-level advisory lock while reading, sending and recording serialises them; the wait is bounded so that the
page still goes before Airflow stops the task.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from greenery import config, locks, warehouse

log = logging.getLogger(__name__)


# How long a backfill run's alert waits for the others' turns (each: a read, Slack's answer, a write).
TURN_WAIT_S = 120


def turn_wait_s() -> float:
    """TURN_WAIT_S, or a quarter of the task's timeout when that is shorter: the wait must end, and the page go, before
    Airflow stops the task (review: with a 1-minute timeout, alert_slack was stopped while it waited, each retry too,
    and the alert never went)."""
    return min(TURN_WAIT_S, config.get().task_timeout.total_seconds() / 4)


@contextlib.contextmanager
def taking_turns(active: bool, connect_timeout_s: int, answer_within_s: float) -> Iterator[None]:
    """Backfill runs alerting at the same moment (a backfill runs 10 at once unless told otherwise) take turns: each
    reads what the others paged, pages and records it before the next one reads (review: four runs at once paged one
    root cause four times). Best effort: without the lock in time, a run pages (twice rather than never). Its
    connection: ``connect_timeout_s`` to connect, ``answer_within_s`` for each statement besides the wait."""
    with contextlib.ExitStack() as stack:
        if active:
            try:
                # Held while this run's alert is read, sent and recorded: only the wait for it is bounded here.
                conn = stack.enter_context(
                    warehouse.connect(connect_timeout=connect_timeout_s, answer_within_s=answer_within_s)
                )
                wait_s = turn_wait_s()
                with warehouse.answer_within(conn, wait_s + answer_within_s, "the wait for the alerts' turn"):
                    conn.execute("set statement_timeout = 0")  # the lock's wait is bounded by lock_timeout
                    conn.execute(f"set lock_timeout = '{max(1, round(wait_s * 1000))}ms'")
                    conn.execute("select pg_advisory_lock(%s)", (locks.BACKFILL_ALERT_LOCK_KEY,))
            except Exception as exc:
                log.warning("could not wait for the other backfill runs' alerts (paging): %s", exc)
        yield
