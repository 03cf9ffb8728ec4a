"""The warehouse-wide advisory lock that keeps a publish and the readers of published tables apart.

A publish swaps published tables under the lock in exclusive mode; a model build, a validation and a
build-schema cleanup first take it in shared mode. So a build never holds a lock on one published table
while a publish holds another that the build needs next: the cause of the deadlocks two concurrent runs
used to hit. Shared holders do not wait for each other; a publish waits for the builds under way (each
is one short-ish transaction) and they wait for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg

# Any 64-bit constant shared by every deployment that publishes into this warehouse ("grnry").
PUBLISH_LOCK_KEY = 0x67726E7279


def share(conn_or_cursor) -> None:
    """Shared mode until the end of the current transaction (call it first in the transaction)."""
    conn_or_cursor.execute("select pg_advisory_xact_lock_shared(%s)", (PUBLISH_LOCK_KEY,))


def exclusive(conn_or_cursor) -> None:
    """Exclusive mode until the end of the current transaction: for publishing and dropping build schemas."""
    conn_or_cursor.execute("select pg_advisory_xact_lock(%s)", (PUBLISH_LOCK_KEY,))


SHARE_FOR_SESSION = f"select pg_advisory_lock_shared({PUBLISH_LOCK_KEY})"
"""For connections that run many statements outside one transaction (validation): held until they close."""
LOCK_SESSION = (
    "select set_config('tcp_keepalives_idle', '60', false), set_config('tcp_keepalives_interval', '10', false),"
    " set_config('tcp_keepalives_count', '6', false), set_config('idle_session_timeout', '0', false),"
    " set_config('idle_in_transaction_session_timeout', '0', false)"
)
# Who holds the lock (pg_locks splits a bigint key in two; objsubid 1 marks a bigint key).
HOLDERS_WHERE = (
    f"l.locktype = 'advisory' and l.classid::bigint = {PUBLISH_LOCK_KEY >> 32}"
    f" and l.objid::bigint = {PUBLISH_LOCK_KEY & 0xFFFFFFFF} and l.objsubid = 1"
)


@contextlib.contextmanager
def shared_for_session(connect_args: Mapping[str, Any]) -> Iterator[psycopg.Connection]:
    """A connection of its own (``psycopg.connect`` arguments) that holds the lock in shared mode until it closes:
    for a reader that runs many statements on other connections (validation: checks/gx.py)."""
    with psycopg.connect(**connect_args, autocommit=True) as conn:
        # Held while it idles between the checks' queries: a host lost or cut off sends no FIN, and the server kept
        # the session, and the lock every publish waits for, until its TCP keepalive (two hours by default; review).
        # Its own probes end it in about two minutes (a Unix socket ignores them: its peer is on this host). A role's
        # idle_session_timeout would end it between two checks, and the lock with it, in silence (review).
        conn.execute(LOCK_SESSION)
        conn.execute(SHARE_FOR_SESSION)
        yield conn
        _still_held(conn)


class LockLostError(RuntimeError):
    """The session holding the shared lock ended before its reader did: a publish may have come in between."""


def _still_held(conn: psycopg.Connection) -> None:
    """Fail when the session no longer holds the lock in shared mode (review: ended by a DBA's pg_terminate_backend,
    a pooler or a timeout, the reader went on and its results were taken as read from one state of the tables)."""
    try:
        held = conn.execute(
            f"select count(*) from pg_locks l where {HOLDERS_WHERE} and l.pid = pg_backend_pid()"
            " and l.granted and l.mode = 'ShareLock'"
        ).fetchone()[0]
        why = "its session lost it"
    except psycopg.OperationalError as lost:
        held, why = 0, f"its session ended: {' '.join(str(lost).split())}"
    if not held:
        raise LockLostError(
            f"the shared publish lock held while the checks ran was gone at their end ({why}): a publish may have"
            " replaced tables under them, so their results are not used and nothing is published: clear the task to"
            " check again"
        )


# Another key, for backfill runs' alerts taking turns (tasks/notify.py): one root cause pages once.
BACKFILL_ALERT_LOCK_KEY = PUBLISH_LOCK_KEY + 1
