"""Publishing waits for other sessions' locks a bounded time, in short tries, and names the sessions in its way.

Publish swaps published tables (``drop table``, ``alter table ... set schema``): each takes an ACCESS EXCLUSIVE lock,
which waits for every session reading the table, one idle in an open transaction included (a BI tool, psql), and every
later reader of the table queues behind that wait. Unbounded, one idle session held the publish, and every reader of
the table after it, until the task's timeout an hour later, with nothing in the log (review). Each try now gives up on
a lock after TRY_SECONDS, so readers queue that long at most; the publish tries again, all of it, until
GREENERY_PUBLISH_LOCK_WAIT_SECONDS have passed, then fails naming the sessions that hold the table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from psycopg import errors

log = logging.getLogger(__name__)

TRY_SECONDS = 5.0
PAUSE_SECONDS = 1.0  # between tries: the readers queued behind the try go first
T = TypeVar("T")

_HOLDERS = """
select a.pid, coalesce(nullif(a.application_name, ''), 'no application name'), a.usename, a.state,
    to_char(a.xact_start at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
    left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120)
from pg_locks as l join pg_stat_activity as a on a.pid = l.pid
where l.relation = to_regclass(%s) and l.granted and l.pid <> pg_backend_pid()
order by a.xact_start nulls last, a.pid
"""


class LockWaitRanOut(RuntimeError):
    """A publish gave up waiting for other sessions' locks; nothing was published (a later try may succeed)."""


def set_for_this_try(conn, timeout_s: float) -> None:
    """The lock timeout of the transaction under way (call it first in the try's transaction)."""
    conn.execute("select set_config('lock_timeout', %s, true)", (f"{max(1, round(timeout_s * 1000))}ms",))


def bounded(conn, attempt: Callable[[float, Callable[[str], None]], T], wait_s: float) -> T:
    """``attempt(timeout_s, touching)`` in tries until ``wait_s`` have passed. Each try runs in a transaction of its
    own (rolled back whole when a lock wait runs out), calls :func:`set_for_this_try` with ``timeout_s``, and
    ``touching(relation)`` before it changes a published relation, so that the sessions holding it can be named."""
    deadline = time.monotonic() + wait_s
    tries = 0
    while True:
        touched: list[str] = []
        tries += 1
        try:
            return attempt(min(TRY_SECONDS, max(deadline - time.monotonic(), 0.001)), touched.append)
        except errors.LockNotAvailable as exc:
            relation = touched[-1] if touched else "a published table"
            if time.monotonic() + PAUSE_SECONDS >= deadline:
                raise LockWaitRanOut(_gave_up(conn, relation, wait_s, tries)) from exc
            log.warning("publish, try %d: %s is locked by another session; trying again", tries, relation)
            time.sleep(PAUSE_SECONDS)


def _gave_up(conn, relation: str, wait_s: float, tries: int) -> str:
    holders = conn.execute(_HOLDERS, (relation,)).fetchall() if relation.count(".") == 1 else []
    sessions = "; ".join(
        f"pid {pid} ({app}, user {user}, {state}, in a transaction since {since} UTC: {query})"
        for pid, app, user, state, since, query in holders
    )
    return (
        f"publish waited {wait_s:g} s (GREENERY_PUBLISH_LOCK_WAIT_SECONDS, {tries} tries) for a lock on {relation}, "
        f"held by {sessions or 'a session that has let go of it since'}; nothing was published. Commit or end "
        "those sessions (select pg_terminate_backend(pid)), then clear publish."
    )
